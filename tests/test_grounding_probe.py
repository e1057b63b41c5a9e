"""The grounding probe (benchmarks/grounding_probe.py): baselines with a known answer, training frames rendered
exactly as dataset rows, and a run end to end on a tiny JALA folder for both starting points."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import grounding_probe as probe  # noqa: E402


def _objects(*positions) -> list[dict]:
    return [{"colour": "red", "type": "box", "position_camera": list(p)} for p in positions]


def test_baselines_on_scenes_with_a_known_answer() -> None:
    scenes = [
        probe.scene_queries("frame a", _objects((0, 0, 0), (2, 0, 0))),
        probe.scene_queries("frame b", _objects((1, 0, 3))),
    ]
    errors = probe.baseline_errors(scenes, global_mean=np.array([1.0, 0.0, 0.0]))
    # scene mean: the two objects of frame a are 1 m from their midpoint, frame b's lone object is its own mean
    np.testing.assert_allclose(errors["scene mean"], [1.0, 1.0, 0.0])
    np.testing.assert_allclose(errors["global mean"], [1.0, 1.0, 3.0])
    summary = probe.summary_mm(errors["global mean"])
    assert summary["mm"] == pytest.approx(5000 / 3)
    assert summary["se_mm"] == pytest.approx(1000 * np.std([1, 1, 3], ddof=1) / np.sqrt(3))


def test_phrases_name_objects_as_instructions_do() -> None:
    assert probe.phrase("pink", "mug") == "the pink mug"
    rng = np.random.default_rng(0)
    said = {probe.phrase("pink", "mug", rng) for _ in range(50)}
    assert said == {"the pink mug", "the pink cup"}


def test_training_frames_are_rendered_as_dataset_rows() -> None:
    from dataset_scripts.sources.synthetic import SyntheticSource

    scenes = probe.render_scenes(2, seed=5, image_size=(64, 64))
    lab_row = next(SyntheticSource(domain="lab", split="train", num_clips=1, seed=5, image_size=64).iter_rows())
    wild_row = next(SyntheticSource(domain="wild", split="train", num_clips=1, seed=5, image_size=64).iter_rows())
    for scene, row in zip(scenes, (lab_row, wild_row), strict=True):
        assert scene[0][0] == row["first_frame"]  # same pixels, noise and JPEG bytes
        objects = json.loads(row["scene"])["objects"]
        assert [(q[1], q[2]) for q in scene] == [(o["colour"], o["type"]) for o in objects]
        np.testing.assert_allclose(np.stack([q[3] for q in scene]), [o["position_camera"] for o in objects])


@pytest.fixture(scope="module")
def procedural_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dataset_scripts.builder import build_unihand
    from dataset_scripts.sources.synthetic import SyntheticSource

    folder = tmp_path_factory.mktemp("grounding") / "unihand_mix"
    sources = [
        SyntheticSource(domain="lab", split="train", num_clips=2, seed=1, image_size=64),
        SyntheticSource(domain="lab", split="test_lab", num_clips=2, seed=2, image_size=64),
        SyntheticSource(domain="wild", split="test_wild", num_clips=2, seed=3, image_size=64),
    ]
    build_unihand(folder, sources, progress=False, preview=False)
    return folder


@pytest.mark.parametrize("init", ["random", "trained"])
def test_the_probe_runs_end_to_end(procedural_repo: Path, tmp_path: Path, init: str) -> None:
    from modeling_jala.modeling_jala import JalaForMotionPretraining
    from tests.fixtures.tiny_jala import save_hub_folder, tiny_jala_config, tiny_processor

    torch.manual_seed(0)
    folder = save_hub_folder(JalaForMotionPretraining(tiny_jala_config()), tmp_path / "jala", tiny_processor())
    output = tmp_path / "grounding.json"
    record = probe.main(
        [
            f"--model={folder}",
            f"--dataset={procedural_repo}",
            f"--init={init}",
            "--scenes=4",
            "--steps=2",
            "--eval_every=1",
            "--eval_clips=2",
            "--batch_size=3",
            f"--output={output}",
        ]
    )
    assert json.loads(output.read_text()) == record
    assert output.with_suffix(".png").exists()
    assert [point["step"] for point in record["curve"]] == [0, 1, 2]
    for split in probe.SPLITS:
        baselines = record["baselines"][split]
        assert set(baselines) == {"global mean", "scene mean"}
        assert all(np.isfinite(value["mm"]) for value in baselines.values())
        assert all(np.isfinite(point[split]["mm"]) and point[split]["se_mm"] >= 0 for point in record["curve"])
    assert record["scenes"] == 4 and record["queries"] >= 4


def test_an_unknown_starting_point_is_refused(tmp_path: Path) -> None:
    from modeling_jala.modeling_jala import JalaForMotionPretraining
    from tests.fixtures.tiny_jala import save_hub_folder, tiny_jala_config, tiny_processor

    folder = save_hub_folder(JalaForMotionPretraining(tiny_jala_config()), tmp_path / "jala", tiny_processor())
    with pytest.raises(ValueError, match="--init must be 'random' or 'trained'"):
        probe.load_vlm(folder, "pretrained")
