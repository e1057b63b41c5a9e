"""Smoke test of the declared dependency floors, as a user meets them.

A `pip install "transformers==<floor>"` environment can break in ways the project venv (newest releases) never
shows: a missing import, a renamed helper, a shape error deep inside attention. `.ci/check_floors` installs every
declared floor exactly and runs this script; `tests/test_floor_smoke.py` runs it in the project venv so it
cannot rot.

    python tests/scripts/floor_smoke.py build DIR   # project venv: saves tiny Hub folders, data and references
    python tests/scripts/floor_smoke.py check DIR   # any venv: loads them and compares with the references

`check` first runs what a user with only the runtime packages does (the repository neither installed nor on
the path: `AutoModel` / `AutoConfig` / `AutoProcessor` with `trust_remote_code=True`, `generate_motion`,
`predict_action`, the motion- and text-tokenizer round trips, UniHand-Mix through plain `datasets`), then puts
the repository's source on the path for what the `jala` package itself needs from the floors (PyAV decoding, the
`evaluate` metric, LoRA through `peft`, and two steps of the pretraining CLI: Trainer, accelerate, plots).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTRUCTIONS = ["pick up the red cup", "wave with the right hand"]
ACTION_HEAD = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "action_dim": 3, "state_dim": 2, "chunk_size": 4}
STATES = [[0.5, -1.0], [2.0, 0.0]]
REFERENCE_FILE = "reference.safetensors"
# Outputs are compared with the build venv's; other library versions may round differently, not more.
ATOL = 1e-4


def _images(folder: Path) -> list[np.ndarray]:
    from PIL import Image

    return [np.asarray(Image.open(folder / f"image{index}.png").convert("RGB")) for index in range(2)]


def _step(name: str, start: float) -> None:
    print(f"ok  {name} ({time.perf_counter() - start:.1f} s)", flush=True)


# ---------------------------------------------------------------------------------------------------------- build


def build(out: Path) -> None:
    """Write the tiny folders with the repository's own code, then the reference outputs of `bare_checks`."""
    sys.path.insert(0, str(REPO_ROOT))
    from PIL import Image

    from dataset_scripts.builder import build_unihand
    from modeling_jala.configuration_jala import JalaMotionTokenizerConfig
    from modeling_jala.modeling_jala import JalaForMotionPretraining
    from modeling_jala.modeling_jala_action import JalaForActionPrediction
    from modeling_jala.motion_tokenizer_jala import JalaMotionTokenizer
    from tests.conftest import TINY_TOKENIZER
    from tests.fixtures.tiny_jala import save_hub_folder, tiny_jala_config, tiny_processor
    from tests.fixtures.unihand_factory import FixtureSource

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    save_hub_folder(JalaForMotionPretraining(tiny_jala_config()).eval(), out / "motion", tiny_processor())
    torch.manual_seed(0)
    policy = JalaForActionPrediction(JalaForActionPrediction.config_for_actions(tiny_jala_config(), ACTION_HEAD))
    policy.set_normalization_stats(
        {"observation.state": {"mean": [0.0, 1.0], "std": [2.0, 2.0]}, "action": {"mean": [1, 2, 3], "std": [4, 5, 6]}}
    )
    save_hub_folder(policy.eval(), out / "policy", tiny_processor())
    # A standalone motion tokenizer with live codebooks, as the pretraining CLI takes it.
    torch.manual_seed(0)
    tokenizer = JalaMotionTokenizer(JalaMotionTokenizerConfig(**TINY_TOKENIZER)).train()
    tokenizer(0.05 * torch.randn(8, 1, 15, 162), handedness=("right",))
    tokenizer.save_pretrained(out / "tokenizer")

    Image.fromarray(np.full((64, 64, 3), 120, dtype=np.uint8)).save(out / "image0.png")
    Image.fromarray(np.tile(np.arange(80, dtype=np.uint8)[None, :, None], (48, 1, 3))).save(out / "image1.png")
    build_unihand(out / "unihand", [FixtureSource(num_clips=40, seed=3)], progress=False, preview=False)
    _write_video(out / "clip.mp4")
    from tests.test_space_logic import build_fixture_examples

    build_fixture_examples(out / "space")

    from safetensors.torch import save_file

    save_file({key: value.contiguous() for key, value in bare_checks(out).items()}, out / REFERENCE_FILE)
    print(f"built {out}")


def _write_video(path: Path, frames: int = 20, size: tuple[int, int] = (96, 64)) -> None:
    """An H.264 mp4 with a phone-style -90 display rotation, for the repository's PyAV decoder."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        stream.set_display_rotation(-90)
        for index in range(frames):
            image = np.zeros((size[1], size[0], 3), dtype=np.uint8)
            image[: size[1] // 3, : size[0] // 3] = (255, 0, 0)
            image[..., 1] = 8 * index
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# ------------------------------------------------------------------------------------------------- bare checks


def bare_checks(folder: Path) -> dict[str, torch.Tensor]:
    """What a user with only the runtime packages does; returns the outputs to compare across environments."""
    from transformers import AutoConfig, AutoModel, AutoProcessor

    results: dict[str, torch.Tensor] = {}
    images = _images(folder)

    start = time.perf_counter()
    motion_dir = str(folder / "motion")
    config = AutoConfig.from_pretrained(motion_dir, trust_remote_code=True)
    model = AutoModel.from_pretrained(motion_dir, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(motion_dir, trust_remote_code=True)
    assert type(config).__name__ == "JalaConfig", type(config)
    assert type(model).__name__ == "JalaForMotionPretraining", type(model)
    assert type(processor).__name__ == "JalaProcessor", type(processor)
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    _step("AutoConfig / AutoModel / AutoProcessor (motion model)", start)

    for strategy in ("expected", "sample"):
        start = time.perf_counter()
        generated = model.generate_motion(
            images=images,
            instructions=INSTRUCTIONS,
            processor=processor,
            num_chunks=2,
            hands=("right",),
            generator=torch.Generator().manual_seed(0),
            strategy=strategy,
        )
        assert generated.motion.shape == (2, 2, 30, 162), generated.motion.shape
        assert generated.joints.shape == (2, 2, 30, 21, 3), generated.joints.shape
        assert torch.isfinite(generated.motion).all()
        results[f"generate_{strategy}_motion"] = generated.motion
        results[f"generate_{strategy}_token_ids"] = generated.token_ids
        _step(f"generate_motion(strategy={strategy!r})", start)

    start = time.perf_counter()
    motion = 0.05 * torch.randn(2, 2, 30, 162, generator=torch.Generator().manual_seed(1))
    encoding = model.motion_tokenizer.encode(motion, lengths=[30, 20])
    decoded = model.motion_tokenizer.decode(encoding.ids, encoding.chunk_mask)
    assert decoded.shape == motion.shape and torch.isfinite(decoded).all()
    results["tokenizer_ids"] = encoding.ids
    results["tokenizer_decoded"] = decoded
    _step("motion tokenizer encode -> decode", start)

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as saved:
        processor.save_pretrained(saved)
        reloaded = AutoProcessor.from_pretrained(saved, trust_remote_code=True)
    for text in INSTRUCTIONS:
        ids = processor.tokenizer(text)["input_ids"]
        assert processor.tokenizer.decode(ids, skip_special_tokens=True) == text, (text, ids)
        assert reloaded.tokenizer(text)["input_ids"] == ids
    inputs = processor(images=images, text=INSTRUCTIONS)
    again = reloaded(images=images, text=INSTRUCTIONS)
    assert sorted(inputs) == sorted(again)
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, again[key]), key
            results[f"processor_{key}"] = value
    _step("text tokenizer and processor: encode -> decode, save -> load", start)

    start = time.perf_counter()
    policy = AutoModel.from_pretrained(str(folder / "policy"), trust_remote_code=True).eval()
    assert type(policy).__name__ == "JalaForActionPrediction", type(policy)
    actions = policy.predict_action(images, INSTRUCTIONS, np.array(STATES), generator=torch.Generator().manual_seed(7))
    assert actions.shape == (2, ACTION_HEAD["chunk_size"], ACTION_HEAD["action_dim"]), actions.shape
    results["predict_action"] = actions
    _step("AutoModel (policy) + predict_action (diffusers flow-matching scheduler)", start)

    results.update(_dataset_checks(folder / "unihand"))
    return results


def _dataset_checks(repo: Path, quiet: bool = False) -> dict[str, torch.Tensor]:
    """UniHand-Mix through plain `datasets`: every split streamed, one config materialised as Arrow."""
    import datasets

    datasets.disable_progress_bars()
    start = time.perf_counter()
    results = {}
    for split in ("train", "test_lab", "test_wild"):
        rows = list(datasets.load_dataset(str(repo), "all", split=split, streaming=True))
        assert rows, split
        assert all(row["id"].split("-")[2] == split for row in rows), split
        labelled = [row for row in rows if row["motion"] is not None]
        assert all(row["labelled"] for row in labelled), split
        results[f"unihand_{split}_motion_sum"] = torch.tensor(
            [float(np.asarray(row["motion"], np.float64).sum()) for row in sorted(labelled, key=lambda r: r["id"])]
        )
        results[f"unihand_{split}_frames"] = torch.tensor([row["num_frames"] for row in sorted(rows, key=_id)])
    with tempfile.TemporaryDirectory() as cache:
        wild = datasets.load_dataset(str(repo), "wild", cache_dir=cache)
        assert set(wild) == {"train", "test_wild"}, set(wild)
        rows = sorted(wild["train"], key=_id)
        assert all(row["domain"] == "wild" for row in rows)
        assert any(row["motion"] is None for row in rows), "unlabelled wild rows must read as None"
        first = np.asarray(rows[0]["first_frame"].convert("RGB"))
        results["unihand_wild_first_frame"] = torch.from_numpy(first.copy())
    if not quiet:
        _step("UniHand-Mix: load_dataset streaming (all splits) and Arrow (wild)", start)
    return results


def _id(row: dict) -> str:
    return row["id"]


# ------------------------------------------------------------------------------------------------- repo checks


def repo_checks(folder: Path, work: Path) -> None:
    """What the `jala` package itself needs from the floors, with the repository's source on the path."""
    sys.path.insert(0, str(REPO_ROOT))

    start = time.perf_counter()
    from dataset_scripts.video.decode import iter_frames, probe_video

    info = probe_video(folder / "clip.mp4")
    assert (info.rotation, info.width, info.height, info.num_frames) == (-90, 64, 96, 20), info
    frames = list(iter_frames(info, max_side=48))
    assert len(frames) == 20 and frames[0].image.shape == (48, 32, 3), (len(frames), frames[0].image.shape)
    _step("PyAV: probe and decode a rotated H.264 mp4", start)

    start = time.perf_counter()
    from dataset_scripts.builder import build_unihand
    from tests.fixtures.unihand_factory import FixtureSource

    build_unihand(work / "unihand", [FixtureSource(num_clips=40, seed=3)], progress=False, preview=False)
    written = _dataset_checks(work / "unihand", quiet=True)
    reference = _dataset_checks(folder / "unihand", quiet=True)
    for key, value in reference.items():
        assert torch.allclose(written[key].double(), value.double(), atol=ATOL), f"{key}: rewritten repo differs"
    _step("UniHand-Mix builder: written here (pyarrow, datasets features), read back identical", start)

    start = time.perf_counter()
    import evaluate

    from trainers.metrics import JALA_HAND_MOTION_METRIC_PATH

    metric = evaluate.load(JALA_HAND_MOTION_METRIC_PATH, keep_in_memory=True, cache_dir=str(work / "metrics"))
    joints = torch.randn(2, 5, 21, 3, generator=torch.Generator().manual_seed(0)) * 0.05
    scores = metric.compute(predictions=[j.numpy() for j in joints + 0.01], references=[j.numpy() for j in joints])
    assert abs(scores["mpjpe_mm"] - 1000 * 0.01 * 3**0.5) < 1e-3, scores
    _step("evaluate.load of the hand-motion metric", start)

    start = time.perf_counter()
    from modeling_jala.modeling_jala_action import JalaForActionPrediction
    from tests.fixtures.tiny_jala import tiny_jala_config, tiny_processor

    torch.manual_seed(0)
    head = {**ACTION_HEAD, "use_lora": True, "lora_rank": 4}
    lora = JalaForActionPrediction(JalaForActionPrediction.config_for_actions(tiny_jala_config(), head))
    assert any("lora_" in name for name, _ in lora.named_parameters()), "peft injected no adapters"
    batch = dict(tiny_processor()(images=_images(folder), text=INSTRUCTIONS))
    batch["state"] = torch.tensor(STATES)
    batch["actions"] = torch.randn(2, head["chunk_size"], head["action_dim"])
    loss = lora(**batch).loss
    loss.backward()
    assert torch.isfinite(loss), loss
    _step("peft: LoRA adapters in the policy's language model, forward + backward", start)

    start = time.perf_counter()
    output = work / "pretrain"
    command = [
        sys.executable,
        str(REPO_ROOT / "trainers" / "pretrain.py"),
        f"--dataset={folder / 'unihand'}",
        f"--motion_tokenizer={folder / 'tokenizer'}",
        f"--output_dir={output}",
        "--structure=tiny",
        "--per_device_train_batch_size=2",
        "--max_chunks=2",
        "--shuffle_buffer_size=8",
        "--max_steps=2",
        "--logging_steps=1",
        "--eval_strategy=no",
        "--save_strategy=no",
        "--seed=0",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]
    assert (output / "model.safetensors").is_file() and (output / "training_curve.png").is_file()
    _step("trainers/pretrain.py: 2 steps (Trainer, accelerate, streaming collator, plots, Hub folder)", start)


def space_checks(folder: Path) -> None:
    """The Gradio Space's handlers on the tiny model: what `gradio` and `pandas` floors must carry."""
    for path in (REPO_ROOT, REPO_ROOT / "spaces" / "jala_demo"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    start = time.perf_counter()
    import app
    from PIL import Image

    state = app.load_state(str(folder / "motion"), folder / "space" / "examples")
    assert state.loaded is not None and state.model_notice is None, state.model_notice
    selected = app.select_example(state, 0)
    gif, figure, metrics, status = app.run_generation(
        state, selected[4], selected[1], state.examples[0].hands, 1, 0, 2, 1, True
    )
    with Image.open(gif) as animation:
        assert animation.n_frames == 15, animation.n_frames
    assert len(metrics) >= 2 and np.isfinite(metrics["MPJPE (mm)"].astype(float)).all(), metrics
    demo = app.build_demo(state)
    assert type(demo).__name__ == "Blocks", type(demo)
    _step("Space: load_state, run_generation (GIF, 3D plot, metrics table), build_demo", start)


# ---------------------------------------------------------------------------------------------------------- check


def check(folder: Path, expect_bare: bool, bare_only: bool, space: bool) -> None:
    """Run the checks and compare the bare outputs with the build venv's."""
    from safetensors.torch import load_file

    if expect_bare and importlib.util.find_spec("modeling_jala") is not None:
        raise SystemExit("floor_smoke: modeling_jala is importable; the bare checks must run without the repo")
    versions = {}
    for name in ("torch", "transformers", "diffusers", "datasets", "accelerate", "evaluate", "safetensors",
                 "huggingface_hub", "tokenizers", "numpy", "pyarrow", "PIL", "av", "peft"):  # fmt: skip
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    print("versions:", json.dumps(versions), flush=True)

    outputs = bare_checks(folder)
    reference = load_file(folder / REFERENCE_FILE)
    assert outputs.keys() == reference.keys(), sorted(set(outputs) ^ set(reference))
    mismatches = []
    for key, expected in reference.items():
        actual = outputs[key]
        if actual.shape != expected.shape:
            mismatches.append(f"{key}: shape {tuple(actual.shape)} != {tuple(expected.shape)}")
        elif expected.is_floating_point():
            if not torch.allclose(actual.to(expected.dtype), expected, atol=ATOL, rtol=ATOL):
                mismatches.append(f"{key}: max |diff| {(actual - expected).abs().max().item():.3g}")
        elif not torch.equal(actual, expected):
            mismatches.append(f"{key}: {int((actual != expected).sum())} of {actual.numel()} values differ")
    if mismatches:
        raise AssertionError("outputs differ from the build venv's:\n  " + "\n  ".join(mismatches))
    print(f"ok  {len(reference)} outputs match the build venv's", flush=True)
    if space:
        space_checks(folder)
    if not bare_only:
        with tempfile.TemporaryDirectory() as work:
            repo_checks(folder, Path(work))
    print("floor smoke passed")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("build", "check"))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--expect-bare", action="store_true", help="fail if the repository's code is importable")
    parser.add_argument("--bare-only", action="store_true", help="skip the checks that need the repository's source")
    parser.add_argument("--space", action="store_true", help="also run the Space's handlers (needs gradio)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    torch.set_num_threads(1)
    from transformers.utils import logging

    logging.disable_progress_bar()
    if args.mode == "build":
        build(args.folder)
    else:
        check(args.folder, args.expect_bare, args.bare_only, args.space)


if __name__ == "__main__":
    main()
