"""Small numpy rigid-body helpers shared by the hand world (rotations, quaternions, frames, projection).

Why numpy and not hand_jala's torch helpers: the planner and the renderer touch a handful of poses per clip, so
per-call torch overhead would dominate; the D162 labels themselves still come from hand_jala's torch FK.

Frames used by the hand world:

* **world / table frame**: origin at the centre of the table top, +z up, +y away from the person, +x to the
  person's right. Scenes are laid out and motions planned here (same layout distribution in lab and wild).
* **camera frame**: OpenCV (+x right, +y down, +z forward), the frame of every label in a row.
* **MuJoCo camera frame**: looks along its -z with +y up, i.e. OpenCV axes times ``diag(1, -1, -1)``.
"""

from __future__ import annotations

import math

import numpy as np

from modeling_jala.hand_jala import (
    JOINTS_XYZ,
    NUM_JOINTS,
    WRIST_ROT6D,
    WRIST_TRANSL,
)

UP = np.array([0.0, 0.0, 1.0])
#: OpenCV camera axes -> MuJoCo camera axes (x kept, y and z flipped).
OPENCV_TO_MUJOCO_CAMERA = np.diag([1.0, -1.0, -1.0])


def rot_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def normalize(vector: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vector, axis=-1, keepdims=True)
    return vector / np.maximum(norm, 1e-12)


def frame_from_axes(x_axis: np.ndarray, y_hint: np.ndarray) -> np.ndarray:
    """Rotation whose columns are x, y (``y_hint`` made orthogonal to x) and z = x cross y."""
    x = normalize(np.asarray(x_axis, dtype=np.float64))
    y = np.asarray(y_hint, dtype=np.float64)
    y = normalize(y - y.dot(x) * x)
    return np.stack((x, y, np.cross(x, y)), axis=-1)


def matrix_to_quat(matrix: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 4) unit quaternions (w, x, y, z), w >= 0 (MuJoCo's order), by Shepperd's method."""
    m = np.asarray(matrix, dtype=np.float64)
    flat = m.reshape(-1, 3, 3)
    out = np.empty((flat.shape[0], 4))
    trace = flat[:, 0, 0] + flat[:, 1, 1] + flat[:, 2, 2]
    diag = np.stack((trace, flat[:, 0, 0], flat[:, 1, 1], flat[:, 2, 2]), axis=-1)
    best = diag.argmax(axis=-1)
    for i, (r, case) in enumerate(zip(flat, best, strict=True)):
        if case == 0:
            s = math.sqrt(max(1.0 + trace[i], 1e-12)) * 2.0
            q = (0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s)
        elif case == 1:
            s = math.sqrt(max(1.0 + r[0, 0] - r[1, 1] - r[2, 2], 1e-12)) * 2.0
            q = ((r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s)
        elif case == 2:
            s = math.sqrt(max(1.0 - r[0, 0] + r[1, 1] - r[2, 2], 1e-12)) * 2.0
            q = ((r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s)
        else:
            s = math.sqrt(max(1.0 - r[0, 0] - r[1, 1] + r[2, 2], 1e-12)) * 2.0
            q = ((r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s)
        out[i] = q
    out /= np.linalg.norm(out, axis=-1, keepdims=True)
    out[out[:, 0] < 0] *= -1.0
    return out.reshape(*m.shape[:-2], 4)


def quat_to_matrix(quat: np.ndarray) -> np.ndarray:
    """(..., 4) (w, x, y, z) -> (..., 3, 3)."""
    q = normalize(np.asarray(quat, dtype=np.float64))
    w, x, y, z = np.moveaxis(q, -1, 0)
    rows = (
        1 - 2 * (y * y + z * z),
        2 * (x * y - w * z),
        2 * (x * z + w * y),
        2 * (x * y + w * z),
        1 - 2 * (x * x + z * z),
        2 * (y * z - w * x),
        2 * (x * z - w * y),
        2 * (y * z + w * x),
        1 - 2 * (x * x + y * y),
    )
    return np.stack(rows, axis=-1).reshape(*q.shape[:-1], 3, 3)


def slerp(quat_a: np.ndarray, quat_b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Spherical interpolation between two quaternions at weights (N,) -> (N, 4), along the short arc."""
    a, b = normalize(quat_a), normalize(quat_b)
    dot = float(a.dot(b))
    if dot < 0.0:
        b, dot = -b, -dot
    weight = np.asarray(weight, dtype=np.float64)[:, None]
    if dot > 0.9995:
        return normalize(a + weight * (b - a))
    theta = math.acos(min(dot, 1.0))
    return (np.sin((1.0 - weight) * theta) * a + np.sin(weight * theta) * b) / math.sin(theta)


def look_at(position: np.ndarray, target: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """World-from-camera rotation of an OpenCV camera at ``position`` looking at ``target`` (image up ~ +z).

    Columns are the camera's +x (right), +y (down) and +z (forward) in world coordinates; ``roll`` (radians)
    turns the image clockwise about the optical axis.
    """
    forward = normalize(np.asarray(target, dtype=np.float64) - np.asarray(position, dtype=np.float64))
    right = np.cross(forward, UP)
    if np.linalg.norm(right) < 1e-6:  # looking straight down: pick +x as image right
        right = np.array([1.0, 0.0, 0.0])
    right = normalize(right)
    down = np.cross(forward, right)
    rotation = np.stack((right, down, forward), axis=-1)
    return rotation @ rot_z(roll)


def fovy_to_focal(fovy_degrees: float, height: int) -> float:
    """Focal length in pixels of a pinhole camera with vertical field of view ``fovy_degrees`` (MuJoCo's fovy)."""
    return 0.5 * height / math.tan(math.radians(fovy_degrees) / 2.0)


def intrinsics_for(fovy_degrees: float, width: int, height: int) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of a MuJoCo camera rendered at width x height.

    MuJoCo's perspective has square pixels (fx == fy, horizontal field of view follows the aspect ratio) and the
    principal point at the image centre. Pixel centres are at integer coordinates (OpenCV convention), so the
    centre of a W-pixel-wide image is (W - 1) / 2.
    """
    focal = fovy_to_focal(fovy_degrees, height)
    return (focal, focal, (width - 1) / 2.0, (height - 1) / 2.0)


def project(points_camera: np.ndarray, intrinsics: tuple[float, float, float, float]) -> np.ndarray:
    """(..., 3) OpenCV camera-frame points -> (..., 2) pixel coordinates (u right, v down)."""
    fx, fy, cx, cy = intrinsics
    z = np.maximum(points_camera[..., 2], 1e-6)
    return np.stack((fx * points_camera[..., 0] / z + cx, fy * points_camera[..., 1] / z + cy), axis=-1)


def world_to_camera_points(points: np.ndarray, camera_rotation: np.ndarray, camera_position: np.ndarray) -> np.ndarray:
    """(..., 3) world points -> OpenCV camera frame, given the camera's world-from-camera rotation and position."""
    return (np.asarray(points) - camera_position) @ camera_rotation


def world_to_camera_motion(motion: np.ndarray, camera_rotation: np.ndarray, camera_position: np.ndarray) -> np.ndarray:
    """(..., 162) world-frame D162 -> camera-frame D162 (a rigid change of frame).

    Finger rotations are local and do not change; the wrist rotation becomes ``R_cw @ W`` (its rot6d columns
    rotate like vectors), the wrist translation and the 21 joints transform as points.
    """
    motion = np.asarray(motion)
    out = motion.copy()
    batch = motion.shape[:-1]
    rot6d = motion[..., WRIST_ROT6D].reshape(*batch, 2, 3)
    out[..., WRIST_ROT6D] = (rot6d @ camera_rotation).reshape(*batch, 6)  # rows: (R^T c)^T = c^T R
    out[..., WRIST_TRANSL] = (motion[..., WRIST_TRANSL] - camera_position) @ camera_rotation
    joints = motion[..., JOINTS_XYZ].reshape(*batch, NUM_JOINTS, 3)
    out[..., JOINTS_XYZ] = ((joints - camera_position) @ camera_rotation).reshape(*batch, 3 * NUM_JOINTS)
    return out


def elbow_position(
    shoulder: np.ndarray, wrist: np.ndarray, upper_arm: float, forearm: float, bend: np.ndarray
) -> np.ndarray:
    """Elbow of a two-link arm reaching from ``shoulder`` to ``wrist``, bent toward ``bend`` (a direction).

    Only for drawing a plausible forearm: the labels never include the arm.
    """
    reach = np.asarray(wrist, dtype=np.float64) - shoulder
    distance = float(np.linalg.norm(reach))
    axis = reach / max(distance, 1e-9)
    if distance >= upper_arm + forearm - 1e-6:
        return shoulder + axis * upper_arm * distance / (upper_arm + forearm)
    along = (upper_arm**2 - forearm**2 + distance**2) / (2.0 * distance)
    height = math.sqrt(max(upper_arm**2 - along**2, 0.0))
    normal = np.asarray(bend, dtype=np.float64) - np.dot(bend, axis) * axis
    if np.linalg.norm(normal) < 1e-9:
        normal = np.array([0.0, 0.0, -1.0]) - axis[2] * axis
    return shoulder + axis * along + normalize(normal) * height
