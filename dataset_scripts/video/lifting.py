"""Tracker landmarks -> camera-frame metric keypoints -> MANO-D162.

A tracker gives, per hand and frame, 21 keypoints in pixels and the same 21 as metric "world" landmarks: the
hand's 3D shape in metres, axes parallel to the camera's, but centred on the hand, so *where* the hand is (its
depth above all) is unknown. D162 needs the wrist translation in the camera frame, so we place the metric shape
where it projects onto the pixel keypoints: a perspective-n-point fit with the rotation known, which leaves only
the translation ``t``, 3 unknowns against 42 equations.

1. **Intrinsics.** Real ones when the metadata gives them; otherwise assumed: square pixels, principal point at
   the image centre, and a 60 degree field of view across the **longer** image side (``fx = fy = (L / 2) /
   tan(30 deg)``, L the longer side in pixels). Phone main cameras film at about 65-70 degrees and webcams at
   55-78 across the long side, so 60 is a middle value; taking the longer side makes the focal length the same
   for the portrait and landscape versions of one camera. Depth scales with the focal length, so a wrong FOV
   moves hands nearer or farther (about 10 % per 6 degrees here) but leaves the hand's shape and the image
   alignment intact.
2. **Translation, closed form.** With normalised image coordinates ``x_i = (u_i - cx) / fx`` and the shape
   ``X_i``, perspective ``x_i = (X_i + t_x) / (Z_i + t_z)`` is linear in ``t``:
   ``t_x - x_i t_z = x_i Z_i - X_i`` (and the same for y), solved by least squares.
3. **Gauss-Newton.** A few steps on the pixel reprojection error itself (the linear form weights points by
   depth), with the hand kept in front of the camera.
4. **D162.** Camera-frame keypoints -> :meth:`HandSkeleton.fit_keypoints`, with one bone scale per hand and
   clip (the median of the per-frame palm fits) so that the hand does not change size from frame to frame.

Missing frames inside a clip are filled by :func:`interpolate_gaps` (linear inside, hold at the ends) up to a
maximum gap; longer gaps leave the hand without a label.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from modeling_jala.hand_jala import HandSkeleton, KeypointFit

__all__ = [
    "DEFAULT_FOV_DEG",
    "Intrinsics",
    "LiftResult",
    "fit_d162",
    "interpolate_gaps",
    "lift_to_camera",
    "solve_translation",
]

#: Assumed field of view across the longer image side when a video's intrinsics are unknown (see module doc).
DEFAULT_FOV_DEG = 60.0
# Nearest depth (m) a keypoint may take during Gauss-Newton: keeps the projection finite and the hand in front.
_MIN_DEPTH_M = 0.02


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels (continuous coordinates: pixel ``i`` covers [i, i + 1))."""

    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        values = (self.fx, self.fy, self.cx, self.cy)
        if not all(math.isfinite(v) for v in values) or self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"camera intrinsics need finite values and fx, fy > 0 pixels, got {values}.")

    @classmethod
    def from_fov(cls, width: int, height: int, fov_deg: float = DEFAULT_FOV_DEG) -> Intrinsics:
        """Assumed intrinsics: ``fov_deg`` across the longer side, square pixels, centred principal point."""
        if not 1.0 < fov_deg < 179.0:
            raise ValueError(f"fov_deg must be in (1, 179) degrees, got {fov_deg}.")
        focal = 0.5 * max(width, height) / math.tan(math.radians(fov_deg) / 2.0)
        return cls(focal, focal, width / 2.0, height / 2.0)

    def scaled(self, sx: float, sy: float) -> Intrinsics:
        """The same camera for an image resized by (sx, sy)."""
        return Intrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy)

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.fx, self.fy, self.cx, self.cy)

    def project(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) camera-frame points -> (..., 2) pixels."""
        points = np.asarray(points, dtype=np.float64)
        z = points[..., 2]
        return np.stack((self.fx * points[..., 0] / z + self.cx, self.fy * points[..., 1] / z + self.cy), axis=-1)


@dataclass
class LiftResult:
    """``keypoints`` (..., 21, 3) camera frame, metres; ``translation`` (..., 3) added to the world landmarks;
    ``reprojection_px`` (...,) RMS pixel distance between the projected keypoints and the 2D landmarks."""

    keypoints: np.ndarray
    translation: np.ndarray
    reprojection_px: np.ndarray


def _reprojection(
    world: np.ndarray, pixels: np.ndarray, t: np.ndarray, k: Intrinsics
) -> tuple[np.ndarray, np.ndarray]:
    """Residuals (N, 2J) in pixels and their Jacobian (N, 2J, 3) with respect to t."""
    points = world + t[:, None, :]
    z = np.maximum(points[..., 2], _MIN_DEPTH_M)
    ru = k.fx * points[..., 0] / z + k.cx - pixels[..., 0]
    rv = k.fy * points[..., 1] / z + k.cy - pixels[..., 1]
    zeros = np.zeros_like(z)
    ju = np.stack((k.fx / z, zeros, -k.fx * points[..., 0] / z**2), axis=-1)
    jv = np.stack((zeros, k.fy / z, -k.fy * points[..., 1] / z**2), axis=-1)
    return np.concatenate((ru, rv), axis=-1), np.concatenate((ju, jv), axis=-2)


def solve_translation(
    world: np.ndarray, pixels: np.ndarray, intrinsics: Intrinsics, *, iterations: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Translation ``t`` that best projects ``world + t`` onto ``pixels``: (..., 3) and the RMS error (...,) px.

    ``world`` (..., J, 3) metric shape with camera-parallel axes; ``pixels`` (..., J, 2). Closed-form linear
    least squares, then ``iterations`` Gauss-Newton steps on the reprojection error (see the module docstring).
    """
    world = np.asarray(world, dtype=np.float64)
    pixels = np.asarray(pixels, dtype=np.float64)
    if world.shape[-1] != 3 or pixels.shape[-1] != 2 or world.shape[:-1] != pixels.shape[:-1]:
        raise ValueError(
            f"solve_translation needs world (..., J, 3) and pixels (..., J, 2) with the same (..., J), got "
            f"{world.shape} and {pixels.shape}."
        )
    if not (np.isfinite(world).all() and np.isfinite(pixels).all()):
        raise ValueError("solve_translation: landmarks hold NaN/inf; drop frames where tracking failed first.")
    batch = world.shape[:-2]
    world = world.reshape(-1, *world.shape[-2:])
    pixels = pixels.reshape(-1, *pixels.shape[-2:])
    k = intrinsics
    x = (pixels[..., 0] - k.cx) / k.fx
    y = (pixels[..., 1] - k.cy) / k.fy
    ones, zeros = np.ones_like(x), np.zeros_like(x)
    a = np.concatenate((np.stack((ones, zeros, -x), -1), np.stack((zeros, ones, -y), -1)), axis=-2)
    b = np.concatenate((x * world[..., 2] - world[..., 0], y * world[..., 2] - world[..., 1]), axis=-1)
    ata = a.transpose(0, 2, 1) @ a + 1e-12 * np.eye(3)
    t = np.linalg.solve(ata, (a.transpose(0, 2, 1) @ b[..., None]))[..., 0]
    # Keep every keypoint in front of the camera before iterating.
    t[:, 2] = np.maximum(t[:, 2], _MIN_DEPTH_M - world[..., 2].min(axis=-1))
    for _ in range(iterations):
        residual, jacobian = _reprojection(world, pixels, t, k)
        jtj = jacobian.transpose(0, 2, 1) @ jacobian
        damping = 1e-9 * np.trace(jtj, axis1=1, axis2=2)[:, None, None] * np.eye(3)
        step = np.linalg.solve(jtj + damping, -(jacobian.transpose(0, 2, 1) @ residual[..., None]))[..., 0]
        t = t + step
        t[:, 2] = np.maximum(t[:, 2], _MIN_DEPTH_M - world[..., 2].min(axis=-1))
    residual, _ = _reprojection(world, pixels, t, k)
    rms = np.sqrt((residual.reshape(len(t), 2, -1) ** 2).sum(axis=1).mean(axis=-1))
    return t.reshape(*batch, 3), rms.reshape(batch)


def lift_to_camera(
    world: np.ndarray, pixels: np.ndarray, intrinsics: Intrinsics, *, iterations: int = 5
) -> LiftResult:
    """Place metric world landmarks (..., 21, 3) in the camera frame so that they project onto ``pixels``."""
    translation, rms = solve_translation(world, pixels, intrinsics, iterations=iterations)
    keypoints = np.asarray(world, dtype=np.float64) + translation[..., None, :]
    return LiftResult(keypoints=keypoints, translation=translation, reprojection_px=rms)


def interpolate_gaps(values: np.ndarray, valid: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Fill missing frames of a (T, ...) series: linear between neighbours inside, hold at the ends.

    Only gaps of at most ``max_gap`` frames are filled; frames of longer gaps stay NaN. Returns the filled
    series (float64) and the mask of frames that now hold values. A series with no valid frame stays empty.
    """
    values = np.asarray(values, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != values.shape[:1]:
        raise ValueError(f"valid must be (T,) = {values.shape[:1]}, got {valid.shape}.")
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0 frames, got {max_gap}.")
    filled = np.where(valid.reshape(-1, *([1] * (values.ndim - 1))), values, np.nan)
    have = valid.copy()
    known = np.flatnonzero(valid)
    if len(known) == 0:
        return filled, have
    count = len(valid)
    # Each gap: (start, stop) half-open run of missing frames.
    missing = np.concatenate(([False], ~valid, [False]))
    edges = np.flatnonzero(missing[1:] != missing[:-1])
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        if stop - start > max_gap:
            continue
        if start == 0:
            filled[start:stop] = values[stop]
        elif stop == count:
            filled[start:stop] = values[start - 1]
        else:
            left, right = values[start - 1], values[stop]
            weights = (np.arange(start, stop) - (start - 1)) / (stop - start + 1)
            weights = weights.reshape(-1, *([1] * (values.ndim - 1)))
            filled[start:stop] = (1.0 - weights) * left + weights * right
        have[start:stop] = True
    return filled, have


def fit_d162(
    keypoints: np.ndarray,
    handedness: str,
    *,
    skeleton: HandSkeleton | None = None,
    iterations: int = 100,
) -> KeypointFit:
    """(T, 21, 3) camera-frame keypoints of one hand in one clip -> D162 (T, 162) with one bone scale.

    The bone scale is the median of the per-frame palm (Kabsch) scales; a per-frame scale would let noise in
    the tracker's hand size turn into a hand that breathes. 100 Adam iterations (half of
    :meth:`HandSkeleton.fit_keypoints`'s default) change the residual by < 0.1 mm on tracker keypoints, whose
    own noise is millimetres, at half the time.
    """
    skeleton = skeleton or HandSkeleton()
    target = torch.as_tensor(np.asarray(keypoints, dtype=np.float64))
    with _single_threaded():
        palm = skeleton.fit_keypoints(target, iterations=0, handedness=handedness)
        scale = float(palm.bone_scale.median())
        return skeleton.fit_keypoints(target, iterations=iterations, handedness=handedness, bone_scale=scale)


@contextlib.contextmanager
def _single_threaded() -> Iterator[None]:
    """Run torch on one thread inside the block, then restore the previous setting.

    The fit's tensors are tiny ((T, 21, 3)); intra-op threads save < 25 % on an idle 2-core machine, but when the
    cores are shared (other builds, the tracker) OpenMP's spin-waiting made a 126-frame fit take 6-10 s instead
    of 0.7 s (measured). A data build is one process per core anyway.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
