"""The look of a scene, per regime: camera, lights, textures, skin, distractors, occluders, sensor noise.

Lab and wild share the layout sampler (:mod:`layout`) and the motion families; only what this file samples
differs, so that anything a model learns about *what the hand does* transfers, and only appearance shifts:

* **lab**: one fixed camera (over the shoulder, looking at the table), plain table and backdrop, even light
  from two soft directional lights and a head light, no distractors, no occluders, no sensor noise.
* **wild**: procedural MuJoCo textures (checker / gradient / flat with random-noise, edge or cross marks) in
  random colours on the table, floor, wall and sky; jittered exocentric, side and egocentric (head-mounted,
  wide-angle, rolled) cameras; one to three coloured lights from random directions; distractor objects at the
  table's edges; sometimes an occluder between the camera and the hands; sensor noise and JPEG quality jitter.

Held-out appearance for ``test_wild``: the surface colour palette is split, and the train split draws textures
(table, floor, wall, sky, occluder, sleeve) only from its part, ``test_wild`` only from the other part. Texture
names encode pattern and colours (``checker-edge/slate+cream``), so disjointness is checkable from the ``scene``
column. Object colours are shared: they are the words the instructions use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .geometry import intrinsics_for, look_at, project, world_to_camera_points
from .layout import OBJECT_COLOURS, OBJECT_KINDS, Layout, SceneObject, to_planning_frame

#: Colours of procedural surfaces (table, floor, wall, sky, occluders, sleeves). Every fifth is held out for
#: ``test_wild``; see :func:`surface_palette`.
SURFACE_COLOURS: dict[str, tuple[float, float, float]] = {
    "oak": (0.62, 0.45, 0.28),
    "slate": (0.30, 0.34, 0.38),
    "cream": (0.93, 0.89, 0.78),
    "navy": (0.10, 0.14, 0.35),
    "terracotta": (0.72, 0.36, 0.24),
    "mint": (0.65, 0.88, 0.74),
    "walnut": (0.36, 0.24, 0.15),
    "charcoal": (0.17, 0.17, 0.18),
    "sand": (0.84, 0.75, 0.56),
    "teal": (0.10, 0.45, 0.45),
    "mustard": (0.82, 0.65, 0.16),
    "plum": (0.40, 0.18, 0.34),
    "ivory": (0.97, 0.96, 0.90),
    "olive": (0.45, 0.47, 0.20),
    "sky": (0.55, 0.75, 0.92),
    "coral": (0.95, 0.50, 0.42),
    "steel": (0.55, 0.60, 0.66),
    "burgundy": (0.45, 0.08, 0.14),
    "peach": (0.98, 0.78, 0.62),
    "moss": (0.35, 0.45, 0.25),
    "denim": (0.25, 0.38, 0.58),
    "ochre": (0.78, 0.52, 0.18),
    "graphite": (0.25, 0.26, 0.28),
    "rose": (0.86, 0.56, 0.62),
    "jade": (0.25, 0.62, 0.48),
    "lilac": (0.72, 0.64, 0.86),
    "rust": (0.58, 0.25, 0.12),
    "pearl": (0.88, 0.88, 0.86),
    "forest": (0.12, 0.30, 0.16),
    "amber": (0.95, 0.68, 0.20),
}
HELD_OUT_EVERY = 5
#: (builtin, mark) texture patterns of MuJoCo's procedural textures.
PATTERNS: tuple[tuple[str, str], ...] = (
    ("flat", "none"),
    ("flat", "random"),
    ("flat", "cross"),
    ("checker", "none"),
    ("checker", "edge"),
    ("checker", "random"),
    ("gradient", "none"),
    ("gradient", "random"),
)
#: Skin tones (linear-ish RGB), shared by all regimes and splits.
SKIN_TONES: tuple[tuple[float, float, float], ...] = (
    (0.96, 0.80, 0.69),
    (0.91, 0.72, 0.60),
    (0.84, 0.63, 0.50),
    (0.72, 0.52, 0.38),
    (0.56, 0.38, 0.26),
    (0.40, 0.27, 0.19),
)
LAB_SLEEVES: tuple[tuple[float, float, float], ...] = ((0.2, 0.3, 0.5), (0.25, 0.25, 0.27), (0.55, 0.1, 0.12))

# Lab camera: over the shoulder of a seated person, looking at the middle of the workspace.
LAB_CAMERA_POSITION = np.array([0.0, -0.52, 0.50])
LAB_CAMERA_TARGET = np.array([0.0, 0.06, 0.0])
LAB_FOVY = 58.0


@dataclass(frozen=True)
class Texture:
    """A MuJoCo procedural texture recipe; ``name`` identifies pattern and colours."""

    name: str
    builtin: str
    mark: str
    rgb1: tuple[float, float, float]
    rgb2: tuple[float, float, float]
    markrgb: tuple[float, float, float] = (0.0, 0.0, 0.0)
    random: float = 0.0
    repeat: float = 4.0
    colours: tuple[str, ...] = ()


@dataclass(frozen=True)
class Light:
    name: str
    position: tuple[float, float, float]
    direction: tuple[float, float, float]
    diffuse: tuple[float, float, float]
    specular: tuple[float, float, float]
    directional: bool = True


@dataclass
class CameraSpec:
    """World-from-camera rotation (OpenCV axes as columns), position, and vertical field of view (degrees)."""

    position: np.ndarray
    rotation: np.ndarray
    fovy: float
    mode: str = "lab"

    def intrinsics(self, width: int, height: int) -> tuple[float, float, float, float]:
        return intrinsics_for(self.fovy, width, height)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "position": [round(float(v), 5) for v in self.position],
            "rotation_world_from_camera": [[round(float(v), 6) for v in row] for row in self.rotation],
            "fovy_deg": round(float(self.fovy), 4),
            "convention": "OpenCV camera (+x right, +y down, +z forward); p_cam = R^T (p_world - position)",
        }


@dataclass
class Look:
    """Appearance of one clip (everything except the layout and the motion)."""

    regime: str
    camera: CameraSpec
    lights: list[Light]
    headlight: tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]
    table: Texture
    floor: Texture
    sky: Texture
    wall: Texture | None
    wall_distance: float
    skin_rgb: tuple[float, float, float]
    sleeve_rgb: tuple[float, float, float]
    sleeve_colour: str = "lab"
    distractors: list[SceneObject] = field(default_factory=list)
    occluder: dict[str, Any] | None = None
    noise_std: float = 0.0
    jpeg_quality: int = 90

    @property
    def textures(self) -> list[Texture]:
        return [t for t in (self.table, self.floor, self.sky, self.wall) if t is not None]

    def to_json(self) -> dict[str, Any]:
        return {
            "regime": self.regime,
            "textures": {
                "table": self.table.name,
                "floor": self.floor.name,
                "sky": self.sky.name,
                "wall": None if self.wall is None else self.wall.name,
            },
            "surface_colours": sorted({c for t in self.textures for c in t.colours} | self._extra_colours()),
            "lighting": {
                "headlight": {"ambient": list(self.headlight[0]), "diffuse": list(self.headlight[1])},
                "lights": [
                    {
                        "direction": [round(v, 4) for v in light.direction],
                        "diffuse": [round(v, 4) for v in light.diffuse],
                    }
                    for light in self.lights
                ],
            },
            "skin_rgb": [round(v, 4) for v in self.skin_rgb],
            "occluder": None
            if self.occluder is None
            else {k: (v if isinstance(v, str) else [round(float(x), 5) for x in v]) for k, v in self.occluder.items()},
            "noise_std": round(self.noise_std, 3),
            "jpeg_quality": self.jpeg_quality,
        }

    def _extra_colours(self) -> set[str]:
        extra = set()
        if self.occluder is not None:
            extra.add(self.occluder["colour"])
        if self.sleeve_colour in SURFACE_COLOURS:
            extra.add(self.sleeve_colour)
        return extra


def surface_palette(split: str) -> list[str]:
    """Surface colour names a split may use: ``test_wild`` gets every fifth colour, every other split the rest."""
    names = list(SURFACE_COLOURS)
    held_out = names[::HELD_OUT_EVERY]
    return held_out if split == "test_wild" else [n for n in names if n not in held_out]


def _texture(rng: np.random.Generator, palette: list[str], role: str) -> Texture:
    builtin, mark = PATTERNS[int(rng.integers(len(PATTERNS)))]
    first, second = (str(c) for c in rng.choice(palette, size=2, replace=False))
    mark_colour = str(rng.choice(palette))
    colours = (first, second) + ((mark_colour,) if mark != "none" else ())
    name = f"{builtin}-{mark}/{'+'.join(colours)}"
    repeat = float(rng.uniform(2.0, 10.0)) if role != "sky" else 1.0
    return Texture(
        name=name,
        builtin=builtin,
        mark=mark,
        rgb1=SURFACE_COLOURS[first],
        rgb2=SURFACE_COLOURS[second],
        markrgb=SURFACE_COLOURS[mark_colour],
        random=float(rng.uniform(0.02, 0.25)),
        repeat=repeat,
        colours=colours,
    )


def _plain(name: str, rgb: tuple[float, float, float], rgb2: tuple[float, float, float] | None = None) -> Texture:
    return Texture(name=name, builtin="gradient" if rgb2 else "flat", mark="none", rgb1=rgb, rgb2=rgb2 or rgb)


def lab_camera() -> CameraSpec:
    return CameraSpec(
        position=LAB_CAMERA_POSITION.copy(), rotation=look_at(LAB_CAMERA_POSITION, LAB_CAMERA_TARGET), fovy=LAB_FOVY
    )


def _wild_camera(rng: np.random.Generator) -> CameraSpec:
    mode = str(rng.choice(["exo", "side", "ego"], p=[0.4, 0.25, 0.35]))
    target = np.array([rng.uniform(-0.06, 0.06), rng.uniform(0.0, 0.12), rng.uniform(-0.02, 0.05)])
    if mode == "ego":
        # Head-mounted: close, steep, wide-angle, rolled with the head.
        position = np.array([rng.uniform(-0.10, 0.10), rng.uniform(-0.42, -0.28), rng.uniform(0.36, 0.55)])
        fovy = rng.uniform(62.0, 88.0)
        roll = math.radians(rng.uniform(-14.0, 14.0))
    else:
        azimuth = math.radians(
            -90.0 + (rng.uniform(-20.0, 20.0) if mode == "exo" else rng.choice([-1, 1]) * rng.uniform(25.0, 45.0))
        )
        elevation = math.radians(rng.uniform(28.0, 68.0))
        distance = rng.uniform(0.62, 1.0)
        offset = distance * np.array(
            [math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation)]
        )
        position = target + offset
        fovy = rng.uniform(42.0, 66.0)
        roll = math.radians(rng.uniform(-8.0, 8.0))
    return CameraSpec(position=position, rotation=look_at(position, target, roll), fovy=float(fovy), mode=mode)


def key_points(layout: Layout) -> np.ndarray:
    """World points that must be in view: the hands' wrists and fingertips region, and every layout object."""
    points = []
    for side, start in layout.hand_starts.items():
        forward = start.rotation[:, 0]
        for along in (0.0, 0.17):
            points.append(to_planning_frame(start.position + along * forward * layout.bone_scale, side))
    for obj in layout.objects:
        points.append(obj.position)
        points.append(obj.position + np.array([0.0, 0.0, obj.half_height]))
    return np.asarray(points)


def in_view(camera: CameraSpec, points: np.ndarray, image_size: tuple[int, int], margin: float = 0.06) -> bool:
    """Whether every point projects inside the image with a margin (fraction of the size) and in front."""
    width, height = image_size
    cam = world_to_camera_points(points, camera.rotation, camera.position)
    if (cam[:, 2] < 0.1).any():
        return False
    uv = project(cam, camera.intrinsics(width, height))
    lo = np.array([margin * width, margin * height])
    hi = np.array([(1 - margin) * width, (1 - margin) * height])
    return bool(((uv >= lo) & (uv <= hi)).all())


def _wild_lights(rng: np.random.Generator) -> list[Light]:
    lights = []
    for index in range(int(rng.integers(1, 4))):
        azimuth = rng.uniform(0.0, 2.0 * math.pi)
        elevation = math.radians(rng.uniform(20.0, 88.0))
        direction = -np.array(
            [math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation)]
        )
        intensity = rng.uniform(0.15, 0.75)
        tint = np.clip(1.0 + rng.normal(0.0, 0.12, size=3), 0.6, 1.3)
        diffuse = tuple(float(v) for v in np.clip(intensity * tint, 0.0, 1.0))
        specular = (float(rng.uniform(0.0, 0.3)),) * 3
        position = tuple(float(v) for v in -2.0 * direction)
        lights.append(Light(f"light{index}", position, tuple(float(v) for v in direction), diffuse, specular))
    return lights


def _distractors(rng: np.random.Generator, layout: Layout) -> list[SceneObject]:
    """Objects at the table's edges, outside the workspace, never sharing a target's colour and kind."""
    taken = {(layout.object(name).colour, layout.object(name).kind) for name in layout.targets.values()}
    placed: list[SceneObject] = []
    for index in range(int(rng.integers(0, 5))):
        for _ in range(20):
            kind = str(rng.choice(OBJECT_KINDS))
            colour = str(rng.choice(list(OBJECT_COLOURS)))
            if (colour, kind) in taken:
                continue
            if rng.uniform() < 0.5:
                xy = np.array([rng.uniform(-0.55, 0.55), rng.uniform(0.36, 0.44)])
            else:
                xy = np.array([rng.choice([-1, 1]) * rng.uniform(0.36, 0.55), rng.uniform(-0.25, 0.44)])
            size = _distractor_size(rng, kind)
            obj = SceneObject(
                f"distractor{index}",
                kind,
                colour,
                size,
                np.zeros(3),
                float(rng.uniform(-math.pi, math.pi)),
                "distractor",
            )
            obj.position = np.array([xy[0], xy[1], obj.half_height])
            if all(
                np.linalg.norm(obj.position[:2] - o.position[:2]) > obj.footprint_radius + o.footprint_radius + 0.02
                for o in placed + layout.objects
            ):
                placed.append(obj)
                break
    return placed


def _distractor_size(rng: np.random.Generator, kind: str) -> tuple[float, ...]:
    if kind == "box":
        return tuple(float(v) for v in rng.uniform(0.02, 0.07, size=3))
    if kind == "sphere":
        return (float(rng.uniform(0.02, 0.06)),)
    return (float(rng.uniform(0.025, 0.05)), float(rng.uniform(0.03, 0.09)))


def _occluder(rng: np.random.Generator, camera: CameraSpec, layout: Layout, palette: list[str]) -> dict[str, Any]:
    """A box or pole between the camera and the acting hand's path, offset sideways so it hides part of it."""
    side = layout.acting_sides[0]
    target = layout.object(layout.targets[side]).position
    hand = to_planning_frame(layout.hand_starts[side].position, side)
    focus = hand + rng.uniform(0.2, 0.8) * (target - hand)
    fraction = rng.uniform(0.3, 0.55)
    centre = camera.position + fraction * (focus - camera.position)
    lateral = (
        camera.rotation[:, 0] * rng.uniform(-1.0, 1.0) * 0.04 + camera.rotation[:, 1] * rng.uniform(-1.0, 1.0) * 0.03
    )
    colour = str(rng.choice(palette))
    if rng.uniform() < 0.5:
        shape = "box"
        size = rng.uniform([0.015, 0.015, 0.03], [0.05, 0.05, 0.09])
    else:
        shape = "cylinder"
        size = np.array([rng.uniform(0.01, 0.03), rng.uniform(0.05, 0.15), 0.0])
    euler = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6), rng.uniform(-math.pi, math.pi)])
    return {
        "type": shape,
        "position": centre + lateral,
        "size": size if shape == "box" else size[:2],
        "euler": euler,
        "rgb": SURFACE_COLOURS[colour],
        "colour": colour,
    }


def sample_look(
    rng: np.random.Generator, regime: str, split: str, layout: Layout, image_size: tuple[int, int]
) -> Look:
    """Appearance of one clip; ``rng`` is the clip's look stream, independent of its layout and motion stream."""
    skin = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]
    skin = tuple(float(v) for v in np.clip(np.asarray(skin) * rng.uniform(0.95, 1.05, size=3), 0, 1))
    if regime == "lab":
        return Look(
            regime="lab",
            camera=lab_camera(),
            lights=[
                Light("key", (0.0, -1.0, 2.0), (0.0, 0.45, -0.9), (0.45, 0.45, 0.45), (0.1, 0.1, 0.1)),
                Light("fill", (0.0, 1.0, 2.0), (0.0, -0.45, -0.9), (0.25, 0.25, 0.25), (0.0, 0.0, 0.0)),
            ],
            headlight=((0.32, 0.32, 0.32), (0.25, 0.25, 0.25), (0.05, 0.05, 0.05)),
            table=_plain("lab/table", (0.80, 0.78, 0.74)),
            floor=_plain("lab/floor", (0.55, 0.55, 0.56)),
            sky=_plain("lab/backdrop", (0.86, 0.87, 0.88), (0.70, 0.71, 0.73)),
            wall=_plain("lab/wall", (0.84, 0.85, 0.86)),
            wall_distance=1.3,
            skin_rgb=skin,
            sleeve_rgb=LAB_SLEEVES[int(rng.integers(len(LAB_SLEEVES)))],
        )
    if regime != "wild":
        raise ValueError(f"regime must be 'lab' or 'wild', got {regime!r}.")
    palette = surface_palette(split)
    points = key_points(layout)
    camera = None
    for _ in range(30):
        candidate = _wild_camera(rng)
        if in_view(candidate, points, image_size):
            camera = candidate
            break
    if camera is None:  # rare: fall back to a jittered lab view, which always sees the workspace
        camera = lab_camera()
        camera.fovy = float(rng.uniform(58.0, 66.0))
        camera.mode = "exo"
    ambient = float(rng.uniform(0.08, 0.4))
    head = float(rng.uniform(0.0, 0.35))
    sleeve = str(rng.choice(palette))
    look = Look(
        regime="wild",
        camera=camera,
        lights=_wild_lights(rng),
        headlight=((ambient,) * 3, (head,) * 3, (0.05,) * 3),
        table=_texture(rng, palette, "table"),
        floor=_texture(rng, palette, "floor"),
        sky=_texture(rng, palette, "sky"),
        wall=_texture(rng, palette, "wall") if rng.uniform() < 0.6 else None,
        wall_distance=float(rng.uniform(0.7, 2.0)),
        skin_rgb=skin,
        sleeve_rgb=SURFACE_COLOURS[sleeve],
        sleeve_colour=sleeve,
        distractors=_distractors(rng, layout),
        noise_std=float(rng.uniform(0.0, 6.0)),
        jpeg_quality=int(rng.integers(70, 96)),
    )
    if rng.uniform() < 0.3:
        look.occluder = _occluder(rng, camera, layout, palette)
    return look
