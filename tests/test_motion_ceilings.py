"""The ceiling readers' scene facts (benchmarks/motion_ceilings.py) on a scene with a known answer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import motion_ceilings as ceilings  # noqa: E402


def test_facts_name_the_target_and_the_object_nearest_the_hand() -> None:
    scene = {
        "hand_starts": {"right": {"wrist_camera": [0.1, 0.0, 0.5]}},
        "motion": {"family": "reach", "targets": {"right": "far"}},
        "objects": [
            {"name": "far", "position_camera": [-0.3, 0.0, 0.9]},
            {"name": "near", "position_camera": [0.12, 0.0, 0.55]},
        ],
    }
    facts = ceilings.scene_facts({"scene": json.dumps(scene)}, hand=1, families=["grasp", "reach"])
    reach = np.array([0.0, 1.0])  # the positions are spread over the family one-hot
    np.testing.assert_allclose(facts["target"], np.outer([-0.3, 0.0, 0.9], reach).ravel())
    np.testing.assert_allclose(facts["nearest"], np.outer([0.12, 0.0, 0.55], reach).ravel())
    np.testing.assert_allclose(facts["start"], np.outer([0.1, 0.0, 0.5], reach).ravel())
    assert set(ceilings.FACT_SETS["+ start + nearest object"]) == {"family", "hand", "start", "nearest"}


def test_a_noisy_target_is_off_by_the_requested_mean_error() -> None:
    scene = {
        "hand_starts": {},
        "motion": {"family": "reach", "targets": {"right": "cup"}},
        "objects": [{"name": "cup", "position_camera": [0.0, 0.0, 1.0]}],
    }
    rng = np.random.default_rng(0)
    row = {"scene": json.dumps(scene)}
    errors = [
        np.linalg.norm(ceilings.scene_facts(row, 1, ["reach"], 0.1, rng)["target"] - [0.0, 0.0, 1.0])
        for _ in range(4000)
    ]
    assert abs(np.mean(errors) - 0.1) < 0.003
    np.testing.assert_allclose(ceilings.scene_facts(row, 1, ["reach"])["target"], [0.0, 0.0, 1.0])
