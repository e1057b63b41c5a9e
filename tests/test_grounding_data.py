"""Referring-localisation data (trainers/grounding_data.py): baselines with a known answer, projected image positions
and grid cells, phrases as instructions say them, and training frames rendered exactly as dataset rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainers import grounding_data as grounding

#: A 100 x 50 px pinhole camera with focal length 100 px and its centre at (50, 25).
CAMERA = {"image_size": [100, 50], "intrinsics": [100.0, 100.0, 50.0, 25.0]}


def _scene(*positions) -> dict:
    return {
        "camera": CAMERA,
        "objects": [{"colour": "red", "type": "box", "position_camera": list(p)} for p in positions],
    }


def test_queries_carry_the_projected_image_position() -> None:
    (straight_ahead, right_and_down) = grounding.scene_queries("frame", _scene((0, 0, 2), (0.5, 0.25, 1)))
    np.testing.assert_allclose(straight_ahead.image_xy, [0.5, 0.5])  # the principal point, as fractions
    np.testing.assert_allclose(right_and_down.image_xy, [(50 + 50) / 100, (25 + 25) / 50])
    assert (straight_ahead.frame, straight_ahead.colour, straight_ahead.kind) == ("frame", "red", "box")


def test_instruction_targets_are_each_acting_hands_object() -> None:
    scene = _scene((0, 0, 2), (0.5, 0.25, 1), (0, 0, 3))
    for index, obj in enumerate(scene["objects"]):
        obj["name"] = f"obj{index}"
    scene["motion"] = {"targets": {"right": "obj1", "left": "obj2"}}
    objects = grounding.scene_queries("frame", scene)
    left, right = grounding.instruction_target_queries(objects, "reach for both", scene)
    assert (left.hand, right.hand) == (0, 1)  # indices into HANDS = ("left", "right")
    np.testing.assert_allclose(left.position, [0, 0, 3])
    np.testing.assert_allclose(right.image_xy, [1.0, 1.0])
    assert left.text == right.text == "reach for both"
    scene["motion"] = {"targets": {"right": "obj1", "left": "missing"}}
    assert [query.hand for query in grounding.instruction_target_queries(objects, "x", scene)] == [1]


def test_grid_cells_are_row_major_and_clamped() -> None:
    assert grounding.grid_cell(np.array([0.0, 0.0]), 4) == 0
    assert grounding.grid_cell(np.array([0.99, 0.0]), 4) == 3
    assert grounding.grid_cell(np.array([0.0, 0.3]), 4) == 4  # second row
    assert grounding.grid_cell(np.array([0.6, 0.8]), 4) == 3 * 4 + 2
    assert grounding.grid_cell(np.array([1.4, -0.2]), 4) == 3  # outside the frame: the nearest border cell


def test_baselines_on_scenes_with_a_known_answer() -> None:
    scenes = [
        grounding.scene_queries("frame a", _scene((0, 0, 1), (2, 0, 1))),
        grounding.scene_queries("frame b", _scene((1, 0, 4))),
    ]
    errors = grounding.baseline_errors(scenes, global_mean=np.array([1.0, 0.0, 1.0]))
    # scene mean: the two objects of frame a are 1 m from their midpoint, frame b's lone object is its own mean
    np.testing.assert_allclose(errors["scene mean"], [1.0, 1.0, 0.0])
    np.testing.assert_allclose(errors["global mean"], [1.0, 1.0, 3.0])
    summary = grounding.summary_mm(errors["global mean"])
    assert summary["mm"] == pytest.approx(5000 / 3)
    assert summary["se_mm"] == pytest.approx(1000 * np.std([1, 1, 3], ddof=1) / np.sqrt(3))


def test_a_targets_scene_mean_is_the_mean_of_all_the_frames_objects() -> None:
    objects = [grounding.scene_queries("frame", _scene((0, 0, 1), (2, 0, 1), (1, 0, 4)))]
    targets = [[objects[0][1]], []]  # the second clip's instruction moves no hand towards an object
    errors = grounding.baseline_errors(targets, np.zeros(3), frame_objects=[*objects, []])
    np.testing.assert_allclose(errors["scene mean"], [np.linalg.norm([2 - 1, 0, 1 - 2])])
    np.testing.assert_allclose(errors["global mean"], [np.sqrt(5)])


def test_phrases_name_objects_as_instructions_do() -> None:
    assert grounding.phrase("pink", "mug") == "the pink mug"
    rng = np.random.default_rng(0)
    said = {grounding.phrase("pink", "mug", rng) for _ in range(50)}
    assert said == {"the pink mug", "the pink cup"}


def test_training_frames_are_rendered_as_dataset_rows() -> None:
    from dataset_scripts.sources.synthetic import SyntheticSource

    scenes = grounding.render_scenes(2, seed=5, image_size=(64, 64))
    lab_row = next(SyntheticSource(domain="lab", split="train", num_clips=1, seed=5, image_size=64).iter_rows())
    wild_row = next(SyntheticSource(domain="wild", split="train", num_clips=1, seed=5, image_size=64).iter_rows())
    for scene, row in zip(scenes, (lab_row, wild_row), strict=True):
        assert scene[0].frame == row["first_frame"]  # same pixels, noise and JPEG bytes
        stored = json.loads(row["scene"])
        assert [(q.colour, q.kind) for q in scene] == [(o["colour"], o["type"]) for o in stored["objects"]]
        np.testing.assert_allclose(
            np.stack([q.position for q in scene]), [o["position_camera"] for o in stored["objects"]]
        )
        # the stored scene's camera places every object's centre where the query says
        assert [q.image_xy.tolist() for q in scene] == [
            q.image_xy.tolist() for q in grounding.scene_queries(None, stored)
        ]
        assert all(-0.5 < q.image_xy[0] < 1.5 for q in scene)
