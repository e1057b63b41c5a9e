"""Hand shapes (finger angles) and their calibration: grip aperture and grasp point from forward kinematics.

Why calibrate instead of hand-tuning per object: the grip aperture must follow the object's size (a visible
property of the first frame), so the closure of a grasp is solved from the skeleton's own FK: for a target width
the closure ``c`` is chosen such that the thumb-tip to finger-tip distance equals the width plus the fingers'
thickness. The grasp point (between thumb and fingers, in the wrist frame) is then placed on the object, which
makes the wrist position follow the object's position exactly.

Angles are (flexion, abduction, twist) per joint in ``MANO_JOINT_ORDER``, right hand, degrees in the tables and
radians everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from modeling_jala.hand_jala import NUM_FINGER_JOINTS, HandSkeleton

_FINGERS = ("index", "middle", "pinky", "ring")  # MANO order of the four long fingers; the thumb comes last


def _shape(
    fingers: dict[str, tuple[float, float, float]] | tuple[float, float, float],
    thumb: tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]],
    spread: dict[str, float] | None = None,
) -> np.ndarray:
    """(15, 3) radians from per-finger (MCP, PIP, DIP) flexions in degrees, MCP abduction and thumb triples."""
    angles = np.zeros((NUM_FINGER_JOINTS, 3))
    spread = spread or {}
    for index, finger in enumerate(_FINGERS):
        flexions = fingers[finger] if isinstance(fingers, dict) else fingers
        angles[3 * index : 3 * index + 3, 0] = flexions
        angles[3 * index, 1] = spread.get(finger, 0.0)
    angles[12:15] = np.asarray(thumb, dtype=np.float64)
    return np.radians(angles)


_SPREAD = {"index": 8.0, "middle": 0.0, "ring": -7.0, "pinky": -14.0}
#: Named hand shapes, right hand. Finger abduction > 0 swings toward the thumb side.
POSTURES: dict[str, np.ndarray] = {
    # Relaxed on the table: slight curl everywhere.
    "rest": _shape((18.0, 22.0, 10.0), ((8.0, 12.0, 0.0), (10.0, 0.0, 0.0), (10.0, 0.0, 0.0)), _SPREAD),
    # Pre-grasp: flat, spread, thumb abducted away from the index.
    "power_open": _shape((0.0, 5.0, 3.0), ((-12.0, 32.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)), _SPREAD),
    # A closed power grasp around a ~3 cm object (closure 1 of the power synergy).
    "power_closed": _shape((42.0, 54.0, 36.0), ((24.0, 10.0, 6.0), (24.0, 0.0, 0.0), (30.0, 0.0, 0.0))),
    "pinch_open": _shape(
        {
            "index": (8.0, 8.0, 4.0),
            "middle": (45.0, 65.0, 35.0),
            "ring": (50.0, 70.0, 40.0),
            "pinky": (55.0, 75.0, 40.0),
        },
        ((-10.0, 30.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    ),
    # Thumb and index tips meet (4-5 mm between the keypoints); the other fingers tucked.
    "pinch_closed": _shape(
        {
            "index": (60.0, 50.0, 10.0),
            "middle": (55.0, 75.0, 40.0),
            "ring": (58.0, 78.0, 42.0),
            "pinky": (60.0, 80.0, 42.0),
        },
        ((20.0, 0.0, 0.0), (25.0, 0.0, 0.0), (30.0, 0.0, 0.0)),
    ),
    # Index straight, the others curled into the palm, thumb over the middle finger.
    "point": _shape(
        {
            "index": (0.0, 0.0, 0.0),
            "middle": (80.0, 95.0, 55.0),
            "ring": (82.0, 95.0, 55.0),
            "pinky": (85.0, 95.0, 55.0),
        },
        ((35.0, -5.0, 10.0), (35.0, 0.0, 0.0), (30.0, 0.0, 0.0)),
    ),
    # Flat hand, fingers together: pushing.
    "flat": _shape((3.0, 5.0, 3.0), ((5.0, 2.0, 0.0), (5.0, 0.0, 0.0), (5.0, 0.0, 0.0))),
    # Open and spread: waving.
    "spread": _shape(
        (-5.0, 3.0, 2.0),
        ((-15.0, 35.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
        {k: 1.6 * v for k, v in _SPREAD.items()},
    ),
}

#: Synergies whose closure is solved for an aperture: (open shape, closed shape, fingers that oppose the thumb).
SYNERGIES: dict[str, tuple[str, str, tuple[int, ...]]] = {
    "power": ("power_open", "power_closed", (8, 12)),  # thumb tip vs index and middle tips
    "pinch": ("pinch_open", "pinch_closed", (8,)),  # thumb tip vs index tip
}
#: Distance between the thumb-tip and finger-tip keypoints at contact beyond the object's width: the keypoints
#: sit inside the fingers, about one finger radius (7-9 mm) from the skin on each side.
CONTACT_MARGIN = 0.014
_CLOSURE_STEPS = 61


def blend(shape_a: np.ndarray, shape_b: np.ndarray, weight: float | np.ndarray) -> np.ndarray:
    """Linear blend of two shapes; ``weight`` 0 gives ``shape_a``."""
    weight = np.asarray(weight, dtype=np.float64)
    return shape_a + weight[..., None, None] * (shape_b - shape_a)


def synergy_shape(synergy: str, closure: float | np.ndarray) -> np.ndarray:
    open_name, closed_name, _ = SYNERGIES[synergy]
    return blend(POSTURES[open_name], POSTURES[closed_name], closure)


@dataclass(frozen=True)
class GraspCalibration:
    """Aperture, grasp point and grip axis of a synergy as functions of closure, for one bone scale."""

    closures: np.ndarray  # (S,) increasing from 0
    apertures: np.ndarray  # (S,) metres, decreasing
    grasp_points: np.ndarray  # (S, 3) wrist frame: midway between the thumb tip and the opposing tips
    grip_axes: np.ndarray  # (S, 3) wrist frame unit vectors from the opposing tips to the thumb tip

    def closure_for_width(self, width: float) -> float:
        """Closure at which the tips are ``width`` (+ contact margin) apart, clamped to the synergy's range."""
        target = width + CONTACT_MARGIN
        # np.interp needs increasing x: apertures decrease with closure.
        return float(np.interp(target, self.apertures[::-1], self.closures[::-1]))

    def grasp_point(self, closure: float) -> np.ndarray:
        return np.array([np.interp(closure, self.closures, self.grasp_points[:, k]) for k in range(3)])

    def grip_axis(self, closure: float) -> np.ndarray:
        axis = np.array([np.interp(closure, self.closures, self.grip_axes[:, k]) for k in range(3)])
        return axis / np.linalg.norm(axis)


def keypoints_in_wrist_frame(skeleton: HandSkeleton, angles: np.ndarray, bone_scale: float) -> np.ndarray:
    """(..., 15, 3) angles -> (..., 21, 3) keypoints of a right hand at the identity wrist pose."""
    angle_tensor = torch.from_numpy(np.asarray(angles, dtype=np.float64))
    batch = angle_tensor.shape[:-2]
    joint_rots = skeleton.joint_rotations_from_angles(angle_tensor)
    eye = torch.eye(3, dtype=torch.float64).expand(*batch, 3, 3)
    return skeleton.forward_kinematics(
        eye, torch.zeros(*batch, 3, dtype=torch.float64), joint_rots, bone_scale=bone_scale
    ).numpy()


@lru_cache(maxsize=1)
def shared_skeleton() -> HandSkeleton:
    """One default skeleton per process (its tensors are read-only and cached per dtype)."""
    return HandSkeleton()


@lru_cache(maxsize=512)
def _calibrate(synergy: str, bone_scale_key: int) -> GraspCalibration:
    bone_scale = bone_scale_key / 1000.0
    skeleton = shared_skeleton()
    closures = np.linspace(0.0, 1.0, _CLOSURE_STEPS)
    keypoints = keypoints_in_wrist_frame(skeleton, synergy_shape(synergy, closures), bone_scale)
    _, _, opposing = SYNERGIES[synergy]
    thumb = keypoints[:, 4]
    fingers = keypoints[:, list(opposing)].mean(axis=1)
    apertures = np.linalg.norm(thumb - fingers, axis=-1)
    # Keep the monotone part: past the point of contact some synergies open again (fist).
    stop = int(np.argmin(apertures)) + 1
    closures, apertures = closures[:stop], np.minimum.accumulate(apertures[:stop])
    axes = thumb[:stop] - fingers[:stop]
    return GraspCalibration(
        closures=closures,
        apertures=apertures,
        grasp_points=0.5 * (thumb[:stop] + fingers[:stop]),
        grip_axes=axes / np.linalg.norm(axes, axis=-1, keepdims=True),
    )


def calibration(synergy: str, bone_scale: float) -> GraspCalibration:
    """Cached calibration (bone scale rounded to 1e-3, far below anything visible)."""
    if synergy not in SYNERGIES:
        raise ValueError(f"synergy must be one of {sorted(SYNERGIES)}, got {synergy!r}.")
    return _calibrate(synergy, round(bone_scale * 1000))
