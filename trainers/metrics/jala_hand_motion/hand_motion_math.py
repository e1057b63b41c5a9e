"""Hand-motion metrics of the JALA paper (Table 1): MPJPE, PA-MPJPE, MWTE and MDE, in numpy only.

This file is the one home of the metric math. It imports nothing but numpy and the standard library, so it works
in three places unchanged: the `evaluate` module beside it (`evaluate.load` copies this file next to the module
script because the script imports it relatively, also from a Hub Space), `trainers.metrics.hand_motion` (the torch
face used by training, benchmarks and the Space), and anyone's script. Conventions (docs/design.md §5):

- Inputs are positions in **metres**: numpy arrays, nested lists, or anything `numpy.asarray` accepts. Joints are
  ``(..., T, J, 3)`` (21 MediaPipe-order keypoints for a hand, the wrist is keypoint 0), wrists ``(..., T, 3)``,
  masks ``(..., T)`` booleans (True = valid frame).
- Outputs are float64 in **millimetres** (MPJPE, PA-MPJPE, MWTE) or **degrees** (MDE).
- Computation runs in float64: the numbers are reported to 0.1 mm and the 3x3 SVD of PA-MPJPE is ill-conditioned
  for near-planar hands in float32.
- Position errors are pooled means over every valid frame (and joint), so long sequences weigh more than short
  ones, as in the usual MPJPE protocol. MDE is per sequence.
- Padding frames (mask False) may hold anything, NaN included: they are replaced by zeros before any arithmetic.
  Non-finite values in valid frames raise ``ValueError``.
- A mean over zero valid items is NaN (not an error), so an empty evaluation split shows up in a table instead of
  crashing a long run.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MM_PER_M = 1000.0
NUM_HAND_JOINTS = 21  # MediaPipe hand landmark order
WRIST_INDEX = 0
# Joint sets whose mean squared distance to their centroid is below this (m^2, i.e. < 1 µm RMS spread) are treated
# as a single point by `procrustes_align` (scale 0) instead of dividing by ~0.
_DEGENERATE_VARIANCE_M2 = 1e-12
# Angle given to a sequence whose *predicted* displacement is (near) zero while the true one is not: the expected
# angle between a uniformly random direction and any fixed one. Excluding such sequences instead would reward a
# model for predicting no motion.
_UNDEFINED_DIRECTION_DEG = 90.0

ArrayLike = Any  # numpy.ndarray | nested sequences of floats


# -- input handling ----------------------------------------------------------------------------------------------
def _as_float64(values: ArrayLike, name: str) -> np.ndarray:
    try:
        array = np.asarray(values)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"`{name}` must be a tensor, array or nested list of numbers ({err}).") from err
    if array.dtype.kind in "bc":
        raise ValueError(f"`{name}` must hold real positions in metres, got dtype {array.dtype}.")
    if array.dtype.kind not in "iuf":
        raise ValueError(f"`{name}` must be a tensor, array or nested list of numbers, got dtype {array.dtype}.")
    return array.astype(np.float64)


def _check_pair(
    pred: ArrayLike, target: ArrayLike, pred_name: str, target_name: str, expected: str, min_ndim: int
) -> tuple[np.ndarray, np.ndarray]:
    """Convert both inputs and check that they have the same ``expected`` shape ending in 3."""
    p, t = _as_float64(pred, pred_name), _as_float64(target, target_name)
    for name, array in ((pred_name, p), (target_name, t)):
        if array.ndim < min_ndim or array.shape[-1] != 3:
            raise ValueError(
                f"`{name}` must have shape {expected} (xyz in metres in the last dim), got {tuple(array.shape)}."
            )
    if p.shape != t.shape:
        raise ValueError(
            f"`{pred_name}` and `{target_name}` must have the same shape {expected}, "
            f"got {tuple(p.shape)} and {tuple(t.shape)}."
        )
    return p, t


def _check_mask(mask: ArrayLike | None, frame_shape: tuple[int, ...]) -> np.ndarray:
    """A bool mask of ``frame_shape`` (all True when ``mask`` is None)."""
    if mask is None:
        return np.ones(frame_shape, dtype=bool)
    m = np.asarray(mask)
    if m.dtype != bool:
        if m.dtype.kind not in "iu" or not bool(((m == 0) | (m == 1)).all()):
            raise ValueError(f"`mask` must be booleans (True = valid frame) or 0/1 integers, got dtype {m.dtype}.")
        m = m.astype(bool)
    if m.shape != tuple(frame_shape):
        raise ValueError(
            f"`mask` must have shape {tuple(frame_shape)} (the inputs' shape without the trailing "
            f"joint/xyz dims), got {tuple(m.shape)}."
        )
    return m


def _zero_invalid(values: np.ndarray, mask: np.ndarray, name: str) -> np.ndarray:
    """Check that valid frames are finite and replace padding frames by zeros."""
    frame_mask = mask.reshape(mask.shape + (1,) * (values.ndim - mask.ndim))
    bad = ~np.isfinite(values) & frame_mask
    if bool(bad.any()):
        raise ValueError(
            f"`{name}` has {int(bad.sum())} non-finite values in valid frames; fix the data or mark those "
            "frames False in `mask`."
        )
    return np.where(frame_mask, values, 0.0)


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.float64:
    """Mean of ``values`` over True entries of ``mask`` (same shape); NaN when there are none."""
    count = int(mask.sum())
    if count == 0:
        return np.float64(math.nan)
    return np.float64(np.where(mask, values, 0.0).sum() / count)


# -- metrics -----------------------------------------------------------------------------------------------------
def mpjpe(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> np.float64:
    """Mean per-joint position error in mm.

    Args:
        pred, target: joints ``(..., J, 3)`` in metres, usually ``(..., T, 21, 3)``.
        mask: ``pred.shape[:-2]`` booleans, True for frames that count (e.g. ``(..., T)``).

    Returns:
        Mean Euclidean distance over all valid frames and all joints, in mm (NaN if no valid frame).
    """
    p, t = _check_pair(pred, target, "pred", "target", "(..., J, 3)", min_ndim=2)
    m = _check_mask(mask, p.shape[:-2])
    p, t = _zero_invalid(p, m, "pred"), _zero_invalid(t, m, "target")
    per_frame = np.linalg.norm(p - t, axis=-1).mean(axis=-1)
    return _masked_mean(per_frame, m) * MM_PER_M


def _procrustes_align(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Umeyama (1991) similarity alignment of ``x`` onto ``y``; both ``(..., J, 3)``, finite."""
    n = x.shape[-2]
    mu_x, mu_y = x.mean(axis=-2, keepdims=True), y.mean(axis=-2, keepdims=True)
    xc, yc = x - mu_x, y - mu_y
    var_x = np.square(xc).sum(axis=(-2, -1)) / n  # sigma_x^2, (...)
    cov = np.swapaxes(yc, -2, -1) @ xc / n  # Sigma_xy = 1/n sum (y_i - mu_y)(x_i - mu_x)^T, (..., 3, 3)
    u, s, vh = np.linalg.svd(cov)
    # Reflection fix: force det(R) = +1 by flipping the weakest singular direction when needed.
    d = np.sign(np.linalg.det(u) * np.linalg.det(vh))
    d = np.where(d == 0, 1.0, d)
    signs = np.ones_like(s)
    signs[..., -1] = d
    rotation = (u * signs[..., None, :]) @ vh  # U diag(1, 1, d) V^T
    trace = (s * signs).sum(axis=-1)
    degenerate = var_x < _DEGENERATE_VARIANCE_M2
    # A (near-)single-point x: every similarity maps it to one point, the best one is y's centroid.
    scale = np.where(degenerate, 0.0, trace / np.where(degenerate, 1.0, var_x))[..., None, None]
    return scale * (xc @ np.swapaxes(rotation, -2, -1)) + mu_y


def procrustes_align(pred: ArrayLike, target: ArrayLike) -> np.ndarray:
    """Align each point set of ``pred`` onto ``target`` with the best similarity transform.

    Solves ``min_{s, R, t} sum_j |s R pred_j + t - target_j|^2`` per leading index with ``R`` a proper rotation
    (det +1, reflections are not allowed: a mirrored hand is an error) and ``s >= 0``, in closed form (Umeyama 1991,
    batched 3x3 SVD). If ``pred`` collapses to a point (RMS spread < 1 µm) the scale is 0 and every joint maps to
    ``target``'s centroid, which is the optimum in that case and avoids 0/0.

    Args:
        pred, target: ``(..., J, 3)`` finite positions in metres, J >= 1.

    Returns:
        ``(..., J, 3)`` float64 array, ``pred`` expressed in ``target``'s frame.
    """
    p, t = _check_pair(pred, target, "pred", "target", "(..., J, 3)", min_ndim=2)
    for name, array in (("pred", p), ("target", t)):
        if not bool(np.isfinite(array).all()):
            raise ValueError(f"`{name}` has non-finite values; Procrustes alignment needs finite positions.")
    if p.shape[-2] == 0:
        raise ValueError("`pred` must have at least one joint: shape (..., J >= 1, 3).")
    return _procrustes_align(p, t)


def pa_mpjpe(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> np.float64:
    """MPJPE in mm after per-frame similarity Procrustes alignment of ``pred`` onto ``target``.

    Removes global position, orientation and size so that only the hand's articulation is scored. Same shapes and
    mask semantics as `mpjpe`; the error is measured in ``target``'s units.
    """
    p, t = _check_pair(pred, target, "pred", "target", "(..., J, 3)", min_ndim=2)
    m = _check_mask(mask, p.shape[:-2])
    p, t = _zero_invalid(p, m, "pred"), _zero_invalid(t, m, "target")
    aligned = _procrustes_align(p, t)  # padding frames are all-zero: degenerate, finite
    per_frame = np.linalg.norm(aligned - t, axis=-1).mean(axis=-1)
    return _masked_mean(per_frame, m) * MM_PER_M


def mwte(pred_wrist: ArrayLike, target_wrist: ArrayLike, mask: ArrayLike | None = None) -> np.float64:
    """Mean wrist translation error in mm.

    Args:
        pred_wrist, target_wrist: wrist positions ``(..., T, 3)`` in metres (any ``(..., 3)`` works).
        mask: ``pred_wrist.shape[:-1]`` booleans, True for valid frames.

    Returns:
        Mean over valid frames of ``|pred_wrist - target_wrist|``, in mm (NaN if no valid frame).
    """
    p, t = _check_pair(pred_wrist, target_wrist, "pred_wrist", "target_wrist", "(..., T, 3)", min_ndim=1)
    m = _check_mask(mask, p.shape[:-1])
    p, t = _zero_invalid(p, m, "pred_wrist"), _zero_invalid(t, m, "target_wrist")
    return _masked_mean(np.linalg.norm(p - t, axis=-1), m) * MM_PER_M


def mde_per_sequence(
    pred_wrist: ArrayLike, target_wrist: ArrayLike, mask: ArrayLike | None = None, eps_m: float = 1e-3
) -> np.ndarray:
    """Motion direction error of each sequence in degrees, NaN where it is excluded.

    Definition (per sequence, i.e. per leading index of ``(..., T, 3)``):

    1. ``f`` = first valid frame, ``l`` = last valid frame (``mask``; without a mask 0 and T-1).
    2. True displacement ``a = target_wrist[l] - target_wrist[f]``, predicted ``b = pred_wrist[l] -
       pred_wrist[f]`` (metres; the net motion over the clip, not the path).
    3. If ``|a| < eps_m`` (default 1 mm, which includes sequences with fewer than 2 valid frames) the true direction
       is undefined: the sequence is **excluded** and its entry is NaN.
    4. Else if ``|b| < eps_m`` the predicted direction is undefined: the entry is **90°**, the expected angle of a
       random direction, so that predicting "no motion" is not rewarded.
    5. Else the entry is ``angle(a, b) = atan2(|a x b|, a . b)`` in [0°, 180°] (stable near 0° and 180°).

    Returns:
        ``pred_wrist.shape[:-2]`` float64 array of angles in degrees.
    """
    if eps_m < 0 or not math.isfinite(eps_m):
        raise ValueError(f"`eps_m` must be a finite distance >= 0 in metres, got {eps_m}.")
    p, t = _check_pair(pred_wrist, target_wrist, "pred_wrist", "target_wrist", "(..., T, 3)", min_ndim=2)
    m = _check_mask(mask, p.shape[:-1])
    p, t = _zero_invalid(p, m, "pred_wrist"), _zero_invalid(t, m, "target_wrist")
    num_frames = m.shape[-1]
    valid = m.astype(np.int64)
    first = valid.argmax(axis=-1)  # first True (0 if none; such rows are excluded below)
    last = num_frames - 1 - valid[..., ::-1].argmax(axis=-1)

    def displacement(wrist: np.ndarray) -> np.ndarray:
        def at(index: np.ndarray) -> np.ndarray:
            picked = np.broadcast_to(index[..., None, None], (*index.shape, 1, 3))
            return np.take_along_axis(wrist, picked, axis=-2)[..., 0, :]

        return at(last) - at(first)

    a, b = displacement(t), displacement(p)
    norm_a, norm_b = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    angle = np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), (a * b).sum(axis=-1)))
    angle = np.where(norm_b < eps_m, _UNDEFINED_DIRECTION_DEG, angle)
    excluded = (norm_a < eps_m) | ~m.any(axis=-1)
    return np.where(excluded, math.nan, angle)


def mde(
    pred_wrist: ArrayLike, target_wrist: ArrayLike, mask: ArrayLike | None = None, eps_m: float = 1e-3
) -> np.float64:
    """Motion direction error in degrees: mean of `mde_per_sequence` over non-excluded sequences.

    A sequence is excluded when its true net wrist displacement (last valid minus first valid frame) is shorter than
    ``eps_m`` metres; the number excluded is logged at INFO. Returns NaN when every sequence is excluded. See
    `mde_per_sequence` for the exact definition.
    """
    per_sequence = mde_per_sequence(pred_wrist, target_wrist, mask, eps_m=eps_m)
    kept = ~np.isnan(per_sequence)
    num_excluded = int(per_sequence.size - kept.sum())
    if num_excluded:
        logger.info(
            "MDE: %d of %d sequences excluded (true wrist displacement < %.3g m).",
            num_excluded,
            per_sequence.size,
            eps_m,
        )
    return _masked_mean(per_sequence, kept)


def hand_motion_metrics(
    pred_joints: ArrayLike, target_joints: ArrayLike, mask: ArrayLike | None = None, eps_m: float = 1e-3
) -> dict[str, float]:
    """All four Table-1 metrics for hand joint sequences.

    Args:
        pred_joints, target_joints: ``(..., T, 21, 3)`` MediaPipe-order joints in metres; keypoint 0 is the wrist
            (used for MWTE and MDE).
        mask: ``(..., T)`` booleans, True for valid frames.
        eps_m: MDE's minimum true displacement, see `mde_per_sequence`.

    Returns:
        ``{"mpjpe_mm", "pa_mpjpe_mm", "mwte_mm", "mde_deg"}`` as Python floats (NaN when undefined).
    """
    p, t = _check_pair(pred_joints, target_joints, "pred_joints", "target_joints", "(..., T, 21, 3)", min_ndim=3)
    if p.shape[-2] != NUM_HAND_JOINTS:
        raise ValueError(
            f"`pred_joints` must have shape (..., T, {NUM_HAND_JOINTS}, 3) (MediaPipe hand keypoints, "
            f"wrist first), got {tuple(p.shape)}."
        )
    m = _check_mask(mask, p.shape[:-2])
    wrist_p, wrist_t = p[..., WRIST_INDEX, :], t[..., WRIST_INDEX, :]
    return {
        "mpjpe_mm": float(mpjpe(p, t, m)),
        "pa_mpjpe_mm": float(pa_mpjpe(p, t, m)),
        "mwte_mm": float(mwte(wrist_p, wrist_t, m)),
        "mde_deg": float(mde(wrist_p, wrist_t, m, eps_m=eps_m)),
    }


def pad_sequences(
    predictions: list[ArrayLike], references: list[ArrayLike]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Variable-length ``(T_i, 21, 3)`` sequences -> one ``(B, T_max, 21, 3)`` batch each and a ``(B, T_max)`` mask.

    The `evaluate` module scores lists of sequences; checking them here names the offending item.
    """
    if len(predictions) == 0:
        raise ValueError("`predictions` is empty: add at least one (T, 21, 3) sequence.")
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references.")
    preds = [_as_float64(p, f"predictions[{i}]") for i, p in enumerate(predictions)]
    refs = [_as_float64(r, f"references[{i}]") for i, r in enumerate(references)]
    for i, (p, r) in enumerate(zip(preds, refs, strict=True)):
        if p.ndim != 3 or p.shape[0] == 0 or p.shape[1:] != (NUM_HAND_JOINTS, 3):
            raise ValueError(f"predictions[{i}] must have shape (T >= 1, {NUM_HAND_JOINTS}, 3), got {p.shape}.")
        if r.shape != p.shape:
            raise ValueError(f"references[{i}] must have the shape of predictions[{i}] {p.shape}, got {r.shape}.")
    longest = max(p.shape[0] for p in preds)
    pred_joints = np.zeros((len(preds), longest, NUM_HAND_JOINTS, 3))
    target_joints = np.zeros_like(pred_joints)
    mask = np.zeros((len(preds), longest), dtype=bool)
    for i, (p, r) in enumerate(zip(preds, refs, strict=True)):
        pred_joints[i, : len(p)], target_joints[i, : len(r)], mask[i, : len(p)] = p, r, True
    return pred_joints, target_joints, mask
