"""Sampling table-top layouts for each motion family (shared by lab and wild, so the layout distribution is one).

The sampler places the objects a family needs (a small one for a pinch, a cup and a receiver for a pour, a large
box for a two-handed lift), clutter that doubles as references ("next to the green box"), and sometimes an
obstacle on the straight path from the acting hand to its target. Hands start at rest on either side; the acting
hand is the one closer to its target, or the one that already holds the object (release). Everything that
decides the motion is therefore visible in the first frame.
"""

from __future__ import annotations

import math

import numpy as np

from modeling_jala.layout_jala import HANDS

from .grasps import hand_rotation, lowest_point_below_wrist, plan_grasp
from .layout import (
    OBJECT_COLOURS,
    WORKSPACE_X,
    WORKSPACE_Y,
    HandStart,
    Layout,
    SceneObject,
    to_planning_frame,
)
from .postures import POSTURES

FAMILIES = ("reach", "grasp", "release", "pinch", "point", "wave", "rotate", "push", "pour")
#: Families that may be done by both hands at once.
TWO_HAND_FAMILIES = ("reach", "grasp", "pinch", "point", "wave", "push")
#: Families whose hand travels to a target on the table, so an obstacle on the way matters.
OBSTACLE_FAMILIES = ("reach", "grasp", "pinch", "rotate", "pour")
PUSH_DIRECTIONS = ("left", "right", "forward", "toward")
PLACE_RELATIONS = ("left of", "right of", "in front of", "behind", "on")
_SPACING = 0.03


class LayoutError(RuntimeError):
    """A sampled layout could not be completed (the caller resamples with the next draw)."""


class _Placer:
    """Places objects without overlap; names them obj0, obj1, ... in placement order."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.objects: list[SceneObject] = []

    def colour_for(self, kind: str) -> str:
        used = {o.colour for o in self.objects if o.kind == kind}
        free = [c for c in OBJECT_COLOURS if c not in used]
        return str(self.rng.choice(free))

    def fits(self, obj: SceneObject, margin: float = _SPACING) -> bool:
        return all(
            np.linalg.norm(obj.position[:2] - other.position[:2])
            > obj.footprint_radius + other.footprint_radius + margin
            for other in self.objects
        )

    def place(
        self,
        kind: str,
        size: tuple[float, ...],
        role: str,
        region: tuple[tuple[float, float], tuple[float, float]] = (WORKSPACE_X, WORKSPACE_Y),
        tries: int = 60,
    ) -> SceneObject:
        for _ in range(tries):
            obj = SceneObject(
                name=f"obj{len(self.objects)}",
                kind=kind,
                colour=self.colour_for(kind),
                size=size,
                position=np.zeros(3),
                yaw=float(self.rng.uniform(-math.pi, math.pi)),
                role=role,
            )
            xy = self.rng.uniform([region[0][0], region[1][0]], [region[0][1], region[1][1]])
            obj.position = np.array([xy[0], xy[1], obj.half_height])
            if self.fits(obj):
                self.objects.append(obj)
                return obj
        raise LayoutError(f"no free spot for a {kind} ({role}) after {tries} tries")

    def add(self, obj: SceneObject) -> SceneObject:
        obj.name = f"obj{len(self.objects)}"
        self.objects.append(obj)
        return obj


def object_size(rng: np.random.Generator, kind: str, size_class: str = "normal") -> tuple[float, ...]:
    """Sizes (metres) per kind; ``small`` objects are pinched, ``large`` boxes lifted with both hands."""
    if size_class == "small":
        if kind == "box":
            return tuple(float(v) for v in rng.uniform(0.009, 0.018, size=3))
        if kind == "sphere":
            return (float(rng.uniform(0.009, 0.02)),)
        return (float(rng.uniform(0.008, 0.015)), float(rng.uniform(0.015, 0.035)))
    if size_class == "large":
        return (float(rng.uniform(0.10, 0.15)), float(rng.uniform(0.05, 0.08)), float(rng.uniform(0.04, 0.075)))
    if kind == "box":
        return (float(rng.uniform(0.02, 0.055)), float(rng.uniform(0.02, 0.055)), float(rng.uniform(0.02, 0.06)))
    if kind == "sphere":
        return (float(rng.uniform(0.02, 0.05)),)
    if kind == "mug":
        return (float(rng.uniform(0.03, 0.045)), float(rng.uniform(0.035, 0.055)))
    return (float(rng.uniform(0.02, 0.045)), float(rng.uniform(0.03, 0.08)))


def rest_start(rng: np.random.Generator, bone_scale: float) -> HandStart:
    """A right hand resting on the table in front of its shoulder (planning frame)."""
    angles = POSTURES["rest"] + np.radians(rng.normal(0.0, 3.0, size=POSTURES["rest"].shape)) * np.array(
        [1.0, 0.5, 0.2]
    )
    rotation = hand_rotation(
        math.radians(rng.uniform(80.0, 112.0)),
        math.radians(rng.uniform(4.0, 14.0)),
        math.radians(rng.uniform(-12.0, 6.0)),
    )
    below = lowest_point_below_wrist(rotation, angles, bone_scale)
    position = np.array([rng.uniform(0.09, 0.25), rng.uniform(-0.25, -0.13), below + 0.004])
    return HandStart(position=position, rotation=rotation, angles=angles)


def hand_world_position(layout_or_starts: dict[str, HandStart], side: str) -> np.ndarray:
    return to_planning_frame(layout_or_starts[side].position, side)


def _closer_side(starts: dict[str, HandStart], point: np.ndarray) -> str:
    distances = {side: np.linalg.norm(hand_world_position(starts, side)[:2] - point[:2]) for side in HANDS}
    return min(distances, key=distances.__getitem__)


def _assign_two(starts: dict[str, HandStart], first: SceneObject, second: SceneObject) -> dict[str, str]:
    """Give each hand one target, minimising the total reach (so each hand takes the object on its side)."""
    left, right = (hand_world_position(starts, s)[:2] for s in HANDS)
    straight = np.linalg.norm(left - first.position[:2]) + np.linalg.norm(right - second.position[:2])
    crossed = np.linalg.norm(left - second.position[:2]) + np.linalg.norm(right - first.position[:2])
    return (
        {"left": first.name, "right": second.name}
        if straight <= crossed
        else {"left": second.name, "right": first.name}
    )


def _add_obstacle(
    rng: np.random.Generator, placer: _Placer, starts: dict[str, HandStart], side: str, target: SceneObject
) -> None:
    """A wall or bottle on the straight path from the hand to the target, if there is room for one.

    It stands far enough from the target (13-18 cm beyond its footprint) that the grasping hand does not overlap
    it; the motion then has to arc over it (see ``motions._clearance_lift``).
    """
    hand = hand_world_position(starts, side)
    fingertips = hand + to_planning_frame(starts[side].rotation[:, 0], side) * 0.17
    path = fingertips[:2] - target.position[:2]  # from the target back toward the hand
    length = float(np.linalg.norm(path))
    kind = "box" if rng.uniform() < 0.6 else "cylinder"
    if kind == "box":
        size = (float(rng.uniform(0.012, 0.022)), float(rng.uniform(0.04, 0.07)), float(rng.uniform(0.04, 0.07)))
    else:
        size = (float(rng.uniform(0.016, 0.026)), float(rng.uniform(0.05, 0.08)))
    radius = math.hypot(size[0], size[1]) if kind == "box" else size[0]
    along = target.footprint_radius + radius + float(rng.uniform(0.12, 0.17))
    if length < along + radius + 0.04:
        return
    xy = target.position[:2] + path / length * along
    # A wall stands across the path: the box's long side (local y) perpendicular to it.
    obstacle = SceneObject(
        "", kind, placer.colour_for(kind), size, np.zeros(3), math.atan2(path[1], path[0]), "obstacle"
    )
    obstacle.position = np.array([xy[0], xy[1], obstacle.half_height])
    if xy[1] > -0.02 and placer.fits(obstacle, margin=0.02):
        placer.add(obstacle)


def _add_clutter(rng: np.random.Generator, placer: _Placer, count: int) -> None:
    for _ in range(count):
        kind = str(rng.choice(["box", "cylinder", "sphere", "mug"]))
        try:
            placer.place(kind, object_size(rng, kind), "clutter")
        except LayoutError:
            return


def sample_layout(rng: np.random.Generator, family: str, two_hands: bool, max_tries: int = 20) -> Layout:
    """A layout for ``family``; ``two_hands`` is honoured only for :data:`TWO_HAND_FAMILIES`."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}.")
    for _ in range(max_tries):
        try:
            return _sample_layout_once(rng, family, two_hands and family in TWO_HAND_FAMILIES)
        except LayoutError:
            continue
    raise LayoutError(f"could not sample a {family!r} layout in {max_tries} tries; widen WORKSPACE_X/Y.")


def _sample_layout_once(rng: np.random.Generator, family: str, two_hands: bool) -> Layout:
    bone_scale = float(rng.uniform(0.9, 1.1))
    starts = {side: rest_start(rng, bone_scale) for side in HANDS}
    placer = _Placer(rng)
    params: dict = {}
    targets: dict[str, str] = {}

    if family == "release":
        return _release_layout(rng, placer, starts, bone_scale)

    if family == "grasp" and two_hands and rng.uniform() < 0.5:
        box = SceneObject(
            "", "box", "", object_size(rng, "box", "large"), np.zeros(3), float(rng.uniform(-0.3, 0.3)), "target"
        )
        box.colour = placer.colour_for("box")
        box.position = np.array([rng.uniform(-0.05, 0.05), rng.uniform(0.12, 0.22), box.half_height])
        placer.add(box)
        targets = {"left": box.name, "right": box.name}
        params["bimanual"] = True
        params["lift"] = float(rng.uniform(0.08, 0.15))
    else:
        kinds = {
            "pinch": ("box", "sphere", "cylinder"),
            "rotate": ("box", "cylinder"),
            "push": ("box", "cylinder", "mug", "sphere"),
            "pour": ("mug", "cylinder"),
        }.get(family, ("box", "cylinder", "sphere", "mug"))
        size_class = "small" if family == "pinch" else "normal"
        count = 2 if two_hands else 1
        chosen = []
        for _ in range(count):
            kind = str(rng.choice(kinds))
            size = object_size(rng, kind, size_class)
            if family == "pour":
                size = (float(rng.uniform(0.028, 0.04)), float(rng.uniform(0.045, 0.07)))
            chosen.append(placer.place(kind, size, "target"))
        if two_hands:
            targets = _assign_two(starts, chosen[0], chosen[1])
        else:
            targets = {_closer_side(starts, chosen[0].position): chosen[0].name}
        if family == "pour":
            kind = str(rng.choice(["mug", "cylinder"]))
            receiver = placer.place(
                kind, (float(rng.uniform(0.035, 0.05)), float(rng.uniform(0.035, 0.06))), "receiver"
            )
            params["receiver"] = receiver.name
        if family == "push":
            for side, name in targets.items():
                params.setdefault("push", {})[side] = _push_params(
                    rng, placer, placer.objects[int(name[3:])], two_hands
                )
        if family == "rotate":
            params["angle"] = float(rng.choice([-1.0, 1.0]) * math.radians(rng.uniform(45.0, 100.0)))
        if family in ("grasp", "pinch"):
            params["lift"] = float(rng.uniform(0.05, 0.14))
    if not two_hands and family in OBSTACLE_FAMILIES and rng.uniform() < 0.5:
        side = next(iter(targets))
        _add_obstacle(rng, placer, starts, side, placer.objects[int(targets[side][3:])])
    _add_clutter(rng, placer, int(rng.integers(0, 4)))
    return Layout(family, placer.objects, starts, targets, bone_scale, params)


def _push_params(rng: np.random.Generator, placer: _Placer, target: SceneObject, two_hands: bool) -> dict:
    """Direction (world frame, unit xy) and distance of a push; "toward" names a reference object."""
    options = list(PUSH_DIRECTIONS) if not two_hands else ["left", "right", "forward"]
    for _ in range(10):
        how = str(rng.choice(options))
        distance = float(rng.uniform(0.05, 0.14))
        reference = None
        if how == "toward":
            kind = str(rng.choice(["box", "cylinder", "sphere", "mug"]))
            region = (
                (target.position[0] - 0.25, target.position[0] + 0.25),
                (target.position[1] + 0.05, target.position[1] + 0.3),
            )
            try:
                reference = placer.place(kind, object_size(rng, kind), "reference", region=region, tries=15)
            except LayoutError:
                continue
            vector = reference.position[:2] - target.position[:2]
            gap = float(np.linalg.norm(vector)) - reference.footprint_radius - target.footprint_radius - 0.02
            distance = min(distance, max(0.03, gap))
            direction = vector / np.linalg.norm(vector)
        else:
            direction = {
                "left": np.array([-1.0, 0.0]),
                "right": np.array([1.0, 0.0]),
                "forward": np.array([0.0, 1.0]),
            }[how]
        end = target.position[:2] + direction * distance
        if not (WORKSPACE_X[0] - 0.05 <= end[0] <= WORKSPACE_X[1] + 0.05 and end[1] <= WORKSPACE_Y[1] + 0.06):
            continue
        return {
            "how": how,
            "direction": [float(direction[0]), float(direction[1]), 0.0],
            "distance": distance,
            "reference": None if reference is None else reference.name,
        }
    return {"how": "forward", "direction": [0.0, 1.0, 0.0], "distance": 0.05, "reference": None}


def _release_layout(
    rng: np.random.Generator, placer: _Placer, starts: dict[str, HandStart], bone_scale: float
) -> Layout:
    """The hand starts holding an object in the air; it puts it down relative to a reference object."""
    side = str(rng.choice(HANDS))
    kind = str(rng.choice(["box", "cylinder", "sphere", "mug"]))
    held = SceneObject(
        "",
        kind,
        "",
        object_size(rng, kind),
        np.array([0.15, 0.05, 0.2]),
        float(rng.uniform(-math.pi, math.pi)),
        "target",
    )
    if kind == "box":  # keep it graspable
        held.size = (min(held.size[0], 0.045), min(held.size[1], 0.045), held.size[2])
    held.colour = placer.colour_for(kind)
    plan = plan_grasp(held, bone_scale, rng)  # planning frame of `side` (a right hand)
    wrist = np.array([rng.uniform(0.08, 0.22), rng.uniform(-0.17, -0.06), rng.uniform(0.16, 0.24)])
    held.position = held.position + (wrist - plan.position)
    start = HandStart(position=wrist, rotation=plan.rotation, angles=plan.angles)
    starts = dict(starts)
    starts[side] = start
    world_held = held.mirrored() if side == "left" else held
    placer.add(world_held)
    reference = None
    for _ in range(10):
        relation = str(rng.choice(PLACE_RELATIONS))
        ref_kind = "box" if relation == "on" else str(rng.choice(["box", "cylinder", "sphere", "mug"]))
        size = object_size(rng, ref_kind)
        if relation == "on":
            size = (float(rng.uniform(0.05, 0.08)), float(rng.uniform(0.05, 0.08)), float(rng.uniform(0.015, 0.04)))
        try:
            reference = placer.place(
                ref_kind, size, "reference", region=(WORKSPACE_X, (0.1, WORKSPACE_Y[1])), tries=10
            )
        except LayoutError:
            continue
        offset = reference.footprint_radius + world_held.footprint_radius + 0.03
        step = {
            "left of": np.array([-offset, 0.0]),
            "right of": np.array([offset, 0.0]),
            "in front of": np.array([0.0, -offset]),
            "behind": np.array([0.0, offset]),
            "on": np.zeros(2),
        }[relation]
        xy = reference.position[:2] + step
        z = (2 * reference.half_height if relation == "on" else 0.0) + world_held.half_height
        probe = SceneObject("probe", kind, "", world_held.size, np.array([xy[0], xy[1], z]), 0.0)
        inside = WORKSPACE_X[0] - 0.04 <= xy[0] <= WORKSPACE_X[1] + 0.04 and 0.0 <= xy[1] <= WORKSPACE_Y[1] + 0.06
        others = [o for o in placer.objects if o is not reference and o is not world_held]
        free = all(
            np.linalg.norm(probe.position[:2] - o.position[:2]) > probe.footprint_radius + o.footprint_radius + 0.02
            for o in others
        )
        if inside and free:
            _add_clutter(rng, placer, int(rng.integers(0, 3)))
            return Layout(
                "release",
                placer.objects,
                starts,
                {side: world_held.name},
                bone_scale,
                {"reference": reference.name, "relation": relation, "place": [float(v) for v in probe.position]},
            )
        placer.objects.remove(reference)
    raise LayoutError("no room to place the held object")
