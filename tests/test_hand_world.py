"""The procedural hand world (source `synthetic`): rows, determinism, labels vs pixels, first-frame dependence.

Most statistics are computed on planned clips (``SyntheticSource.plan``: layout, motion, look, labels, no pixels),
which is exactly what rendering then draws; only the row, determinism and pixel tests render. Expected values
are checked against independent quantities (MuJoCo's own kinematics and segmentation, the scene JSON), not against
the planner's internals.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import json
import math
from collections import Counter

import numpy as np
import pytest

pytest.importorskip("mujoco")

from dataset_scripts.hand_world.clip import WorldOptions, load_scene, plan_clip_spec, pose_scene
from dataset_scripts.hand_world.geometry import project
from dataset_scripts.hand_world.layout_sampler import FAMILIES
from dataset_scripts.hand_world.mjcf import JOINTED_KEYPOINTS
from dataset_scripts.hand_world.pseudo_labels import MIN_CONFIDENCE, mpjpe_mm
from dataset_scripts.hand_world.scenes import SURFACE_COLOURS, surface_palette
from dataset_scripts.schema import COLUMN_DOCS, boundary_frame_indices, validate_row
from dataset_scripts.sources.base import available_sources
from dataset_scripts.sources.synthetic import SyntheticSource
from modeling_jala.layout_jala import HANDS

FINGERTIPS_AND_WRIST = (0, 4, 8, 12, 16, 20)


def camera_of(spec) -> tuple[np.ndarray, np.ndarray]:
    camera = spec.scene["camera"]
    return np.asarray(camera["rotation_world_from_camera"]), np.asarray(camera["position"])


def joints_world(spec, frame: int, slot: int, labels: np.ndarray | None = None) -> np.ndarray:
    """(21, 3) world-frame joints from a row's camera-frame labels and the scene's camera pose."""
    rotation, position = camera_of(spec)
    labels = spec.exact_labels if labels is None else labels
    return labels[frame, slot, 99:].reshape(21, 3) @ rotation.T + position


def scene_object(spec, name: str) -> dict:
    return next(obj for obj in spec.scene["objects"] if obj["name"] == name)


@pytest.fixture(scope="module")
def renderer():
    from dataset_scripts.hand_world.renderer import SceneRenderer

    with SceneRenderer(224, 224) as shared:
        yield shared


# -- rows --------------------------------------------------------------------------------------------------------


def test_source_is_registered_and_rejects_bad_options():
    assert available_sources()["synthetic"] is SyntheticSource
    with pytest.raises(ValueError, match="split 'test_wild' does not go with domain 'lab'"):
        SyntheticSource(domain="lab", split="test_wild")
    with pytest.raises(ValueError, match="task_mix"):
        SyntheticSource(task_mix={"dance": 1.0})
    with pytest.raises(ValueError, match="image_size"):
        SyntheticSource(image_size="big")
    assert SyntheticSource(image_size="96x64").options.image_size == (96, 64)
    assert SyntheticSource(num_clips=7).estimated_rows() == 7


@pytest.mark.parametrize(
    ("domain", "split", "size"),
    [("lab", "train", 224), ("wild", "train", 96), ("wild", "test_wild", 96), ("lab", "test_lab", 96)],
)
def test_rows_validate_against_the_schema(domain, split, size):
    source = SyntheticSource(
        domain=domain, split=split, num_clips=3, seed=11, image_size=size, pseudo_label_fraction=0.34
    )
    rows = list(source.iter_rows())
    assert len(rows) == 3
    for row in rows:
        validate_row(row)
        assert set(row) == set(COLUMN_DOCS) | {"split"}
        assert row["split"] == split and row["domain"] == domain and row["source"] == "synthetic"
        assert len(row["boundary_frames"]) == len(boundary_frame_indices(row["num_frames"]))
        assert row["first_frame"] == row["boundary_frames"][0]
        fx, fy, cx, cy = row["camera_intrinsics"]
        assert fx == fy > 0 and cx == cy == (size - 1) / 2
        scene = json.loads(row["scene"])
        assert {"objects", "camera", "look", "target", "acting_hands", "motion"} <= set(scene)
        assert scene["camera"]["image_size"] == [size, size]
        acting = [side in scene["acting_hands"] for side in HANDS]
        assert row["hands_present"] == acting
        if row["labelled"]:
            assert row["motion"].shape == (row["num_frames"], 2, 162)
            for slot, present in enumerate(acting):
                assert np.any(row["motion"][:, slot]) == present  # an absent hand's slot is zeros
        if split != "train" or domain == "lab":
            assert row["labelled"] and row["label_source"] == "exact" and row["label_confidence"] == 1.0
        elif not row["labelled"]:
            assert row["motion"] is None and row["label_source"] == "none" and row["label_confidence"] == 0.0
            assert row["task_type"] == "video_only"
        else:
            assert row["label_source"] == "pseudo" and MIN_CONFIDENCE <= row["label_confidence"] <= 1.0


def _assert_rows_equal(first: list[dict], second: list[dict]) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], np.ndarray):
                assert a[key].tobytes() == b[key].tobytes(), key
            else:
                assert a[key] == b[key], (a["id"], key)


def test_rows_are_deterministic_and_independent_of_workers():
    options = {"domain": "wild", "num_clips": 4, "seed": 5, "image_size": 64, "pseudo_label_fraction": 0.5}
    serial = list(SyntheticSource(**options).iter_rows())
    _assert_rows_equal(serial, list(SyntheticSource(**options).iter_rows()))
    _assert_rows_equal(serial, list(SyntheticSource(**options, workers=2).iter_rows()))
    # A longer build starts with the same clips: a clip does not depend on num_clips.
    _assert_rows_equal(serial[:2], list(SyntheticSource(**{**options, "num_clips": 2}).iter_rows()))
    other_seed = list(SyntheticSource(**{**options, "seed": 6}).iter_rows())
    assert serial[0]["first_frame"] != other_seed[0]["first_frame"]


# -- labels vs pixels --------------------------------------------------------------------------------------------


def test_labels_match_rendered_pixels(renderer):
    """Joints drawn by MuJoCo sit exactly at the D162 joints; projected labels land on the hand's own geoms."""
    width, height = 176, 128  # not square: a swapped cx/cy or fx/fy would show
    hits = misses = flipped_hits = flipped_total = 0
    for domain, split in (("lab", "test_lab"), ("wild", "test_wild")):
        options = WorldOptions(domain=domain, split=split, seed=3, image_size=(width, height))
        for index in range(5):
            spec = plan_clip_spec(options, index)
            load_scene(renderer, spec)
            intrinsics = spec.look.camera.intrinsics(width, height)
            own = {side: set(renderer.hand_geom_ids(side).tolist()) for side in HANDS}
            for frame in boundary_frame_indices(spec.motion.num_frames)[:4]:
                pose_scene(renderer, spec, frame)
                for slot, side in enumerate(HANDS):  # MuJoCo's kinematics == hand_jala's FK (world frame)
                    expected = spec.motion.motion_world[frame, slot, 99:].reshape(21, 3)[[0, *JOINTED_KEYPOINTS]]
                    np.testing.assert_allclose(renderer.body_positions(side), expected, atol=1e-6)
                segmentation = renderer.render_segmentation()
                depth = renderer.render_depth()
                for slot, side in enumerate(HANDS):
                    if not spec.motion.hands_present[slot]:
                        continue
                    joints = spec.labels[frame, slot, 99:].reshape(21, 3)
                    for keypoint in FINGERTIPS_AND_WRIST:
                        u, v = project(joints[keypoint], intrinsics)
                        for flip in (False, True):  # flip: the classic MuJoCo (+y up) vs OpenCV (+y down) bug
                            vv = height - 1 - v if flip else v
                            col, row = int(round(u)), int(round(vv))
                            if not (1 <= col < width - 1 and 1 <= row < height - 1):
                                continue
                            if depth[row, col] < joints[keypoint, 2] - 0.03:
                                continue  # hidden behind something else: not a visible case
                            hit = bool(
                                set(segmentation[row - 1 : row + 2, col - 1 : col + 2].ravel().tolist()) & own[side]
                            )
                            if flip:
                                flipped_total += 1
                                flipped_hits += hit
                            else:
                                hits += hit
                                misses += not hit
    assert hits + misses > 100
    assert hits / (hits + misses) > 0.9, (hits, misses)
    assert flipped_hits / max(flipped_total, 1) < 0.5  # the check would catch a wrong camera convention


def test_labels_are_camera_frame_d162_consistent_with_fk():
    from modeling_jala.hand_jala import HandSkeleton

    skeleton = HandSkeleton()
    spec = plan_clip_spec(WorldOptions(domain="wild", split="test_wild", seed=2), 0)
    slot = HANDS.index(spec.layout.acting_sides[0])
    import torch

    motion = torch.from_numpy(spec.labels[:, slot].astype(np.float64))
    rotation, translation, joint_rots = skeleton.from_d162(motion)
    fk = skeleton.forward_kinematics(
        rotation, translation, joint_rots, bone_scale=spec.layout.bone_scale, handedness=HANDS[slot]
    )
    np.testing.assert_allclose(fk.numpy().reshape(-1, 63), spec.labels[:, slot, 99:], atol=1e-5)
    assert (spec.labels[:, slot, 99:102] == spec.labels[:, slot, 96:99]).all()  # joint 0 == wrist translation
    assert (spec.labels[:, slot, 101] > 0.1).all()  # in front of the camera (OpenCV +z forward)


# -- regimes -----------------------------------------------------------------------------------------------------


def _plans(n: int, **options) -> list:
    world = WorldOptions(**options)
    return [plan_clip_spec(world, index) for index in range(n)]


def test_lab_and_wild_share_motion_distribution_but_not_look():
    lab, wild = _plans(100, domain="lab", seed=1), _plans(100, domain="wild", seed=1)

    def stats(plans):
        families = Counter(p.layout.family for p in plans)
        targets = np.array([p.layout.object(next(iter(p.layout.targets.values()))).position for p in plans])
        return (
            np.array([families[f] for f in FAMILIES]) / len(plans),
            targets.mean(axis=0),
            np.mean([p.motion.num_frames for p in plans]),
            np.mean([sum(p.motion.hands_present) == 2 for p in plans]),
        )

    lab_families, lab_target, lab_frames, lab_two = stats(lab)
    wild_families, wild_target, wild_frames, wild_two = stats(wild)
    assert 0.5 * np.abs(lab_families - wild_families).sum() < 0.2  # total variation of the family mix
    assert np.abs(lab_target - wild_target).max() < 0.04  # metres, table frame
    assert abs(lab_frames - wild_frames) < 0.15 * lab_frames
    assert abs(lab_two - wild_two) < 0.15
    # Look: one lab camera and plain textures; wild cameras, textures, lights and noise vary.
    assert len({tuple(p.look.camera.position.round(4)) for p in lab}) == 1
    assert len({p.look.table.name for p in lab}) == 1
    assert len({tuple(p.look.camera.position.round(3)) for p in wild}) > 90
    assert len({p.look.table.name for p in wild}) > 40
    assert {p.look.camera.mode for p in wild} == {"exo", "side", "ego"}
    assert any(p.look.occluder is not None for p in wild) and any(p.look.distractors for p in wild)
    assert all(p.look.occluder is None and not p.look.distractors and p.look.noise_std == 0 for p in lab)


def test_lab_and_wild_frames_look_different(renderer):
    size = 96
    images = {}
    for domain in ("lab", "wild"):
        spec = plan_clip_spec(WorldOptions(domain=domain, seed=0, image_size=(size, size)), 0)
        load_scene(renderer, spec)
        pose_scene(renderer, spec, 0)
        images[domain] = renderer.render().astype(np.float64)
    assert np.abs(images["lab"] - images["wild"]).mean() > 20.0  # grey levels
    assert images["lab"].std() > 10 and images["wild"].std() > 10  # neither is blank


def _frame_step(motion: np.ndarray, slot: int) -> float:
    """Mean joint displacement between consecutive frames (metres)."""
    return float(np.linalg.norm(np.diff(motion[:, slot, 99:].reshape(-1, 21, 3), axis=0), axis=-1).mean())


def test_wild_train_hides_labels_except_a_pseudo_labelled_fraction():
    plans = _plans(50, domain="wild", seed=4, pseudo_label_fraction=0.1)
    pseudo = [p for p in plans if p.label_source == "pseudo"]
    hidden = [p for p in plans if p.label_source == "none"]
    assert 4 <= len(pseudo) <= 6 and len(pseudo) + len(hidden) == 50
    assert all(p.labels is None and p.task_type == "video_only" and p.label_confidence == 0.0 for p in hidden)
    three_tenths = _plans(50, domain="wild", seed=4, pseudo_label_fraction=0.3)
    assert 14 <= sum(p.label_source == "pseudo" for p in three_tenths) <= 16
    errors, jitters = [], []
    for plan in pseudo + [p for p in three_tenths if p.label_source == "pseudo"]:
        assert MIN_CONFIDENCE <= plan.label_confidence <= 1.0
        assert plan.labels.dtype == np.float32 and plan.labels.shape == plan.exact_labels.shape
        assert (plan.labels[:, ~np.array(plan.motion.hands_present)] == 0).all()
        errors.append(mpjpe_mm(plan.labels, plan.exact_labels, plan.motion.hands_present))
        slot = plan.motion.hands_present.index(True)
        # Temporal jitter: frame-to-frame joint motion is larger than in the exact label.
        jitters.append(_frame_step(plan.labels, slot) / max(_frame_step(plan.exact_labels, slot), 1e-9))
    assert 3.0 < np.median(errors) < 40.0 and max(errors) < 80.0  # mm: a tracker, not garbage and not exact
    assert np.median(jitters) > 1.2
    assert all(p.label_source == "exact" for p in _plans(5, domain="wild", split="test_wild", seed=4))


def test_test_wild_uses_none_of_the_train_textures():
    train = _plans(25, domain="wild", seed=8)
    test = _plans(25, domain="wild", split="test_wild", seed=8)

    def colours(plans):
        return {c for p in plans for c in p.scene["look"]["surface_colours"]}

    def textures(plans):
        return {t for p in plans for t in p.scene["look"]["textures"].values() if t}

    assert colours(train) and colours(test)
    assert not colours(train) & colours(test)
    assert not textures(train) & textures(test)
    assert colours(test) <= set(surface_palette("test_wild"))
    assert set(surface_palette("train")) | set(surface_palette("test_wild")) == set(SURFACE_COLOURS)
    # Held-out seeds too: the same index gives a different clip in test_wild.
    assert train[0].layout.objects[0].position.tolist() != test[0].layout.objects[0].position.tolist()


# -- the first frame decides the motion --------------------------------------------------------------------------


def test_grasp_goes_where_the_target_is_with_an_aperture_that_follows_its_size():
    plans = _plans(60, domain="lab", seed=9, family_weights=(("grasp", 1.0), ("pinch", 1.0)), two_hand_probability=0.0)
    apertures, widths, offsets, wrists, finals, targets, alignments = [], [], [], [], [], [], []
    for plan in plans:
        side = plan.scene["acting_hands"][0]
        slot = HANDS.index(side)
        events = plan.scene["motion"]["events"][side]
        target = scene_object(plan, plan.scene["target"])
        frame = min(round(events["grasp"] * 15), plan.motion.num_frames - 1)
        joints = joints_world(plan, frame, slot)
        wrists.append(joints[0])
        finals.append(joints_world(plan, plan.motion.num_frames - 1, slot)[0])
        targets.append(target["position"])
        if events["grasp_style"] == "handle":
            continue  # a mug held by its handle: the grip spans the handle, not the mug
        opposing = joints[[8]].mean(axis=0) if plan.layout.family == "pinch" else joints[[8, 12]].mean(axis=0)
        apertures.append(np.linalg.norm(joints[4] - opposing))
        size = target["size"]
        widths.append(2 * min(size[:2]) if target["type"] == "box" else 2 * size[0])
        centre = 0.5 * (joints[4] + opposing)
        offsets.append(np.linalg.norm(centre[:2] - np.asarray(target["position"])[:2]))
        if target["type"] == "box" and max(size[:2]) > 1.3 * min(size[:2]):
            grip = joints[4] - opposing
            narrow = target["yaw"] + (0.0 if size[0] < size[1] else math.pi / 2)
            alignments.append(abs(grip[0] * math.cos(narrow) + grip[1] * math.sin(narrow)) / np.linalg.norm(grip[:2]))
    assert len(apertures) > 30
    assert np.corrcoef(apertures, widths)[0, 1] > 0.9
    assert np.median(offsets) < 0.01  # metres between the grip centre and the object's axis
    wrists, finals, targets = np.array(wrists), np.array(finals), np.array(targets)
    for axis in (0, 1):  # the wrist at the grasp follows the target across the table (x) and in depth (y)
        assert np.corrcoef(wrists[:, axis], targets[:, axis])[0, 1] > 0.7  # offset by the hand: grip centre above
    assert np.linalg.norm(finals[:, :2] - targets[:, :2], axis=1).mean() < 0.15  # and it ends up near it
    assert len(alignments) >= 3 and np.mean(np.array(alignments) > 0.8) > 0.8  # grip across the narrow side


def test_the_hand_closer_to_the_target_acts_and_clears_obstacles():
    plans = _plans(
        80,
        domain="wild",
        split="test_wild",
        seed=12,
        family_weights=(("reach", 1.0), ("grasp", 1.0)),
        two_hand_probability=0.0,
    )
    cleared = 0
    for plan in plans:
        side = plan.scene["acting_hands"][0]
        target = np.asarray(scene_object(plan, plan.scene["target"])["position"])
        starts = {s: np.asarray(plan.scene["hand_starts"][s]["wrist_world"]) for s in HANDS}
        distance = {s: np.linalg.norm(starts[s][:2] - target[:2]) for s in HANDS}
        assert side == min(distance, key=distance.get)
        obstacles = [o for o in plan.scene["objects"] if o["role"] == "obstacle"]
        for obstacle in obstacles:
            centre = np.asarray(obstacle["position"])
            top = centre[2] + (obstacle["size"][2] if obstacle["type"] == "box" else obstacle["size"][1])
            radius = math.hypot(*obstacle["size"][:2]) if obstacle["type"] == "box" else obstacle["size"][0]
            slot = HANDS.index(side)
            for frame in range(plan.motion.num_frames):
                joints = joints_world(plan, frame, slot)
                above = np.linalg.norm(joints[:, :2] - centre[:2], axis=1) < radius
                assert (joints[above, 2] > top - 0.005).all(), (plan.clip_id, frame)
            cleared += 1
    assert cleared >= 5  # obstacles do occur on the way, and the hand goes over them


def test_instructions_name_the_target_but_not_the_hand_or_the_place():
    plans = _plans(40, domain="lab", seed=13, task_mix=(("motion_generation", 1.0), ("motion_continuation", 1.0)))
    for plan in plans:
        text = plan.instruction.lower()
        assert "left hand" not in text and "right hand" not in text
        assert not any(ch.isdigit() for ch in text)  # no coordinates, sizes or angles
        target = plan.layout.object(next(iter(plan.layout.targets.values())))
        if plan.layout.family != "release":  # "put it down ...": the held object is the one in the hand
            assert target.colour in text
    descriptions = _plans(10, domain="lab", seed=13, task_mix=(("motion_description", 1.0),))
    assert all(" hand" in p.instruction for p in descriptions)
    assert len({p.instruction for p in plans}) > 35  # varied phrasing
