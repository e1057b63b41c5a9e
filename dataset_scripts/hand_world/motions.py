"""Instruction-conditioned motion families, planned from the layout (the first frame), with exact D162 labels.

Each family is a short script of key poses for a right hand in its side's planning frame (the left hand plans in
the mirrored world): reach, grasp, release (place), pinch, point, wave, rotate, push, pour-like. Key poses come
from :mod:`grasps`, so the wrist goes where the target is, the closure follows the object's width, the heading
follows the object's orientation, and transit arcs rise over obstacles. Between keys the pose follows a
minimum-jerk profile (Flash & Hogan 1985), the wrist path a quadratic Bezier arc, rotations a slerp; a little
low-pass physiological tremor is added. Grasped or pushed objects are attached to the wrist, so they move in the
rendered frames.

Labels: world-frame D162 from ``HandSkeleton.to_d162`` (joint block = FK), left hands through
``mirror_motion``; :mod:`clip` moves them into the camera frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from dataset_scripts.procedural_motion import minimum_jerk
from modeling_jala.hand_jala import D162_DIM, HandSkeleton, mirror_motion
from modeling_jala.layout_jala import FPS, HANDS

from .geometry import UP, matrix_to_quat, normalize, quat_to_matrix, rot_z, slerp
from .grasps import (
    fingertip_in_wrist_frame,
    hand_rotation,
    lowest_point_below_wrist,
    plan_grasp,
    plan_push,
)
from .layout import HandStart, Layout, SceneObject, to_planning_frame
from .postures import POSTURES, blend, keypoints_in_wrist_frame, shared_skeleton

MIN_FRAMES, MAX_FRAMES = 15, 150
_M_WORLD = np.diag([-1.0, 1.0, 1.0])
_M_LOCAL = np.diag([1.0, -1.0, 1.0])


@dataclass
class Pose:
    position: np.ndarray
    rotation: np.ndarray
    angles: np.ndarray


@dataclass
class _Segment:
    start_time: float
    duration: float
    start: Pose
    end: Pose
    lift: float = 0.0  # height (metres) of the arc added to the straight path at its middle


@dataclass
class Timeline:
    """Keyed motion of one right hand (planning frame), plus attach / detach events of objects."""

    start: Pose
    segments: list[_Segment] = field(default_factory=list)
    events: list[tuple[float, str, str]] = field(default_factory=list)  # (time, "attach"|"detach", object)
    waves: list[tuple[float, float, np.ndarray, float, float]] = field(default_factory=list)
    marks: dict[str, float | str] = field(default_factory=dict)

    @property
    def now(self) -> float:
        return self.segments[-1].start_time + self.segments[-1].duration if self.segments else 0.0

    @property
    def pose(self) -> Pose:
        return self.segments[-1].end if self.segments else self.start

    def move(self, duration: float, end: Pose, lift: float = 0.0) -> None:
        self.segments.append(_Segment(self.now, max(duration, 1e-3), self.pose, end, lift))

    def hold(self, duration: float) -> None:
        pose = self.pose
        self.move(duration, Pose(pose.position.copy(), pose.rotation.copy(), pose.angles.copy()))

    def attach(self, name: str) -> None:
        self.events.append((self.now, "attach", name))

    def detach(self, name: str) -> None:
        self.events.append((self.now, "detach", name))

    def mark(self, label: str) -> None:
        self.marks[label] = self.now

    def sample(self, num_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions (T, 3), rotations (T, 3, 3), angles (T, 15, 3) at 15 fps."""
        times = np.arange(num_frames) / FPS
        positions = np.repeat(self.start.position[None], num_frames, axis=0).astype(np.float64)
        quats = np.repeat(matrix_to_quat(self.start.rotation)[None], num_frames, axis=0)
        angles = np.repeat(self.start.angles[None], num_frames, axis=0).astype(np.float64)
        for segment in self.segments:
            inside = times >= segment.start_time
            if not inside.any():
                continue
            phase = np.clip((times[inside] - segment.start_time) / segment.duration, 0.0, 1.0)
            s = minimum_jerk(phase)
            p0, p1 = segment.start.position, segment.end.position
            path = p0[None] + s[:, None] * (p1 - p0)[None]
            path[:, 2] += segment.lift * arc_profile(s)
            positions[inside] = path
            quats[inside] = slerp(matrix_to_quat(segment.start.rotation), matrix_to_quat(segment.end.rotation), s)
            angles[inside] = (
                segment.start.angles[None] + s[:, None, None] * (segment.end.angles - segment.start.angles)[None]
            )
        rotations = quat_to_matrix(quats)
        for t0, t1, axis, amplitude, frequency in self.waves:
            inside = (times >= t0) & (times <= t1)
            local = times[inside] - t0
            envelope = np.sin(np.pi * np.clip(local / max(t1 - t0, 1e-3), 0, 1)) ** 0.5
            theta = amplitude * envelope * np.sin(2 * np.pi * frequency * local)
            rotations[inside] = _axis_rotation(axis, theta) @ rotations[inside]
        return positions, rotations, angles


def arc_profile(s: np.ndarray) -> np.ndarray:
    """Height profile of a transit arc over path phase s in [0, 1]: 0 at both ends, 1 in the middle, and broad
    (sqrt of a sine) so that the hand is already high when its fingers, ahead of the wrist, pass an obstacle."""
    return np.sqrt(np.sin(np.pi * np.clip(s, 0.0, 1.0)))


def _axis_rotation(axis: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """(N,) angles about a fixed unit axis -> (N, 3, 3) (Rodrigues)."""
    k = normalize(axis)
    skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    theta = np.asarray(theta)[:, None, None]
    return np.eye(3) + np.sin(theta) * skew + (1 - np.cos(theta)) * (skew @ skew)


@dataclass
class _Context:
    rng: np.random.Generator
    layout: Layout
    side: str
    objects: dict[str, SceneObject]  # planning frame
    start: HandStart
    delay: float  # seconds before this hand starts moving

    @property
    def scale(self) -> float:
        return self.layout.bone_scale

    def target(self) -> SceneObject:
        return self.objects[self.layout.targets[self.side]]

    def obstacles(self) -> list[SceneObject]:
        return [o for o in self.objects.values() if o.role == "obstacle"]

    def speed(self) -> float:
        return float(self.rng.uniform(0.28, 0.5))


def _start_timeline(ctx: _Context) -> Timeline:
    start = Pose(ctx.start.position.copy(), ctx.start.rotation.copy(), ctx.start.angles.copy())
    timeline = Timeline(start)
    if ctx.delay > 0:
        timeline.hold(ctx.delay)
    return timeline


def _transit(ctx: _Context, timeline: Timeline, end: Pose, base_arc: tuple[float, float] = (0.02, 0.06)) -> None:
    """Move to ``end`` along an arc high enough that the whole posed hand clears every obstacle."""
    start = timeline.pose
    distance = float(np.linalg.norm(end.position - start.position))
    duration = 0.35 + distance / ctx.speed()
    lift = float(ctx.rng.uniform(*base_arc))
    needed = _clearance_lift(ctx, start, end)
    if needed > lift:
        lift = needed + float(ctx.rng.uniform(0.0, 0.02))
        duration += 0.3
    timeline.move(duration, end, lift=lift)


def _clearance_lift(ctx: _Context, start: Pose, end: Pose, steps: int = 41, margin: float = 0.025) -> float:
    """Smallest arc height such that no keypoint of the moving hand passes through an obstacle.

    The hand is posed along the straight path (slerped rotation, interpolated fingers) at ``steps`` phases; where
    any keypoint is above an obstacle's footprint, the arc must lift that keypoint over the obstacle's top.
    """
    obstacles = ctx.obstacles()
    if not obstacles:
        return 0.0
    s = np.linspace(0.0, 1.0, steps)
    positions = start.position[None] + s[:, None] * (end.position - start.position)[None]
    rotations = quat_to_matrix(slerp(matrix_to_quat(start.rotation), matrix_to_quat(end.rotation), s))
    angles = start.angles[None] + s[:, None, None] * (end.angles - start.angles)[None]
    keypoints = np.einsum("sij,skj->ski", rotations, keypoints_in_wrist_frame(shared_skeleton(), angles, ctx.scale))
    keypoints = keypoints + positions[:, None]
    profile = arc_profile(s)
    needed = 0.0
    for obstacle in obstacles:
        over = (
            np.linalg.norm(keypoints[..., :2] - obstacle.position[None, None, :2], axis=-1)
            < obstacle.footprint_radius + 0.015
        )
        rise = np.where(over, obstacle.top_z + margin - keypoints[..., 2], 0.0).max(axis=1)  # per phase
        inside = (rise > 0) & (profile > 0.05)
        if inside.any():
            needed = max(needed, float((rise[inside] / profile[inside]).max()))
    return min(needed, 0.3)


def _retreat(ctx: _Context, timeline: Timeline) -> None:
    """Sometimes go back toward the resting pose; sometimes stay (clips also end mid-activity)."""
    if ctx.rng.uniform() < 0.4:
        position = ctx.start.position + ctx.rng.normal(0, 0.015, 3) * np.array([1, 1, 0])
        rotation = ctx.start.rotation
        if ctx.layout.family == "release":  # started in the air holding the object: come to rest on the table
            rotation = hand_rotation(math.radians(95.0), math.radians(8.0), 0.0)
            position[2] = lowest_point_below_wrist(rotation, POSTURES["rest"], ctx.scale) + 0.004
        _transit(ctx, timeline, Pose(position, rotation, POSTURES["rest"]), base_arc=(0.01, 0.04))


def _lifted(pose: Pose, height: float, toward: np.ndarray | None = None) -> Pose:
    position = pose.position + UP * height
    if toward is not None:
        position = position + toward
    return Pose(position, pose.rotation, pose.angles)


def _grasp_and_lift(
    ctx: _Context,
    timeline: Timeline,
    obj: SceneObject,
    synergy: str = "power",
    allow_handle: bool = True,
    from_above: bool = False,
) -> None:
    """Pre-shape, approach, close on ``obj`` and attach it (the lift is up to the caller).

    With an obstacle in front, the hand reaches over it and grasps from above (a low side grasp would collide).
    """
    from_above = from_above or bool(ctx.obstacles())
    plan = plan_grasp(obj, ctx.scale, ctx.rng, synergy=synergy, allow_handle=allow_handle, from_above=from_above)
    pre = Pose(plan.position - plan.approach * 0.06 + UP * 0.02, plan.rotation, plan.open_angles)
    _transit(ctx, timeline, pre)
    timeline.move(float(ctx.rng.uniform(0.35, 0.6)), Pose(plan.position, plan.rotation, plan.open_angles))
    timeline.move(float(ctx.rng.uniform(0.3, 0.5)), Pose(plan.position, plan.rotation, plan.angles))
    timeline.mark("grasp")
    timeline.attach(obj.name)
    timeline.marks["closure"] = plan.closure
    timeline.marks["grip_width"] = plan.width
    timeline.marks["heading"] = plan.heading
    timeline.marks["grasp_style"] = plan.style


def _reach(ctx: _Context, timeline: Timeline) -> None:
    obj = ctx.target()
    plan = plan_grasp(obj, ctx.scale, ctx.rng)
    # Stop just short of the object with an open hand, fingers a little wider than the object.
    end = Pose(plan.position - plan.approach * float(ctx.rng.uniform(0.0, 0.025)), plan.rotation, plan.open_angles)
    _transit(ctx, timeline, end)
    timeline.mark("arrive")
    timeline.hold(float(ctx.rng.uniform(0.3, 1.2)))
    _retreat(ctx, timeline)


def _grasp(ctx: _Context, timeline: Timeline, synergy: str = "power") -> None:
    obj = ctx.target()
    _grasp_and_lift(ctx, timeline, obj, synergy)
    lift = float(ctx.layout.params.get("lift", 0.1))
    toward = None
    if ctx.rng.uniform() < 0.3:  # bring it closer to the body
        toward = np.array([0.0, -float(ctx.rng.uniform(0.05, 0.12)), 0.0])
    timeline.move(float(ctx.rng.uniform(0.5, 0.9)), _lifted(timeline.pose, lift, toward))
    timeline.mark("lifted")
    timeline.hold(float(ctx.rng.uniform(0.2, 1.2)))


def _bimanual_lift(ctx: _Context, timeline: Timeline, timing: dict[str, float]) -> None:
    """Both hands on the two far sides of a large box, palms inward, lift together (right hand carries it)."""
    box = ctx.target()
    rotation_box = box.rotation
    # The box face whose outward normal points most to this hand's side (+x in the planning frame).
    normals = [rotation_box[:, 0], -rotation_box[:, 0], rotation_box[:, 1], -rotation_box[:, 1]]
    extents = [box.size[0], box.size[0], box.size[1], box.size[1]]
    index = int(np.argmax([n[0] for n in normals]))
    normal, extent = normals[index], extents[index]
    forward = -np.cross(normal, UP)
    heading = math.atan2(forward[1], forward[0])
    rotation = hand_rotation(heading, math.radians(5.0), math.radians(90.0))
    palm_w = np.array([0.05, 0.0, -0.02]) * ctx.scale
    contact = box.position + normal * (extent + 0.004)
    contact[2] = box.position[2]
    angles = blend(POSTURES["flat"], POSTURES["power_closed"], 0.25)
    grip = Pose(contact - rotation @ palm_w, rotation, angles)
    pre = Pose(grip.position + normal * 0.06 + UP * 0.03, rotation, POSTURES["flat"])
    timeline.move(timing["transit"], pre, lift=0.03)
    timeline.move(timing["approach"], grip)
    timeline.mark("grasp")
    if ctx.side == "right":
        timeline.attach(box.name)
    timeline.move(timing["lift_time"], _lifted(grip, ctx.layout.params["lift"]))
    timeline.mark("lifted")
    timeline.hold(timing["hold"])


def _release(ctx: _Context, timeline: Timeline) -> None:
    obj = ctx.target()
    timeline.attach(obj.name)  # held from the first frame
    place = to_planning_frame(np.asarray(ctx.layout.params["place"]), ctx.side)
    offset = ctx.start.position - obj.position  # wrist relative to the held object, fixed while held
    above = Pose(
        place + offset + UP * float(ctx.rng.uniform(0.04, 0.08)), timeline.pose.rotation, timeline.pose.angles
    )
    _transit(ctx, timeline, above, base_arc=(0.0, 0.03))
    down = Pose(place + offset, above.rotation, above.angles)
    timeline.move(float(ctx.rng.uniform(0.4, 0.7)), down)
    timeline.mark("placed")
    timeline.detach(obj.name)
    opened = blend(above.angles, POSTURES["power_open"], 0.7)
    timeline.move(float(ctx.rng.uniform(0.3, 0.5)), Pose(down.position, down.rotation, opened))
    away = Pose(down.position + UP * 0.06 - normalize(np.r_[down.rotation[:2, 0], 0.0]) * 0.04, down.rotation, opened)
    timeline.move(float(ctx.rng.uniform(0.4, 0.7)), away)
    _retreat(ctx, timeline)


def _pinch(ctx: _Context, timeline: Timeline) -> None:
    _grasp(ctx, timeline, synergy="pinch")


def _point(ctx: _Context, timeline: Timeline) -> None:
    obj = ctx.target()
    goal = obj.position + UP * obj.half_height * 0.5
    hand = ctx.start.position
    direction = goal - hand
    heading = math.atan2(direction[1], direction[0])
    heading = float(np.clip(heading, math.radians(10.0), math.radians(170.0)))
    pitch = math.radians(ctx.rng.uniform(18.0, 38.0))
    rotation = hand_rotation(heading, pitch, math.radians(ctx.rng.uniform(35.0, 70.0)))
    angles = POSTURES["point"]
    tip = fingertip_in_wrist_frame(angles, ctx.scale, 8)
    pointing = normalize(rotation @ tip)
    gap = float(ctx.rng.uniform(0.06, 0.14))
    position = goal - pointing * gap - rotation @ tip
    position[2] = max(position[2], lowest_point_below_wrist(rotation, angles, ctx.scale) + 0.01)
    _transit(ctx, timeline, Pose(position, rotation, angles))
    timeline.mark("arrive")
    timeline.hold(float(ctx.rng.uniform(0.5, 1.8)))
    _retreat(ctx, timeline)


def _wave(ctx: _Context, timeline: Timeline) -> None:
    obj = ctx.target()
    tilt = math.radians(ctx.rng.uniform(-15.0, 20.0))
    fingers = normalize(UP + math.tan(tilt) * np.array([0.0, 1.0, 0.0]))
    rotation = np.stack((fingers, np.array([-1.0, 0.0, 0.0]), np.cross(fingers, np.array([-1.0, 0.0, 0.0]))), axis=-1)
    position = obj.position + np.array([ctx.rng.uniform(-0.03, 0.03), -0.06, 0.0])
    position[2] = obj.top_z + float(ctx.rng.uniform(0.08, 0.18))
    _transit(ctx, timeline, Pose(position, rotation, POSTURES["spread"]))
    timeline.mark("arrive")
    cycles = int(ctx.rng.integers(2, 6))
    frequency = float(ctx.rng.uniform(1.2, 2.4))
    duration = cycles / frequency
    t0 = timeline.now
    timeline.hold(duration)
    timeline.waves.append(
        (t0, t0 + duration, np.array([0.0, 1.0, 0.0]), math.radians(ctx.rng.uniform(15.0, 30.0)), frequency)
    )
    _retreat(ctx, timeline)


def _rotate(ctx: _Context, timeline: Timeline) -> None:
    obj = ctx.target()
    _grasp_and_lift(ctx, timeline, obj, allow_handle=False, from_above=True)
    angle = float(ctx.layout.params["angle"]) * (-1.0 if ctx.side == "left" else 1.0)
    grip = timeline.pose
    turn = rot_z(angle)
    centre = obj.position
    turned = Pose(centre + turn @ (grip.position - centre), turn @ grip.rotation, grip.angles)
    timeline.move(float(ctx.rng.uniform(0.6, 1.2)) * abs(angle) / math.radians(60.0), turned)
    timeline.mark("turned")
    timeline.detach(obj.name)
    opened = Pose(turned.position, turned.rotation, blend(turned.angles, POSTURES["power_open"], 0.7))
    timeline.move(0.35, opened)
    timeline.move(0.5, _lifted(opened, 0.06))
    _retreat(ctx, timeline)


def _push(ctx: _Context, timeline: Timeline) -> None:
    obj = ctx.target()
    spec = ctx.layout.params["push"][ctx.side]
    direction = to_planning_frame(np.asarray(spec["direction"]), ctx.side)
    plan = plan_push(obj, direction, ctx.scale, ctx.rng)
    pre = Pose(plan.contact_position - plan.direction * 0.05 + UP * 0.02, plan.rotation, plan.angles)
    _transit(ctx, timeline, pre)
    contact = Pose(plan.contact_position, plan.rotation, plan.angles)
    timeline.move(float(ctx.rng.uniform(0.3, 0.5)), contact)
    timeline.mark("contact")
    timeline.attach(obj.name)
    distance = float(spec["distance"])
    pushed = Pose(contact.position + plan.direction * distance, plan.rotation, plan.angles)
    timeline.move(0.4 + distance / float(ctx.rng.uniform(0.12, 0.25)), pushed)
    timeline.mark("pushed")
    timeline.detach(obj.name)
    timeline.move(0.4, Pose(pushed.position - plan.direction * 0.04 + UP * 0.04, plan.rotation, plan.angles))
    _retreat(ctx, timeline)


def _pour(ctx: _Context, timeline: Timeline) -> None:
    source = ctx.target()
    receiver = ctx.objects[ctx.layout.params["receiver"]]
    _grasp_and_lift(ctx, timeline, source, allow_handle=False)
    grip = timeline.pose
    hold_offset = grip.position - source.position  # wrist relative to the held object's centre
    lift = Pose(grip.position + UP * float(ctx.rng.uniform(0.08, 0.12)), grip.rotation, grip.angles)
    timeline.move(float(ctx.rng.uniform(0.4, 0.7)), lift)
    # Beside the receiver, on the side the hand comes from, high enough that the cup's rim clears it.
    to_source = normalize(np.r_[(source.position - receiver.position)[:2], 0.0])
    side_gap = receiver.size[0] + source.size[0] * 0.6
    centre = receiver.position + to_source * side_gap
    centre[2] = receiver.top_z + source.half_height + float(ctx.rng.uniform(0.03, 0.06))
    above = Pose(centre + hold_offset, grip.rotation, grip.angles)
    _transit(ctx, timeline, above, base_arc=(0.0, 0.03))
    timeline.mark("above")
    # Tilt about the fingers' axis through the object's centre, toward the receiver.
    axis = grip.rotation[:, 0]
    best = None
    for sign in (1.0, -1.0):
        tilt = _axis_rotation(axis, np.array([sign * math.radians(ctx.rng.uniform(75.0, 110.0))]))[0]
        top = centre + tilt @ (UP * source.half_height)
        score = np.linalg.norm(top[:2] - receiver.position[:2])
        if best is None or score < best[0]:
            best = (score, tilt)
    tilt = best[1]
    tilted = Pose(centre + tilt @ hold_offset, tilt @ grip.rotation, grip.angles)
    timeline.move(float(ctx.rng.uniform(0.6, 1.0)), tilted)
    timeline.mark("poured")
    timeline.hold(float(ctx.rng.uniform(0.5, 1.5)))
    timeline.move(float(ctx.rng.uniform(0.5, 0.9)), above)
    if ctx.rng.uniform() < 0.5:  # put it back down where it was
        back = Pose(source.position + hold_offset, grip.rotation, grip.angles)
        _transit(ctx, timeline, back, base_arc=(0.0, 0.03))
        timeline.detach(source.name)
        timeline.move(0.4, Pose(back.position, back.rotation, blend(back.angles, POSTURES["power_open"], 0.7)))


_FAMILY_PLANNERS = {
    "reach": _reach,
    "grasp": _grasp,
    "release": _release,
    "pinch": _pinch,
    "point": _point,
    "wave": _wave,
    "rotate": _rotate,
    "push": _push,
    "pour": _pour,
}


@dataclass
class ClipMotion:
    """A planned clip: world-frame D162 of both hands (idle hands too, for rendering), object poses, events."""

    num_frames: int
    motion_world: np.ndarray  # (T, 2, 162) float64, both hands, (left, right)
    hands_present: tuple[bool, bool]  # acting hands
    object_poses: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (T, 3) positions, (T, 3, 3) rotations
    marks: dict[str, dict[str, float | str]]  # side -> {"grasp": seconds, "grasp_style": "top", ...}


def _tremor(rng: np.random.Generator, num_frames: int, dims: tuple[int, ...], scale: float) -> np.ndarray:
    """Low-pass (about 3 Hz) noise: smoothed white noise, rescaled to ``scale`` standard deviation."""
    raw = rng.normal(size=(num_frames + 6, *dims))
    kernel = np.ones(5) / 5.0
    smooth = np.apply_along_axis(lambda x: np.convolve(x, kernel, mode="valid"), 0, raw)[:num_frames]
    return smooth * scale * math.sqrt(5.0)


def plan_clip(rng: np.random.Generator, layout: Layout, skeleton: HandSkeleton | None = None) -> ClipMotion:
    """Plan every acting hand's family script, let idle hands rest, and build D162 and object trajectories."""
    skeleton = skeleton or shared_skeleton()
    planner = _FAMILY_PLANNERS[layout.family]
    timelines: dict[str, Timeline] = {}
    bimanual = bool(layout.params.get("bimanual"))
    timing = {
        "transit": float(rng.uniform(0.9, 1.4)),
        "approach": float(rng.uniform(0.4, 0.6)),
        "lift_time": float(rng.uniform(0.6, 1.0)),
        "hold": float(rng.uniform(0.5, 1.5)),
    }
    pre_roll = float(rng.uniform(0.0, 0.6))
    for side in HANDS:
        if side not in layout.targets:
            continue
        delay = pre_roll + (0.0 if bimanual or len(layout.targets) == 1 else float(rng.uniform(0.0, 0.8)))
        ctx = _Context(rng, layout, side, layout.objects_for(side), layout.hand_starts[side], delay)
        timeline = _start_timeline(ctx)
        if bimanual:
            _bimanual_lift(ctx, timeline, timing)
        else:
            planner(ctx, timeline)
        timelines[side] = timeline
    end = max(t.now for t in timelines.values()) + float(rng.uniform(0.1, 0.8))
    num_frames = int(np.clip(round(end * FPS) + 1, MIN_FRAMES, MAX_FRAMES))

    motion = np.zeros((num_frames, 2, D162_DIM))
    object_poses: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for slot, side in enumerate(HANDS):
        start = layout.hand_starts[side]
        if side in timelines:
            positions, rotations, angles = timelines[side].sample(num_frames)
        else:  # idle: rests where it is, with a slow drift
            positions = np.repeat(start.position[None], num_frames, axis=0)
            rotations = np.repeat(start.rotation[None], num_frames, axis=0)
            angles = np.repeat(start.angles[None], num_frames, axis=0)
            positions = positions + _tremor(rng, num_frames, (3,), 0.002) * np.array([1.0, 1.0, 0.2])
        positions = positions + _tremor(rng, num_frames, (3,), 0.0007)
        angles = skeleton.clamp_angles(
            torch.from_numpy(angles + _tremor(rng, num_frames, (15, 3), math.radians(0.5)))
        ).numpy()
        d162 = skeleton.to_d162(
            torch.from_numpy(rotations),
            torch.from_numpy(positions),
            skeleton.joint_rotations_from_angles(torch.from_numpy(angles)),
            bone_scale=layout.bone_scale,
        )
        if side == "left":
            d162 = mirror_motion(d162)
        motion[:, slot] = d162.numpy()
        if side in timelines:
            for name, trajectory in _object_trajectories(
                timelines[side], layout.objects_for(side), positions, rotations
            ).items():
                if side == "left":
                    trajectory = (trajectory[0] @ _M_WORLD, _M_WORLD @ trajectory[1] @ _M_LOCAL)
                object_poses[name] = trajectory
    marks = {side: dict(t.marks) for side, t in timelines.items()}
    return ClipMotion(num_frames, motion, tuple(side in timelines for side in HANDS), object_poses, marks)


def _object_trajectories(
    timeline: Timeline, objects: dict[str, SceneObject], positions: np.ndarray, rotations: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Poses of the objects this hand attaches: rigidly follow the wrist between attach and detach."""
    num_frames = len(positions)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    intervals: dict[str, list[float]] = {}
    for time, kind, name in timeline.events:
        intervals.setdefault(name, [math.inf, math.inf])
        if kind == "attach":
            intervals[name][0] = min(intervals[name][0], time)
        else:
            intervals[name][1] = time
    for name, (t_attach, t_detach) in intervals.items():
        obj = objects[name]
        frame_attach = min(int(math.floor(t_attach * FPS + 1e-6)), num_frames - 1)
        frame_detach = num_frames if math.isinf(t_detach) else min(int(round(t_detach * FPS)), num_frames - 1)
        obj_pos = np.repeat(obj.position[None], num_frames, axis=0).astype(np.float64)
        obj_rot = np.repeat(obj.rotation[None], num_frames, axis=0)
        wrist_rot, wrist_pos = rotations[frame_attach], positions[frame_attach]
        relative_rot = wrist_rot.T @ obj.rotation
        relative_pos = wrist_rot.T @ (obj.position - wrist_pos)
        for t in range(frame_attach, num_frames):
            source = min(t, frame_detach)
            obj_rot[t] = rotations[source] @ relative_rot
            obj_pos[t] = positions[source] + rotations[source] @ relative_pos
        out[name] = (obj_pos, obj_rot)
    return out


def motion_summary(layout: Layout, clip: ClipMotion) -> dict[str, object]:
    """Facts the scene JSON reports about the motion (for evaluation and tests)."""
    return {
        "family": layout.family,
        "acting_hands": [side for side in HANDS if side in layout.targets],
        "targets": dict(layout.targets),
        "params": _jsonable(layout.params),
        "events": {side: {k: _jsonable(v) for k, v in marks.items()} for side, marks in clip.marks.items()},
        "moved_objects": sorted(clip.object_poses),
    }


def _jsonable(value: object) -> object:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    return value
