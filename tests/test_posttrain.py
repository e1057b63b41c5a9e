"""Post-training: flow-matching conventions, the diffusers sampler, the DiT head on a toy problem, the action model
(readout, normalisation, gradients, LoRA, Hub round trip) and a tiny post-train + Meta-World rollout."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from safetensors.torch import load_file, save_file

from modeling_jala.configuration_jala import JalaActionHeadConfig
from modeling_jala.flow_head_jala import (
    JalaFlowHead,
    flow_matching_sample,
    interpolate,
    make_scheduler,
    sample_training_sigmas,
    velocity_target,
)
from modeling_jala.modeling_jala import JalaForMotionPretraining
from modeling_jala.modeling_jala_action import JalaForActionPrediction
from tests.fixtures.tiny_jala import save_hub_folder, tiny_jala_config, tiny_processor

REPO_ROOT = Path(__file__).resolve().parents[1]

HEAD = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "action_dim": 3, "state_dim": 2, "chunk_size": 4}
K = 128
INSTRUCTIONS = ["pick up the red cup", "push the box"]


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def images() -> list[np.ndarray]:
    return [np.full((40, 40, 3), 30, dtype=np.uint8), np.full((48, 64, 3), 200, dtype=np.uint8)]


def tiny_action_model(**head: object) -> JalaForActionPrediction:
    torch.manual_seed(0)
    config = JalaForActionPrediction.config_for_actions(tiny_jala_config(), {**HEAD, **head})
    return JalaForActionPrediction(config).eval()


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    inputs = dict(tiny_processor()(images=images(), text=INSTRUCTIONS))
    inputs["state"] = torch.randn(2, HEAD["state_dim"], generator=generator)
    inputs["actions"] = torch.randn(2, HEAD["chunk_size"], HEAD["action_dim"], generator=generator)
    return inputs


# -- flow-matching math ------------------------------------------------------------------------------------------


def test_sigma_one_is_pure_noise_and_sigma_zero_the_actions() -> None:
    actions, noise = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    torch.testing.assert_close(interpolate(actions, noise, torch.ones(3)), noise, rtol=0, atol=0)
    torch.testing.assert_close(interpolate(actions, noise, torch.zeros(3)), actions, rtol=0, atol=0)
    halfway = interpolate(actions, noise, torch.tensor([0.25, 0.5, 0.75]))
    torch.testing.assert_close(halfway[1], 0.5 * (actions[1] + noise[1]))
    # v = dx/dσ: a finite difference of the path is the target velocity
    sigma = torch.full((3,), 0.3)
    derivative = (interpolate(actions, noise, sigma + 1e-3) - interpolate(actions, noise, sigma)) / 1e-3
    torch.testing.assert_close(derivative, velocity_target(actions, noise), atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("steps", [1, 2, 4, 7])
def test_the_exact_velocity_field_takes_the_euler_sampler_to_the_target(steps: int) -> None:
    target = torch.randn(2, 5, 3)
    noise = torch.randn(2, 5, 3)
    seen_sigmas = []

    def exact(sample: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        seen_sigmas.append(float(sigma[0]))
        return (sample - target) / sigma.view(-1, 1, 1)  # = ε - A on the straight path

    result = flow_matching_sample(exact, noise, make_scheduler(JalaActionHeadConfig()), steps)
    torch.testing.assert_close(result, target, atol=1e-5, rtol=1e-5)
    assert seen_sigmas == pytest.approx(list(np.linspace(1.0, 1.0 / steps, steps)))  # uniform σ grid from 1


def test_sampling_runs_diffusers_scheduler_step() -> None:
    model = tiny_action_model()
    assert isinstance(model.scheduler, FlowMatchEulerDiscreteScheduler)
    original = FlowMatchEulerDiscreteScheduler.step
    with mock.patch.object(FlowMatchEulerDiscreteScheduler, "step", autospec=True, side_effect=original) as step:
        actions = model.predict_action(images(), INSTRUCTIONS, np.zeros((2, 2)), processor=tiny_processor())
    assert step.call_count == model.config.action_head_config.num_inference_steps == 4
    assert actions.shape == (2, 4, 3)
    with mock.patch.object(FlowMatchEulerDiscreteScheduler, "step", autospec=True, side_effect=original) as step:
        model.predict_action(
            images()[0], "push the box", np.zeros(2), processor=tiny_processor(), num_inference_steps=2
        )
    assert step.call_count == 2


def test_training_sigmas_follow_the_documented_beta_shape() -> None:
    config = JalaActionHeadConfig()
    for generator in (None, torch.Generator().manual_seed(0)):
        torch.manual_seed(0)
        sigma = sample_training_sigmas(40_000, config, generator=generator)
        assert float(sigma.min()) >= config.sigma_min and float(sigma.max()) <= 1.0
        assert abs(float(sigma.mean()) - (0.001 + 0.999 * 0.6)) < 0.01  # E[Beta(1.5, 1)] = 0.6
        # CDF of σ: ((s - σ_min) / (1 - σ_min))^1.5 — most mass towards the noisy end
        for point in (0.25, 0.5, 0.9):
            expected = ((point - 0.001) / 0.999) ** 1.5
            assert abs(float((sigma <= point).float().mean()) - expected) < 0.01


def test_flow_head_learns_a_toy_conditional_distribution() -> None:
    """Two contexts, two action chunks: the loss falls and 4 sampler steps land near the right chunk."""
    torch.manual_seed(0)
    config = JalaActionHeadConfig(hidden_size=32, num_layers=2, num_heads=2, action_dim=2, chunk_size=4)
    head = JalaFlowHead(config, context_dim=8)
    proprio = torch.nn.Parameter(torch.zeros(1, 1, 32))
    pattern = torch.linspace(-1, 1, 8).view(4, 2)
    patterns = torch.stack([pattern, -pattern])
    contexts = torch.randn(2, 3, 8)
    optimizer = torch.optim.Adam([*head.parameters(), proprio], lr=3e-3)
    losses = []
    for _ in range(300):
        which = torch.randint(0, 2, (64,))
        actions, noise = patterns[which], torch.randn(64, 4, 2)
        sigma = sample_training_sigmas(64, config)
        context = head.encode_context(contexts[which])
        velocity = head(interpolate(actions, noise, sigma), sigma, context, proprio.expand(64, -1, -1))
        loss = (velocity - velocity_target(actions, noise)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-30:]) < 0.5 * np.mean(losses[:10]), (losses[:10], losses[-30:])
    with torch.no_grad():
        context = head.encode_context(contexts)
        sample = flow_matching_sample(
            lambda x, s: head(x, s, context, proprio.expand(2, -1, -1)),
            torch.randn(2, 4, 2, generator=torch.Generator().manual_seed(1)),
            make_scheduler(config),
            4,
        )
    error = (sample - patterns).abs().mean()
    wrong = (sample - patterns.flip(0)).abs().mean()
    assert error < 0.25 and error < 0.5 * wrong, (float(error), float(wrong))


# -- the action model --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pretrained_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny JalaForMotionPretraining Hub folder (random weights) with its processor."""
    torch.manual_seed(3)
    model = JalaForMotionPretraining(tiny_jala_config())
    return save_hub_folder(model, tmp_path_factory.mktemp("jala") / "pretrained")


def test_from_pretrained_jala_reads_h_exactly_as_the_pretraining_model(pretrained_folder: Path) -> None:
    pretrained = JalaForMotionPretraining.from_pretrained(pretrained_folder).eval()
    model = JalaForActionPrediction.from_pretrained_jala(pretrained_folder, HEAD).eval()
    assert model.model.lap is None and len(model.model.language_model.layers) == model.config.align_layer == 2
    assert model.config.vlm_config.text_config.num_hidden_layers == 2  # layers after align_layer dropped
    torch.testing.assert_close(
        model.model.language_model.layers[1].mlp.up_proj.weight,
        pretrained.model.language_model.layers[1].mlp.up_proj.weight,
    )
    inputs = tiny_processor()(images=images(), text=INSTRUCTIONS)
    h = model.predictive_embeddings(**inputs)
    assert h.shape == (2, 2 * K, model.config.hidden_size)
    reference = pretrained.model(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        pixel_values=inputs["pixel_values"],
        ssl_pixel_values=inputs["ssl_pixel_values"][:, None],
        motion_token_ids=torch.zeros(2, 1, 2, K, dtype=torch.long),
        placeholder_slots=torch.ones(2, 1, 2, K, dtype=torch.bool),
    ).predictive_embeddings
    torch.testing.assert_close(h, reference.flatten(1, 3), atol=1e-5, rtol=1e-4)
    # a different image changes h (the readout sees the observation)
    other = tiny_processor()(images=images()[::-1], text=INSTRUCTIONS)
    assert not torch.allclose(model.predictive_embeddings(**other), h)


def test_gradients_reach_exactly_the_trainable_parameters() -> None:
    model = tiny_action_model(vision_tower_trainable=False).train()  # the paper's frozen vision encoder
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(3):  # adaLN-Zero: gradients reach the blocks once the output layer and the gates moved
        optimizer.zero_grad()
        model(**batch()).loss.backward()
        optimizer.step()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert with_grad == trainable  # every trainable tensor learns (DDP needs no unused parameters)
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert any(name.startswith("model.vlm.vision_tower.") for name in frozen)
    assert all(not name.startswith(("model.vlm.vision_tower.", "model.ssl_encoder.")) for name in trainable)
    assert {"model.lsp.queries", "model.vlm.multi_modal_projector.linear_1.weight"} <= trainable
    assert any(name.startswith("model.vlm.language_model.layers.") for name in trainable)


def test_lora_option_trains_adapters_instead_of_the_language_model(pretrained_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    model = JalaForActionPrediction.from_pretrained_jala(pretrained_folder, {**HEAD, "use_lora": True, "lora_rank": 4})
    plain = JalaForActionPrediction.from_pretrained_jala(pretrained_folder, HEAD)
    language = {n: p for n, p in model.named_parameters() if n.startswith("model.vlm.language_model.")}
    assert {n for n, p in language.items() if p.requires_grad} == {n for n in language if ".lora_" in n} != set()
    inputs = tiny_processor()(images=images(), text=INSTRUCTIONS)
    # adapters start at zero (B = 0), so h equals the plain fine-tuning model's
    h = model.eval().predictive_embeddings(**inputs)
    torch.testing.assert_close(h, plain.eval().predictive_embeddings(**inputs))
    with torch.no_grad():  # a trained adapter: saved and strictly reloaded with the model
        next(p for n, p in model.named_parameters() if "lora_B" in n).add_(0.5)
    model.save_pretrained(tmp_path)
    reloaded = JalaForActionPrediction.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(reloaded.predictive_embeddings(**inputs), model.predictive_embeddings(**inputs))
    assert not torch.allclose(reloaded.predictive_embeddings(**inputs), h)


def test_normalization_statistics_round_trip(tmp_path: Path) -> None:
    model = tiny_action_model()
    stats = {
        "observation.state": {"mean": [1.0, -2.0], "std": [0.5, 3.0], "min": [0.0, 0.0]},
        "action": {"mean": [0.1, 0.2, 0.3], "std": [2.0, 1e-9, 0.25]},
    }
    model.set_normalization_stats(stats)
    actions = torch.tensor([[0.5, 0.2, -1.0]])
    torch.testing.assert_close(model.unnormalize_actions(model.normalize_actions(actions)), actions)
    torch.testing.assert_close(model.normalize_state(torch.tensor([[2.0, 1.0]])), torch.tensor([[2.0, 1.0]]))
    model.save_pretrained(tmp_path)
    reloaded = JalaForActionPrediction.from_pretrained(tmp_path)
    assert bool(reloaded.normalization_fitted)
    assert reloaded.normalization_stats() == model.normalization_stats()
    for name in ("state_mean", "state_std", "action_mean", "action_std"):
        assert torch.equal(getattr(reloaded, name), getattr(model, name)), name
    with pytest.raises(ValueError, match=r"action_head_config.action_dim=3"):
        model.set_normalization_stats({**stats, "action": {"mean": [0.0] * 4, "std": [1.0] * 4}})


def test_loading_is_strict(tmp_path: Path) -> None:
    tiny_action_model().save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    weights.pop("action_mean")
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"missing keys .*action_mean"):
        JalaForActionPrediction.from_pretrained(tmp_path)


_RELOAD = """
import sys, numpy as np, torch
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoModel
folder, out_file = sys.argv[1:3]
model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
assert type(model).__name__ == "JalaForActionPrediction", type(model).__name__
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
images = [np.asarray(Image.open(f"{folder}/../image{i}.png")) for i in range(2)]
actions = model.predict_action(images, ["pick up the red cup", "push the box"], np.array([[0.5, -1.0], [2.0, 0.0]]),
                               generator=torch.Generator().manual_seed(7))
save_file({"actions": actions.contiguous()}, out_file)
"""


def test_hub_round_trip_in_a_fresh_process_gives_identical_actions(tmp_path: Path) -> None:
    from PIL import Image

    model = tiny_action_model()
    model.set_normalization_stats(
        {"observation.state": {"mean": [0.0, 1.0], "std": [2.0, 2.0]}, "action": {"mean": [1, 2, 3], "std": [4, 5, 6]}}
    )
    processor = tiny_processor()
    folder = save_hub_folder(model, tmp_path / "policy", processor)
    assert {"flow_head_jala.py", "modeling_jala.py", "processing_jala.py", "model.safetensors"} <= {
        path.name for path in folder.iterdir()
    }
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_jala_action.JalaForActionPrediction"
    assert config["action_head_config"]["chunk_size"] == 4
    for index, image in enumerate(images()):
        Image.fromarray(image).save(tmp_path / f"image{index}.png")
    subprocess.run(
        [sys.executable, "-c", _RELOAD, str(folder), str(tmp_path / "out.safetensors")],
        check=True,
        cwd=tmp_path,
        timeout=300,
    )
    reloaded = load_file(tmp_path / "out.safetensors")["actions"]
    local = model.predict_action(
        images(),
        INSTRUCTIONS,
        np.array([[0.5, -1.0], [2.0, 0.0]]),
        processor=processor,
        generator=torch.Generator().manual_seed(7),
    )
    assert torch.equal(reloaded, local)
    assert not torch.equal(local[0], local[1])


# -- end to end ----------------------------------------------------------------------------------------------------


@pytest.mark.skipif(
    importlib.util.find_spec("metaworld") is None,
    reason="Meta-World is not installed (pip install metaworld==3.1.1 mujoco; MUJOCO_GL=egl on a headless machine)",
)
def test_tiny_posttrain_then_one_metaworld_episode(pretrained_folder: Path, tmp_path: Path) -> None:
    from robot_data.metaworld_demos import generate_demos
    from trainers import posttrain
    from trainers.eval_metaworld import evaluate_policy

    dataset = generate_demos(tmp_path / "demos", ["reach-v3"], episodes_per_task=1, max_steps=80)
    output = posttrain.main(
        [
            f"--model_name_or_path={pretrained_folder}",
            f"--dataset={dataset}",
            f"--output_dir={tmp_path / 'policy'}",
            "--head_hidden_size=32",
            "--head_num_layers=2",
            "--head_num_heads=2",
            "--chunk_size=8",
            "--max_steps=3",
            "--per_device_train_batch_size=4",
            "--logging_steps=1",
            "--report_to=none",
            "--seed=0",
        ]
    )
    summary = json.loads((output / "run_summary.json").read_text())
    assert summary["steps"] == 3 and summary["episodes"] == 1 and summary["tasks"] == 1
    policy = JalaForActionPrediction.from_pretrained(output)
    assert policy.config.action_head_config.action_dim == 4 and bool(policy.normalization_fitted)
    # the instruction's words joined the tiny word-level vocabulary
    assert "<unk>" not in policy._default_processor().tokenizer.tokenize("reach the goal position")
    report = evaluate_policy(output, ["reach-v3"], episodes_per_task=1, max_steps=12, n_action_steps=4, workers=1)
    episode = report["episodes"][0]
    assert report["tasks"]["reach-v3"]["episodes"] == 1 and isinstance(episode["success"], bool)
    assert 1 <= episode["steps"] <= 12 and episode["policy_calls"] == -(-episode["steps"] // 4)


def test_training_defaults_override_real_training_arguments() -> None:
    """A default under a name TrainingArguments no longer has (e.g. `warmup_ratio` in transformers 5) would be a
    new, silently unused field: every field must be one the Trainer reads, and the paper's 5% warmup must apply."""
    from transformers import TrainingArguments

    from trainers.posttrain import PosttrainTrainingArguments
    from trainers.pretrain import JalaTrainingArguments

    known = {field.name for field in dataclasses.fields(TrainingArguments)}
    for arguments in (PosttrainTrainingArguments, JalaTrainingArguments):
        assert {field.name for field in dataclasses.fields(arguments)} <= known, arguments
        assert arguments(output_dir="unused").get_warmup_steps(1000) == 50


def test_posttrain_runs_under_accelerate_launch_with_two_processes(pretrained_folder: Path, tmp_path: Path) -> None:
    """`accelerate launch --multi_gpu --num_processes 2 trainers/posttrain.py ... --use_cpu`: two gloo ranks train
    on a LeRobot-layout dataset, the global batch is both ranks' batches, rank 0 writes a loadable policy."""
    from tests.fixtures.lerobot_factory import ACTION_DIM, STATE_DIM, write_lerobot_fixture

    dataset = write_lerobot_fixture(tmp_path / "robot")
    output = tmp_path / "policy"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes=2",
        "--num_machines=1",
        "--mixed_precision=no",
        "--dynamo_backend=no",
        str(REPO_ROOT / "trainers" / "posttrain.py"),
        f"--model_name_or_path={pretrained_folder}",
        f"--dataset={dataset}",
        "--image_keys=observation.images.top",
        f"--output_dir={output}",
        "--head_hidden_size=32",
        "--head_num_layers=2",
        "--head_num_heads=2",
        "--chunk_size=4",
        "--max_steps=2",
        "--per_device_train_batch_size=2",
        "--report_to=none",
        "--use_cpu",
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]
    summary = json.loads((output / "run_summary.json").read_text())
    assert summary["steps"] == 2 and summary["global_batch_size"] == 4, summary
    policy = JalaForActionPrediction.from_pretrained(output)
    head = policy.config.action_head_config
    assert (head.action_dim, head.state_dim) == (ACTION_DIM, STATE_DIM) and bool(policy.normalization_fitted)


def test_select_action_executes_n_action_steps_of_each_chunk_and_reset_clears_the_queue() -> None:
    model = tiny_action_model(n_action_steps=3)  # chunk_size 4
    state, noise, processor = np.zeros((2, 2)), torch.randn(2, 4, 3), tiny_processor()
    chunk = model.predict_action(images(), INSTRUCTIONS, state, processor=processor, noise=noise)
    with mock.patch.object(model, "predict_action", wraps=model.predict_action) as predict:
        model.reset()
        actions = [
            model.select_action(images(), INSTRUCTIONS, state, processor=processor, noise=noise) for _ in range(4)
        ]
        assert predict.call_count == 2  # at steps 0 and 3: three actions per chunk
        assert model.queued_actions == 2
        for step in range(3):
            assert actions[step].shape == (2, 3) and torch.equal(actions[step], chunk[:, step])
        assert torch.equal(actions[3], chunk[:, 0])  # a new chunk, from the same noise
        model.reset()
        assert model.queued_actions == 0
        model.select_action(images(), INSTRUCTIONS, state, processor=processor, noise=noise)
        assert predict.call_count == 3  # after reset the next action predicts again
    whole = tiny_action_model()  # n_action_steps None: the whole chunk
    whole.select_action(images(), INSTRUCTIONS, state, processor=processor, noise=noise)
    assert whole.queued_actions == 3


def test_the_context_cache_changes_no_velocity_and_predict_action_projects_the_context_once() -> None:
    """The cross-attention keys / values of the observation are computed once per chunk, not once per step."""
    model = tiny_action_model()
    head = model.action_head
    with torch.no_grad():
        for parameter in head.parameters():  # adaLN-Zero starts every block as the identity: wake them all up
            parameter.normal_(0.0, 0.2)
    generator = torch.Generator().manual_seed(0)
    width, chunk, actions = head.config.hidden_size, HEAD["chunk_size"], HEAD["action_dim"]
    context = torch.randn(2, 6, width, generator=generator)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    arguments = (torch.randn(2, chunk, actions, generator=generator), torch.tensor([0.9, 0.3]), context)
    prefix = torch.randn(2, 1, width, generator=generator)
    with torch.no_grad():
        plain = head(*arguments, prefix, mask)
        cached = head(*arguments, prefix, mask, context_cache=head.context_cache(context))
        zeros = tuple(None if kv is None else (kv[0] * 0, kv[1] * 0) for kv in head.context_cache(context))
        ignored = head(*arguments, prefix, mask, context_cache=zeros)
    torch.testing.assert_close(cached, plain)
    assert not torch.allclose(ignored, plain, atol=1e-3)  # the cache is what the blocks read

    projections = []
    hook = head.blocks[0].attention.key.register_forward_hook(lambda *_: projections.append(1))
    model.predict_action(
        images(), INSTRUCTIONS, np.zeros((2, 2)), processor=tiny_processor(), noise=torch.randn(2, chunk, actions)
    )
    hook.remove()
    assert head.config.num_inference_steps > 1 and len(projections) == 1


@pytest.mark.parametrize("steps", [0, 5])
def test_n_action_steps_outside_the_chunk_is_refused(steps: int) -> None:
    with pytest.raises(Exception, match="n_action_steps"):
        JalaForActionPrediction.config_for_actions(tiny_jala_config(), {**HEAD, "n_action_steps": steps})


@pytest.mark.skipif(
    importlib.util.find_spec("metaworld") is None,
    reason="Meta-World is not installed (pip install metaworld==3.1.1 mujoco; MUJOCO_GL=egl on a headless machine)",
)
def test_two_camera_policy_and_the_expert_run_through_the_evaluation_loop(
    pretrained_folder: Path, tmp_path: Path
) -> None:
    """Demonstrations from an external and a wrist camera, a policy on both, evaluated with the AV1 round trip; and
    the scripted expert through the same loop (the diagnostic ladder's top rung)."""
    from robot_data.lerobot_v3 import LeRobotV3Dataset
    from robot_data.metaworld_demos import generate_demos
    from trainers import posttrain
    from trainers.eval_metaworld import EXPERT, evaluate_policy

    cameras = ["corner2", "gripperPOV"]
    dataset = generate_demos(tmp_path / "demos", ["reach-v3"], episodes_per_task=1, max_steps=80, cameras=cameras)
    info = LeRobotV3Dataset(dataset).features
    keys = [f"observation.images.{camera}" for camera in cameras]
    assert all(info[key]["info"]["video.codec"] == "h264" for key in keys)  # lossless by default
    output = posttrain.main(
        [
            f"--model_name_or_path={pretrained_folder}",
            f"--dataset={dataset}",
            f"--output_dir={tmp_path / 'policy'}",
            "--image_keys",
            *keys,
            f"--feature_cache_dir={tmp_path / 'cache'}",
            "--head_hidden_size=32",
            "--head_num_layers=2",
            "--head_num_heads=2",
            "--chunk_size=8",
            "--max_steps=2",
            "--per_device_train_batch_size=4",
            "--report_to=none",
        ]
    )
    policy = JalaForActionPrediction.from_pretrained(output)
    assert policy.config.action_head_config.image_keys == keys and policy.vision_tower_is_trainable
    assert list((tmp_path / "cache").glob("*.safetensors"))
    card = (output / "README.md").read_text()
    assert "vision tower fine-tuned" in card and '"observation.images.gripperPOV": image_1' in card
    report = evaluate_policy(output, ["reach-v3"], episodes_per_task=1, max_steps=8, frame_round_trip="lerobot")
    assert report["frame_round_trip"] == "lerobot" and report["episodes"][0]["policy_calls"] == 2
    expert = evaluate_policy(EXPERT, ["reach-v3"], episodes_per_task=2, max_steps=150)
    assert expert["mean_success_rate"] == 1.0 and expert["n_action_steps"] == 1


@pytest.mark.parametrize("head", [{}, {"vision_tower_trainable": True}])
def test_trainable_parameters_survive_from_pretrained(head: dict, tmp_path: Path) -> None:
    """A policy reloaded to continue training trains exactly what the new one did (transformers' loading would
    otherwise turn gradients on for the SSL encoder and the frozen embeddings)."""
    new = tiny_action_model(**head)
    new.save_pretrained(tmp_path)
    reloaded = JalaForActionPrediction.from_pretrained(tmp_path)
    flags = {name: parameter.requires_grad for name, parameter in new.named_parameters()}
    assert {name: parameter.requires_grad for name, parameter in reloaded.named_parameters()} == flags
    assert not any(flag for name, flag in flags.items() if name.startswith("model.ssl_encoder."))


def test_posttrain_resumes_from_its_last_checkpoint_on_the_same_loss_trajectory(
    pretrained_folder: Path, tmp_path: Path
) -> None:
    """The MT10 benchmark spreads long post-trainings over several sittings: `--resume_from_checkpoint last`
    continues from the newest checkpoint beside the output folder with the same losses as an unbroken run."""
    import shutil

    from tests.fixtures.lerobot_factory import write_lerobot_fixture
    from trainers import posttrain

    dataset = write_lerobot_fixture(tmp_path / "robot")

    def run(output: Path, *extra: str) -> Path:
        flags = [f"--model_name_or_path={pretrained_folder}", f"--dataset={dataset}", f"--output_dir={output}"]
        flags += ["--image_keys=observation.images.top", "--head_hidden_size=32", "--head_num_layers=2"]
        flags += ["--head_num_heads=2", "--chunk_size=4", "--max_steps=4", "--per_device_train_batch_size=2"]
        flags += ["--logging_steps=1", "--report_to=none", "--seed=0", "--save_strategy=steps", "--save_steps=2"]
        return posttrain.main([*flags, *extra])

    def losses(checkpoint: Path) -> dict[int, float]:
        history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
        return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}

    run(tmp_path / "full")
    checkpoints = tmp_path / "full-checkpoints"
    assert sorted(path.name for path in checkpoints.iterdir()) == ["checkpoint-2", "checkpoint-4"]
    resume_from = tmp_path / "resume_from"
    shutil.copytree(checkpoints / "checkpoint-2", resume_from / "checkpoint-2")
    output = run(tmp_path / "resumed", f"--checkpoint_dir={resume_from}", "--resume_from_checkpoint=last")
    reference, continued = losses(checkpoints / "checkpoint-4"), losses(resume_from / "checkpoint-4")
    assert set(reference) == {1, 2, 3, 4}
    for step in (3, 4):
        assert continued[step] == pytest.approx(reference[step], rel=1e-5), (step, continued, reference)
    assert json.loads((output / "run_summary.json").read_text())["steps"] == 4
