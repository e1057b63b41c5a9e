"""Real-video ingest (source ``video``): decoding, 15 fps resampling with slow-down, lifting, clip logic, real clips.

The clip logic runs against a fake tracker whose detections come from a known synthetic hand projected through
the same assumed camera the source uses, so pseudo-labels can be checked against the truth. The last tests run
MediaPipe on the licensed real clips in ../shared/data/hands (skipped, with the reason, where either is missing).
"""

from __future__ import annotations

import io
import json
import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from dataset_scripts.schema import CHUNK_FRAMES, validate_row
from dataset_scripts.sources.base import get_source
from dataset_scripts.sources.video import VideoSource
from dataset_scripts.video import trackers
from dataset_scripts.video.decode import iter_frames, probe_video, scaled_size
from dataset_scripts.video.lifting import (
    Intrinsics,
    fit_d162,
    interpolate_gaps,
    lift_to_camera,
    solve_translation,
)
from dataset_scripts.video.resample import (
    close_gaps,
    hold_indices,
    plan_resample,
    sample_times,
    split_evenly,
    true_runs,
)
from dataset_scripts.video.trackers import HandDetection, get_tracker, register_tracker
from modeling_jala.hand_jala import JOINTS_XYZ, WRIST_TRANSL, HandSkeleton, axis_angle_to_matrix

HANDS_DIR = Path(__file__).parents[2] / "shared" / "data" / "hands"

# ------------------------------------------------------------------------------------------------------------
# Helpers: tiny videos written on disk, a synthetic hand, a fake tracker
# ------------------------------------------------------------------------------------------------------------


def pattern_frame(index: int, width: int, height: int) -> np.ndarray:
    """A frame with a bright top-left marker (to check orientation) and a moving gradient (frames differ)."""
    x = np.linspace(0, 255, width)[None, :]
    y = np.linspace(0, 255, height)[:, None]
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 1] = ((x + y + 7 * index) % 256).astype(np.uint8)
    image[..., 2] = 60
    image[: height // 3, : width // 3] = (255, 0, 0)
    return image


def write_video(
    path: Path, num_frames: int, *, fps: int = 30, size: tuple[int, int] = (96, 64), rotation: int | None = None
) -> Path:
    """H.264 mp4 of pattern frames; ``rotation`` writes a display matrix like a phone does."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(pattern_frame(index, *size), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_gif(path: Path, durations_ms: list[int], size: tuple[int, int] = (64, 48)) -> Path:
    frames = [Image.fromarray(pattern_frame(i, *size)) for i in range(len(durations_ms))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations_ms, loop=0)
    return path


def synthetic_keypoints(num_frames: int, handedness: str = "right", seed: int = 0) -> np.ndarray:
    """(T, 21, 3) camera-frame keypoints of a hand moving in front of the camera, from the skeleton's FK."""
    skeleton = HandSkeleton()
    generator = torch.Generator().manual_seed(seed)
    start, end = skeleton.sample_angles(2, generator=generator, dtype=torch.float64)
    phase = torch.linspace(0.0, 1.0, num_frames, dtype=torch.float64)
    angles = skeleton.clamp_angles(0.5 * (start + (end - start) * phase[:, None, None]))
    axis_angle = torch.stack((0.4 + 0.6 * phase, -0.3 + 0.2 * phase, 0.2 * torch.ones_like(phase)), dim=-1)
    side = 1.0 if handedness == "right" else -1.0
    transl = torch.stack(
        (side * (0.06 + 0.05 * phase), 0.02 - 0.03 * phase, 0.45 + 0.15 * phase), dim=-1
    )  # metres, in front of the camera
    keypoints = skeleton.forward_kinematics(
        axis_angle_to_matrix(axis_angle), transl, skeleton.joint_rotations_from_angles(angles), handedness=handedness
    )
    return keypoints.numpy()


def detection_from_keypoints(
    keypoints: np.ndarray, width: int, height: int, handedness: str, score: float
) -> HandDetection:
    """What an ideal tracker reports: pixels through the source's assumed camera, world = centred shape."""
    pixels = Intrinsics.from_fov(width, height).project(keypoints)
    return HandDetection(
        handedness=handedness,
        score=score,
        image_landmarks=pixels,
        world_landmarks=keypoints - keypoints.mean(axis=0),
    )


class FakeTracker:
    """Detections by position in the frame sequence: ``schedule(i) -> [(handedness, score), ...]``."""

    name = "fake"
    detects_hands = True

    def __init__(self, schedule: Callable[[int], list[tuple[str, float]]], num_frames: int = 400) -> None:
        self.schedule = schedule
        self.truth = {
            "right": synthetic_keypoints(num_frames, "right"),
            "left": synthetic_keypoints(num_frames, "left"),
        }
        self.frame_shapes: list[tuple[int, ...]] = []
        self.calls = 0

    def track(self, frames: Iterable[np.ndarray]) -> list[list[HandDetection]]:
        self.calls += 1
        results = []
        for position, frame in enumerate(frames):
            self.frame_shapes.append(frame.shape)
            height, width = frame.shape[:2]
            results.append(
                [
                    detection_from_keypoints(self.truth[hand][position], width, height, hand, score)
                    for hand, score in self.schedule(position)
                ]
            )
        return results


def ingest(root: Path, tracker: object, **options: object) -> tuple[list[dict], VideoSource]:
    source = VideoSource(root, tracker=tracker, progress=False, fit_iterations=60, **options)
    rows = list(source.iter_rows())
    for row in rows:
        validate_row(row)
    return rows, source


def decode_image(encoded: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(encoded["bytes"])).convert("RGB"))


# ------------------------------------------------------------------------------------------------------------
# Decoding
# ------------------------------------------------------------------------------------------------------------


def test_decode_mp4_timestamps_and_resize(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", 45, fps=30, size=(96, 64))
    info = probe_video(path)
    assert (info.width, info.height, info.rotation, info.num_frames) == (96, 64, 0, 45)
    assert info.average_fps == pytest.approx(30.0)
    np.testing.assert_allclose(info.timestamps, np.arange(45) / 30.0, atol=1e-6)
    assert info.duration_s == pytest.approx(1.5, abs=1e-6)
    frames = list(iter_frames(info, [0, 10, 44], max_side=48))
    assert [f.index for f in frames] == [0, 10, 44]
    assert frames[0].image.shape == (32, 48, 3) and frames[0].image.dtype == np.uint8
    assert frames[0].image.flags["C_CONTIGUOUS"]
    assert frames[1].time_s == pytest.approx(10 / 30)


@pytest.mark.parametrize(("rotation", "marker_corner"), [(0, "top_left"), (-90, "top_right"), (90, "bottom_left")])
def test_decode_applies_display_rotation(tmp_path: Path, rotation: int, marker_corner: str) -> None:
    """A phone's display matrix: -90 (counterclockwise) means turn clockwise; the top-left marker moves with it."""
    path = write_video(tmp_path / "rotated.mp4", 3, size=(96, 64), rotation=rotation)
    info = probe_video(path)
    assert info.rotation == rotation
    image = next(iter_frames(info, [0])).image
    assert image.shape == ((64, 96, 3) if rotation == 0 else (96, 64, 3))
    h, w = image.shape[0] // 6, image.shape[1] // 6
    corners = {
        "top_left": image[:h, :w],
        "top_right": image[:h, -w:],
        "bottom_left": image[-h:, :w],
        "bottom_right": image[-h:, -w:],
    }
    reds = {name: float(patch[..., 0].mean()) - float(patch[..., 1].mean()) for name, patch in corners.items()}
    assert max(reds, key=reds.get) == marker_corner, reds


def test_decode_gif_frame_delays(tmp_path: Path) -> None:
    path = write_gif(tmp_path / "anim.gif", [100, 60, 200, 100])
    info = probe_video(path)
    assert info.num_frames == 4
    np.testing.assert_allclose(info.timestamps, [0.0, 0.1, 0.16, 0.36], atol=1e-6)
    assert info.duration_s == pytest.approx(0.46, abs=1e-6)
    assert len(list(iter_frames(info))) == 4


def test_scaled_size_never_enlarges() -> None:
    assert scaled_size(1080, 1920, 960) == (540, 960)
    assert scaled_size(282, 240, 960) == (282, 240)
    assert scaled_size(1280, 720, None) == (1280, 720)


#: From SOURCES.md: displayed (width, height), fps, frames, duration (s).
REAL_VIDEOS = {
    "right_hand_finger_motions_front_view.mp4": (1280, 720, 30.0, 621, 20.70),
    "fridge_drawer_place_banana.mov": (1080, 1920, 30.0, 86, 2.87),
    "fridge_drawer_take_out_banana_1.mov": (1080, 1920, 30.0, 100, 3.33),
    "fridge_drawer_take_out_banana_2.mov": (1080, 1920, 30.0, 101, 3.37),
    "hands_grasp_mug_on_table_box_overlay.gif": (600, 472, 10.0, 51, 5.10),
    "hands_moving_on_table_box_overlay.gif": (600, 472, 10.0, 41, 4.10),
    "webcam_gesture_pointing_one_finger.gif": (282, 240, 16.7, 31, 1.86),
}


@pytest.mark.parametrize("name", sorted(REAL_VIDEOS))
def test_decode_real_videos_match_sources_md(name: str) -> None:
    path = HANDS_DIR / name
    if not path.is_file():
        pytest.skip(f"{path} is absent: the shared hand clips are not laid out beside this checkout")
    width, height, fps, frames, duration = REAL_VIDEOS[name]
    info = probe_video(path)
    assert (info.width, info.height) == (width, height)
    assert info.average_fps == pytest.approx(fps, rel=0.01)
    assert info.num_frames == frames
    assert info.duration_s == pytest.approx(duration, abs=0.02)
    if name.endswith(".mov"):  # HEVC 10-bit with a -90 display rotation: decode it all, check the orientation
        assert (info.codec, info.rotation, info.coded_width, info.coded_height) == ("hevc", -90, 1920, 1080)
        decoded = list(iter_frames(info, max_side=160))
        assert len(decoded) == frames
        image = decoded[len(decoded) // 2].image.astype(np.float64)
        assert image.shape == (160, 90, 3)
        # Upright: the wooden floor (warm, red >> blue) is at the bottom, the steel fridge door at the top.
        warmth = image[..., 0] - image[..., 2]
        band = image.shape[0] // 5
        assert warmth[-band:].mean() > warmth[:band].mean() + 15.0
    elif name.endswith(".gif"):
        assert len(list(iter_frames(info))) == frames


# ------------------------------------------------------------------------------------------------------------
# Resampling and timelines
# ------------------------------------------------------------------------------------------------------------


def test_sample_times_slow_down_doubles_clip_length() -> None:
    real_time = sample_times(0.0, 20.7, playback_speed=1.0)
    slowed = sample_times(0.0, 20.7, playback_speed=0.5)
    assert len(real_time) == 311 and len(slowed) == 621
    np.testing.assert_allclose(np.diff(real_time), 1 / 15)
    np.testing.assert_allclose(np.diff(slowed), 1 / 30)
    # Clip seconds = frames / 15 = footage seconds / playback speed (within one frame).
    assert len(slowed) / 15 == pytest.approx(20.7 / 0.5, abs=1 / 15)
    assert slowed[-1] < 20.7
    # Never a sample exactly at the end, where no frame is on screen.
    assert len(sample_times(0.0, 1.0, playback_speed=1.0)) == 15
    with pytest.raises(ValueError, match="playback_speed"):
        sample_times(0.0, 1.0, playback_speed=0.0)


def test_hold_indices_30fps_slowed_uses_every_frame_once() -> None:
    timestamps = np.arange(90) / 30.0
    plan = plan_resample(timestamps, 3.0, playback_speed=0.5)
    np.testing.assert_array_equal(plan.source_indices, np.arange(90))
    plan = plan_resample(timestamps, 3.0, playback_speed=1.0)
    np.testing.assert_array_equal(plan.source_indices, np.arange(0, 90, 2))


def test_hold_indices_gif_repeats_and_variable_delays() -> None:
    timestamps = np.arange(10) * 0.1  # a 10 fps GIF
    plan = plan_resample(timestamps, 1.0, playback_speed=0.5)
    assert plan.num_frames == 30
    np.testing.assert_array_equal(plan.source_indices, np.repeat(np.arange(10), 3))
    np.testing.assert_array_equal(plan.unique_indices(), np.arange(10))
    # Sample-and-hold: the frame on screen, even when float rounding puts the time a hair before its timestamp.
    delays = np.array([0.0, 0.1, 0.16, 0.36])
    np.testing.assert_array_equal(hold_indices(delays, [0.0, 0.0999999999, 0.15, 0.16, 0.35, 0.5]), [0, 1, 1, 2, 2, 3])


def test_timeline_helpers() -> None:
    mask = np.array([0, 1, 1, 0, 0, 1, 0, 0, 0, 1, 1, 0], dtype=bool)
    assert true_runs(mask) == [(1, 3), (5, 6), (9, 11)]
    assert true_runs(close_gaps(mask, 2)) == [(1, 6), (9, 11)]
    assert true_runs(close_gaps(mask, 3)) == [(1, 11)]  # leading / trailing gaps are never closed
    pieces = split_evenly(0, 621, min_len=15, max_len=150)
    assert len(pieces) == 5 and pieces[0][0] == 0 and pieces[-1][1] == 621
    assert {b - a for a, b in pieces} <= {124, 125}
    assert split_evenly(3, 17, min_len=15, max_len=150) == []
    assert split_evenly(0, 151, min_len=15, max_len=150) == [(0, 75), (75, 151)]


# ------------------------------------------------------------------------------------------------------------
# Lifting
# ------------------------------------------------------------------------------------------------------------


def test_intrinsics_from_fov() -> None:
    k = Intrinsics.from_fov(640, 480, 60.0)
    assert k.fx == pytest.approx(320 / math.tan(math.radians(30)))
    assert (k.fy, k.cx, k.cy) == (k.fx, 320.0, 240.0)
    assert Intrinsics.from_fov(480, 640).fx == pytest.approx(k.fx)  # longer side: portrait == landscape
    half = k.scaled(0.5, 0.5)
    np.testing.assert_allclose(half.project(np.array([0.1, -0.05, 0.5])), k.project(np.array([0.1, -0.05, 0.5])) / 2)


@pytest.mark.parametrize("handedness", ["right", "left"])
def test_lifting_recovers_translation_and_d162(handedness: str) -> None:
    """FK keypoints in front of a known camera -> 2D + centred shape -> camera frame within mm -> D162."""
    truth = synthetic_keypoints(12, handedness, seed=3)
    k = Intrinsics.from_fov(640, 480)
    pixels = k.project(truth)
    world = truth - truth.mean(axis=1, keepdims=True)
    lifted = lift_to_camera(world, pixels, k)
    np.testing.assert_allclose(lifted.translation, truth.mean(axis=1), atol=1e-6)
    assert lifted.reprojection_px.max() < 1e-6

    rng = np.random.default_rng(0)
    noisy = solve_translation(world, pixels + rng.normal(scale=0.5, size=pixels.shape), k)[0]
    assert np.abs(noisy - truth.mean(axis=1)).max() < 0.005  # 5 mm at ~0.5 m with half-pixel noise

    fit = fit_d162(lifted.keypoints, handedness, iterations=100)
    assert fit.motion.shape == (12, 162)
    assert float(fit.residual_mm.max()) < 2.0
    wrist = fit.motion[:, WRIST_TRANSL].numpy()
    np.testing.assert_allclose(wrist, truth[:, 0], atol=0.003)
    joints = fit.motion[:, JOINTS_XYZ].numpy().reshape(12, 21, 3)
    assert np.linalg.norm(joints - truth, axis=-1).mean() < 0.002
    # The fit with the other hand's skeleton is clearly worse: chirality matters.
    other = fit_d162(lifted.keypoints, "left" if handedness == "right" else "right", iterations=100)
    assert float(other.residual_mm.mean()) > 3 * float(fit.residual_mm.mean())


def test_lifting_rejects_bad_shapes() -> None:
    k = Intrinsics.from_fov(64, 48)
    with pytest.raises(ValueError, match="world"):
        solve_translation(np.zeros((21, 3)), np.zeros((20, 2)), k)
    with pytest.raises(ValueError, match="fx, fy > 0"):
        Intrinsics(0.0, 1.0, 0.0, 0.0)


def test_interpolate_gaps() -> None:
    values = np.arange(10, dtype=np.float64)[:, None] * np.array([1.0, 2.0])
    valid = np.array([0, 1, 1, 0, 0, 1, 0, 0, 0, 1], dtype=bool)
    filled, have = interpolate_gaps(values, valid, max_gap=2)
    np.testing.assert_allclose(filled[0], values[1])  # held at the start
    np.testing.assert_allclose(filled[3:5], values[3:5])  # linear inside (the series is linear)
    assert not have[6:9].any() and np.isnan(filled[6:9]).all()  # 3 > max_gap stays missing
    filled, have = interpolate_gaps(values, valid, max_gap=3)
    assert have.all()
    np.testing.assert_allclose(filled[1:], values[1:])
    np.testing.assert_allclose(filled[0], values[1])


# ------------------------------------------------------------------------------------------------------------
# Trackers and the registry
# ------------------------------------------------------------------------------------------------------------


def test_tracker_registry_and_none_tracker() -> None:
    assert {"none", "mediapipe"} <= set(trackers.available_trackers())
    none = get_tracker("none")
    assert isinstance(none, trackers.HandTracker) and not none.detects_hands
    assert none.track(iter([np.zeros((4, 4, 3), np.uint8)] * 3)) == [[], [], []]
    with pytest.raises(KeyError, match="available"):
        get_tracker("no-such-tracker")

    register_tracker("test-fake")(_make_idle_fake)  # idempotent for the same factory
    register_tracker("test-fake")(_make_idle_fake)
    assert isinstance(get_tracker("test-fake"), FakeTracker)
    with pytest.raises(ValueError, match="already registered"):
        register_tracker("test-fake")(FakeTracker)


def _make_idle_fake() -> FakeTracker:
    return FakeTracker(lambda i: [])


def test_mediapipe_missing_names_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # makes `import mediapipe` raise ImportError
    with pytest.raises(ImportError, match="--no-deps -r dataset_scripts/requirements-hand-tracking.txt"):
        get_tracker("mediapipe")


def test_hand_detection_validates_shapes() -> None:
    with pytest.raises(ValueError, match="handedness"):
        HandDetection("both", 0.9, np.zeros((21, 2)), np.zeros((21, 3)))
    with pytest.raises(ValueError, match="image_landmarks"):
        HandDetection("left", 0.9, np.zeros((20, 2)), np.zeros((21, 3)))


# ------------------------------------------------------------------------------------------------------------
# The source's clip logic, with the fake tracker
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture
def video_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "clip.mp4", 90, fps=30, size=(96, 64))  # 3 s -> 90 clip frames at 0.5x
    return folder


def test_source_registered() -> None:
    assert get_source("video") is VideoSource


def test_confident_right_hand_is_pseudo_labelled_and_matches_truth(video_dir: Path) -> None:
    tracker = FakeTracker(lambda i: [("right", 0.9)])
    rows, source = ingest(video_dir, tracker)
    assert len(rows) == 1 and tracker.calls == 1
    row = rows[0]
    assert row["id"] == "video-wild-train-000000" and row["split"] == "train" and row["domain"] == "wild"
    assert row["num_frames"] == 90 and row["fps"] == 15.0
    assert row["labelled"] and row["label_source"] == "pseudo"
    assert row["label_confidence"] == pytest.approx(0.9)
    assert row["hands_present"] == [False, True]
    motion = row["motion"]
    assert motion.shape == (90, 2, 162) and motion.dtype == np.float32
    assert not motion[:, 0].any()  # absent hand: zeros
    joints = motion[:, 1, JOINTS_XYZ].reshape(90, 21, 3)
    assert np.linalg.norm(joints - tracker.truth["right"][:90], axis=-1).mean() < 0.003
    assert len(row["boundary_frames"]) == math.ceil(90 / CHUNK_FRAMES) + 1
    assert decode_image(row["first_frame"]).shape == (64, 96, 3)
    scene = json.loads(row["scene"])
    assert scene["video"] == "clip.mp4" and scene["playback_speed"] == 0.5 and scene["intrinsics_assumed"]
    assert scene["start_s"] == 0.0 and scene["end_s"] == pytest.approx(3.0)
    assert row["camera_intrinsics"] == pytest.approx(list(Intrinsics.from_fov(96, 64).as_tuple()))
    assert row["task_type"] == "motion_continuation"  # labelled, no instruction: templated continuation
    assert source.report.counts["rows_labelled"] == 1


def test_low_confidence_rows_are_unlabelled_and_threshold_is_configurable(video_dir: Path) -> None:
    rows, _ = ingest(video_dir, FakeTracker(lambda i: [("right", 0.6)]))
    (row,) = rows
    assert not row["labelled"] and row["motion"] is None and row["label_source"] == "none"
    assert row["label_confidence"] == 0.0 and row["task_type"] == "video_only"
    assert json.loads(row["scene"])["confidence"] == pytest.approx(0.6)
    rows, _ = ingest(video_dir, FakeTracker(lambda i: [("right", 0.6)]), min_confidence=0.5)
    assert rows[0]["labelled"] and rows[0]["label_confidence"] == pytest.approx(0.6)


def test_presence_filter_keeps_hand_segments_and_drops_handless_video(tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "a_hand_first_second.mp4", 120, fps=30)
    write_video(folder / "b_no_hand.mp4", 60, fps=30)
    calls = {"n": 0}

    def schedule(position: int) -> list[tuple[str, float]]:
        return [("left", 0.95)] if position < 30 else []

    class PerVideo(FakeTracker):
        def track(self, frames: Iterable[np.ndarray]) -> list[list[HandDetection]]:
            calls["n"] += 1
            self.schedule = schedule if calls["n"] == 1 else (lambda i: [])
            return super().track(frames)

    rows, source = ingest(folder, PerVideo(schedule))
    assert len(rows) == 1
    assert rows[0]["num_frames"] == 30 and rows[0]["hands_present"] == [True, False] and rows[0]["labelled"]
    assert source.report.counts["dropped_no_hand"] == 1
    assert [v.status for v in source.report.videos] == ["ok", "dropped_no_hand"]


def test_sparse_detections_fail_the_presence_fraction(video_dir: Path) -> None:
    sparse = FakeTracker(lambda i: [("right", 0.9)] if i % 3 == 0 else [])
    rows, source = ingest(video_dir, sparse)
    assert rows == [] and source.report.counts["dropped_low_presence"] == 1
    rows, _ = ingest(video_dir, sparse, min_presence=0.3)
    (row,) = rows
    assert not row["labelled"]  # 0.9 x 1/3 detection rate is far below 0.65
    assert json.loads(row["scene"])["confidence"] == pytest.approx(0.9 * 30 / 88, abs=0.02)


def test_short_gaps_are_interpolated_long_gaps_unlabel_the_row(video_dir: Path) -> None:
    short_gap = FakeTracker(lambda i: [] if 40 <= i < 45 else [("right", 0.95)])
    (row,), _ = ingest(video_dir, short_gap)
    assert row["labelled"] and row["num_frames"] == 90
    joints = row["motion"][:, 1, JOINTS_XYZ].reshape(90, 21, 3)
    truth = short_gap.truth["right"][:90]
    assert np.linalg.norm(joints[40:45] - truth[40:45], axis=-1).mean() < 0.01  # interpolated, smooth motion

    # Right hand everywhere, left hand present (70/90 frames) but gone for 20 > 8 frames: no trustworthy label.
    long_gap = FakeTracker(lambda i: [("right", 0.95)] + ([] if 30 <= i < 50 else [("left", 0.95)]))
    (row,), _ = ingest(video_dir, long_gap, min_confidence=0.5)
    assert row["hands_present"] == [True, True] and not row["labelled"] and row["motion"] is None
    assert "left hand missing for 20 frames" in json.loads(row["scene"])["unlabelled_reason"]


def test_duplicate_handedness_keeps_the_best_score(video_dir: Path) -> None:
    tracker = FakeTracker(lambda i: [("right", 0.7), ("right", 0.9)])
    (row,), _ = ingest(video_dir, tracker)
    assert row["hands_present"] == [False, True] and row["label_confidence"] == pytest.approx(0.9)


def test_none_tracker_keeps_everything_unlabelled_and_lab_plays_real_time(tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "long.mp4", 300, fps=30)  # 10 s of footage
    rows, _ = ingest(folder, "none")
    assert [r["num_frames"] for r in rows] == [150, 150]  # 0.5x: 20 s of clip, two 10 s clips
    assert all(not r["labelled"] and r["hands_present"] == [True, True] for r in rows)
    assert all(r["task_type"] == "video_only" for r in rows)
    assert not json.loads(rows[0]["scene"])["hands_present_known"]
    rows, _ = ingest(folder, "none", domain="lab")
    assert [r["num_frames"] for r in rows] == [150] and rows[0]["domain"] == "lab"
    assert json.loads(rows[0]["scene"])["playback_speed"] == 1.0
    rows, _ = ingest(folder, "none", playback_speed=0.25, max_clip_seconds=8)
    assert sum(r["num_frames"] for r in rows) == 600 and max(r["num_frames"] for r in rows) <= 120


def test_gif_frames_are_tracked_once_and_repeated(tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    write_gif(folder / "anim.gif", [100] * 20)  # 10 fps, 2 s -> 60 clip frames at 0.5x
    tracker = FakeTracker(lambda i: [("right", 0.9)])
    (row,), _ = ingest(folder, tracker)
    assert row["num_frames"] == 60 and len(tracker.frame_shapes) == 20
    joints = row["motion"][:, 1, JOINTS_XYZ].reshape(60, 21, 3)
    np.testing.assert_allclose(joints[0], joints[2], atol=1e-5)  # one source frame -> three identical labels


def test_instructions_sidecar_metadata_and_templates(tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        write_video(folder / name, 30, fps=30)
    (folder / "a.txt").write_text("Pick up the red cup.\n")
    (folder / "metadata.jsonl").write_text(
        json.dumps({"file_name": "b.mp4", "instruction": "Wave hello.", "split": "test_wild"}) + "\n"
    )
    (folder / "photo.jpg").write_bytes(b"not decoded, only counted")
    (folder / "notes.csv").write_text("x\n")
    (folder / "broken.mp4").write_bytes(b"\x00" * 100)
    rows, source = ingest(folder, FakeTracker(lambda i: [("right", 0.9)]))
    by_video = {json.loads(r["scene"])["video"]: r for r in rows}
    assert by_video["a.mp4"]["instruction"] == "Pick up the red cup."
    assert by_video["a.mp4"]["task_type"] == "motion_generation"
    assert by_video["b.mp4"]["instruction"] == "Wave hello." and by_video["b.mp4"]["split"] == "test_wild"
    assert by_video["b.mp4"]["id"].startswith("video-wild-test_wild-")
    assert by_video["c.mp4"]["instruction"]  # templated
    assert by_video["c.mp4"]["task_type"] == "motion_continuation"
    counts = source.report.counts
    assert (counts["skipped_image"], counts["skipped_unsupported"], counts["skipped_undecodable"]) == (1, 1, 1)
    assert len({r["id"] for r in rows}) == len(rows) == 3


def test_metadata_errors_name_the_line_and_fix(tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "metadata.jsonl").write_text('{"instruction": "no file name"}\n')
    with pytest.raises(ValueError, match=r"metadata.jsonl:1: .*file_name"):
        ingest(folder, "none")


def test_too_short_video_is_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "blink.mp4", 10, fps=30)  # 1/3 s -> 10 clip frames at 0.5x, < 15
    rows, source = ingest(folder, "none")
    assert rows == [] and source.report.counts["skipped_too_short"] == 1


def test_mirrored_footage_is_flipped_back(video_dir: Path) -> None:
    plain, _ = ingest(video_dir, "none")
    mirrored, _ = ingest(video_dir, "none", mirrored=True)
    a, b = decode_image(plain[0]["first_frame"]), decode_image(mirrored[0]["first_frame"])
    assert a[:10, :10, 0].mean() > 200 and b[:10, -10:, 0].mean() > 200  # the red marker changed sides


def test_bad_options_name_the_option(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="domain"):
        VideoSource(tmp_path, tracker="none", domain="outdoor")
    with pytest.raises(ValueError, match="max_clip_seconds"):
        VideoSource(tmp_path, tracker="none", max_clip_seconds=12)
    with pytest.raises(FileNotFoundError, match="root"):
        VideoSource(tmp_path / "missing", tracker="none")


# ------------------------------------------------------------------------------------------------------------
# Real clips with MediaPipe
# ------------------------------------------------------------------------------------------------------------

REAL_SUBSET = (
    "right_hand_finger_motions_front_view.mp4",
    "fridge_drawer_place_banana.mov",
    "fridge_drawer_take_out_banana_1.mov",
    "fridge_drawer_take_out_banana_2.mov",
    "hands_grasp_mug_on_table_box_overlay.gif",
    "hands_moving_on_table_box_overlay.gif",
    "webcam_gesture_pointing_one_finger.gif",
    "two_people_hand_signs.jpg",
)


@pytest.fixture(scope="module")
def real_ingest(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], VideoSource]:
    if not HANDS_DIR.is_dir():
        pytest.skip(f"{HANDS_DIR} is absent: the shared real hand clips are not laid out beside this checkout")
    try:
        tracker = get_tracker("mediapipe")
    except ImportError:
        pytest.skip(f"mediapipe is not installed; install it with: {trackers.MEDIAPIPE_INSTALL_COMMAND}")
    folder = tmp_path_factory.mktemp("real_hands")
    for name in REAL_SUBSET:  # links, not copies: the licensed files stay where they are
        (folder / name).symlink_to(HANDS_DIR / name)
    # 5.2 s of the 20.7 s front-view clip keep the test short; every other file is shorter than that.
    source = VideoSource(folder, tracker=tracker, progress=False, max_video_seconds=5.2, track_max_side=640)
    rows = list(source.iter_rows())
    for row in rows:
        validate_row(row)
    return rows, source


def _rows_of(rows: list[dict], name: str) -> list[dict]:
    return [r for r in rows if json.loads(r["scene"])["video"] == name]


def test_real_front_view_right_hand_is_pseudo_labelled(real_ingest: tuple[list[dict], VideoSource]) -> None:
    rows = _rows_of(real_ingest[0], "right_hand_finger_motions_front_view.mp4")
    assert sum(r["num_frames"] for r in rows) == 156  # 5.2 s of footage at 0.5x = 10.4 s of clip
    for row in rows:
        assert row["labelled"] and row["label_source"] == "pseudo" and row["label_confidence"] >= 0.9
        assert row["hands_present"] == [False, True]  # MediaPipe says "Left": swapped for camera footage
        scene = json.loads(row["scene"])
        assert scene["fit_residual_mm"]["right"] < 10.0
        wrist_depth = row["motion"][:, 1, WRIST_TRANSL][:, 2]
        assert 0.15 < float(np.median(wrist_depth)) < 1.5  # a hand raised in front of a desk camera


def test_real_fridge_clips_mostly_unlabelled_or_dropped(real_ingest: tuple[list[dict], VideoSource]) -> None:
    rows, source = real_ingest
    fridge = [v for v in source.report.videos if v.file_name.startswith("fridge")]
    assert len(fridge) == 3 and all(v.decoded_frames == v.source_frames for v in fridge)
    # MediaPipe finds the foreshortened, door-hidden hand in a few frames at most: never a confident label.
    assert not any(r["labelled"] for r in _rows_of(rows, "fridge_drawer_place_banana.mov"))
    clip_frames = sum(v.clip_frames for v in fridge)
    labelled_frames = sum(r["num_frames"] for v in fridge for r in v.rows if r["labelled"])
    assert labelled_frames < 0.25 * clip_frames


def test_real_gifs_are_processed(real_ingest: tuple[list[dict], VideoSource]) -> None:
    rows, source = real_ingest
    gifs = {v.file_name: v for v in source.report.videos if v.file_name.endswith(".gif")}
    assert len(gifs) == 3 and all(v.status == "ok" and v.decoded_frames == v.source_frames for v in gifs.values())
    two_hands = _rows_of(rows, "hands_grasp_mug_on_table_box_overlay.gif") + _rows_of(
        rows, "hands_moving_on_table_box_overlay.gif"
    )
    assert two_hands and all(r["hands_present"] == [True, True] for r in two_hands)
    pointing = _rows_of(rows, "webcam_gesture_pointing_one_finger.gif")
    assert pointing and pointing[0]["hands_present"][1]
    assert any(r["labelled"] for r in two_hands + pointing)
    assert source.report.counts["skipped_image"] == 1
