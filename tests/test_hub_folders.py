"""Folders that can be published as they are: the `evaluate` metric loads where this repository is not importable,
and (below) trained output folders hold no pickle and no local path, with Hub metadata in their cards."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.fixtures.standalone_metric import run_on_metric_copy

METRIC_FOLDER = REPO_ROOT / "trainers" / "metrics" / "jala_hand_motion"
#: What a Hub Space of the metric may import: the standard library modules used, numpy, datasets and evaluate.
METRIC_IMPORTS = {"__future__", "logging", "math", "typing", "numpy", "datasets", "evaluate"}

#: Run in a fresh interpreter: the repository's packages made unimportable (also through the editable install),
#: the metric folder loaded with `evaluate.load`, its results printed as JSON.
STANDALONE_METRIC = """
import json, sys
for package in ("trainers", "modeling_jala", "dataset_scripts"):
    sys.modules[package] = None  # `import trainers` now raises ImportError
import evaluate
import numpy as np

data = np.load(sys.argv[2])
lengths = data["lengths"].tolist()
metric = evaluate.load(sys.argv[1], keep_in_memory=True)
results = metric.compute(
    predictions=[data["pred"][i, :n] for i, n in enumerate(lengths)],
    references=[data["target"][i, :n] for i, n in enumerate(lengths)],
)
print(json.dumps(results))
"""


def test_metric_module_imports_only_numpy_datasets_and_evaluate() -> None:
    """A Space's requirements are what the two files import; relative imports are files of the folder."""
    imported: set[str] = set()
    for path in (METRIC_FOLDER / "jala_hand_motion.py", METRIC_FOLDER / "hand_motion_math.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.ImportFrom):
                assert (METRIC_FOLDER / f"{node.module}.py").exists(), node.module
    assert imported <= METRIC_IMPORTS, imported - METRIC_IMPORTS


def test_metric_folder_loads_with_evaluate_where_the_repository_is_not_importable(tmp_path: Path) -> None:
    import torch

    from trainers.metrics.hand_motion import hand_motion_metrics

    rng = np.random.default_rng(0)
    target = 0.05 * rng.standard_normal((3, 6, 21, 3)) + 0.02 * np.arange(6)[None, :, None, None]
    pred = target + 0.004 * rng.standard_normal(target.shape)
    lengths = np.array([6, 2, 4])
    mask = np.arange(6)[None, :] < lengths[:, None]
    expected = hand_motion_metrics(torch.as_tensor(pred), torch.as_tensor(target), torch.as_tensor(mask))
    np.savez(tmp_path / "example.npz", pred=pred, target=target, lengths=lengths)

    # A copy of the folder alone, as a Space download would give it; nothing of the repository beside it.
    results = run_on_metric_copy(STANDALONE_METRIC, METRIC_FOLDER, tmp_path, str(tmp_path / "example.npz"))
    assert results == pytest.approx(expected, rel=1e-12, abs=1e-9)
    assert results["mpjpe_mm"] > 1.0  # a real error, so a wrong mask or padding would show


# -- trained output folders ---------------------------------------------------------------------------------------
#: Pickle protocols 2-5 begin with these two bytes; torch.save's default format is a zip archive with a pickle inside.
PICKLE_MAGIC = tuple(bytes([0x80, protocol]) for protocol in range(2, 6))
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}


def assert_uploadable_as_is(folder: Path, forbidden: list[str]) -> None:
    """No pickle (by name, by magic bytes, as torch's zip format), weights only as safetensors, and none of the
    `forbidden` strings (local paths) in any text file."""
    from safetensors import safe_open

    files = [path for path in folder.rglob("*") if path.is_file()]
    assert files, folder
    assert not [path for path in folder.rglob("checkpoint-*")], "Trainer checkpoints inside the Hub folder"
    for path in files:
        name = path.relative_to(folder)
        assert path.suffix not in PICKLE_SUFFIXES, f"{name}: a pickle file"
        head = path.read_bytes()[:4]
        if path.suffix == ".safetensors":
            # The 8-byte header length may start with the same bytes as a pickle; a valid header settles it.
            with safe_open(str(path), framework="numpy") as weights:
                assert list(weights.keys()), name
            continue
        assert not head.startswith(PICKLE_MAGIC) and not head.startswith(ZIP_MAGIC), f"{name}: pickled data"
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            assert path.suffix == ".png", f"{name}: unexpected binary file"
            continue
        for local in forbidden:
            assert local not in text, f"{name} contains the local path {local!r}"


def card_metadata(folder: Path) -> dict:
    from huggingface_hub import ModelCard

    return ModelCard.load(folder / "README.md").data.to_dict()


@pytest.fixture(scope="module")
def training_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 24-clip fixture UniHand-Mix folder and a tiny motion tokenizer with live codebooks."""
    import torch

    from dataset_scripts.builder import build_unihand
    from modeling_jala.configuration_jala import JalaMotionTokenizerConfig
    from modeling_jala.motion_tokenizer_jala import JalaMotionTokenizer
    from tests.conftest import TINY_TOKENIZER
    from tests.fixtures.unihand_factory import FixtureSource

    root = tmp_path_factory.mktemp("hub_inputs")
    build_unihand(root / "unihand", [FixtureSource(num_clips=24, seed=3)], progress=False, preview=False)
    torch.manual_seed(0)
    tokenizer = JalaMotionTokenizer(JalaMotionTokenizerConfig(**TINY_TOKENIZER))
    tokenizer.train()
    tokenizer(0.05 * torch.randn(8, 1, 15, 162), handedness=("right",))  # initialise the codebooks from data
    tokenizer.save_pretrained(root / "tokenizer")
    return root / "unihand", root / "tokenizer"


def test_pretrained_and_post_trained_folders_upload_as_they_are(
    training_inputs: tuple[Path, Path], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Both Trainer scripts, saving checkpoints every step: the Hub folders hold no pickle and no local path (absolute
    paths were given), the checkpoints sit beside them, and the cards carry Hub metadata."""
    from tests.fixtures.lerobot_factory import write_lerobot_fixture
    from tests.fixtures.tiny_jala import save_tiny_dinov3
    from trainers import posttrain, pretrain

    repo, tokenizer = training_inputs
    forbidden = [str(tmp_path_factory.getbasetemp()), str(REPO_ROOT), "/work/"]
    ssl_encoder = save_tiny_dinov3(tmp_path / "dinov3")  # recorded in config.json as provenance
    jala = pretrain.main(
        [
            f"--dataset={repo}",
            f"--motion_tokenizer={tokenizer}",
            f"--ssl_encoder_name_or_path={ssl_encoder}",
            f"--output_dir={tmp_path / 'jala'}",
            "--structure=tiny",
            "--per_device_train_batch_size=2",
            "--max_chunks=2",
            "--shuffle_buffer_size=8",
            "--logging_steps=1",
            "--eval_strategy=no",
            "--max_steps=2",
            "--save_strategy=steps",
            "--save_steps=1",
            "--card_datasets=someone/unihand-mix",
        ]
    )
    assert jala == tmp_path / "jala"
    assert_uploadable_as_is(jala, forbidden)
    assert (tmp_path / "jala-checkpoints" / "checkpoint-2" / "optimizer.pt").exists()  # resumable, beside it
    arguments = json.loads((jala / "training_args.json").read_text())
    assert (arguments["output_dir"], arguments["checkpoint_dir"]) == ("jala", "jala-checkpoints")
    metadata = card_metadata(jala)
    assert metadata["library_name"] == "transformers" and metadata["pipeline_tag"] == "robotics"
    assert metadata["datasets"] == ["someone/unihand-mix"] and "jala" in metadata["tags"]
    assert "base_model" not in metadata  # a from-scratch structure starts from no published model
    assert json.loads((jala / "config.json").read_text())["ssl_encoder_name_or_path"] == "dinov3"

    robot = write_lerobot_fixture(tmp_path / "robot")
    policy = posttrain.main(
        [
            f"--model_name_or_path={jala}",
            f"--dataset={robot}",
            "--image_keys=observation.images.top",
            f"--output_dir={tmp_path / 'policy'}",
            "--head_hidden_size=32",
            "--head_num_layers=2",
            "--head_num_heads=2",
            "--chunk_size=4",
            "--max_steps=2",
            "--per_device_train_batch_size=2",
            "--logging_steps=1",
            "--save_strategy=steps",
            "--save_steps=1",
            "--report_to=none",
            "--use_cpu",
            "--card_base_model=someone/jala-tiny",
            "--card_datasets=someone/robot-demos",
        ]
    )
    assert_uploadable_as_is(policy, forbidden)
    assert (tmp_path / "policy-checkpoints" / "checkpoint-2" / "rng_state.pth").exists()
    summary = json.loads((policy / "run_summary.json").read_text())
    assert (summary["start"], summary["dataset"]) == ("jala", "robot")
    metadata = card_metadata(policy)
    assert metadata["base_model"] == "someone/jala-tiny" and metadata["datasets"] == ["someone/robot-demos"]
    assert metadata["library_name"] == "transformers" and metadata["license"] == "apache-2.0"


def test_tokenizer_and_ssl_encoder_folders_upload_as_they_are(
    training_inputs: tuple[Path, Path], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from trainers import train_ssl_encoder, train_tokenizer

    repo, _ = training_inputs
    forbidden = [str(tmp_path_factory.getbasetemp()), str(REPO_ROOT), "/work/"]
    tokenizer = tmp_path / "motion_tokenizer"
    train_tokenizer.main(
        [
            "--preset=tiny",
            "--max_steps=2",
            "--warmup_steps=1",
            "--batch_size=8",
            "--num_procedural_clips=12",
            "--num_eval_clips=4",
            f"--output_dir={tokenizer}",
            "--card_datasets=someone/unihand-mix",
        ]
    )
    assert_uploadable_as_is(tokenizer, forbidden)
    assert json.loads((tokenizer / "training_args.json").read_text())["output_dir"] == "motion_tokenizer"
    assert card_metadata(tokenizer)["datasets"] == ["someone/unihand-mix"]

    encoder = tmp_path / "ssl_encoder"
    train_ssl_encoder.main(
        [
            f"--dataset={repo}",
            f"--output_dir={encoder}",
            "--max_steps=2",
            "--batch_size=8",
            "--hidden_size=32",
            "--num_heads=2",
            "--num_layers=1",
            "--image_size=32",
            "--patch_size=8",
        ]
    )
    assert_uploadable_as_is(encoder, forbidden)
    assert json.loads((encoder / "training_args.json").read_text())["dataset"] == ["unihand"]
    metadata = card_metadata(encoder)
    assert metadata["library_name"] == "transformers" and metadata["pipeline_tag"] == "image-feature-extraction"


# -- the rules behind them ----------------------------------------------------------------------------------------
def test_local_paths_become_folder_names_and_hub_ids_stay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modeling_jala.configuration_jala import hub_repo_id, shareable_name_or_path
    from trainers.hub_folder import portable_values

    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "unihand_mix").mkdir(parents=True)
    assert hub_repo_id("OpenGVLab/InternVL3-2B-hf") == "OpenGVLab/InternVL3-2B-hf"
    assert hub_repo_id("outputs/unihand_mix") is None  # an existing local folder wins, as in transformers
    assert hub_repo_id(str(tmp_path)) is None and hub_repo_id("../models/jala") is None and hub_repo_id(None) is None
    assert shareable_name_or_path(tmp_path / "outputs" / "unihand_mix") == "unihand_mix"
    recorded = {
        "output_dir": str(tmp_path / "jala"),
        "dataset": ["outputs/unihand_mix", "someone/unihand-mix"],
        "deepspeed": "~/configs/zero2.json",
        "lr_scheduler_type": "cosine",
        "hub_model_id": "me/jala",
        "homepage": "https://huggingface.co/me/jala",
        "fsdp_config": {"min_num_params": 0, "config": str(tmp_path / "fsdp.json")},
    }
    assert portable_values(recorded) == {
        "output_dir": "jala",
        "dataset": ["unihand_mix", "someone/unihand-mix"],
        "deepspeed": "zero2.json",
        "lr_scheduler_type": "cosine",
        "hub_model_id": "me/jala",
        "homepage": "https://huggingface.co/me/jala",
        "fsdp_config": {"min_num_params": 0, "config": "fsdp.json"},
    }


def test_checkpoint_folder_stays_outside_and_push_to_hub_uploads_the_finished_folder(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from transformers import TrainingArguments

    from trainers.training_common import HubFolderArguments, publish_hub_folder, route_checkpoints

    def arguments(**overrides: object) -> TrainingArguments:
        return TrainingArguments(output_dir=str(tmp_path / "jala"), report_to="none", **overrides)

    with pytest.raises(ValueError, match="inside --output_dir"):
        route_checkpoints(arguments(), HubFolderArguments(checkpoint_dir=str(tmp_path / "jala" / "checkpoints")))
    with pytest.raises(ValueError, match="no checkpoint-N folder"):
        route_checkpoints(arguments(resume_from_checkpoint="last"), HubFolderArguments())
    (tmp_path / "jala-checkpoints" / "checkpoint-7").mkdir(parents=True)
    (tmp_path / "jala-checkpoints" / "checkpoint-12").mkdir()
    training_args = arguments(resume_from_checkpoint="last", push_to_hub=True, hub_model_id="me/jala")
    folders = route_checkpoints(training_args, HubFolderArguments())
    assert folders.hub_folder == tmp_path / "jala" and folders.push_to_hub
    assert training_args.output_dir == str(tmp_path / "jala-checkpoints")
    assert training_args.resume_from_checkpoint == str(tmp_path / "jala-checkpoints" / "checkpoint-12")
    assert not training_args.push_to_hub  # the Trainer itself would push every checkpoint with its pickles

    calls: list[tuple] = []

    class RecordingApi:
        """Stands in for `huggingface_hub.HfApi`: records what would be sent."""

        def create_repo(self, repo_id: str, **kwargs: object) -> SimpleNamespace:
            calls.append(("create_repo", repo_id))
            return SimpleNamespace(repo_id=repo_id)

        def create_branch(self, repo_id: str, branch: str, **kwargs: object) -> None:
            calls.append(("create_branch", repo_id, branch))

        def upload_folder(self, repo_id: str, folder_path: str, **kwargs: object) -> None:
            calls.append(("upload_folder", repo_id, folder_path))

    api = RecordingApi()
    assert publish_hub_folder(folders.hub_folder, training_args, api=api) == "me/jala"
    assert calls == [("create_repo", "me/jala"), ("upload_folder", "me/jala", str(tmp_path / "jala"))]


def test_a_resume_under_another_step_budget_is_warned_about_and_recorded(tmp_path: Path, caplog) -> None:
    """The Trainer rebuilds the schedule for the new --max_steps; training_args.json must say so."""
    from transformers import TrainingArguments

    from trainers.training_common import HubFolderArguments, recorded_arguments, route_checkpoints

    checkpoint = tmp_path / "jala-checkpoints" / "checkpoint-2000"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"max_steps": 8000, "global_step": 2000}))

    def resumed(max_steps: int) -> dict:
        training_args = TrainingArguments(
            output_dir=str(tmp_path / "jala"), report_to="none", max_steps=max_steps, resume_from_checkpoint="last"
        )
        return recorded_arguments(training_args, route_checkpoints(training_args, HubFolderArguments()))

    with caplog.at_level("WARNING", logger="trainers.training_common"):
        changed = resumed(5000)
    assert changed["budget_change_on_resume"] == {"at_step": 2000, "max_steps_before": 8000}
    assert "rebuilds the learning-rate schedule at step 2000" in caplog.text
    assert "budget_change_on_resume" not in resumed(8000)
