"""The motion baselines on data with a known answer, and the table that prints them beside the model."""

from __future__ import annotations

import numpy as np
import pytest

from modeling_jala.hand_jala import JOINTS_XYZ
from trainers.evaluate_motion import format_table
from trainers.motion_baselines import MeanMotionBaseline, NearestNeighbourBaseline


def row(instruction: str, offset: float, frames: int, hands: tuple[bool, bool]) -> dict:
    """A clip whose every joint sits at `offset` (metres) on x, for the hands present."""
    motion = np.zeros((frames, 2, 162), np.float32)
    for hand, present in enumerate(hands):
        if present:
            motion[:, hand, JOINTS_XYZ] = np.tile([offset, 0.0, 0.5], 21)
        else:
            motion[:, hand] = np.nan
    return {"instruction": instruction, "motion": motion, "hands_present": hands, "labelled": True}


def test_mean_motion_is_the_per_frame_average_of_each_hand_and_holds_the_last_frame() -> None:
    rows = [row("a", 0.1, 4, (False, True)), row("b", 0.3, 2, (True, True))]
    baseline = MeanMotionBaseline.fit(rows)
    right = baseline.predict(rows[0], 1, 6)
    assert right.shape == (6, 21, 3)
    np.testing.assert_allclose(right[:2, :, 0], 0.2, atol=1e-6)  # frames both clips have
    np.testing.assert_allclose(right[2:4, :, 0], 0.1, atol=1e-6)  # only the longer clip
    np.testing.assert_allclose(right[4:, :, 0], 0.1, atol=1e-6)  # held
    left = baseline.predict(rows[0], 0, 3)
    np.testing.assert_allclose(left[:, :, 0], 0.3, atol=1e-6)  # the NaN left hand of clip a never counts


def test_mean_motion_needs_both_hands_in_training() -> None:
    with pytest.raises(ValueError, match="no training clip uses the \\['left'\\] hand"):
        MeanMotionBaseline.fit([row("a", 0.1, 4, (False, True))])


def test_nearest_neighbour_matches_instruction_and_frame_and_respects_hands() -> None:
    rows = [
        row("reach the red cup", 0.1, 3, (False, True)),
        row("reach the blue box", 0.2, 3, (False, True)),
        row("reach the blue box", 0.4, 3, (True, False)),
    ]
    frames = np.stack([np.full((8, 8, 3), value, np.uint8) for value in (10, 200, 20)])

    def brightness(images: np.ndarray) -> np.ndarray:
        mean = images.reshape(len(images), -1).mean(1, keepdims=True) / 255.0
        return np.concatenate([mean, 1 - mean], axis=1)

    baseline = NearestNeighbourBaseline.fit(rows, frames, brightness)
    query = [row("reach the blue box", 0.0, 5, (True, True))]
    picks = baseline.neighbours(query, np.full((1, 8, 8, 3), 190, np.uint8))
    assert picks[0, 1] == 1  # same words, closest frame, has a right hand
    assert picks[0, 0] == 2  # the only clip with a left hand
    prediction = baseline.predict_batch(query, np.full((1, 8, 8, 3), 190, np.uint8), [5])[0]
    assert prediction.shape == (2, 5, 21, 3)
    np.testing.assert_allclose(prediction[1, :, :, 0], 0.2)
    np.testing.assert_allclose(prediction[0, :, :, 0], 0.4)
    words_only = NearestNeighbourBaseline.fit(rows)
    assert words_only.neighbours([row("reach the red cup", 0.0, 2, (False, True))])[0, 1] == 0


def test_table_prints_the_model_beside_both_baselines() -> None:
    metrics = {"mpjpe_mm": 90.0, "pa_mpjpe_mm": 10.0, "mwte_mm": 80.0, "mde_deg": 30.0, "mpjpe_se_mm": 4.0}
    report = {
        **metrics,
        "clips": 3,
        "baselines": {
            "mean motion": {**metrics, "mpjpe_mm": 120.0},
            "nearest neighbour": {**metrics, "mpjpe_mm": 150.0},
        },
    }
    table = format_table({"test_lab": report})
    assert "| test_lab | JALA | 3 | 90.0 ± 4.0 | 0.75 |" in table
    assert "| test_lab | mean motion | 3 | 120.0 ± 4.0 | 1.00 |" in table
    assert "| test_lab | nearest neighbour | 3 | 150.0 ± 4.0 | 1.25 |" in table
