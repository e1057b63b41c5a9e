"""Pretraining end to end on a tiny UniHand-Mix repo: the CLI, the Hub folder, 2-process DDP on CPU, and resume."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainingArguments

from dataset_scripts.builder import build_unihand
from modeling_jala.configuration_jala import JalaMotionTokenizerConfig
from modeling_jala.motion_tokenizer_jala import JalaMotionTokenizer
from tests.conftest import REPO_ROOT, TINY_TOKENIZER
from tests.fixtures.unihand_factory import FixtureSource


@pytest.fixture(scope="module")
def pretrain_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 40-clip fixture repo (lab + wild, labelled and not) and a tiny motion tokenizer with live codebooks."""
    root = tmp_path_factory.mktemp("pretrain")
    build_unihand(root / "repo", [FixtureSource(num_clips=40, seed=3)], progress=False, preview=False)
    torch.manual_seed(0)
    tokenizer = JalaMotionTokenizer(JalaMotionTokenizerConfig(**TINY_TOKENIZER))
    tokenizer.train()
    tokenizer(0.05 * torch.randn(8, 1, 15, 162), handedness=("right",))  # initialise the codebooks from data
    tokenizer.save_pretrained(root / "tokenizer")
    return root / "repo", root / "tokenizer"


def run_pretrain(repo: Path, tokenizer: Path, output: Path, *extra: str) -> None:
    command = [
        sys.executable,
        str(REPO_ROOT / "trainers" / "pretrain.py"),
        f"--dataset={repo}",
        f"--motion_tokenizer={tokenizer}",
        f"--output_dir={output}",
        "--structure=tiny",
        "--per_device_train_batch_size=2",
        "--max_chunks=2",
        "--shuffle_buffer_size=8",
        "--learning_rate=1e-3",
        "--logging_steps=1",
        "--eval_strategy=no",
        "--seed=0",
        *extra,
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]


def step_losses(folder: Path) -> dict[int, float]:
    state = (
        json.loads((folder / "trainer_state.json").read_text()) if (folder / "trainer_state.json").exists() else None
    )
    history = state["log_history"] if state else json.loads((folder / "training_log.json").read_text())
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


def test_pretrain_cli_writes_a_loadable_hub_folder(pretrain_inputs: tuple[Path, Path], tmp_path: Path) -> None:
    repo, tokenizer = pretrain_inputs
    output = tmp_path / "jala"
    run_pretrain(repo, tokenizer, output, "--max_steps=4", "--save_strategy=no")
    files = {path.name for path in output.iterdir()}
    assert {"config.json", "model.safetensors", "modeling_jala.py", "processor_config.json", "tokenizer.json"} <= files
    assert {"README.md", "training_curve.png"} <= files
    assert (output / "README.md").read_text().startswith("---\nlibrary_name: transformers")
    assert "training_args.bin" not in files and "training_args.json" in files  # no pickle in the Hub folder
    history = json.loads((output / "training_log.json").read_text())
    logged = history[-1]
    for key in ("mcp_loss", "align_loss", "h_std", "z_std", "h_norm", "z_norm", "h_effective_rank", "cosine_h_z"):
        assert key in logged, logged
    script = (
        "import sys; from transformers import AutoModel, AutoProcessor; "
        "m = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True); "
        "p = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True); "
        "print(type(m).__name__, type(p).__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(output)], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "JalaForMotionPretraining JalaProcessor" in result.stdout


def test_two_process_ddp_keeps_parameters_and_ema_identical(
    pretrain_inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    repo, tokenizer = pretrain_inputs
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",  # torchrun launcher; the script asks for the CPU, so the ranks form a gloo group
        "--num_processes=2",
        "--num_machines=1",
        "--mixed_precision=no",
        "--dynamo_backend=no",
        str(REPO_ROOT / "tests" / "scripts" / "distributed_pretrain_steps.py"),
        str(repo),
        str(tokenizer),
        str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]
    rank0, rank1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), f"{name} differs between ranks"
    # The EMA ran: the LSP queries moved toward the (trained) LAP queries, away from their initial copy.
    assert not torch.equal(rank0["model.lsp.queries"], rank0["model.lap.queries"])


def test_resume_continues_the_same_loss_trajectory(pretrain_inputs: tuple[Path, Path], tmp_path: Path) -> None:
    """Checkpoints go beside the Hub folder (`<output_dir>-checkpoints`, or `--checkpoint_dir`), never into it, and
    `--resume_from_checkpoint last` continues from the newest one there exactly."""
    repo, tokenizer = pretrain_inputs
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    run_pretrain(repo, tokenizer, full, "--max_steps=6", "--save_strategy=steps", "--save_steps=3")
    checkpoints = tmp_path / "full-checkpoints"
    assert sorted(path.name for path in checkpoints.iterdir()) == ["checkpoint-3", "checkpoint-6"]
    assert not list(full.glob("checkpoint-*")) and (full / "model.safetensors").exists()
    reference = step_losses(checkpoints / "checkpoint-6")
    resume_from = tmp_path / "resume_from"  # a checkpoint folder holding only the step-3 checkpoint
    shutil.copytree(checkpoints / "checkpoint-3", resume_from / "checkpoint-3")
    run_pretrain(
        repo,
        tokenizer,
        resumed,
        "--max_steps=6",
        "--save_strategy=steps",
        "--save_steps=3",
        f"--checkpoint_dir={resume_from}",
        "--resume_from_checkpoint=last",
    )
    continued = step_losses(resume_from / "checkpoint-6")
    assert set(reference) == set(range(1, 7))
    for step in (4, 5, 6):
        assert continued[step] == pytest.approx(reference[step], rel=1e-5), (step, continued, reference)
    assert not (tmp_path / "resumed-checkpoints").exists()


def test_activation_checkpointing_and_compiled_layers_keep_the_loss_trajectory(
    pretrain_inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    """`--activation_checkpointing --activation_checkpointing_kwargs '{"every_n_layers": 2}'` (transformers'
    layer-level selective checkpointing) and `--compile_decoder_layers` train exactly as the plain run and write
    the same Hub folder."""
    repo, tokenizer = pretrain_inputs
    plain, checkpointed = tmp_path / "plain", tmp_path / "checkpointed"
    run_pretrain(repo, tokenizer, plain, "--max_steps=3")
    run_pretrain(
        repo,
        tokenizer,
        checkpointed,
        "--max_steps=3",
        "--activation_checkpointing",
        '--activation_checkpointing_kwargs={"every_n_layers": 2}',
    )
    reference, losses = step_losses(plain), step_losses(checkpointed)
    assert set(reference) == {1, 2, 3}
    for step, loss in reference.items():
        assert losses[step] == pytest.approx(loss, rel=1e-5), (step, losses, reference)
    assert load_file(checkpointed / "model.safetensors").keys() == load_file(plain / "model.safetensors").keys()
    recorded = json.loads((checkpointed / "training_args.json").read_text())
    assert recorded["activation_checkpointing"] is True
    assert recorded["activation_checkpointing_kwargs"] == {"every_n_layers": 2}

    # Regional compilation of the decoder layers (aot_eager: the compiler wiring without inductor) trains the same.
    compiled = tmp_path / "compiled"
    run_pretrain(repo, tokenizer, compiled, "--max_steps=3", "--compile_decoder_layers=aot_eager")
    for step, loss in step_losses(compiled).items():
        assert loss == pytest.approx(reference[step], rel=1e-5), (step, reference)
    assert load_file(compiled / "model.safetensors").keys() == load_file(plain / "model.safetensors").keys()


def test_group_by_chunks_wraps_the_training_stream_in_length_buckets(pretrain_inputs: tuple[Path, Path]) -> None:
    from trainers.chunk_buckets import ChunkCountBuckets, kept_chunks
    from trainers.pretrain import build_datasets, parse_arguments

    repo, tokenizer = pretrain_inputs
    base = [f"--dataset={repo}", f"--motion_tokenizer={tokenizer}", "--output_dir=out", "--max_chunks=10"]
    _, data_args, training_args, _ = parse_arguments([*base, "--group_by_chunks", "--per_device_train_batch_size=3"])
    train, _ = build_datasets(data_args, training_args, seed=0)
    assert isinstance(train, ChunkCountBuckets) and (train.batch_size, train.max_chunks) == (3, 10)
    rows = [row for row, _ in zip(train, range(12), strict=False)]
    assert len({kept_chunks(row, 10) for row in rows}) > 1  # the fixture mixes clip lengths, so grouping shows
    assert all(len({kept_chunks(row, 10) for row in rows[start : start + 3]}) == 1 for start in range(0, 12, 3))
    _, data_args, training_args, _ = parse_arguments(base)
    assert not isinstance(build_datasets(data_args, training_args, seed=0)[0], ChunkCountBuckets)  # off by default


def test_tiny_structure_brings_its_cpu_training_defaults_and_flags_win() -> None:
    from trainers.presets import TINY_TRAINING_DEFAULTS
    from trainers.pretrain import parse_arguments

    base = ["--dataset=data", "--motion_tokenizer=tok", "--output_dir=out"]
    _, _, tiny, _ = parse_arguments([*base, "--structure=tiny"])
    assert tiny.learning_rate == TINY_TRAINING_DEFAULTS["learning_rate"] != 3e-5
    assert tiny.max_steps == TINY_TRAINING_DEFAULTS["max_steps"]
    _, _, explicit, _ = parse_arguments([*base, "--structure=tiny", "--learning_rate=2e-4", "--max_steps=7"])
    assert (explicit.learning_rate, explicit.max_steps) == (2e-4, 7)
    _, _, paper, _ = parse_arguments([*base, "--structure=paper"])
    assert paper.learning_rate == 3e-5  # the paper's structure keeps the paper's optimisation
    _, _, pretrained, _ = parse_arguments([*base, "--structure=tiny", "--model_name_or_path=some/jala"])
    assert pretrained.learning_rate == 3e-5


def test_masking_and_decoding_flags_reach_the_config() -> None:
    from trainers.presets import jala_structure
    from trainers.pretrain import _variant_overrides, parse_arguments

    base = ["--dataset=data", "--motion_tokenizer=tok", "--output_dir=out"]
    model_args, *_ = parse_arguments([*base, "--all_chunks_hidden_share=0.25", "--decoding_strategy=expected"])
    config = jala_structure(
        "tiny", 64, 3, JalaMotionTokenizerConfig(**TINY_TOKENIZER), **_variant_overrides(model_args)
    )
    assert (config.all_chunks_hidden_share, config.decoding_strategy) == (0.25, "expected")
    model_args, *_ = parse_arguments(base)  # unset: the structure's own values
    assert "all_chunks_hidden_share" not in _variant_overrides(model_args)


def test_tiny_structure_hides_whole_target_chunks_and_paper_keeps_the_papers_ratios() -> None:
    from modeling_jala.configuration_jala import DEFAULT_TARGET_MASK_RATIOS
    from modeling_jala.modeling_jala import JalaForMotionPretraining
    from trainers.presets import TINY_TARGET_MASK_RATIOS, jala_structure

    tokenizer_config = JalaMotionTokenizerConfig(**TINY_TOKENIZER)
    tiny = jala_structure("tiny", 64, 3, tokenizer_config)
    assert tiny.target_mask_ratios == list(TINY_TARGET_MASK_RATIOS) == [1.0]
    paper = jala_structure("paper", 64, 3, tokenizer_config)
    assert paper.target_mask_ratios == DEFAULT_TARGET_MASK_RATIOS
    # An explicit override still wins over the structure's ratios.
    assert jala_structure("tiny", 64, 3, tokenizer_config, target_mask_ratios=[0.5]).target_mask_ratios == [0.5]
    # The tiny preset also hides every chunk of a share of clips and decodes all chunks in one pass; paper: neither.
    assert (tiny.all_chunks_hidden_share, tiny.decoding_strategy) == (0.5, "joint")
    assert (paper.all_chunks_hidden_share, paper.decoding_strategy) == (0.0, "expected")

    # Under full-chunk ratios every labelled clip's target chunk is hidden completely, earlier chunks are intact.
    from tests.fixtures.tiny_jala import tiny_jala_config

    model = JalaForMotionPretraining(tiny_jala_config(target_mask_ratios=list(TINY_TARGET_MASK_RATIOS)))
    slots = torch.ones(16, 3, 2, dtype=torch.bool)
    mask = model.sample_placeholder_slots(slots, torch.ones(16, dtype=torch.bool), torch.Generator().manual_seed(0))
    for row in mask:
        hidden_chunks = row.flatten(1).any(-1)
        target = int(hidden_chunks.float().argmax())
        assert not row[:target].any() and row[target].all()


def test_cpu_tokenizer_preset_keeps_the_tiny_widths_with_four_residual_layers() -> None:
    from trainers.train_tokenizer import PRESETS

    cpu, tiny = PRESETS["cpu"], PRESETS["tiny"]
    assert {key: value for key, value in cpu.items() if key != "num_residual_layers"} == tiny
    config = JalaMotionTokenizerConfig(**cpu)
    assert config.num_residual_layers == 4
    assert config.tokens_per_chunk == 2 * 4 * config.num_groups * 4  # 2 parts x 4 positions x groups x 4 layers


def test_new_models_start_at_the_training_code_prior(pretrain_inputs: tuple[Path, Path]) -> None:
    from modeling_jala.modeling_jala import JalaForMotionPretraining
    from tests.fixtures.tiny_jala import tiny_jala_config
    from trainers.token_priors import training_token_ids

    repo, tokenizer_dir = pretrain_inputs
    tokenizer = JalaMotionTokenizer.from_pretrained(tokenizer_dir)
    ids = training_token_ids(tokenizer, [repo], max_chunks=2)
    assert ids.shape[-1] == tokenizer.config.tokens_per_chunk and (ids >= 0).all()
    model = JalaForMotionPretraining(tiny_jala_config(motion_tokenizer_config=tokenizer.config))
    counts = model.init_token_priors(ids, smoothing=0.5)
    layout = model.slot_layout
    codebook = layout.codebook_of_slot()
    # Counts are per (codebook, code): slot 0 and slot `codebooks_per_part` share codebook 0.
    expected = torch.bincount(
        torch.cat([ids[:, s] for s in range(ids.shape[1]) if codebook[s] == 0]), minlength=layout.codebook_size
    ).float()
    torch.testing.assert_close(counts[0], expected)
    probabilities = model.motion_heads.bias.exp()
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(layout.num_codebooks))
    most_common = int(expected.argmax())
    assert int(model.motion_heads.bias[0].argmax()) == most_common
    with pytest.raises(ValueError, match="token_ids must end in"):
        model.init_token_priors(ids[:, :5])


def test_context_use_scores_hidden_chunks_against_the_chunk_position_prior(
    pretrain_inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    import math

    from modeling_jala.modeling_jala import JalaForMotionPretraining
    from modeling_jala.processing_jala import JalaProcessor
    from trainers.context_use import chunk_position_log_prior, hidden_chunk_cross_entropy
    from trainers.motion_baselines import labelled_rows

    repo, tokenizer_dir = pretrain_inputs
    output = tmp_path / "jala"
    run_pretrain(repo, tokenizer_dir, output, "--max_steps=1", "--save_strategy=no")
    model = JalaForMotionPretraining.from_pretrained(output).eval()
    processor = JalaProcessor.from_pretrained(output)
    rows = labelled_rows([repo], "train", 100)

    # Known answer for the prior: without smoothing it is each slot's code frequency at that hand and position.
    log_prior = chunk_position_log_prior(model.motion_tokenizer, rows, max_chunks=2, smoothing=0.0)
    assert log_prior.shape == (2, 2, model.config.motion_tokens_per_chunk, model.slot_layout.codebook_size)
    from dataset_scripts.collator import UniHandCollator

    batch = UniHandCollator(image_size=(32, 32), max_chunks=2, boundary="none")(rows)
    encoding = model.motion_tokenizer.encode(
        batch["motion"], lengths=batch["frame_lengths"], hand_mask=batch["hands_present"]
    )
    hand, chunk, slot = 1, 0, 3
    codes = encoding.ids[encoding.chunk_mask[:, hand, chunk], hand, chunk, slot]
    expected = torch.bincount(codes, minlength=log_prior.shape[-1]).float() / len(codes)
    torch.testing.assert_close(log_prior[hand, chunk, slot].exp(), expected)

    # Uniform heads score exactly ln V on every chunk, whatever the context: the gain is the prior's shortfall.
    with torch.no_grad():
        model.motion_heads.weight.zero_()
        model.motion_heads.bias.zero_()
    smoothed = chunk_position_log_prior(model.motion_tokenizer, rows, max_chunks=2)
    results = hidden_chunk_cross_entropy(model, processor, repo, "train", smoothed, max_clips=6, max_chunks=2)
    assert [row["chunk"] for row in results] == [0, 1]
    for row in results:
        assert row["model_nats"] == pytest.approx(math.log(log_prior.shape[-1]), abs=1e-5)
        assert row["gain_nats"] == pytest.approx(row["prior_nats"] - row["model_nats"], abs=1e-6)
        assert row["tokens"] > 0 and 0 < row["prior_nats"] < math.log(log_prior.shape[-1])


@pytest.mark.parametrize(
    ("variant", "labelled_only"), [("jala", False), ("wo_align", False), ("wo_latent", True), ("jala_act", True)]
)
def test_labelled_only_variants_train_on_labelled_clips_alone(
    pretrain_inputs: tuple[Path, Path], variant: str, labelled_only: bool
) -> None:
    """w/o latent and JALA-act drop unlabelled clips from the stream; w/o align keeps JALA's stream (the paper's
    λ = 0 ablation on the same data), so the two rows differ in what a batch holds."""
    from modeling_jala.configuration_jala import JalaConfig
    from trainers.pretrain import DataArguments, build_datasets

    overrides = {"align_weight": 0.0} if variant == "wo_align" else {}
    assert JalaConfig(variant=variant, **overrides).trains_on_labelled_only == labelled_only
    repo, _ = pretrain_inputs
    data_args = DataArguments(dataset=[str(repo)], shuffle_buffer_size=8)
    training_args = TrainingArguments(output_dir="unused", eval_strategy="no", report_to=[])
    train, _ = build_datasets(data_args, training_args, seed=0, labelled_only=labelled_only)
    rows = [row for _, row in zip(range(60), train, strict=False)]
    assert all(row["labelled"] for row in rows) == labelled_only
    assert any(row["labelled"] for row in rows)
