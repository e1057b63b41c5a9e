"""The grounding probe (benchmarks/grounding_probe.py) end to end on a tiny JALA folder for both starting points;
its data (queries, baselines, rendering) is tested in tests/test_grounding_data.py."""

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


@pytest.fixture(scope="module")
def procedural_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fixtures.unihand_factory import procedural_repo as build

    return build(tmp_path_factory)


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
