"""MJCF generated in code: two MANO-like hands built from hand_jala's skeleton, objects, table, camera, lights.

Why a kinematic tree with ball joints and no physics: the renderer must show exactly the pose of the label. Each
keypoint that rotates is a body whose local offset is the skeleton's rest offset and whose ball joint holds the
MANO joint's local rotation; the wrist body has a free joint holding the wrist pose. MuJoCo's own kinematics
(``mj_kinematics``) then composes the same rotations in the same order as ``HandSkeleton.forward_kinematics``,
so the rendered joints coincide with the D162 joint block (tested to float precision). Bones are capsules and
joints spheres, with a skin-like material; a palm, thenar and hypothenar pads make the silhouette read as a hand; a
forearm with a sleeve (a mocap body, posed from a two-link arm model, never part of a label) attaches at the wrist.

Objects get free joints too, so that grasped and pushed objects move with the hand in the rendered frames.
"""

from __future__ import annotations

from collections.abc import Iterable
from xml.sax.saxutils import quoteattr

import numpy as np

from modeling_jala.hand_jala import KEYPOINT_PARENTS, MANO_JOINT_TO_KEYPOINT, HandSkeleton
from modeling_jala.layout_jala import HANDS

from .geometry import OPENCV_TO_MUJOCO_CAMERA, matrix_to_quat
from .layout import TABLE_CENTRE_Y, TABLE_HALF, SceneObject
from .scenes import Look, Texture

#: Capsule radius (metres, before bone scale) of the bone that starts at each keypoint.
_BONE_RADIUS = {
    1: 0.0130, 2: 0.0108, 3: 0.0094,  # thumb CMC->MCP (thenar), MCP->IP, IP->tip
    5: 0.0098, 6: 0.0088, 7: 0.0080,  # index
    9: 0.0100, 10: 0.0090, 11: 0.0081,  # middle
    13: 0.0095, 14: 0.0086, 15: 0.0078,  # ring
    17: 0.0086, 18: 0.0078, 19: 0.0071,  # pinky
}  # fmt: skip
#: Keypoints that carry a ball joint (the 15 MANO joints).
JOINTED_KEYPOINTS: tuple[int, ...] = tuple(sorted(MANO_JOINT_TO_KEYPOINT))
TABLE_THICKNESS = 0.03
FLOOR_Z = -0.75


def _f(values: Iterable[float]) -> str:
    return " ".join(f"{float(v):.6g}" for v in values)


def _rgba(rgb: Iterable[float], alpha: float = 1.0) -> str:
    return _f((*rgb, alpha))


def hand_body_name(side: str, keypoint: int) -> str:
    return f"{side}_k{keypoint}"


def hand_joint_name(side: str, keypoint: int) -> str:
    return f"{side}_j{keypoint}"


def object_body_name(name: str) -> str:
    return f"obj_{name}"


def _hand_xml(side: str, offsets: np.ndarray, scale: float, material: str) -> str:
    """The body tree of one hand; ``offsets`` are the (mirrored for the left hand) rest offsets, scaled."""
    mirror_y = -1.0 if side == "left" else 1.0
    children: dict[int, list[int]] = {k: [] for k in range(len(KEYPOINT_PARENTS))}
    for child, parent in enumerate(KEYPOINT_PARENTS):
        if parent >= 0:
            children[parent].append(child)

    def geoms_for(keypoint: int) -> list[str]:
        lines = []
        for child in children[keypoint]:
            if keypoint == 0:
                continue  # the palm geoms below cover wrist -> MCP
            radius = _BONE_RADIUS[keypoint] * scale
            end = offsets[child].copy()
            if not children[child]:  # fingertip: end the skin just past the tip keypoint
                end *= 1.0 - 0.45 * radius / max(np.linalg.norm(end), 1e-6)
            lines.append(
                f'<geom name="{side}_bone{keypoint}" type="capsule" fromto="0 0 0 {_f(end)}" size="{radius:.5f}" '
                f'material="{material}"/>'
            )
            lines.append(
                f'<geom name="{side}_knuckle{keypoint}" type="sphere" size="{1.06 * radius:.5f}" '
                f'material="{material}"/>'
            )
        return lines

    def body(keypoint: int, depth: int) -> str:
        if not children[keypoint] and keypoint != 0:
            return ""  # fingertips are the capsule ends of their parent bones
        inner = geoms_for(keypoint)
        joint = f'<joint name="{hand_joint_name(side, keypoint)}" type="ball" limited="false"/>'
        kids = "".join(body(child, depth + 1) for child in children[keypoint])
        return (
            f'<body name="{hand_body_name(side, keypoint)}" pos="{_f(offsets[keypoint])}">{joint}'
            + "".join(inner)
            + kids
            + "</body>"
        )

    s = scale
    y = mirror_y
    palm = [
        # Palm slab, metacarpal capsules to the knuckles, knuckle line, thenar and hypothenar pads, wrist, forearm.
        f'<geom name="{side}_palm" type="box" pos="{_f((0.047 * s, -0.006 * s * y, -0.004 * s))}" '
        f'size="{_f((0.038 * s, 0.025 * s, 0.0105 * s))}" material="{material}"/>',
    ]
    for knuckle in (5, 9, 13, 17):
        start = np.array([0.012 * s, 0.45 * offsets[knuckle][1], -0.004 * s])
        palm.append(
            f'<geom name="{side}_metacarpal{knuckle}" type="capsule" fromto="{_f(start)} {_f(offsets[knuckle])}" '
            f'size="{0.0108 * s:.5f}" material="{material}"/>'
        )
    palm.append(
        f'<geom name="{side}_knuckles" type="capsule" fromto="{_f(offsets[5])} {_f(offsets[17])}" '
        f'size="{0.0105 * s:.5f}" material="{material}"/>'
    )
    palm.append(
        f'<geom name="{side}_thenar" type="ellipsoid" pos="{_f((0.032 * s, 0.012 * s * y, -0.011 * s))}" '
        f'size="{_f((0.030 * s, 0.017 * s, 0.0115 * s))}" euler="0 0 {0.45 * y:.4f}" material="{material}"/>'
    )
    palm.append(
        f'<geom name="{side}_hypothenar" type="ellipsoid" pos="{_f((0.040 * s, -0.024 * s * y, -0.007 * s))}" '
        f'size="{_f((0.035 * s, 0.013 * s, 0.011 * s))}" material="{material}"/>'
    )
    palm.append(
        f'<geom name="{side}_wrist" type="ellipsoid" pos="{_f((-0.004 * s, -0.004 * s * y, -0.003 * s))}" '
        f'size="{_f((0.022 * s, 0.029 * s, 0.0175 * s))}" material="{material}"/>'
    )
    root_children = "".join(body(child, 1) for child in children[0])
    return (
        f'<body name="{hand_body_name(side, 0)}" pos="0 0 0.3"><freejoint name="{hand_joint_name(side, 0)}"/>'
        + "".join(palm)
        + root_children
        + "</body>"
    )


def arm_body_name(side: str, segment: str = "forearm") -> str:
    return f"{side}_{segment}"


#: Forearm length drawn (metres); the sleeve covers it from ``_SLEEVE_FROM`` on. The upper arm is drawn longer
#: than a real one so that it always reaches out of the picture behind the shoulder.
FOREARM_LENGTH = 0.27
UPPER_ARM_DRAWN = 0.45
_SLEEVE_FROM = 0.14


def _arm_xml(side: str, scale: float, material: str, sleeve_material: str) -> str:
    """A mocap forearm along its local +x from the wrist toward the elbow; posed per frame (see ``clip``)."""
    s = scale
    geoms = []
    for offset_y, tag in ((-0.008, "a"), (0.007, "b")):
        geoms.append(
            f'<geom name="{side}arm_forearm{tag}" type="capsule" fromto="{_f((0.012 * s, offset_y * s, 0))} '
            f'{_f((FOREARM_LENGTH, offset_y * s * 1.3, 0))}" size="{0.0195 * s:.5f}" material="{material}"/>'
        )
    geoms.append(
        f'<geom name="{side}arm_sleeve" type="cylinder" '
        f'fromto="{_f((_SLEEVE_FROM, 0, 0))} {_f((FOREARM_LENGTH, 0, 0))}" '
        f'size="{0.03 * s:.5f}" material="{sleeve_material}"/>'
    )
    # The upper arm, from the elbow toward (and past) the shoulder, so that the arm never ends in mid-air.
    upper = (
        f'<geom name="{side}arm_upper" type="capsule" fromto="0 0 0 {UPPER_ARM_DRAWN:.4f} 0 0" '
        f'size="{0.034 * s:.5f}" material="{sleeve_material}"/>'
    )
    return (
        f'<body name="{arm_body_name(side)}" mocap="true" pos="0 0 0.3">'
        + "".join(geoms)
        + "</body>"
        + f'<body name="{arm_body_name(side, "upperarm")}" mocap="true" pos="0 0 0.3">{upper}</body>'
    )


def _object_xml(obj: SceneObject, movable: bool) -> str:
    """One object as a body; ``movable`` objects get a free joint so that their pose can be set per frame."""
    material = f"mat_{obj.name}"
    joint = f'<freejoint name="{object_body_name(obj.name)}_free"/>' if movable else ""
    quat = matrix_to_quat(obj.rotation)
    geoms: list[str] = []
    prefix = f"{object_body_name(obj.name)}_"
    if obj.kind == "box":
        geoms.append(f'<geom name="{prefix}body" type="box" size="{_f(obj.size)}" material="{material}"/>')
    elif obj.kind == "sphere":
        geoms.append(f'<geom name="{prefix}body" type="sphere" size="{obj.size[0]:.5f}" material="{material}"/>')
    elif obj.kind == "cylinder":
        geoms.append(f'<geom name="{prefix}body" type="cylinder" size="{_f(obj.size)}" material="{material}"/>')
    elif obj.kind == "mug":
        radius, half = obj.size
        geoms.append(f'<geom name="{prefix}body" type="cylinder" size="{_f(obj.size)}" material="{material}"/>')
        # The dark opening on top makes a cylinder read as a cup.
        geoms.append(
            f'<geom name="{prefix}inside" type="cylinder" pos="0 0 {half:.5f}" size="{0.82 * radius:.5f} 0.0008" '
            'rgba="0.12 0.1 0.09 1"/>'
        )
        out, up, low = radius + 0.028, 0.55 * half, -0.55 * half
        for index, (a, b) in enumerate(
            (((radius - 0.004, up), (out, up)), ((out, up), (out, low)), ((out, low), (radius - 0.004, low)))
        ):
            geoms.append(
                f'<geom name="{prefix}handle{index}" type="capsule" '
                f'fromto="{_f((a[0], 0, a[1]))} {_f((b[0], 0, b[1]))}" '
                f'size="0.0055" material="{material}"/>'
            )
    else:
        raise ValueError(f"object {obj.name!r}: kind {obj.kind!r} is not one of box, cylinder, sphere, mug.")
    return (
        f'<body name="{object_body_name(obj.name)}" pos="{_f(obj.position)}" quat="{_f(quat)}">{joint}'
        + "".join(geoms)
        + "</body>"
    )


def _texture_xml(name: str, texture: Texture, kind: str = "2d", size: int = 128) -> str:
    mark = ""
    if texture.mark != "none":
        mark = f' mark="{texture.mark}" markrgb="{_f(texture.markrgb)}"'
        if texture.mark == "random":
            mark += f' random="{texture.random:.4f}"'
    return (
        f'<texture name="{name}" type="{kind}" builtin="{texture.builtin}" rgb1="{_f(texture.rgb1)}" '
        f'rgb2="{_f(texture.rgb2)}" width="{size}" height="{size}"{mark}/>'
    )


def scene_xml(
    objects: list[SceneObject],
    movable: set[str],
    look: Look,
    bone_scale: float,
    image_size: tuple[int, int],
    skeleton: HandSkeleton | None = None,
) -> str:
    """The full scene. ``image_size`` is (width, height); the offscreen buffer is sized to it."""
    skeleton = skeleton or HandSkeleton()
    width, height = image_size
    offsets = skeleton.rest_offsets.numpy() * bone_scale
    assets = [
        f'<material name="skin" rgba="{_rgba(look.skin_rgb)}" specular="0.25" shininess="0.35" reflectance="0"/>',
        f'<material name="sleeve" rgba="{_rgba(look.sleeve_rgb)}" specular="0.05" shininess="0.1"/>',
        _texture_xml("sky", look.sky, kind="skybox", size=64),
        _texture_xml("tex_table", look.table, size=128),
        f'<material name="mat_table" texture="tex_table" texrepeat="{_f((look.table.repeat, look.table.repeat))}" '
        'texuniform="true" specular="0.1" shininess="0.2"/>',
        _texture_xml("tex_floor", look.floor, size=128),
        f'<material name="mat_floor" texture="tex_floor" texrepeat="{_f((look.floor.repeat, look.floor.repeat))}" '
        'texuniform="true" specular="0"/>',
    ]
    if look.wall is not None:
        assets.append(_texture_xml("tex_wall", look.wall, size=128))
        assets.append(
            f'<material name="mat_wall" texture="tex_wall" texrepeat="{_f((look.wall.repeat, look.wall.repeat))}" '
            'texuniform="true" specular="0"/>'
        )
    for obj in objects:
        assets.append(f'<material name="mat_{obj.name}" rgba="{_rgba(obj.rgb)}" specular="0.3" shininess="0.4"/>')

    world = [
        f'<geom name="table" type="box" pos="0 {TABLE_CENTRE_Y} {-TABLE_THICKNESS / 2}" '
        f'size="{_f((*TABLE_HALF, TABLE_THICKNESS / 2))}" material="mat_table"/>',
        f'<geom name="floor" type="plane" pos="0 0 {FLOOR_Z}" size="6 6 0.1" material="mat_floor"/>',
    ]
    for index, leg_x in enumerate((-TABLE_HALF[0] + 0.04, TABLE_HALF[0] - 0.04)):
        for leg_y in (TABLE_CENTRE_Y - TABLE_HALF[1] + 0.04, TABLE_CENTRE_Y + TABLE_HALF[1] - 0.04):
            world.append(
                f'<geom name="leg{index}{int(leg_y > 0)}" type="box" '
                f'pos="{_f((leg_x, leg_y, (FLOOR_Z - TABLE_THICKNESS) / 2))}" '
                f'size="{_f((0.025, 0.025, (-FLOOR_Z - TABLE_THICKNESS) / 2))}" material="mat_table"/>'
            )
    if look.wall is not None:
        world.append(
            f'<geom name="wall" type="box" pos="0 {look.wall_distance:.4f} 0.3" size="4 0.02 2" material="mat_wall"/>'
        )
    if look.occluder is not None:
        occ = look.occluder
        world.append(
            f'<geom name="occluder" type="{occ["type"]}" pos="{_f(occ["position"])}" size="{_f(occ["size"])}" '
            f'euler="{_f(occ["euler"])}" rgba="{_rgba(occ["rgb"])}"/>'
        )
    for light in look.lights:
        world.append(
            f'<light name="{light.name}" directional="{str(light.directional).lower()}" pos="{_f(light.position)}" '
            f'dir="{_f(light.direction)}" diffuse="{_f(light.diffuse)}" specular="{_f(light.specular)}" '
            'castshadow="false"/>'
        )
    camera = look.camera
    mj_axes = camera.rotation @ OPENCV_TO_MUJOCO_CAMERA
    world.append(
        f'<camera name="view" pos="{_f(camera.position)}" xyaxes="{_f(mj_axes[:, 0])} {_f(mj_axes[:, 1])}" '
        f'fovy="{camera.fovy:.5f}"/>'
    )
    for obj in objects:
        world.append(_object_xml(obj, obj.name in movable))
    for side in HANDS:
        side_offsets = offsets * np.array([1.0, -1.0, 1.0]) if side == "left" else offsets
        world.append(_hand_xml(side, side_offsets, bone_scale, "skin"))
        world.append(_arm_xml(side, bone_scale, "skin", "sleeve"))

    ambient, diffuse, specular = look.headlight
    return (
        f"<mujoco model={quoteattr('hand_world')}>"
        '<compiler angle="radian" autolimits="true"/>'
        '<option gravity="0 0 0"/>'
        '<statistic extent="2" center="0 0 0"/>'
        f'<visual><global offwidth="{width}" offheight="{height}"/>'
        '<quality shadowsize="0" offsamples="0"/>'
        f'<headlight ambient="{_f(ambient)}" diffuse="{_f(diffuse)}" specular="{_f(specular)}"/>'
        '<map znear="0.005" zfar="20"/></visual>'
        "<asset>" + "".join(assets) + "</asset>"
        "<worldbody>" + "".join(world) + "</worldbody>"
        "</mujoco>"
    )
