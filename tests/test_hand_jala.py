"""modeling_jala/hand_jala.py: MANO-D162 layout, rotations, kinematics, mirroring and keypoint fitting.

Every expected value here is computed independently of the code under test (by hand, from the documented
conventions, or with numpy/QR), so that a wrong convention fails a test instead of agreeing with itself.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from modeling_jala.hand_jala import (
    D162_DIM,
    FINGER_PART_DIM,
    FINGER_ROT6D,
    JOINTS_XYZ,
    KEYPOINT_NAMES,
    KEYPOINT_PARENTS,
    MANO_JOINT_ORDER,
    MANO_JOINT_TO_KEYPOINT,
    NUM_FINGER_JOINTS,
    NUM_JOINTS,
    WRIST_PART_DIM,
    WRIST_ROT6D,
    WRIST_TRANSL,
    HandSkeleton,
    JointLimits,
    axis_angle_to_matrix,
    hand_skeleton_edges,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    merge_parts,
    mirror_keypoints,
    mirror_motion,
    rot6d_to_matrix,
    split_parts,
    validate_motion,
)

IDENTITY = torch.eye(3, dtype=torch.float64)
ORIGIN = torch.zeros(3, dtype=torch.float64)
WORLD_MIRROR = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
LOCAL_MIRROR = torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))


def vec(values: list[float]) -> Tensor:
    return torch.tensor(values, dtype=torch.float64)


def rest_keypoints(skeleton: HandSkeleton, handedness: str = "right") -> Tensor:
    return skeleton.forward_kinematics(IDENTITY, ORIGIN, IDENTITY.expand(15, 3, 3), handedness=handedness)


def random_rotations(count: int, seed: int) -> Tensor:
    """Haar-random rotations from the QR decomposition of Gaussian matrices (independent of the code)."""
    generator = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(count, 3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[..., None, :]
    flip = torch.linalg.det(q) < 0
    q[flip, :, 2] *= -1.0
    return q


def random_pose(skeleton: HandSkeleton, count: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """In-limit angles, random wrist rotations and camera-like translations (about 0.5 m in front)."""
    generator = torch.Generator().manual_seed(seed)
    angles = skeleton.sample_angles((count,), generator=generator, dtype=torch.float64)
    transl = torch.randn(count, 3, generator=generator, dtype=torch.float64) * 0.1
    transl[:, 2] += 0.5
    return random_rotations(count, seed + 1), transl, angles


@pytest.fixture(scope="module")
def skeleton() -> HandSkeleton:
    return HandSkeleton()


# ------------------------------------------------------------------------------------------------------------
# Layout and names
# ------------------------------------------------------------------------------------------------------------


def test_layout_slices_tile_d162_and_names_agree() -> None:
    slices = (FINGER_ROT6D, WRIST_ROT6D, WRIST_TRANSL, JOINTS_XYZ)
    assert [s.start for s in slices[1:]] == [s.stop for s in slices[:-1]]
    assert slices[0].start == 0 and slices[-1].stop == D162_DIM
    assert WRIST_PART_DIM + FINGER_PART_DIM + 3 == D162_DIM  # joint 0 is the translation, stored once
    assert len(KEYPOINT_NAMES) == len(KEYPOINT_PARENTS) == NUM_JOINTS
    assert len(MANO_JOINT_ORDER) == len(MANO_JOINT_TO_KEYPOINT) == NUM_FINGER_JOINTS
    assert all(parent < child for child, parent in enumerate(KEYPOINT_PARENTS))
    names = {name: KEYPOINT_NAMES[k] for name, k in zip(MANO_JOINT_ORDER, MANO_JOINT_TO_KEYPOINT, strict=True)}
    assert names["index1"] == "index_mcp" and names["index3"] == "index_dip"
    assert names["pinky1"] == "pinky_mcp" and names["ring2"] == "ring_pip"
    assert names["thumb1"] == "thumb_cmc" and names["thumb3"] == "thumb_ip"
    edges = hand_skeleton_edges()
    assert len(edges) == 20 and (0, 9) in edges and (3, 4) in edges


# ------------------------------------------------------------------------------------------------------------
# Rotations
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rot6d_round_trip_and_layout(dtype: torch.dtype) -> None:
    rotations = random_rotations(256, seed=0).to(dtype)
    six = matrix_to_rot6d(rotations)
    assert six.shape == (256, 6)
    torch.testing.assert_close(six[:, :3], rotations[:, :, 0])  # [col0, col1], columns not rows
    torch.testing.assert_close(six[:, 3:], rotations[:, :, 1])
    atol = 1e-12 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(rot6d_to_matrix(six), rotations, atol=atol, rtol=0)


def test_rot6d_of_arbitrary_vectors_is_a_rotation() -> None:
    six = torch.randn(4, 128, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3.0
    matrix = rot6d_to_matrix(six)
    identity = torch.eye(3, dtype=torch.float64).expand_as(matrix)
    torch.testing.assert_close(matrix.transpose(-1, -2) @ matrix, identity, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(matrix), torch.ones(4, 128, dtype=torch.float64))
    # Gram-Schmidt keeps the first column's direction.
    torch.testing.assert_close(matrix[..., :, 0], torch.nn.functional.normalize(six[..., :3], dim=-1))


def test_axis_angle_matches_hand_computed_rotations() -> None:
    quarter_turn_z = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    expected = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(quarter_turn_z, expected, atol=1e-15, rtol=0)
    half_turn_x = axis_angle_to_matrix(torch.tensor([math.pi, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(half_turn_x, torch.diag(vec([1.0, -1.0, -1.0])), atol=1e-15, rtol=0)


def test_axis_angle_round_trip_including_near_zero_and_near_pi() -> None:
    generator = torch.Generator().manual_seed(2)
    axes = torch.nn.functional.normalize(torch.randn(7, 64, 3, generator=generator, dtype=torch.float64), dim=-1)
    angles = torch.tensor([0.0, 1e-9, 1e-6, 1e-3, 1.0, 3.0, math.pi - 1e-4], dtype=torch.float64)
    vectors = axes * angles[:, None, None]
    recovered = matrix_to_axis_angle(axis_angle_to_matrix(vectors))
    torch.testing.assert_close(recovered, vectors, atol=1e-9, rtol=0)
    # At pi (and within float noise of it) the axis sign is ambiguous: compare rotations and angles.
    near_pi = axes[0] * torch.tensor([math.pi - 1e-9, math.pi], dtype=torch.float64).repeat(32)[:, None]
    matrices = axis_angle_to_matrix(near_pi)
    back = matrix_to_axis_angle(matrices)
    torch.testing.assert_close(axis_angle_to_matrix(back), matrices, atol=1e-9, rtol=0)
    torch.testing.assert_close(back.norm(dim=-1), near_pi.norm(dim=-1), atol=1e-7, rtol=0)


def test_axis_angle_gradients_are_finite_at_zero_and_pi() -> None:
    vectors = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, math.pi]], dtype=torch.float64, requires_grad=True)
    axis_angle_to_matrix(vectors).sum().backward()
    assert torch.isfinite(vectors.grad).all()
    matrices = torch.stack((torch.eye(3), torch.diag(torch.tensor([-1.0, -1.0, 1.0])))).double().requires_grad_()
    matrix_to_axis_angle(matrices).sum().backward()
    assert torch.isfinite(matrices.grad).all()


# ------------------------------------------------------------------------------------------------------------
# Skeleton forward kinematics
# ------------------------------------------------------------------------------------------------------------


def test_rest_pose_is_a_plausible_adult_hand(skeleton: HandSkeleton) -> None:
    rest = rest_keypoints(skeleton)
    palm = rest[KEYPOINT_NAMES.index("middle_mcp")].norm()
    middle = (rest[KEYPOINT_NAMES.index("middle_tip")] - rest[KEYPOINT_NAMES.index("middle_mcp")]).norm()
    assert 0.09 <= palm <= 0.10 and 0.08 <= middle <= 0.09
    # Wrist frame: fingers along +x, thumb on +y, palm toward -z (thumb hangs slightly palmar).
    assert (rest[[8, 12, 16, 20], 0] > 0.14).all()
    assert rest[4, 1] > 0.05 and rest[20, 1] < -0.03 and rest[4, 2] < 0


def test_identity_pose_gives_cumulative_rest_offsets(skeleton: HandSkeleton) -> None:
    expected = torch.zeros(NUM_JOINTS, 3, dtype=torch.float64)
    for child, parent in enumerate(KEYPOINT_PARENTS):
        if parent >= 0:
            expected[child] = expected[parent] + skeleton.rest_offsets[child]
    transl = torch.tensor([0.1, -0.2, 0.5], dtype=torch.float64)
    keypoints = skeleton.forward_kinematics(IDENTITY, transl, IDENTITY.expand(15, 3, 3))
    torch.testing.assert_close(keypoints, expected + transl, atol=1e-15, rtol=0)
    zero_angles = skeleton.joint_rotations_from_angles(torch.zeros(15, 3, dtype=torch.float64))
    torch.testing.assert_close(zero_angles, IDENTITY.expand(15, 3, 3))
    # A skeleton built from these rest keypoints is the same skeleton.
    rebuilt = HandSkeleton(rest_keypoints=expected)
    torch.testing.assert_close(rebuilt.rest_offsets, skeleton.rest_offsets, atol=1e-15, rtol=0)


@pytest.fixture(scope="module")
def straight_index_skeleton() -> HandSkeleton:
    """Default hand whose index finger lies exactly along +x from (0.09, 0.02, 0): 40, 25, 20 mm bones."""
    rest = rest_keypoints(HandSkeleton())
    rest[5:9] = torch.tensor(
        [[0.09, 0.02, 0.0], [0.13, 0.02, 0.0], [0.155, 0.02, 0.0], [0.175, 0.02, 0.0]], dtype=torch.float64
    )
    return HandSkeleton(rest_keypoints=rest)


def _pose(skeleton: HandSkeleton, **angles: tuple[float, float, float]) -> Tensor:
    """Keypoints at identity wrist pose with the named MANO joints at (flexion, abduction, twist)."""
    table = torch.zeros(NUM_FINGER_JOINTS, 3, dtype=torch.float64)
    for name, value in angles.items():
        table[MANO_JOINT_ORDER.index(name)] = torch.tensor(value, dtype=torch.float64)
    rotations = skeleton.joint_rotations_from_angles(table)
    return skeleton.forward_kinematics(IDENTITY, ORIGIN, rotations)


def test_index_mcp_flexion_by_hand(straight_index_skeleton: HandSkeleton) -> None:
    rest = _pose(straight_index_skeleton)
    flexed = _pose(straight_index_skeleton, index1=(math.pi / 2, 0.0, 0.0))
    # 90 degrees at the MCP swings the whole finger straight down toward the palm (-z).
    expected = torch.tensor(
        [[0.09, 0.02, 0.0], [0.09, 0.02, -0.04], [0.09, 0.02, -0.065], [0.09, 0.02, -0.085]],
        dtype=torch.float64,
    )
    torch.testing.assert_close(flexed[5:9], expected, atol=1e-12, rtol=0)
    untouched = [k for k in range(NUM_JOINTS) if k not in (6, 7, 8)]
    torch.testing.assert_close(flexed[untouched], rest[untouched], atol=0, rtol=0)


def test_pip_dip_flexion_abduction_and_twist_by_hand(straight_index_skeleton: HandSkeleton) -> None:
    pip = torch.tensor([0.13, 0.02, 0.0], dtype=torch.float64)
    # PIP 90 degrees: DIP and tip hang below the PIP; the PIP itself does not move.
    flexed = _pose(straight_index_skeleton, index2=(math.pi / 2, 0.0, 0.0))
    torch.testing.assert_close(flexed[6], pip, atol=1e-12, rtol=0)
    torch.testing.assert_close(flexed[7], pip + vec([0.0, 0.0, -0.025]), atol=1e-12, rtol=0)
    torch.testing.assert_close(flexed[8], pip + vec([0.0, 0.0, -0.045]), atol=1e-12, rtol=0)
    # MCP and PIP at 90 degrees: the middle and distal bones point back toward the wrist (-x).
    curled = _pose(straight_index_skeleton, index1=(math.pi / 2, 0.0, 0.0), index2=(math.pi / 2, 0.0, 0.0))
    torch.testing.assert_close(curled[7], vec([0.065, 0.02, -0.04]), atol=1e-12, rtol=0)
    torch.testing.assert_close(curled[8], vec([0.045, 0.02, -0.04]), atol=1e-12, rtol=0)
    # DIP moves only the tip.
    dip_only = _pose(straight_index_skeleton, index3=(math.pi / 2, 0.0, 0.0))
    torch.testing.assert_close(dip_only[8], vec([0.155, 0.02, -0.02]), atol=1e-12, rtol=0)
    # Positive abduction swings toward the thumb side (+y).
    abducted = _pose(straight_index_skeleton, index1=(0.0, math.pi / 2, 0.0))
    torch.testing.assert_close(abducted[6], vec([0.09, 0.06, 0.0]), atol=1e-12, rtol=0)
    # Twisting the MCP by +90 degrees about the bone turns the PIP's flexion plane: it now bends toward +y.
    twisted = _pose(straight_index_skeleton, index1=(0.0, 0.0, math.pi / 2), index2=(math.pi / 2, 0.0, 0.0))
    torch.testing.assert_close(twisted[7], pip + vec([0.0, 0.025, 0.0]), atol=1e-12, rtol=0)


def test_wrist_rotation_and_translation_move_all_keypoints(skeleton: HandSkeleton) -> None:
    wrist_rot, transl, angles = random_pose(skeleton, 16, seed=3)
    joint_rots = skeleton.joint_rotations_from_angles(angles)
    local = skeleton.forward_kinematics(IDENTITY.expand(16, 3, 3), torch.zeros_like(transl), joint_rots)
    moved = skeleton.forward_kinematics(wrist_rot, transl, joint_rots)
    expected = local @ wrist_rot.transpose(-1, -2) + transl[:, None, :]
    torch.testing.assert_close(moved, expected, atol=1e-14, rtol=0)
    torch.testing.assert_close(moved[:, 0], transl)
    # Bone lengths are pose-invariant.
    edges = torch.tensor(hand_skeleton_edges())
    lengths = (moved[:, edges[:, 1]] - moved[:, edges[:, 0]]).norm(dim=-1)
    torch.testing.assert_close(lengths, skeleton.rest_offsets[edges[:, 1]].norm(dim=-1).expand(16, 20))


def test_forward_kinematics_batches_dtypes_and_gradients(skeleton: HandSkeleton) -> None:
    wrist_rot, transl, angles = random_pose(skeleton, 6, seed=4)
    batched = skeleton.forward_kinematics(
        wrist_rot.reshape(2, 3, 3, 3).float(),
        transl.reshape(2, 3, 3).float(),
        skeleton.joint_rotations_from_angles(angles.reshape(2, 3, 15, 3).float()),
    )
    assert batched.shape == (2, 3, NUM_JOINTS, 3) and batched.dtype == torch.float32
    flat = skeleton.forward_kinematics(wrist_rot, transl, skeleton.joint_rotations_from_angles(angles))
    torch.testing.assert_close(batched.reshape(6, NUM_JOINTS, 3).double(), flat, atol=1e-6, rtol=0)
    angles = angles.clone().requires_grad_(True)
    keypoints = skeleton.forward_kinematics(wrist_rot, transl, skeleton.joint_rotations_from_angles(angles))
    keypoints[:, KEYPOINT_NAMES.index("index_tip")].sum().backward()
    assert torch.isfinite(angles.grad).all()
    assert angles.grad[:, MANO_JOINT_ORDER.index("index1")].abs().sum() > 0
    assert angles.grad[:, MANO_JOINT_ORDER.index("ring1")].abs().sum() == 0  # the ring does not move the index


# ------------------------------------------------------------------------------------------------------------
# D162 assembly, parts, validation
# ------------------------------------------------------------------------------------------------------------


def test_to_d162_and_from_d162_round_trip(skeleton: HandSkeleton) -> None:
    wrist_rot, transl, angles = random_pose(skeleton, 8, seed=5)
    joint_rots = skeleton.joint_rotations_from_angles(angles)
    motion = skeleton.to_d162(wrist_rot, transl, joint_rots)
    assert motion.shape == (8, D162_DIM)
    torch.testing.assert_close(motion[:, WRIST_TRANSL], transl)
    torch.testing.assert_close(motion[:, JOINTS_XYZ].reshape(8, 21, 3)[:, 0], transl)
    torch.testing.assert_close(motion[:, WRIST_ROT6D], torch.cat((wrist_rot[..., 0], wrist_rot[..., 1]), -1))
    wrist_back, transl_back, joints_back = skeleton.from_d162(motion)
    torch.testing.assert_close(wrist_back, wrist_rot)
    torch.testing.assert_close(transl_back, transl)
    torch.testing.assert_close(joints_back, joint_rots)
    torch.testing.assert_close(skeleton.joint_angles_from_rotations(joints_back), angles)


def test_split_and_merge_parts(skeleton: HandSkeleton) -> None:
    wrist_rot, transl, angles = random_pose(skeleton, 10, seed=6)
    motion = skeleton.to_d162(wrist_rot, transl, skeleton.joint_rotations_from_angles(angles)).reshape(2, 5, 162)
    wrist, finger = split_parts(motion)
    assert wrist.shape == (2, 5, WRIST_PART_DIM) and finger.shape == (2, 5, FINGER_PART_DIM)
    torch.testing.assert_close(wrist, torch.cat((motion[..., 90:96], motion[..., 96:99]), dim=-1))
    joints = motion[..., 99:].reshape(2, 5, 21, 3)
    torch.testing.assert_close(finger[..., :90], motion[..., :90])
    torch.testing.assert_close(finger[..., 90:].reshape(2, 5, 20, 3), joints[..., 1:, :] - joints[..., :1, :])
    torch.testing.assert_close(merge_parts(wrist, finger), motion, atol=1e-15, rtol=0)
    # The finger part is relative to keypoint 0, not to the translation field.
    shifted = motion.clone()
    shifted[..., WRIST_TRANSL] += 1.0
    torch.testing.assert_close(split_parts(shifted)[1], finger, atol=0, rtol=0)
    # Merging arbitrary parts puts joint 0 at the translation and keeps the rest relative to it.
    generator = torch.Generator().manual_seed(7)
    wrist, finger = torch.randn(3, 9, generator=generator), torch.randn(3, 150, generator=generator)
    merged = merge_parts(wrist, finger)
    torch.testing.assert_close(merged[:, 99:102], wrist[:, 6:9])
    torch.testing.assert_close(split_parts(merged)[1], finger, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="merge_parts expects"):
        merge_parts(finger, wrist)


def test_validate_motion_names_the_problem() -> None:
    validate_motion(torch.zeros(4, 2, D162_DIM))
    with pytest.raises(
        ValueError, match=r"clip\.motion must have last dimension 162 \(MANO-D162.*got shape \(4, 161\)"
    ):
        validate_motion(torch.zeros(4, 161), name="clip.motion")
    bad = torch.zeros(3, D162_DIM)
    bad[1, 7] = float("nan")
    bad[2, 0] = float("inf")
    with pytest.raises(ValueError, match=r"motion has 2 non-finite value\(s\).*first at index \(1, 7\)"):
        validate_motion(bad)


# ------------------------------------------------------------------------------------------------------------
# Mirroring
# ------------------------------------------------------------------------------------------------------------


def test_mirror_motion_is_an_exact_involution() -> None:
    motion = torch.randn(5, 2, D162_DIM, generator=torch.Generator().manual_seed(8))
    assert torch.equal(mirror_motion(mirror_motion(motion)), motion)
    keypoints = motion[..., 99:].reshape(5, 2, 21, 3)
    assert torch.equal(mirror_keypoints(mirror_keypoints(keypoints)), keypoints)
    assert torch.equal(mirror_keypoints(keypoints)[..., 0], -keypoints[..., 0])


def test_mirror_follows_the_documented_formulas(skeleton: HandSkeleton) -> None:
    wrist_rot, transl, angles = random_pose(skeleton, 12, seed=9)
    joint_rots = skeleton.joint_rotations_from_angles(angles)
    mirrored = mirror_motion(skeleton.to_d162(wrist_rot, transl, joint_rots))
    wrist_left, transl_left, joints_left = skeleton.from_d162(mirrored)
    torch.testing.assert_close(wrist_left, WORLD_MIRROR @ wrist_rot @ LOCAL_MIRROR)
    torch.testing.assert_close(joints_left, LOCAL_MIRROR @ joint_rots @ LOCAL_MIRROR)
    torch.testing.assert_close(transl_left, transl @ WORLD_MIRROR)
    # FK_left(mirrored params) == M_w @ FK_right(params), with left rest offsets M_l @ right offsets.
    right = skeleton.forward_kinematics(wrist_rot, transl, joint_rots)
    left = skeleton.forward_kinematics(wrist_left, transl_left, joints_left, handedness="left")
    torch.testing.assert_close(left, right @ WORLD_MIRROR, atol=1e-14, rtol=0)
    torch.testing.assert_close(mirrored[:, 99:].reshape(12, 21, 3), left, atol=1e-14, rtol=0)
    rebuilt = skeleton.to_d162(wrist_left, transl_left, joints_left, handedness="left")
    torch.testing.assert_close(rebuilt, mirrored, atol=1e-14, rtol=0)
    # A left hand in its own wrist frame has the thumb on -y.
    rest_left = rest_keypoints(skeleton, handedness="left")
    assert rest_left[KEYPOINT_NAMES.index("thumb_tip"), 1] < -0.05


# ------------------------------------------------------------------------------------------------------------
# Limits
# ------------------------------------------------------------------------------------------------------------


def test_sample_within_limits_and_clamp_idempotent(skeleton: HandSkeleton) -> None:
    low, high = skeleton.limits.bounds(dtype=torch.float64)
    assert (low <= high).all() and low.shape == (15, 3)
    samples = skeleton.sample_angles((40, 50), generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    assert samples.shape == (40, 50, 15, 3)
    assert ((samples >= low) & (samples <= high)).all()
    assert torch.equal(skeleton.clamp_angles(samples), samples)
    wild = torch.randn(200, 15, 3, generator=torch.Generator().manual_seed(11), dtype=torch.float64) * 3.0
    clamped = skeleton.clamp_angles(wild)
    assert ((clamped >= low) & (clamped <= high)).all()
    assert torch.equal(skeleton.clamp_angles(clamped), clamped)
    # Samples of the same seed are reproducible; the PIP reaches beyond 90 degrees and still round-trips.
    assert torch.equal(
        samples,
        skeleton.sample_angles((40, 50), generator=torch.Generator().manual_seed(10), dtype=torch.float64),
    )
    assert high[MANO_JOINT_ORDER.index("index2"), 0] > math.pi / 2
    rotations = skeleton.joint_rotations_from_angles(samples)
    torch.testing.assert_close(skeleton.joint_angles_from_rotations(rotations), samples, atol=1e-9, rtol=0)


def test_joint_limits_validate_their_fields() -> None:
    assert JointLimits() == JointLimits.anatomical()
    with pytest.raises(ValueError, match="flexion needs 15"):
        JointLimits(flexion=((0.0, 1.0),) * 14)
    with pytest.raises(ValueError, match="twist for index1: low 1.0 must be <= high 0.0"):
        JointLimits(twist=((1.0, 0.0),) + JointLimits().twist[1:])


# ------------------------------------------------------------------------------------------------------------
# Keypoint fitting
# ------------------------------------------------------------------------------------------------------------


def _assert_consistent_fit(skeleton: HandSkeleton, motion: Tensor, handedness: str = "right") -> None:
    """The fitted D162's joint block is the FK of its own rotations (not a copy of the input)."""
    wrist_rot, transl, joint_rots = skeleton.from_d162(motion)
    joints = motion[..., 99:].unflatten(-1, (21, 3))
    scale = (joints[..., 9, :] - joints[..., 0, :]).norm(dim=-1) / skeleton.rest_offsets[9].norm().to(motion)
    fk = skeleton.forward_kinematics(wrist_rot, transl, joint_rots, handedness=handedness, bone_scale=scale)
    atol = 1e-9 if motion.dtype == torch.float64 else 1e-6
    torch.testing.assert_close(joints, fk, atol=atol, rtol=0)


def test_fit_reproduces_keypoints_of_in_limit_poses(skeleton: HandSkeleton) -> None:
    """Noise-free keypoints from the same skeleton have an exact solution, so what is left is the optimiser's
    convergence: measured 0.01 mm mean and 0.03 mm worst frame with the defaults. 0.5 mm per frame (a
    hundredth of a bone) leaves room for platform differences and still fails on any convention error."""
    wrist_rot, transl, angles = random_pose(skeleton, 48, seed=12)
    keypoints = skeleton.forward_kinematics(wrist_rot, transl, skeleton.joint_rotations_from_angles(angles))
    fit = skeleton.fit_keypoints(keypoints.float())
    assert fit.motion.shape == (48, D162_DIM) and fit.motion.dtype == torch.float32
    assert fit.residual_mm.max() < 0.5, fit.residual_mm.max()
    fitted = fit.motion[:, JOINTS_XYZ].reshape(48, 21, 3).double()
    assert ((fitted - keypoints).norm(dim=-1).mean(dim=-1) * 1000 - fit.residual_mm.double()).abs().max() < 1e-3
    torch.testing.assert_close(fit.bone_scale, torch.ones(48), atol=2e-3, rtol=0)
    low, high = skeleton.limits.bounds()
    assert ((fit.angles >= low - 1e-6) & (fit.angles <= high + 1e-6)).all()
    _assert_consistent_fit(skeleton, fit.motion)
    # The palm is rigid, so the wrist rotation and translation are recovered closely.
    wrist_back, transl_back, _ = skeleton.from_d162(fit.motion.double())
    torch.testing.assert_close(wrist_back, wrist_rot, atol=2e-3, rtol=0)
    torch.testing.assert_close(transl_back, transl, atol=1e-4, rtol=0)


def test_fit_with_noise_stays_at_the_noise_level(skeleton: HandSkeleton) -> None:
    """3 mm Gaussian noise per axis: the mean noise distance is 3 * 2 * sqrt(2 / pi) = 4.8 mm. The fit has
    ~52 parameters for 63 coordinates, so it absorbs part of the noise (residual to the noisy input below
    4.8 mm) but cannot absorb most of it (above 2 mm); its distance to the clean keypoints must be below the
    noise level too (measured: 3.3 mm residual, 3.1 mm to the clean keypoints)."""
    wrist_rot, transl, angles = random_pose(skeleton, 48, seed=13)
    clean = skeleton.forward_kinematics(wrist_rot, transl, skeleton.joint_rotations_from_angles(angles))
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(14), dtype=torch.float64) * 0.003
    fit = skeleton.fit_keypoints(clean + noise)
    noise_mm = noise.norm(dim=-1).mean() * 1000
    assert 4.5 < noise_mm < 5.1
    assert 2.0 < fit.residual_mm.mean() < noise_mm, fit.residual_mm.mean()
    error_to_clean = (fit.motion[:, JOINTS_XYZ].reshape(48, 21, 3) - clean).norm(dim=-1).mean() * 1000
    assert error_to_clean < 0.8 * noise_mm, error_to_clean
    low, high = skeleton.limits.bounds(dtype=torch.float64)
    assert ((fit.angles >= low - 1e-9) & (fit.angles <= high + 1e-9)).all()


def test_fit_left_hand_mirrors_in_and_out(skeleton: HandSkeleton) -> None:
    wrist_rot, transl, angles = random_pose(skeleton, 24, seed=15)
    joint_rots = skeleton.joint_rotations_from_angles(angles)
    right_keypoints = skeleton.forward_kinematics(wrist_rot, transl, joint_rots)
    left_keypoints = mirror_keypoints(right_keypoints)
    left = skeleton.fit_keypoints(left_keypoints, handedness="left", iterations=150)
    assert left.residual_mm.max() < 0.5, left.residual_mm.max()
    torch.testing.assert_close(left.motion[:, 99:].reshape(24, 21, 3), left_keypoints, atol=5e-4, rtol=0)
    _assert_consistent_fit(skeleton, left.motion, handedness="left")
    right = skeleton.fit_keypoints(right_keypoints, iterations=150)
    torch.testing.assert_close(left.motion, mirror_motion(right.motion), atol=1e-12, rtol=0)
    torch.testing.assert_close(left.angles, right.angles, atol=1e-12, rtol=0)
    # Fitting a left hand as a right one cannot work: a mirror image is not a rotation.
    wrong = skeleton.fit_keypoints(left_keypoints, iterations=150)
    assert wrong.residual_mm.mean() > 5.0


def test_fit_estimates_bone_scale_and_accepts_a_fixed_one() -> None:
    large = HandSkeleton(bone_scale=1.15)
    wrist_rot, transl, angles = random_pose(large, 16, seed=16)
    keypoints = large.forward_kinematics(wrist_rot, transl, large.joint_rotations_from_angles(angles))
    default = HandSkeleton()
    fit = default.fit_keypoints(keypoints.reshape(4, 4, 21, 3), iterations=150)
    assert fit.bone_scale.shape == (4, 4) and fit.residual_mm.shape == (4, 4)
    torch.testing.assert_close(fit.bone_scale, torch.full((4, 4), 1.15, dtype=torch.float64), atol=3e-3, rtol=0)
    assert fit.residual_mm.max() < 0.5
    fixed = default.fit_keypoints(keypoints, bone_scale=1.0, iterations=100)
    assert torch.equal(fixed.bone_scale, torch.ones(16, dtype=torch.float64))
    assert fixed.residual_mm.mean() > 5.0  # a 15 % wrong hand size cannot be fitted


def test_fit_works_under_no_grad_and_inference_mode() -> None:
    skeleton = HandSkeleton()  # fresh: its dtype cache must not be filled with inference tensors
    wrist_rot, transl, angles = random_pose(skeleton, 4, seed=18)
    keypoints = skeleton.forward_kinematics(wrist_rot, transl, skeleton.joint_rotations_from_angles(angles))
    with torch.inference_mode():
        under_inference = skeleton.fit_keypoints(keypoints.clone(), iterations=50)
    with torch.no_grad():
        under_no_grad = skeleton.fit_keypoints(keypoints, iterations=50)
    normal = skeleton.fit_keypoints(keypoints, iterations=50)
    torch.testing.assert_close(under_inference.motion, normal.motion, atol=0, rtol=0)
    torch.testing.assert_close(under_no_grad.motion, normal.motion, atol=0, rtol=0)
    assert normal.residual_mm.max() < 1.0


def test_fit_rejects_bad_input(skeleton: HandSkeleton) -> None:
    with pytest.raises(ValueError, match=r"\(\.\.\., 21, 3\)"):
        skeleton.fit_keypoints(torch.zeros(4, 20, 3))
    with pytest.raises(ValueError, match="handedness must be 'right' or 'left'"):
        skeleton.fit_keypoints(torch.zeros(21, 3), handedness="Left")
    keypoints = torch.zeros(2, 21, 3)
    keypoints[1, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        skeleton.fit_keypoints(keypoints)


# ------------------------------------------------------------------------------------------------------------
# Rest pose from a user's MANO export
# ------------------------------------------------------------------------------------------------------------


def test_from_mano_npz_reads_rest_joints_in_any_frame(tmp_path: Path, skeleton: HandSkeleton) -> None:
    rest = rest_keypoints(skeleton).numpy()
    # Put the hand in another frame, as MANO's template is: any rotation and offset must be undone.
    rotation = random_rotations(1, seed=17)[0].numpy()
    moved = rest @ rotation.T + np.array([0.1, -0.05, 0.02])
    mano16 = moved[[0, *MANO_JOINT_TO_KEYPOINT]]
    tips = moved[[4, 8, 12, 16, 20]]
    cases = {
        "mano16.npz": ({"J": mano16}, "mano"),
        "mano21.npz": ({"rest_joints": np.concatenate((mano16, tips))}, "mano"),
        "mediapipe.npz": ({"joints": moved}, "mediapipe"),
    }
    for file_name, (arrays, order) in cases.items():
        np.savez(tmp_path / file_name, **arrays)
        loaded = HandSkeleton.from_mano_npz(tmp_path / file_name, order=order)
        torch.testing.assert_close(loaded.rest_offsets, skeleton.rest_offsets, atol=1e-12, rtol=0)
        torch.testing.assert_close(loaded.joint_axes, skeleton.joint_axes, atol=1e-12, rtol=0)
    np.savez(tmp_path / "wrong_key.npz", vertices=mano16)
    with pytest.raises(ValueError, match="rest_joints"):
        HandSkeleton.from_mano_npz(tmp_path / "wrong_key.npz")
    with pytest.raises(ValueError, match=r"order='mediapipe' expected \(21, 3\)"):
        HandSkeleton.from_mano_npz(tmp_path / "mano16.npz", order="mediapipe")
