"""MANO-D162 hand motion: layout, rotation conversions, a MANO-like skeleton, mirroring and keypoint fitting.

Why this file exists: every other part of JALA (tokenizer, dataset builders, metrics, demo) speaks
MANO-D162, and none of them may need the MANO model itself (its licence forbids redistribution, and its files
are pickles). So this file carries an open, MANO-like right-hand skeleton whose forward kinematics produce the
21 keypoints, and the inverse: fitting D162 to tracked keypoints (MediaPipe order). It imports only torch,
numpy and stdlib so that it can live in a Hub model repo's code folder.

MANO-D162 per frame and hand (paper, Sec. 3):

====================  ===========  ==============================================================
slice                 dims         content
====================  ===========  ==============================================================
``FINGER_ROT6D``      0:90         15 finger joints x rot6d, ``MANO_JOINT_ORDER``, local rotations
``WRIST_ROT6D``       90:96        wrist (global) rotation, rot6d
``WRIST_TRANSL``      96:99        wrist translation == keypoint 0, metres, camera/world frame
``JOINTS_XYZ``        99:162       21 keypoints x xyz, ``KEYPOINT_NAMES`` (MediaPipe) order, metres
====================  ===========  ==============================================================

Conventions, fixed because other code relies on them:

* rot6d is the first two **columns** of the rotation matrix, concatenated ``[col0, col1]``; decoding uses
  Gram-Schmidt (Zhou et al., CVPR 2019, "On the Continuity of Rotation Representations").
* Wrist frame (the rest pose is expressed in it): +x from the wrist toward the fingers, +y toward the thumb
  side of a right hand, +z out of the back of the hand (the palm faces -z).
* Joint rotations are local, relative to the parent frame and expressed in the rest-pose axes, as in MANO:
  keypoint ``k`` with parent ``p`` sits at ``x_p + G_p @ (s * offset_k)`` where ``G_p`` is the product of the
  wrist rotation and the local rotations of ``p``'s ancestors and of ``p`` itself.
* Left hands are mirrored right hands: world mirror ``M_w = diag(-1, 1, 1)`` (a horizontal image flip) and
  hand-local mirror ``M_l = diag(1, -1, 1)``; see :func:`mirror_motion`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

__all__ = [
    "D162_DIM",
    "FINGER_PART_DIM",
    "FINGER_ROT6D",
    "JOINTS_XYZ",
    "KEYPOINT_NAMES",
    "KEYPOINT_PARENTS",
    "MANO_JOINT_ORDER",
    "MANO_JOINT_TO_KEYPOINT",
    "NUM_FINGER_JOINTS",
    "NUM_JOINTS",
    "WRIST_PART_DIM",
    "WRIST_ROT6D",
    "WRIST_TRANSL",
    "HandSkeleton",
    "JointLimits",
    "KeypointFit",
    "axis_angle_to_matrix",
    "hand_skeleton_edges",
    "matrix_to_axis_angle",
    "matrix_to_rot6d",
    "merge_parts",
    "mirror_keypoints",
    "mirror_motion",
    "rot6d_to_matrix",
    "split_parts",
    "validate_motion",
]

# ------------------------------------------------------------------------------------------------------------
# Layout
# ------------------------------------------------------------------------------------------------------------

D162_DIM = 162
FINGER_ROT6D = slice(0, 90)
WRIST_ROT6D = slice(90, 96)
WRIST_TRANSL = slice(96, 99)
JOINTS_XYZ = slice(99, 162)
WRIST_PART_DIM = 9
FINGER_PART_DIM = 150
NUM_JOINTS = 21
NUM_FINGER_JOINTS = 15

#: The 21 keypoints in MediaPipe Hands order (also OpenPose / FreiHAND / InterHand2.6M order).
KEYPOINT_NAMES: tuple[str, ...] = (
    "wrist",
    "thumb_cmc",
    "thumb_mcp",
    "thumb_ip",
    "thumb_tip",
    "index_mcp",
    "index_pip",
    "index_dip",
    "index_tip",
    "middle_mcp",
    "middle_pip",
    "middle_dip",
    "middle_tip",
    "ring_mcp",
    "ring_pip",
    "ring_dip",
    "ring_tip",
    "pinky_mcp",
    "pinky_pip",
    "pinky_dip",
    "pinky_tip",
)
#: Parent of each keypoint in the kinematic tree; -1 for the wrist (the root).
KEYPOINT_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)

#: The 15 rotating joints in MANO's order. MANO joint ``finger1`` rotates about the finger's first keypoint
#: (``index1`` about ``index_mcp``, ``thumb1`` about ``thumb_cmc``) and moves every keypoint after it on the
#: finger (``index_pip``, ``index_dip``, ``index_tip``); ``finger2`` rotates about the PIP (thumb: MCP) and
#: moves DIP and tip; ``finger3`` rotates about the DIP (thumb: IP) and moves only the tip. Mapping in
#: :data:`MANO_JOINT_TO_KEYPOINT`.
MANO_JOINT_ORDER: tuple[str, ...] = (
    "index1",
    "index2",
    "index3",
    "middle1",
    "middle2",
    "middle3",
    "pinky1",
    "pinky2",
    "pinky3",
    "ring1",
    "ring2",
    "ring3",
    "thumb1",
    "thumb2",
    "thumb3",
)
#: Keypoint index (into ``KEYPOINT_NAMES``) about which each MANO joint rotates.
MANO_JOINT_TO_KEYPOINT: tuple[int, ...] = (5, 6, 7, 9, 10, 11, 17, 18, 19, 13, 14, 15, 1, 2, 3)

# Forward kinematics runs level by level (all five fingers at once): keypoints at chain depth 1..4 in
# MediaPipe finger order (thumb, index, middle, ring, pinky), and the MANO joint rotating about the depth-1..3
# keypoints.
_KEYPOINTS_BY_DEPTH: tuple[list[int], ...] = (
    [1, 5, 9, 13, 17],
    [2, 6, 10, 14, 18],
    [3, 7, 11, 15, 19],
    [4, 8, 12, 16, 20],
)
_MANO_JOINTS_BY_DEPTH: tuple[list[int], ...] = (
    [12, 0, 3, 9, 6],
    [13, 1, 4, 10, 7],
    [14, 2, 5, 11, 8],
)
# Keypoints rigidly attached to the wrist frame, used for the palm (Kabsch) fit. Ring is left out on purpose:
# with the pinky it is the most mobile metacarpal of a real hand (palm cupping); index and middle are rigid.
_PALM_KEYPOINTS: tuple[int, ...] = (0, 5, 9, 17)
# MANO's 16 joints (wrist + MANO_JOINT_ORDER) as keypoint indices, and the fingertips in the order that
# MANO-based pipelines (manopth, FreiHAND) append them: thumb, index, middle, ring, pinky.
_MANO16_TO_KEYPOINT: tuple[int, ...] = (0, *MANO_JOINT_TO_KEYPOINT)
_MANO_TIPS: tuple[int, ...] = (4, 8, 12, 16, 20)

_WORLD_MIRROR: tuple[float, float, float] = (-1.0, 1.0, 1.0)
_LOCAL_MIRROR: tuple[float, float, float] = (1.0, -1.0, 1.0)


def hand_skeleton_edges() -> list[tuple[int, int]]:
    """(parent, child) keypoint pairs, 20 bones, for drawing overlays."""
    return [(parent, child) for child, parent in enumerate(KEYPOINT_PARENTS) if parent >= 0]


# ------------------------------------------------------------------------------------------------------------
# Rotation conversions
# ------------------------------------------------------------------------------------------------------------


def rot6d_to_matrix(x: Tensor) -> Tensor:
    """(..., 6) -> (..., 3, 3). The 6d vector is ``[col0, col1]`` of R; Gram-Schmidt makes it a rotation.

    Continuous and differentiable everywhere except where the two halves are parallel (Zhou et al. 2019).
    """
    first = torch.nn.functional.normalize(x[..., 0:3], dim=-1, eps=1e-12)
    second = x[..., 3:6]
    second = second - (first * second).sum(dim=-1, keepdim=True) * first
    second = torch.nn.functional.normalize(second, dim=-1, eps=1e-12)
    third = torch.linalg.cross(first, second, dim=-1)
    return torch.stack((first, second, third), dim=-1)


def matrix_to_rot6d(matrix: Tensor) -> Tensor:
    """(..., 3, 3) -> (..., 6): the first two columns, ``[col0, col1]``."""
    return torch.cat((matrix[..., :, 0], matrix[..., :, 1]), dim=-1)


def _skew(vector: Tensor) -> Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrix ``[v]_x`` with ``[v]_x @ w == v x w``."""
    x, y, z = vector.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack((zero, -z, y, z, zero, -x, -y, x, zero), dim=-1).reshape(*vector.shape[:-1], 3, 3)


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    """(..., 3) rotation vectors -> (..., 3, 3) by Rodrigues; a Taylor series near 0 keeps grads finite."""
    theta_sq = (axis_angle * axis_angle).sum(dim=-1, keepdim=True)[..., None]
    small = theta_sq < 1e-8
    safe_theta = torch.where(small, torch.ones_like(theta_sq), theta_sq).sqrt()
    # sin(t)/t and (1-cos t)/t^2 = 2 sin^2(t/2)/t^2 (the second form avoids cancellation for small t).
    sin_term = torch.where(small, 1.0 - theta_sq / 6.0, torch.sin(safe_theta) / safe_theta)
    cos_term = torch.where(
        small, 0.5 - theta_sq / 24.0, 2.0 * torch.sin(safe_theta / 2.0).square() / safe_theta.square()
    )
    skew = _skew(axis_angle)
    identity = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return identity + sin_term * skew + cos_term * (skew @ skew)


def _sqrt_nonnegative(x: Tensor) -> Tensor:
    """sqrt(max(x, 0)) with a zero (not infinite) gradient at 0."""
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, torch.ones_like(x)).sqrt(), torch.zeros_like(x))


def _matrix_to_quaternion(matrix: Tensor) -> Tensor:
    """(..., 3, 3) -> (..., 4) unit quaternion (w, x, y, z), w >= 0, by the best-conditioned of 4 formulas."""
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = matrix.reshape(*matrix.shape[:-2], 9).unbind(-1)
    abs_components = _sqrt_nonnegative(
        torch.stack(
            (
                1.0 + m00 + m11 + m22,
                1.0 + m00 - m11 - m22,
                1.0 - m00 + m11 - m22,
                1.0 - m00 - m11 + m22,
            ),
            dim=-1,
        )
    )
    # Row i is the quaternion scaled by 2*|q_i|; dividing by the largest |q_i| is the well-conditioned choice.
    candidates = torch.stack(
        (
            torch.stack((abs_components[..., 0].square(), m21 - m12, m02 - m20, m10 - m01), dim=-1),
            torch.stack((m21 - m12, abs_components[..., 1].square(), m10 + m01, m02 + m20), dim=-1),
            torch.stack((m02 - m20, m10 + m01, abs_components[..., 2].square(), m12 + m21), dim=-1),
            torch.stack((m10 - m01, m20 + m02, m21 + m12, abs_components[..., 3].square()), dim=-1),
        ),
        dim=-2,
    )
    candidates = candidates / (2.0 * abs_components[..., None].clamp_min(0.1))
    best = abs_components.argmax(dim=-1)
    quaternion = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    return torch.where(quaternion[..., :1] < 0, -quaternion, quaternion)


def matrix_to_axis_angle(matrix: Tensor) -> Tensor:
    """(..., 3, 3) -> (..., 3) rotation vectors, angle in [0, pi]; via quaternions, stable near 0 and pi.

    At exactly pi the sign of the axis is arbitrary (both vectors give the same rotation).
    """
    quaternion = _matrix_to_quaternion(matrix)
    vector = quaternion[..., 1:]
    sin_half = vector.norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(sin_half, quaternion[..., :1])
    small = angle.abs() < 1e-6
    safe_angle = torch.where(small, torch.ones_like(angle), angle)
    # vector = axis * sin(angle/2); divide by sin(angle/2)/angle, whose series near 0 is 1/2 - angle^2/48.
    ratio = torch.where(small, 0.5 - angle.square() / 48.0, torch.sin(safe_angle / 2.0) / safe_angle)
    return vector / ratio


def _euler_zyx_to_matrix(angles: Tensor) -> Tensor:
    """(..., 3) (flexion about y, abduction about z, twist about x) -> Rz(abd) @ Ry(flex) @ Rx(twist)."""
    flexion, abduction, twist = angles.unbind(-1)
    cf, sf = torch.cos(flexion), torch.sin(flexion)
    ca, sa = torch.cos(abduction), torch.sin(abduction)
    ct, st = torch.cos(twist), torch.sin(twist)
    rows = (
        ca * cf,
        ca * sf * st - sa * ct,
        ca * sf * ct + sa * st,
        sa * cf,
        sa * sf * st + ca * ct,
        sa * sf * ct - ca * st,
        -sf,
        cf * st,
        cf * ct,
    )
    return torch.stack(rows, dim=-1).reshape(*angles.shape[:-1], 3, 3)


def _wrap_angle(angle: Tensor) -> Tensor:
    return torch.remainder(angle + math.pi, 2.0 * math.pi) - math.pi


def _matrix_to_euler_zyx(matrix: Tensor) -> Tensor:
    """Inverse of :func:`_euler_zyx_to_matrix`; of its two solutions, the one with least abduction and twist.

    Choosing by abduction/twist (not by |flexion| <= pi/2) lets PIP flexion beyond 90 degrees round-trip.
    """
    flexion = torch.atan2(-matrix[..., 2, 0], torch.hypot(matrix[..., 0, 0], matrix[..., 1, 0]))
    abduction = torch.atan2(matrix[..., 1, 0], matrix[..., 0, 0])
    twist = torch.atan2(matrix[..., 2, 1], matrix[..., 2, 2])
    flexion_alt = torch.where(flexion >= 0, math.pi - flexion, -math.pi - flexion)
    abduction_alt = _wrap_angle(abduction + math.pi)
    twist_alt = _wrap_angle(twist + math.pi)
    use_alt = abduction_alt.square() + twist_alt.square() < abduction.square() + twist.square()
    return torch.stack(
        (
            torch.where(use_alt, flexion_alt, flexion),
            torch.where(use_alt, abduction_alt, abduction),
            torch.where(use_alt, twist_alt, twist),
        ),
        dim=-1,
    )


# ------------------------------------------------------------------------------------------------------------
# D162 parts and validation
# ------------------------------------------------------------------------------------------------------------


def split_parts(motion: Tensor) -> tuple[Tensor, Tensor]:
    """(..., 162) -> wrist (..., 9) ``[rot6d, transl]``, finger (..., 150) ``[rot6d x 15, joints - joint0]``.

    The paper's part-level tokenizer sees the global wrist pose and the hand's articulation separately; the
    finger part's 60 joint coordinates are relative to keypoint 0 so that they do not depend on where the hand
    is.
    """
    joints = motion[..., JOINTS_XYZ].unflatten(-1, (NUM_JOINTS, 3))
    relative = (joints[..., 1:, :] - joints[..., :1, :]).flatten(-2)
    wrist = torch.cat((motion[..., WRIST_ROT6D], motion[..., WRIST_TRANSL]), dim=-1)
    finger = torch.cat((motion[..., FINGER_ROT6D], relative), dim=-1)
    return wrist, finger


def merge_parts(wrist: Tensor, finger: Tensor) -> Tensor:
    """Inverse of :func:`split_parts`: keypoint 0 is placed at the wrist translation, the rest relative to it.

    ``merge_parts(*split_parts(m))`` equals ``m`` (up to one float rounding of ``(j - j0) + j0``) whenever
    ``m``'s keypoint 0 equals its wrist translation, which holds for every D162 built by
    :class:`HandSkeleton`.
    """
    if wrist.shape[-1] != WRIST_PART_DIM or finger.shape[-1] != FINGER_PART_DIM:
        raise ValueError(
            f"merge_parts expects wrist (..., {WRIST_PART_DIM}) and finger (..., {FINGER_PART_DIM}), "
            f"got {tuple(wrist.shape)} and {tuple(finger.shape)}; build them with split_parts."
        )
    batch = torch.broadcast_shapes(wrist.shape[:-1], finger.shape[:-1])
    wrist, finger = wrist.expand(*batch, WRIST_PART_DIM), finger.expand(*batch, FINGER_PART_DIM)
    transl = wrist[..., 6:9]
    relative = finger[..., 90:].unflatten(-1, (NUM_JOINTS - 1, 3))
    joints = torch.cat((transl[..., None, :], transl[..., None, :] + relative), dim=-2).flatten(-2)
    return torch.cat((finger[..., :90], wrist[..., :6], transl, joints), dim=-1)


def validate_motion(motion: Tensor, name: str = "motion") -> None:
    """Raise ValueError (naming ``name``) if ``motion`` is not (..., 162) or holds NaN/inf."""
    if not isinstance(motion, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (..., {D162_DIM}), got {type(motion).__name__}.")
    if motion.ndim == 0 or motion.shape[-1] != D162_DIM:
        got = tuple(motion.shape)
        raise ValueError(
            f"{name} must have last dimension {D162_DIM} (MANO-D162: 90 finger rot6d + 6 wrist rot6d + "
            f"3 wrist translation + 63 joint xyz), got shape {got} (last dimension "
            f"{got[-1] if got else 'none'}). Convert keypoints with HandSkeleton.fit_keypoints."
        )
    finite = torch.isfinite(motion)
    if not bool(finite.all()):
        bad = ~finite
        first = tuple(int(i) for i in bad.nonzero()[0].tolist())
        raise ValueError(
            f"{name} has {int(bad.sum())} non-finite value(s) (NaN or inf); first at index {first}. "
            "Drop or interpolate the frames where hand tracking failed."
        )


# ------------------------------------------------------------------------------------------------------------
# Mirroring
# ------------------------------------------------------------------------------------------------------------


def _mirror_signs() -> tuple[float, ...]:
    """Per-dimension signs: mirroring D162 is exactly a sign flip, because both mirrors are diagonal +/-1.

    joint rot6d: columns of ``M_l L M_l`` are ``(M_l l0, -M_l l1)``; wrist rot6d: columns of ``M_w W M_l`` are
    ``(M_w w0, -M_w w1)``; translation and keypoints: ``M_w``.
    """
    local, world = _LOCAL_MIRROR, _WORLD_MIRROR
    joint = (*local, *(-s for s in local))
    wrist = (*world, *(-s for s in world))
    return joint * NUM_FINGER_JOINTS + wrist + world + world * NUM_JOINTS


_MIRROR_SIGNS = _mirror_signs()


def mirror_motion(motion: Tensor) -> Tensor:
    """Left-hand D162 <-> right-hand D162 (an exact involution, even for non-orthonormal rot6d).

    ``wrist_rot' = M_w W M_l``, ``joint_rot' = M_l L M_l``, ``transl' = M_w t``, ``joints' = M_w joints`` with
    ``M_w = diag(-1, 1, 1)`` (image flip) and ``M_l = diag(1, -1, 1)`` (wrist frame). Then
    ``FK_left(mirror(params)) == M_w @ FK_right(params)``, where the left skeleton's rest offsets are
    ``M_l @`` the right ones.
    """
    signs = torch.tensor(_MIRROR_SIGNS, dtype=motion.dtype, device=motion.device)
    return motion * signs


def mirror_keypoints(keypoints: Tensor) -> Tensor:
    """(..., 21, 3) -> ``M_w @`` keypoints: a left hand's keypoints become a right hand's and back."""
    return keypoints * torch.tensor(_WORLD_MIRROR, dtype=keypoints.dtype, device=keypoints.device)


# ------------------------------------------------------------------------------------------------------------
# Joint limits
# ------------------------------------------------------------------------------------------------------------

_Range = tuple[float, float]


def _deg(low: float, high: float) -> _Range:
    return (math.radians(low), math.radians(high))


def _anatomical_ranges() -> tuple[tuple[_Range, ...], tuple[_Range, ...], tuple[_Range, ...]]:
    """Default (flexion, abduction, twist) ranges in MANO_JOINT_ORDER; sources in :class:`JointLimits`."""
    mcp_flexion, pip_flexion, dip_flexion = _deg(-20, 90), _deg(-5, 100), _deg(-10, 80)
    mcp_twist, pip_twist, no_twist = _deg(-8, 8), _deg(-5, 5), (0.0, 0.0)
    hinge_abduction = _deg(-3, 3)
    mcp_abduction = {
        "index": _deg(-20, 20),
        "middle": _deg(-15, 15),
        "pinky": _deg(-25, 15),
        "ring": _deg(-15, 15),
    }
    flexion: list[_Range] = []
    abduction: list[_Range] = []
    twist: list[_Range] = []
    for finger in ("index", "middle", "pinky", "ring"):  # MANO order; the thumb comes last
        flexion += (mcp_flexion, pip_flexion, dip_flexion)
        abduction += (mcp_abduction[finger], hinge_abduction, hinge_abduction)
        twist += (mcp_twist, pip_twist, no_twist)
    # Thumb CMC is a saddle joint with a coupled axial rotation during opposition; MCP and IP are hinges.
    flexion += (_deg(-30, 50), _deg(-10, 60), _deg(-15, 80))
    abduction += (_deg(-25, 40), _deg(-8, 8), hinge_abduction)
    twist += (_deg(-15, 25), _deg(-5, 5), no_twist)
    return tuple(flexion), tuple(abduction), tuple(twist)


_ANATOMICAL_FLEXION, _ANATOMICAL_ABDUCTION, _ANATOMICAL_TWIST = _anatomical_ranges()
#: Joints whose abduction is a real degree of freedom (the rest are hinges with a small tolerance).
_FREE_ABDUCTION_JOINTS: tuple[int, ...] = tuple(
    MANO_JOINT_ORDER.index(name) for name in ("index1", "middle1", "pinky1", "ring1", "thumb1")
)


@dataclass(frozen=True)
class JointLimits:
    """Per rotating joint (``MANO_JOINT_ORDER``), (low, high) radians about the joint's anatomical axes.

    * flexion: about the flexion axis; positive curls the finger toward the palm (thumb: toward its pad side).
    * abduction: about the axis normal to the bone and the flexion axis; positive swings the bone toward the
      thumb side of the hand (for the thumb: away from the index finger, i.e. radial abduction).
    * twist: about the bone itself (axial rotation).

    Defaults (:meth:`anatomical`) are active ranges of motion from Hume et al. (1990, J. Hand Surg.
    15A:240-243), Lee & Kunii (1995, "Model-based analysis of hand posture", IEEE CG&A) and Cobos et al.
    (2008, "Efficient human hand kinematics for manipulation tasks", IROS), rounded, with small
    abduction/twist tolerances on hinge joints so that fitting noisy keypoints stays feasible. DIP/IP twist is
    fixed at 0 because a rotation about the last bone moves no keypoint.
    """

    flexion: tuple[_Range, ...] = _ANATOMICAL_FLEXION
    abduction: tuple[_Range, ...] = _ANATOMICAL_ABDUCTION
    twist: tuple[_Range, ...] = _ANATOMICAL_TWIST

    def __post_init__(self) -> None:
        for field_name in ("flexion", "abduction", "twist"):
            ranges = getattr(self, field_name)
            if len(ranges) != NUM_FINGER_JOINTS:
                raise ValueError(
                    f"JointLimits.{field_name} needs {NUM_FINGER_JOINTS} (low, high) pairs in "
                    f"MANO_JOINT_ORDER, got {len(ranges)}."
                )
            for joint, (low, high) in zip(MANO_JOINT_ORDER, ranges, strict=True):
                if not low <= high:
                    raise ValueError(f"JointLimits.{field_name} for {joint}: low {low} must be <= high {high}.")

    @classmethod
    def anatomical(cls) -> JointLimits:
        """Adult active ranges of motion (the defaults; see the class docstring for sources)."""
        return cls()

    def bounds(
        self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor]:
        """(low, high), each (15, 3) with columns (flexion, abduction, twist)."""
        table = torch.tensor((self.flexion, self.abduction, self.twist), dtype=torch.float64)  # (3, 15, 2)
        table = table.permute(1, 0, 2).to(dtype=dtype, device=device)
        return table[..., 0], table[..., 1]


# ------------------------------------------------------------------------------------------------------------
# Skeleton
# ------------------------------------------------------------------------------------------------------------


def _default_rest_keypoints() -> np.ndarray:
    """(21, 3) rest keypoints of an average adult right hand, flat, in the wrist frame, metres.

    Lengths (mm, joint centre to joint centre) follow the mean bone lengths of Buryanov & Kotiuk (2010,
    "Proportions of hand segments", Int. J. Morphol. 28(3):755-758), shortened a little from bone length to
    joint centre spacing, with 2-4 mm of pulp added to the distal segment (MediaPipe's tip keypoint is on the
    skin). Palm (wrist crease centre to middle MCP) 95 mm; middle finger MCP->tip 87 mm; hand length ~18 cm,
    the adult mean. Knuckle spacing ~20 mm and a slight metacarpal arch (index and pinky MCP 3 mm toward the
    palm). Not MANO's template, which may not be redistributed.
    """

    def chain(
        start: tuple[float, float, float], direction: tuple[float, float, float], lengths: Sequence[float]
    ) -> list[np.ndarray]:
        unit = np.asarray(direction, dtype=np.float64)
        unit /= np.linalg.norm(unit)
        points = [np.asarray(start, dtype=np.float64)]
        for length in lengths:
            points.append(points[-1] + length * unit)
        return points

    # Per finger: first keypoint (thumb CMC / MCP), direction of the straight finger, then bone lengths. The
    # thumb leaves the palm ~40 degrees from the fingers and slightly palmar; the fingers splay a little.
    keypoints = [np.zeros(3)]
    keypoints += chain((24.0, 17.0, -10.0), (0.75, 0.62, -0.22), (44.0, 31.0, 27.0))  # thumb
    keypoints += chain((91.0, 23.0, -3.0), (1.0, 0.08, 0.0), (38.0, 22.0, 19.0))  # index
    keypoints += chain((95.0, 0.0, 0.0), (1.0, 0.0, 0.0), (42.0, 25.0, 20.0))  # middle
    keypoints += chain((89.0, -18.0, -1.0), (1.0, -0.06, 0.0), (39.0, 24.0, 19.0))  # ring
    keypoints += chain((80.0, -35.0, -3.0), (1.0, -0.14, 0.0), (31.0, 18.0, 17.0))  # pinky
    return np.stack(keypoints) / 1000.0


# Direction in the wrist frame toward which each finger flexes (its palmar side) in the rest pose. The thumb
# is pronated relative to the fingers: its pad faces the palm's -z and the index finger (-y) at about 45
# degrees.
_FINGER_BEND = (0.0, 0.0, -1.0)
_THUMB_BEND = (0.0, -1.0, -1.0)
# Weight (mm^2 of mean squared keypoint error per rad^2) of the prior that pulls twists and hinge abductions
# toward 0 in fit_keypoints. Small enough that it moves a fitted keypoint by well under 0.1 mm.
_NEUTRAL_PRIOR_MM2 = 0.1


@dataclass
class KeypointFit:
    """Result of :meth:`HandSkeleton.fit_keypoints`.

    ``motion``: (..., 162) D162 whose joint block is the forward kinematics of the fit (not the input).
    ``residual_mm``: (...,) mean distance between fitted and input keypoints, millimetres.
    ``bone_scale``: (...,) scale applied to the skeleton's rest offsets.
    ``angles``: (..., 15, 3) fitted (flexion, abduction, twist), within the skeleton's limits; anatomical, so
    the same values describe a left hand and its mirrored right hand.
    """

    motion: Tensor
    residual_mm: Tensor
    bone_scale: Tensor
    angles: Tensor


class HandSkeleton:
    """A MANO-like right hand: rest offsets, anatomical joint axes and limits, FK, and keypoint fitting.

    Left hands use the same skeleton mirrored (``handedness="left"``: rest offsets ``M_l @ rest_offsets``).
    Tensors are stored in float64 on the CPU, treated as read-only, and cast (once, cached) to each input's
    dtype and device.
    """

    def __init__(
        self,
        bone_scale: float = 1.0,
        *,
        rest_keypoints: Tensor | np.ndarray | None = None,
        limits: JointLimits | None = None,
    ) -> None:
        """``rest_keypoints``: optional (21, 3) flat hand in the wrist frame (default: an average adult)."""
        if not bone_scale > 0:
            raise ValueError(f"bone_scale must be > 0, got {bone_scale}.")
        rest = _default_rest_keypoints() if rest_keypoints is None else np.asarray(rest_keypoints, dtype=np.float64)
        if rest.shape != (NUM_JOINTS, 3) or not np.isfinite(rest).all():
            raise ValueError(f"rest_keypoints must be finite with shape (21, 3), got {rest.shape}.")
        rest = torch.from_numpy(rest - rest[0]) * bone_scale
        parents = torch.tensor(KEYPOINT_PARENTS[1:])
        offsets = torch.zeros_like(rest)
        offsets[1:] = rest[1:] - rest[parents]
        self.bone_scale = float(bone_scale)
        self.rest_offsets: Tensor = offsets
        self.limits: JointLimits = limits or JointLimits.anatomical()
        self.joint_axes: Tensor = self._anatomical_axes(offsets)
        self._cache: dict[tuple[torch.dtype, torch.device, str], tuple[Tensor, Tensor]] = {}

    @staticmethod
    def _anatomical_axes(offsets: Tensor) -> Tensor:
        """(15, 3, 3) per MANO joint, columns (bone/twist axis, flexion axis, abduction axis), right-handed.

        The bone axis points from the joint to its child at rest; the flexion axis is ``bone x bend`` so that
        a positive flexion swings the bone toward the bend direction (the palm).
        """
        axes = torch.zeros(NUM_FINGER_JOINTS, 3, 3, dtype=torch.float64)
        for joint, keypoint in enumerate(MANO_JOINT_TO_KEYPOINT):
            child = KEYPOINT_PARENTS.index(keypoint)
            bone = torch.nn.functional.normalize(offsets[child], dim=0)
            bend = torch.tensor(_THUMB_BEND if MANO_JOINT_ORDER[joint].startswith("thumb") else _FINGER_BEND)
            flexion_axis = torch.linalg.cross(bone, bend.to(torch.float64))
            if flexion_axis.norm() < 1e-6:
                raise ValueError(
                    f"rest bone after {KEYPOINT_NAMES[keypoint]} is parallel to its bend direction; rest "
                    "keypoints must be a flat hand in the wrist frame (+x fingers, +y thumb side, +z back of "
                    "the hand)."
                )
            flexion_axis = flexion_axis / flexion_axis.norm()
            axes[joint] = torch.stack((bone, flexion_axis, torch.linalg.cross(bone, flexion_axis)), dim=-1)
        return axes

    @classmethod
    def from_mano_npz(
        cls, path: str | os.PathLike[str], *, order: str = "mano", bone_scale: float = 1.0
    ) -> HandSkeleton:
        """A skeleton whose rest pose comes from a user's own MANO model, exported as ``.npz`` (no pickle).

        The file holds one array under ``rest_joints`` (or ``J``, ``joints``): MANO's template joints
        (``J_regressor @ v_template``) for the **right** hand, metres, any frame. Accepted shapes:

        * (16, 3), ``order="mano"``: wrist then ``MANO_JOINT_ORDER``; the fingertips, which MANO's regressor
          lacks, continue each finger's last bone by this file's default distal length ratio;
        * (21, 3), ``order="mano"``: the 16 joints then tips thumb, index, middle, ring, pinky (manopth order;
          tips from vertices 745, 317, 444, 556, 673);
        * (21, 3), ``order="mediapipe"``: ``KEYPOINT_NAMES`` order.

        The joints are re-expressed in the wrist frame: +x toward the middle MCP, +y toward the index MCP
        side, +z their cross product. Export with e.g. ``np.savez(path, rest_joints=J)`` after loading MANO
        yourself.
        """
        if order not in ("mano", "mediapipe"):
            raise ValueError(f"order must be 'mano' or 'mediapipe', got {order!r}.")
        with np.load(path, allow_pickle=False) as archive:
            key = next((k for k in ("rest_joints", "J", "joints") if k in archive.files), None)
            if key is None:
                raise ValueError(
                    f"{path}: expected an array named 'rest_joints' (or 'J', 'joints'), got {archive.files}."
                )
            joints = np.asarray(archive[key], dtype=np.float64)
        keypoints = np.full((NUM_JOINTS, 3), np.nan)
        if order == "mediapipe" and joints.shape == (NUM_JOINTS, 3):
            keypoints = joints.copy()
        elif order == "mano" and joints.shape in ((16, 3), (NUM_JOINTS, 3)):
            keypoints[list(_MANO16_TO_KEYPOINT)] = joints[:16]
            if joints.shape[0] == NUM_JOINTS:
                keypoints[list(_MANO_TIPS)] = joints[16:]
            else:
                default = _default_rest_keypoints()
                for tip in _MANO_TIPS:
                    dip, pip = tip - 1, tip - 2
                    ratio = np.linalg.norm(default[tip] - default[dip]) / np.linalg.norm(default[dip] - default[pip])
                    keypoints[tip] = keypoints[dip] + ratio * (keypoints[dip] - keypoints[pip])
        else:
            raise ValueError(
                f"{path}: {key} has shape {joints.shape}; with order={order!r} expected "
                f"{'(16, 3) or (21, 3)' if order == 'mano' else '(21, 3)'}."
            )
        forward = keypoints[9] - keypoints[0]
        forward /= np.linalg.norm(forward)
        side = keypoints[5] - keypoints[17]
        side -= side.dot(forward) * forward
        side /= np.linalg.norm(side)
        frame = np.stack((forward, side, np.cross(forward, side)), axis=-1)
        logger.info("Loaded MANO rest joints %s %s from %s.", key, joints.shape, path)
        return cls(bone_scale, rest_keypoints=(keypoints - keypoints[0]) @ frame)

    # -- helpers ---------------------------------------------------------------------------------------------

    def _constants(self, like: Tensor, handedness: str = "right") -> tuple[Tensor, Tensor]:
        """Rest offsets and joint axes in ``like``'s dtype/device, mirrored by ``M_l`` for a left hand."""
        if handedness not in ("right", "left"):
            raise ValueError(f"handedness must be 'right' or 'left', got {handedness!r}.")
        key = (like.dtype, like.device, handedness)
        if key not in self._cache:
            # Normal tensors even when first asked for under inference_mode: autograd may save them later.
            with torch.inference_mode(False):
                offsets, axes = self.rest_offsets, self.joint_axes
                if handedness == "left":
                    mirror = torch.tensor(_LOCAL_MIRROR, dtype=torch.float64)
                    offsets, axes = offsets * mirror, mirror[:, None] * axes
                self._cache[key] = (offsets.to(like, copy=True), axes.to(like, copy=True))
        return self._cache[key]

    # -- angles ----------------------------------------------------------------------------------------------

    def joint_rotations_from_angles(self, angles: Tensor) -> Tensor:
        """(..., 15, 3) (flexion, abduction, twist) -> (..., 15, 3, 3) local rotations in the rest-pose axes.

        ``R = A @ Rz(abduction) @ Ry(flexion) @ Rx(twist) @ A^T`` with ``A`` = :attr:`joint_axes`. The bone
        then points along ``A @ (cos a cos f, sin a cos f, -sin f)``: flexion and abduction are its spherical
        angles.
        """
        _, axes = self._constants(angles)
        return axes @ _euler_zyx_to_matrix(angles) @ axes.transpose(-1, -2)

    def joint_angles_from_rotations(self, joint_rots: Tensor) -> Tensor:
        """(..., 15, 3, 3) -> (..., 15, 3) angles, the inverse of :meth:`joint_rotations_from_angles`."""
        _, axes = self._constants(joint_rots)
        return _matrix_to_euler_zyx(axes.transpose(-1, -2) @ joint_rots @ axes)

    def clamp_angles(self, angles: Tensor) -> Tensor:
        """(..., 15, 3) -> the nearest angles within :attr:`limits` (differentiable inside the limits)."""
        low, high = self.limits.bounds(dtype=angles.dtype, device=angles.device)
        return torch.clamp(angles, min=low, max=high)

    def sample_angles(
        self,
        shape: int | Sequence[int] | torch.Size,
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """(*shape, 15, 3) angles uniform within :attr:`limits`, each joint and axis independently."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        low, high = self.limits.bounds(dtype=dtype, device=device)
        uniform = torch.rand((*shape, NUM_FINGER_JOINTS, 3), generator=generator, dtype=dtype, device=device)
        return low + (high - low) * uniform

    # -- kinematics ------------------------------------------------------------------------------------------

    def forward_kinematics(
        self,
        wrist_rot: Tensor,
        wrist_transl: Tensor,
        joint_rots: Tensor,
        *,
        bone_scale: Tensor | float | None = None,
        handedness: str = "right",
    ) -> Tensor:
        """(..., 3, 3), (..., 3), (..., 15, 3, 3) in ``MANO_JOINT_ORDER`` -> (..., 21, 3) keypoints.

        ``bone_scale`` (scalar or (...,)) multiplies the rest offsets; keypoint 0 equals ``wrist_transl``.
        """
        offsets, _ = self._constants(wrist_transl, handedness)
        if bone_scale is not None:
            scale = torch.as_tensor(bone_scale, dtype=offsets.dtype, device=offsets.device)
            offsets = offsets * scale[..., None, None]
        positions: list[Tensor] = [wrist_transl[..., None, :]]  # per depth, (..., 5, 3) after depth 0
        parent_rot = wrist_rot[..., None, :, :]
        parent_pos = wrist_transl[..., None, :]
        for depth, keypoints in enumerate(_KEYPOINTS_BY_DEPTH):
            position = parent_pos + (parent_rot @ offsets[..., keypoints, :, None]).squeeze(-1)
            positions.append(position)
            if depth < len(_MANO_JOINTS_BY_DEPTH):
                parent_rot = parent_rot @ joint_rots[..., _MANO_JOINTS_BY_DEPTH[depth], :, :]
                parent_pos = position
        # Depth-major (wrist, 5 x depth1, ..., 5 x depth4) -> MediaPipe finger-major order.
        by_finger = torch.stack(positions[1:], dim=-2).flatten(-3, -2)  # (..., 5 fingers * 4 depths, 3)
        return torch.cat((positions[0].expand(*by_finger.shape[:-2], 1, 3), by_finger), dim=-2)

    def to_d162(
        self,
        wrist_rot: Tensor,
        wrist_transl: Tensor,
        joint_rots: Tensor,
        *,
        bone_scale: Tensor | float | None = None,
        handedness: str = "right",
    ) -> Tensor:
        """Assemble a consistent (..., 162) D162: rotations as rot6d, joint block from forward kinematics."""
        keypoints = self.forward_kinematics(
            wrist_rot, wrist_transl, joint_rots, bone_scale=bone_scale, handedness=handedness
        )
        batch = keypoints.shape[:-2]
        return torch.cat(
            (
                matrix_to_rot6d(joint_rots).expand(*batch, NUM_FINGER_JOINTS, 6).flatten(-2),
                matrix_to_rot6d(wrist_rot).expand(*batch, 6),
                wrist_transl.expand(*batch, 3),
                keypoints.flatten(-2),
            ),
            dim=-1,
        )

    def from_d162(self, motion: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(..., 162) -> wrist_rot (..., 3, 3), wrist_transl (..., 3), joint_rots (..., 15, 3, 3)."""
        validate_motion(motion)
        joint_rots = rot6d_to_matrix(motion[..., FINGER_ROT6D].unflatten(-1, (NUM_FINGER_JOINTS, 6)))
        return rot6d_to_matrix(motion[..., WRIST_ROT6D]), motion[..., WRIST_TRANSL], joint_rots

    # -- fitting ---------------------------------------------------------------------------------------------

    def _fit_palm(self, keypoints: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Similarity Kabsch (Umeyama 1991) of the rest palm to the observed one: rotation, transl, scale."""
        offsets, _ = self._constants(keypoints)
        palm = list(_PALM_KEYPOINTS)
        # The palm keypoints are the wrist and its children, so their offsets are their rest positions.
        rest = offsets[palm]
        observed = keypoints[..., palm, :]
        rest_centred = rest - rest.mean(dim=0)
        observed_mean = observed.mean(dim=-2, keepdim=True)
        covariance = rest_centred.transpose(-1, -2) @ (observed - observed_mean)  # (..., 3, 3) sum p q^T
        u, singular, vh = torch.linalg.svd(covariance)
        sign = torch.sign(torch.linalg.det(vh.transpose(-1, -2) @ u.transpose(-1, -2)))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        correction = torch.stack((torch.ones_like(sign), torch.ones_like(sign), sign), dim=-1)
        rotation = vh.transpose(-1, -2) @ (correction[..., None] * u.transpose(-1, -2))
        scale = (singular * correction).sum(dim=-1) / rest_centred.square().sum()
        scale = scale.clamp_min(1e-3)
        transl = observed_mean.squeeze(-2) - scale[..., None] * (rotation @ rest.mean(dim=0)[:, None]).squeeze(-1)
        return rotation, transl, scale

    def _initial_angles(self, keypoints: Tensor, wrist_rot: Tensor) -> Tensor:
        """Analytic swing per bone, root to tip: each bone's observed direction as (flexion, abduction).

        Twist starts at 0. Of the two spherical solutions, the one with the smaller abduction, so that PIP
        flexion beyond 90 degrees works.
        """
        _, axes = self._constants(keypoints)
        low, high = self.limits.bounds(dtype=keypoints.dtype, device=keypoints.device)
        angles = torch.zeros(
            *keypoints.shape[:-2], NUM_FINGER_JOINTS, 3, dtype=keypoints.dtype, device=keypoints.device
        )
        parent_rot = wrist_rot[..., None, :, :].expand(*wrist_rot.shape[:-2], 5, 3, 3)
        for depth, joints in enumerate(_MANO_JOINTS_BY_DEPTH):
            start = keypoints[..., _KEYPOINTS_BY_DEPTH[depth], :]
            end = keypoints[..., _KEYPOINTS_BY_DEPTH[depth + 1], :]
            direction = (parent_rot.transpose(-1, -2) @ (end - start)[..., None]).squeeze(-1)
            local = (axes[joints].transpose(-1, -2) @ direction[..., None]).squeeze(-1)
            x, y, z = local.unbind(-1)
            flexion = torch.atan2(-z, torch.hypot(x, y))
            abduction = torch.atan2(y, x)
            flexion_alt = torch.where(flexion >= 0, math.pi - flexion, -math.pi - flexion)
            abduction_alt = _wrap_angle(abduction + math.pi)
            use_alt = abduction_alt.abs() < abduction.abs()
            swing = torch.stack(
                (
                    torch.where(use_alt, flexion_alt, flexion),
                    torch.where(use_alt, abduction_alt, abduction),
                    torch.zeros_like(flexion),
                ),
                dim=-1,
            )
            swing = torch.clamp(swing, min=low[joints], max=high[joints])
            angles[..., joints, :] = swing
            parent_rot = parent_rot @ self.joint_rotations_from_angles(angles)[..., joints, :, :]
        return angles

    def fit_keypoints(
        self,
        keypoints: Tensor,
        *,
        iterations: int = 200,
        handedness: str = "right",
        bone_scale: Tensor | float | None = None,
        learning_rate: float = 0.03,
    ) -> KeypointFit:
        """(..., 21, 3) keypoints (metres, MediaPipe order) -> D162 by fitting this skeleton to them.

        1. Palm: similarity Kabsch of (wrist, index/middle/pinky MCP) gives the wrist rotation, translation
           and the bone scale (palm size relative to this skeleton), unless ``bone_scale`` is given (scalar or
           (...,); e.g. one per clip: ``skeleton.fit_keypoints(k).bone_scale.median()`` from a first pass).
        2. Fingers: analytic swing per bone (root to tip) initialises the angles.
        3. Batched Adam on the mean squared keypoint error refines the angles (projected onto the limits after
           each step), a wrist rotation correction, the translation and (when estimated) the log scale, with
           cosine learning-rate decay. A weak prior pulls twists and hinge abductions toward 0 (keypoints
           cannot see them when a joint is straight), so that the rot6d block is reproducible. Every frame is
           independent (Adam is element-wise). Runs in float64; outputs come back in the input's dtype.

        Left hands (``handedness="left"``) are mirrored in, fitted as right hands and mirrored out.
        """
        if keypoints.ndim < 2 or keypoints.shape[-2:] != (NUM_JOINTS, 3):
            raise ValueError(
                f"keypoints must have shape (..., 21, 3) in MediaPipe order, got {tuple(keypoints.shape)}."
            )
        if handedness not in ("right", "left"):
            raise ValueError(f"handedness must be 'right' or 'left', got {handedness!r}.")
        if not bool(torch.isfinite(keypoints).all()):
            raise ValueError(
                "keypoints hold NaN/inf; drop or interpolate frames where tracking failed before fitting."
            )
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}.")
        # Fitting needs autograd, also when called under no_grad or inference_mode.
        with torch.inference_mode(False), torch.enable_grad():
            return self._fit(keypoints, iterations, handedness, bone_scale, learning_rate)

    def _fit(
        self,
        keypoints: Tensor,
        iterations: int,
        handedness: str,
        bone_scale: Tensor | float | None,
        learning_rate: float,
    ) -> KeypointFit:
        """:meth:`fit_keypoints` after its checks: palm fit, swing init, refinement, D162 assembly."""
        batch = keypoints.shape[:-2]
        out_dtype = keypoints.dtype if keypoints.is_floating_point() else torch.get_default_dtype()
        # float64 costs nothing here (the loop is overhead-bound) and keeps Adam's tiny second moments out of
        # the float32 denormal range, where CPU math is ~100x slower. clone(): never an inference tensor.
        target = keypoints.detach().to(torch.float64).clone().reshape(-1, NUM_JOINTS, 3)
        if handedness == "left":
            target = mirror_keypoints(target)

        with torch.no_grad():
            wrist_rot, transl, estimated_scale = self._fit_palm(target)
            if bone_scale is None:
                scale0 = estimated_scale
            else:
                scale0 = torch.as_tensor(bone_scale, dtype=target.dtype, device=target.device)
                scale0 = scale0.clone().expand(batch).reshape(-1)
            angles0 = self._initial_angles(target, wrist_rot)
        rotation, transl, angles, scale = self._refine_fit(
            target,
            wrist_rot,
            transl,
            angles0,
            scale0,
            iterations,
            learning_rate,
            fit_scale=bone_scale is None,
        )

        with torch.no_grad():
            motion = self.to_d162(rotation, transl, self.joint_rotations_from_angles(angles), bone_scale=scale)
            fitted = motion[..., JOINTS_XYZ].unflatten(-1, (NUM_JOINTS, 3))
            residual_mm = (fitted - target).norm(dim=-1).mean(dim=-1) * 1000.0
            if handedness == "left":
                motion = mirror_motion(motion)
        if residual_mm.numel():
            logger.debug(
                "fit_keypoints: %d frame(s), %d iterations, residual mean %.3f mm, max %.3f mm.",
                residual_mm.numel(),
                iterations,
                float(residual_mm.mean()),
                float(residual_mm.max()),
            )
        return KeypointFit(
            motion=motion.reshape(*batch, D162_DIM).to(out_dtype),
            residual_mm=residual_mm.reshape(batch).to(out_dtype),
            bone_scale=scale.reshape(batch).to(out_dtype),
            angles=angles.reshape(*batch, NUM_FINGER_JOINTS, 3).to(out_dtype),
        )

    def _refine_fit(
        self,
        target: Tensor,
        wrist_rot: Tensor,
        transl: Tensor,
        angles0: Tensor,
        scale0: Tensor,
        iterations: int,
        learning_rate: float,
        *,
        fit_scale: bool,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Projected Adam on (angles, wrist correction, translation, log scale); returns the refined pose."""
        low, high = self.limits.bounds(dtype=target.dtype, device=target.device)
        prior_weight = torch.full_like(low, _NEUTRAL_PRIOR_MM2)
        prior_weight[:, 0] = 0.0  # flexion is free
        prior_weight[list(_FREE_ABDUCTION_JOINTS), 1] = 0.0
        angles = angles0.clone().requires_grad_(True)
        wrist_delta = torch.zeros_like(transl, requires_grad=True)
        transl_delta_mm = torch.zeros_like(transl, requires_grad=True)
        log_scale = torch.zeros_like(scale0, requires_grad=fit_scale)
        params = [angles, wrist_delta, transl_delta_mm] + ([log_scale] if fit_scale else [])
        # Units where one Adam step (about the learning rate) is a sensible move: radians for angles,
        # millimetres for the translation, log units for the scale.
        step_sizes = [learning_rate, learning_rate * 0.25, learning_rate * 20.0, learning_rate * 0.1]
        target_mm = target * 1000.0

        def pose() -> tuple[Tensor, Tensor, Tensor]:
            rotation = wrist_rot @ axis_angle_to_matrix(wrist_delta)
            return rotation, transl + transl_delta_mm / 1000.0, scale0 * log_scale.exp()

        # A hand-written Adam (beta 0.9/0.999): torch.optim would import torch._dynamo (~2 s) on first use.
        first_moments = [torch.zeros_like(p) for p in params]
        second_moments = [torch.zeros_like(p) for p in params]
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        with torch.enable_grad():
            for step in range(1, iterations + 1):
                rotation, transl_now, scale = pose()
                joint_rots = self.joint_rotations_from_angles(angles)
                fitted = self.forward_kinematics(rotation, transl_now, joint_rots, bone_scale=scale)
                data = (fitted * 1000.0 - target_mm).square().sum(dim=-1).mean(dim=-1)
                prior = (prior_weight * angles.square()).sum(dim=(-2, -1))
                grads = torch.autograd.grad((data + prior).sum(), params)
                decay = 0.5 * (1.0 + math.cos(math.pi * (step - 1) / iterations))
                with torch.no_grad():
                    for param, grad, m, v, size in zip(
                        params, grads, first_moments, second_moments, step_sizes, strict=False
                    ):
                        m.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                        v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                        m_hat = m / (1.0 - beta1**step)
                        v_hat = v / (1.0 - beta2**step)
                        param.sub_(size * decay * m_hat / (v_hat.sqrt() + eps))
                    angles.copy_(torch.clamp(angles, min=low, max=high))
        with torch.no_grad():
            rotation, transl_now, scale = pose()
        return rotation, transl_now, angles.detach(), scale
