"""Lab converters: the H2O reader on a fixture written in H2O's documented on-disk format.

The fixture is three takes laid out as the H2O README documents them (``subjectN/<scene>/<take>/cam4/{rgb,
hand_pose, action_label, cam_intrinsics.txt}``, 30 fps, ``{frame:06d}`` names, 128 numbers per hand_pose file),
with joints from the project's own skeleton forward kinematics in front of a known camera, so every label the
converter writes can be checked against the truth. Frame images encode their frame number in the red channel,
so frame/label alignment after resampling is checked too.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from dataset_scripts.schema import validate_row
from dataset_scripts.sources.base import get_source
from dataset_scripts.sources.h2o import HAND_POSE_VALUES, H2OConverter, h2o_instruction
from dataset_scripts.sources.lab_converter import TEMPLATE_INSTRUCTION, LabFormatError, hash_split
from modeling_jala.hand_jala import JOINTS_XYZ, WRIST_TRANSL, HandSkeleton, axis_angle_to_matrix

REPO_ROOT = Path(__file__).resolve().parent.parent
FX, FY, CX, CY, WIDTH, HEIGHT = 120.0, 118.0, 81.0, 47.5, 160, 96
#: Fitted joints (FK of the D162 fit) vs the joints written to hand_pose, metres: same skeleton family, so the
#: fit is near exact; a unit slip (mm vs m) or a swapped hand would be off by centimetres to metres.
MEAN_TOL_M, MAX_TOL_M = 0.001, 0.003
# Take -> (frames at 30 fps, per-frame action ids or None, left valid frames, right valid frames).
TAKES = {
    "subject1/h1/0": (72, [1] * 36 + [9] * 36, range(72), range(72)),
    "subject1/h1/1": (40, None, range(0), [f for f in range(40) if f != 20]),
    "subject2/k1/0": (64, [23] * 64, range(30), range(64)),
}


def hand_track(num_frames: int, handedness: str, seed: int) -> np.ndarray:
    """(F, 21, 3) camera-frame joints, metres: a hand of 1.08x the default size moving in front of the camera."""
    skeleton = HandSkeleton(bone_scale=1.08)
    generator = torch.Generator().manual_seed(seed)
    start, end = skeleton.sample_angles(2, generator=generator, dtype=torch.float64)
    phase = torch.linspace(0.0, 1.0, num_frames, dtype=torch.float64)
    angles = skeleton.clamp_angles(0.5 * (start + (end - start) * phase[:, None, None]))
    axis_angle = torch.stack((0.3 + 0.8 * phase, -0.4 + 0.3 * phase, 0.1 * torch.ones_like(phase)), dim=-1)
    side = 1.0 if handedness == "right" else -1.0
    transl = torch.stack((side * (0.07 + 0.04 * phase), 0.03 - 0.05 * phase, 0.42 + 0.1 * phase), dim=-1)
    rotations = skeleton.joint_rotations_from_angles(angles)
    return skeleton.forward_kinematics(
        axis_angle_to_matrix(axis_angle), transl, rotations, handedness=handedness
    ).numpy()


def frame_image(number: int) -> np.ndarray:
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[..., 0] = 3 * number
    image[..., 1] = 60
    image[..., 2] = 200
    return image


def write_take(root: Path, take: str, camera: str, with_actions: bool = True) -> dict[str, np.ndarray]:
    """Write one camera folder of a take in H2O's format; returns the true joints per hand (F, 21, 3)."""
    num_frames, actions, left_valid, right_valid = TAKES[take]
    seed = sum(map(ord, take))
    truth = {"left": hand_track(num_frames, "left", seed), "right": hand_track(num_frames, "right", seed + 1)}
    folder = root / take / camera
    for name in ("rgb", "hand_pose") + (("action_label",) if actions and with_actions else ()):
        (folder / name).mkdir(parents=True)
    (folder / "cam_intrinsics.txt").write_text(f"{FX} {FY} {CX} {CY} {WIDTH} {HEIGHT}\n")
    for frame in range(num_frames):
        Image.fromarray(frame_image(frame)).save(folder / "rgb" / f"{frame:06d}.png")
        values = []
        for hand, valid in (("left", left_valid), ("right", right_valid)):
            flag = frame in valid
            values += [float(flag), *(truth[hand][frame].ravel() if flag else np.zeros(63))]
        (folder / "hand_pose" / f"{frame:06d}.txt").write_text(" ".join(f"{v:.8f}" for v in values) + " \n")
        if actions and with_actions:
            (folder / "action_label" / f"{frame:06d}.txt").write_text(f"{actions[frame]}\n")
    return truth


@pytest.fixture(scope="module")
def h2o_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    """Three cam4 takes, plus a cam0 view of the first take (no action labels of its own, as in H2O)."""
    root = tmp_path_factory.mktemp("h2o")
    truth = {take: write_take(root, take, "cam4") for take in TAKES}
    write_take(root, "subject1/h1/0", "cam0", with_actions=False)
    return root, truth


@pytest.fixture(scope="module")
def converted(h2o_root: tuple[Path, dict]) -> tuple[list[dict], H2OConverter]:
    converter = H2OConverter(h2o_root[0], progress=False)
    rows = list(converter.iter_rows())
    return rows, converter


def _take(row: dict) -> str:
    return json.loads(row["scene"])["take"]


def _rows_by_take(rows: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(_take(row), []).append(row)
    return grouped


def test_registered_as_source() -> None:
    assert get_source("h2o") is H2OConverter
    assert h2o_instruction(0) is None
    assert h2o_instruction(1) == "Grab the book."
    assert h2o_instruction(24) == "Take out the espresso."


def test_rows_validate_and_resample_to_15_fps(converted: tuple[list[dict], H2OConverter]) -> None:
    rows, converter = converted
    for row in rows:
        validate_row(row)
        assert (row["domain"], row["label_source"], row["labelled"], row["label_confidence"]) == (
            "lab",
            "exact",
            True,
            1.0,
        )
        assert row["source"] == "h2o" and row["id"].startswith(f"h2o-lab-{row['split']}-")
        assert row["camera_intrinsics"] == pytest.approx([FX, FY, CX, CY])  # frames stored at full size here
        # 30 fps -> 15 fps: every other source frame, so T clip frames span 2 (T - 1) source frames.
        first, last = json.loads(row["scene"])["source_frames"]
        assert last - first == 2 * (row["num_frames"] - 1)
    lengths = {take: [row["num_frames"] for row in group] for take, group in _rows_by_take(rows).items()}
    # 72 frames, two 36-frame actions -> 18 + 18; 40 frames -> 20; 64 frames, left lost at frame 30 -> 15 + 17.
    assert lengths == {"subject1/h1/0": [18, 18], "subject1/h1/1": [20], "subject2/k1/0": [15, 17]}
    assert len({row["id"] for row in rows}) == len(rows) == converter.report["rows"] == 5
    assert converter.report["sequences"] == 3  # cam0 is not converted by default


def test_boundary_frames_are_the_labelled_source_frames(converted: tuple[list[dict], H2OConverter]) -> None:
    for row in converted[0]:
        first, _ = json.loads(row["scene"])["source_frames"]
        boundaries = [min(15 * k, row["num_frames"] - 1) for k in range(len(row["boundary_frames"]))]
        for k, image in zip(boundaries, row["boundary_frames"], strict=True):
            red = np.asarray(Image.open(io.BytesIO(image["bytes"])))[..., 0].mean()
            assert abs(red - 3 * (first + 2 * k)) < 3


def test_fitted_joints_reproduce_the_written_joints(
    converted: tuple[list[dict], H2OConverter], h2o_root: tuple[Path, dict]
) -> None:
    truth = h2o_root[1]
    for row in converted[0]:
        scene = json.loads(row["scene"])
        first, _ = scene["source_frames"]
        frames = first + 2 * np.arange(row["num_frames"])
        _, _, left_valid, right_valid = TAKES[scene["take"]]
        for slot, (hand, valid) in enumerate((("left", left_valid), ("right", right_valid))):
            motion = np.asarray(row["motion"])[:, slot]
            if not row["hands_present"][slot]:
                assert not motion.any(), "an absent hand's slot must be zeros"
                continue
            joints = motion[:, JOINTS_XYZ].reshape(-1, 21, 3)
            error = np.linalg.norm(joints - truth[scene["take"]][hand][frames], axis=-1).mean(axis=-1)
            labelled = np.isin(frames, list(valid))
            assert error[labelled].mean() < MEAN_TOL_M and error[labelled].max() < MAX_TOL_M, (hand, error)
            assert error[~labelled].max(initial=0.0) < 0.005  # interpolated gap frames: linear, close to truth
            assert scene["fit_residual_mm"][hand] < 1.0
            np.testing.assert_allclose(motion[:, WRIST_TRANSL], truth[scene["take"]][hand][frames, 0], atol=0.002)


def test_left_and_right_hands_land_in_their_slots(converted: tuple[list[dict], H2OConverter]) -> None:
    """The fixture's left hand is on the image's left (x < 0 in the camera frame), the right hand on its right."""
    for row in converted[0]:
        motion = np.asarray(row["motion"])
        if row["hands_present"][0]:
            assert (motion[:, 0, WRIST_TRANSL][:, 0] < 0).all()
        if row["hands_present"][1]:
            assert (motion[:, 1, WRIST_TRANSL][:, 0] > 0).all()


def test_hands_present_follow_the_validity_flags(converted: tuple[list[dict], H2OConverter]) -> None:
    present = {take: [row["hands_present"] for row in group] for take, group in _rows_by_take(converted[0]).items()}
    assert present == {
        "subject1/h1/0": [[True, True], [True, True]],
        "subject1/h1/1": [[False, True]],  # left flag 0 throughout
        "subject2/k1/0": [[True, True], [False, True]],  # left flag 0 from frame 30: the clip is cut there
    }
    (only_right,) = _rows_by_take(converted[0])["subject1/h1/1"]
    assert json.loads(only_right["scene"])["interpolated_frames"] == {"right": 1}  # frame 20's flag is 0


def test_instructions_come_from_the_action_labels(converted: tuple[list[dict], H2OConverter]) -> None:
    instructions = {take: [row["instruction"] for row in group] for take, group in _rows_by_take(converted[0]).items()}
    assert instructions == {
        "subject1/h1/0": ["Grab the book.", "Place the book."],
        "subject1/h1/1": [TEMPLATE_INSTRUCTION],  # no action_label folder
        "subject2/k1/0": ["Pour the milk.", "Pour the milk."],
    }
    assert {row["task_type"] for row in converted[0]} == {"motion_generation"}


def test_split_is_a_deterministic_hash_of_the_take() -> None:
    names = [f"subject{i % 7}/scene{i}/{i % 11}" for i in range(2000)]
    splits = [hash_split(name, 0.3) for name in names]
    assert splits == [hash_split(name, 0.3) for name in names]
    assert 0.25 < splits.count("test_lab") / len(names) < 0.35
    assert {hash_split(name, 0.0) for name in names} == {"train"}
    assert {hash_split(name, 1.0) for name in names} == {"test_lab"}
    assert [hash_split(name, 0.3, salt="b") for name in names] != splits  # the salt draws another partition


def _salt_splitting(takes: list[str], fraction: float) -> str:
    """The first salt whose partition puts the fixture's takes in both splits (so the test sees both)."""
    return next(f"s{i}" for i in range(100) if len({hash_split(take, fraction, f"s{i}") for take in takes}) == 2)


def test_views_of_a_take_share_its_split_and_no_take_straddles(h2o_root: tuple[Path, dict]) -> None:
    salt = _salt_splitting(list(TAKES), 0.5)
    converter = H2OConverter(
        h2o_root[0], cameras=("cam0", "cam4"), test_fraction=0.5, split_salt=salt, fit_iterations=0, progress=False
    )
    rows = list(converter.iter_rows())
    splits = {(take, row["split"]) for take, group in _rows_by_take(rows).items() for row in group}
    assert {take for take, _ in splits} == set(TAKES) and len(splits) == len(TAKES)  # one split per take
    assert {split for _, split in splits} == {"train", "test_lab"}
    assert all(row["split"] == hash_split(_take(row), 0.5, salt) for row in rows)
    cam0 = [row for row in rows if json.loads(row["scene"])["camera"] == "cam0"]
    assert [row["instruction"] for row in cam0] == ["Grab the book.", "Place the book."]  # the take's cam4 labels
    assert [json.loads(row["scene"])["action_labels"] for row in cam0] == ["cam4", "cam4"]
    forced = H2OConverter(h2o_root[0], split="test_lab", fit_iterations=0, progress=False)
    assert {row["split"] for row in forced.iter_rows()} == {"test_lab"}


def _single_take(tmp_path: Path) -> Path:
    write_take(tmp_path, "subject1/h1/1", "cam4")
    return tmp_path / "subject1/h1/1/cam4"


def test_malformed_hand_pose_file_names_the_file_and_the_fix(tmp_path: Path) -> None:
    folder = _single_take(tmp_path)
    broken = folder / "hand_pose" / "000004.txt"
    values = broken.read_text().split()
    broken.write_text(" ".join(values[:-1]))  # one number short
    with pytest.raises(LabFormatError) as error:
        list(H2OConverter(tmp_path, progress=False).iter_rows())
    message = str(error.value)
    assert str(broken) in message and f"{HAND_POSE_VALUES - 1} numbers, expected {HAND_POSE_VALUES}" in message
    assert "re-extract" in message


def test_missing_intrinsics_names_the_file_and_the_fix(tmp_path: Path) -> None:
    folder = _single_take(tmp_path)
    (folder / "cam_intrinsics.txt").unlink()
    with pytest.raises(LabFormatError) as error:
        list(H2OConverter(folder, progress=False).iter_rows())  # root = the camera folder itself
    message = str(error.value)
    assert str(folder / "cam_intrinsics.txt") in message and "fx fy cx cy width height" in message


def test_other_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cameras=cam0"):
        list(H2OConverter(tmp_path, progress=False).iter_rows())
    folder = _single_take(tmp_path)
    (folder / "action_label").mkdir(exist_ok=True)
    (folder / "action_label" / "000000.txt").write_text("37\n")
    with pytest.raises(LabFormatError, match="one action id in 0..36"):
        list(H2OConverter(tmp_path, progress=False).iter_rows())
    pose = folder / "hand_pose" / "000003.txt"
    values = np.array(pose.read_text().split(), dtype=float)
    values[65:] *= 1000.0  # right hand joints (after its flag, number 65) in millimetres
    pose.write_text(" ".join(map(str, values)))
    with pytest.raises(LabFormatError, match="look like millimetres"):
        list(H2OConverter(tmp_path, progress=False).iter_rows())
    shutil.rmtree(folder / "hand_pose")
    with pytest.raises(LabFormatError, match="hand_pose is missing"):
        list(H2OConverter(tmp_path, progress=False).iter_rows())
    with pytest.raises(ValueError, match="'split'"):
        H2OConverter(tmp_path, split="test_wild")


def test_cli_build_reads_back_as_a_streaming_lab_config(h2o_root: tuple[Path, dict], tmp_path: Path) -> None:
    root = h2o_root[0]
    salt = _salt_splitting(list(TAKES), 0.5)
    repo = tmp_path / "repo"
    spec = f"h2o:root={root},cameras=cam0+cam4,test_fraction=0.5,split_salt={salt},image_max_side=64"
    command = [sys.executable, "-m", "dataset_scripts", "build", "--output", str(repo), "--source", spec]
    result = subprocess.run(
        [*command, "--no-preview", "--no-progress"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = datasets.load_dataset(str(repo), "lab", streaming=True)
    assert set(loaded) == {"train", "test_lab"}
    rows = [row for split in loaded for row in loaded[split]]
    assert len(rows) == 7  # 5 cam4 clips + 2 of take subject1/h1/0's cam0 view
    for split in loaded:
        for row in loaded[split]:
            assert split == hash_split(_take(row), 0.5, salt)
    for row in rows:
        assert row["source"] == "h2o" and row["labelled"] and row["domain"] == "lab"
        assert np.asarray(row["motion"]).shape == (row["num_frames"], 2, 162)
        # 160x96 frames stored at 64x38: the intrinsics describe the stored frames.
        assert row["first_frame"].size == (64, 38)
        assert row["camera_intrinsics"] == pytest.approx([FX * 0.4, FY * 38 / 96, CX * 0.4, CY * 38 / 96], rel=1e-5)
