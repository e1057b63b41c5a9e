"""Table-top layouts: which objects stand where, where the hands start, which hand acts on what.

This is the half of a scene that decides the motion, and it is sampled the same way in lab and wild (the other
half, the look, is in :mod:`scenes`). Everything the motion depends on is visible in the first frame: object
positions, sizes and orientations, obstacles, and the starting hands; the acting hand is the one closer to its
target (or the one already holding the object), never something only the instruction says.

World (table) frame: origin at the centre of the table top, +z up, +y away from the person, +x to their right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from modeling_jala.layout_jala import HANDS

from .geometry import rot_z

#: Object colours. Shared by every split: they are the words instructions use to name targets.
OBJECT_COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.80, 0.10, 0.10),
    "green": (0.15, 0.62, 0.20),
    "blue": (0.12, 0.28, 0.85),
    "yellow": (0.95, 0.82, 0.10),
    "orange": (0.95, 0.48, 0.08),
    "purple": (0.50, 0.20, 0.65),
    "white": (0.93, 0.93, 0.90),
    "black": (0.08, 0.08, 0.09),
    "pink": (0.95, 0.50, 0.65),
    "brown": (0.45, 0.28, 0.14),
    "grey": (0.50, 0.50, 0.52),
    "cyan": (0.10, 0.70, 0.78),
}
OBJECT_KINDS = ("box", "cylinder", "sphere", "mug")
#: Where objects may stand (table frame, metres): in front of the resting hands, within arm's reach.
WORKSPACE_X = (-0.30, 0.30)
WORKSPACE_Y = (0.06, 0.32)
TABLE_HALF = (0.60, 0.42)
TABLE_CENTRE_Y = 0.05


@dataclass
class SceneObject:
    """A primitive object standing on the table (or held); ``size`` depends on ``kind``.

    * box: half extents (x, y, z) in its own frame (yaw about +z);
    * cylinder, mug: (radius, half height); the mug's handle sticks out along its local +x;
    * sphere: (radius,).
    """

    name: str
    kind: str
    colour: str
    size: tuple[float, ...]
    position: np.ndarray
    yaw: float = 0.0
    role: str = "clutter"

    @property
    def rgb(self) -> tuple[float, float, float]:
        return OBJECT_COLOURS[self.colour]

    @property
    def half_height(self) -> float:
        return self.size[2] if self.kind == "box" else self.size[0] if self.kind == "sphere" else self.size[1]

    @property
    def top_z(self) -> float:
        return float(self.position[2] + self.half_height)

    @property
    def footprint_radius(self) -> float:
        """Radius of a vertical cylinder containing the object (handle included), for spacing objects."""
        if self.kind == "box":
            return math.hypot(self.size[0], self.size[1])
        if self.kind == "mug":
            return self.size[0] + 0.035
        return self.size[0]

    @property
    def rotation(self) -> np.ndarray:
        return rot_z(self.yaw)

    def extent_along(self, direction: np.ndarray) -> float:
        """Half extent of the body (handle excluded) along a horizontal unit direction."""
        if self.kind == "box":
            local = self.rotation.T @ np.asarray([direction[0], direction[1], 0.0])
            return float(abs(local[0]) * self.size[0] + abs(local[1]) * self.size[1])
        return float(self.size[0])

    @property
    def width(self) -> float:
        """The narrowest horizontal width, which a top grasp spans (its grip aperture follows it)."""
        if self.kind == "box":
            return 2.0 * min(self.size[0], self.size[1])
        return 2.0 * self.size[0]

    @property
    def volume_scale(self) -> float:
        """A size measure (geometric mean of the three extents, metres), for tests and captions."""
        if self.kind == "box":
            return float(np.prod(self.size) ** (1 / 3) * 2.0)
        if self.kind == "sphere":
            return 2.0 * self.size[0]
        return float((4.0 * self.size[0] ** 2 * 2.0 * self.size[1]) ** (1 / 3))

    def describe(self) -> str:
        return f"{self.colour} {self.kind}"

    def mirrored(self) -> SceneObject:
        """The object in the mirrored world (x -> -x); every object here is symmetric under its local y-mirror,
        so mirroring maps yaw to pi - yaw (the mug's handle stays on its local +x)."""
        position = self.position * np.array([-1.0, 1.0, 1.0])
        return replace(self, position=position, yaw=_wrap(math.pi - self.yaw))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.kind,
            "colour": self.colour,
            "rgb": [round(c, 4) for c in self.rgb],
            "size": [round(float(s), 5) for s in self.size],
            "position": [round(float(p), 5) for p in self.position],
            "yaw": round(float(self.yaw), 5),
            "role": self.role,
        }


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


@dataclass
class HandStart:
    """A hand's first-frame pose as a **right** hand in its side's planning frame.

    The left hand is planned as a right hand in the mirrored world (x -> -x) and mirrored back with
    ``hand_jala.mirror_motion``, so every motion family is written once.
    """

    position: np.ndarray
    rotation: np.ndarray
    angles: np.ndarray


@dataclass
class Layout:
    """Everything about a scene that the motion depends on."""

    family: str
    objects: list[SceneObject]
    hand_starts: dict[str, HandStart]
    #: acting side -> name of its target object; one entry per acting hand.
    targets: dict[str, str]
    bone_scale: float
    #: family-specific parameters (push direction, rotation angle, place relation, pour receiver, ...).
    params: dict[str, Any] = field(default_factory=dict)

    def object(self, name: str) -> SceneObject:
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise KeyError(f"no object named {name!r} in the layout; objects: {[o.name for o in self.objects]}.")

    def objects_for(self, side: str) -> dict[str, SceneObject]:
        """Objects in ``side``'s planning frame (mirrored for the left hand)."""
        return {obj.name: (obj.mirrored() if side == "left" else obj) for obj in self.objects}

    @property
    def acting_sides(self) -> tuple[str, ...]:
        return tuple(side for side in HANDS if side in self.targets)


def to_planning_frame(point: np.ndarray, side: str) -> np.ndarray:
    """World point -> ``side``'s planning frame (and back: the mirror is an involution)."""
    return np.asarray(point) * np.array([-1.0, 1.0, 1.0]) if side == "left" else np.asarray(point)
