"""Where a right hand goes to grasp, pinch, push, point at or hold a given object (planning frame).

This is where the first frame decides the motion: the wrist position follows the object's position (the grasp
point between thumb and fingers is put on the object), the closure follows the object's width (calibrated
aperture, :mod:`postures`), and the wrist's heading follows the object's orientation (a box is gripped across its
narrow side, a mug by its handle when the handle is reachable). Everything is written for a right hand; the left
hand plans in the mirrored world.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .geometry import UP, normalize, rot_x, rot_y
from .layout import SceneObject
from .postures import POSTURES, calibration, keypoints_in_wrist_frame, shared_skeleton, synergy_shape

#: A right shoulder in the planning frame: natural reach headings point from here to the object.
SHOULDER = np.array([0.20, -0.50, 0.25])
#: Headings (radians) of the fingers that a right hand reaches comfortably: forward-right to forward-left.
HEADING_RANGE = (math.radians(15.0), math.radians(165.0))
#: Handle radius and offset from the mug wall (see ``mjcf._object_xml``).
MUG_HANDLE_OUT = 0.028
MUG_HANDLE_WIDTH = 0.011


def hand_rotation(heading: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Right-hand wrist rotation in the planning frame.

    ``heading``: direction of the fingers in the table plane (radians from +x; pi/2 is straight ahead).
    ``pitch`` > 0 tilts the fingers down toward the table; ``roll`` turns the hand about the fingers (pi/2 puts
    the thumb up and the palm facing left, the usual side grasp of a right hand).
    """
    forward = np.array([math.cos(heading), math.sin(heading), 0.0])
    base = np.stack((forward, np.cross(UP, forward), UP), axis=-1)
    return base @ rot_y(pitch) @ rot_x(roll)


def wrap(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def natural_heading(point: np.ndarray) -> float:
    """Finger heading of a relaxed reach from the shoulder to ``point``, clamped to the comfortable range."""
    delta = np.asarray(point)[:2] - SHOULDER[:2]
    return float(np.clip(math.atan2(delta[1], delta[0]), *HEADING_RANGE))


@dataclass
class GraspPlan:
    """A grasp of one object by a right hand: poses, the synergy and its closure, and what decided them."""

    rotation: np.ndarray
    position: np.ndarray  # wrist, planning frame
    angles: np.ndarray  # closed on the object
    open_angles: np.ndarray  # pre-shape
    approach: np.ndarray  # unit direction the hand moves in along the last few centimetres
    synergy: str
    closure: float
    width: float  # the width the grip spans (metres)
    style: str  # "top", "side", "handle"
    heading: float


def _grip_heading_offset(synergy: str, closure: float, bone_scale: float, pitch: float, roll: float) -> float:
    """Angle in the table plane between the fingers' heading and the horizontal grip axis of the grasp."""
    axis = hand_rotation(0.0, pitch, roll) @ calibration(synergy, bone_scale).grip_axis(closure)
    return math.atan2(axis[1], axis[0])


def _closure_and_point(synergy: str, width: float, bone_scale: float) -> tuple[float, np.ndarray]:
    cal = calibration(synergy, bone_scale)
    closure = cal.closure_for_width(width)
    return closure, cal.grasp_point(closure)


def plan_grasp(
    obj: SceneObject,
    bone_scale: float,
    rng: np.random.Generator,
    *,
    synergy: str = "power",
    allow_handle: bool = True,
    from_above: bool = False,
) -> GraspPlan:
    """Grasp ``obj`` (already in the planning frame): the style and heading follow its kind and orientation.

    ``from_above`` forces a top grasp (turning an object about the vertical needs one).
    """
    natural = natural_heading(obj.position)
    if synergy == "pinch" or from_above:
        if from_above and synergy != "pinch":
            return _top_grasp(obj, bone_scale, rng, synergy, natural, pitch=math.radians(rng.uniform(45.0, 60.0)))
        return _top_grasp(obj, bone_scale, rng, synergy, natural, pitch=math.radians(rng.uniform(40.0, 55.0)))
    if obj.kind == "mug" and allow_handle:
        handle_heading = wrap(obj.yaw + math.pi)  # fingers point from the handle toward the mug's centre
        if (
            abs(wrap(handle_heading - natural)) < math.radians(80.0)
            and HEADING_RANGE[0] - 0.3 < handle_heading < HEADING_RANGE[1] + 0.3
        ):
            return _handle_grasp(obj, bone_scale, rng, handle_heading)
    if obj.kind in ("cylinder", "mug") and obj.half_height > 0.035:
        return _side_grasp(obj, bone_scale, rng, natural)
    return _top_grasp(obj, bone_scale, rng, synergy, natural, pitch=math.radians(rng.uniform(25.0, 40.0)))


def _top_grasp(
    obj: SceneObject, bone_scale: float, rng: np.random.Generator, synergy: str, natural: float, pitch: float
) -> GraspPlan:
    roll = math.radians(rng.uniform(-8.0, 8.0))
    if obj.kind == "box":
        # Grip across the narrow side: the grip axis must lie along the box's shorter horizontal axis.
        narrow = obj.yaw + (0.0 if obj.size[0] <= obj.size[1] else math.pi / 2.0)
        square = abs(obj.size[0] - obj.size[1]) < 0.15 * max(obj.size[0], obj.size[1])
        width = obj.width
        closure, _ = _closure_and_point(synergy, width, bone_scale)
        offset = _grip_heading_offset(synergy, closure, bone_scale, pitch, roll)
        step = math.pi / 2.0 if square else math.pi
        candidates = [wrap(narrow - offset + k * step) for k in range(int(round(2 * math.pi / step)))]
        heading = min(candidates, key=lambda h: abs(wrap(h - natural)))
    else:
        width = obj.width
        heading = natural
    closure, point_w = _closure_and_point(synergy, width, bone_scale)
    rotation = hand_rotation(heading, pitch, roll)
    # The grip centre goes to the object's centre, or 2 cm below the top of a tall object.
    centre = obj.position.copy()
    centre[2] = max(obj.position[2], obj.top_z - 0.02) if obj.kind != "sphere" else obj.position[2]
    position = centre - rotation @ point_w
    open_closure = max(0.0, closure - 0.45)
    return GraspPlan(
        rotation=rotation,
        position=position,
        angles=synergy_shape(synergy, closure),
        open_angles=synergy_shape(synergy, open_closure),
        approach=normalize(np.array([0.0, 0.0, -1.0]) + 0.3 * rotation[:, 0]),
        synergy=synergy,
        closure=closure,
        width=width,
        style="top",
        heading=heading,
    )


def _side_grasp(obj: SceneObject, bone_scale: float, rng: np.random.Generator, heading: float) -> GraspPlan:
    roll = math.radians(rng.uniform(70.0, 88.0))
    pitch = math.radians(rng.uniform(0.0, 12.0))
    width = obj.width
    closure, point_w = _closure_and_point("power", width, bone_scale)
    rotation = hand_rotation(heading, pitch, roll)
    centre = obj.position.copy()
    centre[2] = max(obj.position[2] - 0.3 * obj.half_height, 0.03)
    position = centre - rotation @ point_w
    forward = np.array([math.cos(heading), math.sin(heading), 0.0])
    return GraspPlan(
        rotation=rotation,
        position=position,
        angles=synergy_shape("power", closure),
        open_angles=synergy_shape("power", max(0.0, closure - 0.5)),
        approach=forward,
        synergy="power",
        closure=closure,
        width=width,
        style="side",
        heading=heading,
    )


def _handle_grasp(obj: SceneObject, bone_scale: float, rng: np.random.Generator, heading: float) -> GraspPlan:
    roll = math.radians(rng.uniform(75.0, 90.0))
    width = MUG_HANDLE_WIDTH
    closure, point_w = _closure_and_point("pinch", width, bone_scale)
    rotation = hand_rotation(heading, 0.0, roll)
    direction = np.array([math.cos(obj.yaw), math.sin(obj.yaw), 0.0])
    handle = obj.position + direction * (obj.size[0] + MUG_HANDLE_OUT)
    position = handle - rotation @ point_w
    forward = np.array([math.cos(heading), math.sin(heading), 0.0])
    return GraspPlan(
        rotation=rotation,
        position=position,
        angles=synergy_shape("pinch", closure),
        open_angles=synergy_shape("pinch", max(0.0, closure - 0.5)),
        approach=forward,
        synergy="pinch",
        closure=closure,
        width=width,
        style="handle",
        heading=heading,
    )


@dataclass
class PushPlan:
    rotation: np.ndarray
    contact_position: np.ndarray  # wrist at first contact
    angles: np.ndarray
    direction: np.ndarray
    contact: str  # "palm", "back", "fingertips"


def plan_push(obj: SceneObject, direction: np.ndarray, bone_scale: float, rng: np.random.Generator) -> PushPlan:
    """A flat vertical hand behind ``obj`` (opposite ``direction``), touching it with palm, back or fingertips."""
    d = normalize(np.array([direction[0], direction[1], 0.0]))
    heading_d = math.atan2(d[1], d[0])
    angles = POSTURES["flat"]
    keypoints = keypoints_in_wrist_frame(shared_skeleton(), angles, bone_scale)
    if abs(wrap(heading_d - math.pi / 2.0)) <= math.radians(45.0):
        contact, forward = "fingertips", d
        contact_w = keypoints[12] + np.array([0.008, 0.0, 0.0])
    elif d[0] < 0.0:  # toward the body's midline: palm leads (natural for a right hand)
        contact, forward = "palm", np.cross(d, UP)
        contact_w = np.array([0.055, 0.0, -0.02]) * bone_scale
    else:  # away from the midline: the back of the hand leads
        contact, forward = "back", -np.cross(d, UP)
        contact_w = np.array([0.055, 0.0, 0.016]) * bone_scale
    heading = math.atan2(forward[1], forward[0])
    roll = math.radians(90.0 + rng.uniform(-8.0, 8.0))
    pitch = math.radians(rng.uniform(0.0, 15.0))
    rotation = hand_rotation(heading, pitch, roll)
    point = obj.position - d * (obj.extent_along(d) + 0.004)
    point[2] = min(obj.position[2], 0.035)
    return PushPlan(rotation, point - rotation @ contact_w, angles, d, contact)


def lowest_point_below_wrist(rotation: np.ndarray, angles: np.ndarray, bone_scale: float) -> float:
    """How far (metres, >= 0) the lowest keypoint of a posed hand hangs below its wrist."""
    keypoints = keypoints_in_wrist_frame(shared_skeleton(), angles, bone_scale) @ rotation.T
    return float(max(0.0, -keypoints[:, 2].min())) + 0.012


def fingertip_in_wrist_frame(angles: np.ndarray, bone_scale: float, keypoint: int = 8) -> np.ndarray:
    return keypoints_in_wrist_frame(shared_skeleton(), angles, bone_scale)[keypoint]
