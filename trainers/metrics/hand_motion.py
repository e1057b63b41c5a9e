"""Hand-motion metrics of the JALA paper (Table 1): MPJPE, PA-MPJPE, MWTE and MDE.

Plain batched functions so that training callbacks, benchmarks, the Space and the `evaluate` module
(`jala_hand_motion/`) all compute exactly the same numbers. Conventions:

- Inputs are positions in **metres**; torch tensors, numpy arrays or nested lists are accepted
  (`torch.as_tensor`). Joints are ``(..., T, J, 3)`` (21 MediaPipe-order keypoints for a hand, the
  wrist is keypoint 0), wrists ``(..., T, 3)``, masks ``(..., T)`` booleans (True = valid frame).
- Outputs are 0-dim float64 tensors in **millimetres** (MPJPE, PA-MPJPE, MWTE) or **degrees** (MDE).
- Computation runs in float64 on the inputs' device: the numbers are reported to 0.1 mm and the 3x3
  SVD of PA-MPJPE is ill-conditioned for near-planar hands in float32.
- Position errors are pooled means over every valid frame (and joint) of the batch, so long
  sequences weigh more than short ones, as in the usual MPJPE protocol. MDE is per sequence.
- Padding frames (mask False) may hold anything, NaN included: they are replaced by zeros before any
  arithmetic. Non-finite values in valid frames raise ``ValueError``.
- A mean over zero valid items is NaN (not an error), so an empty evaluation split shows up in a table
  instead of crashing a long run.

These are evaluation metrics, not losses: `procrustes_align` goes through an SVD whose gradient is
unstable for repeated singular values.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "MM_PER_M",
    "NUM_HAND_JOINTS",
    "WRIST_INDEX",
    "hand_motion_metrics",
    "mde",
    "mde_per_sequence",
    "mpjpe",
    "mwte",
    "pa_mpjpe",
    "procrustes_align",
]

MM_PER_M = 1000.0
NUM_HAND_JOINTS = 21  # MediaPipe hand landmark order
WRIST_INDEX = 0
# Joint sets whose mean squared distance to their centroid is below this (m^2, i.e. < 1 µm RMS spread)
# are treated as a single point by `procrustes_align` (scale 0) instead of dividing by ~0.
_DEGENERATE_VARIANCE_M2 = 1e-12
# Angle given to a sequence whose *predicted* displacement is (near) zero while the true one is not:
# the expected angle between a uniformly random direction and any fixed one. Excluding such sequences
# instead would reward a model for predicting no motion.
_UNDEFINED_DIRECTION_DEG = 90.0

ArrayLike = Any  # torch.Tensor | numpy.ndarray | nested sequences of floats


# --------------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------------
def _as_float64(x: ArrayLike, name: str, device: torch.device | None = None) -> torch.Tensor:
    try:
        t = torch.as_tensor(x, device=device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"`{name}` must be a tensor, array or nested list of numbers ({err}).") from err
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"`{name}` must hold real positions in metres, got dtype {t.dtype}.")
    return t.to(torch.float64)


def _check_pair(
    pred: ArrayLike, target: ArrayLike, pred_name: str, target_name: str, expected: str, min_ndim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert both inputs and check that they have the same ``expected`` shape ending in 3."""
    p = _as_float64(pred, pred_name)
    t = _as_float64(target, target_name, device=p.device)
    for name, x in ((pred_name, p), (target_name, t)):
        if x.ndim < min_ndim or x.shape[-1] != 3:
            raise ValueError(
                f"`{name}` must have shape {expected} (xyz in metres in the last dim), got {tuple(x.shape)}."
            )
    if p.shape != t.shape:
        raise ValueError(
            f"`{pred_name}` and `{target_name}` must have the same shape {expected}, "
            f"got {tuple(p.shape)} and {tuple(t.shape)}."
        )
    return p, t


def _check_mask(mask: ArrayLike | None, frame_shape: torch.Size, device: torch.device) -> torch.Tensor:
    """Return a bool mask of ``frame_shape`` (all True when ``mask`` is None)."""
    if mask is None:
        return torch.ones(frame_shape, dtype=torch.bool, device=device)
    m = torch.as_tensor(mask, device=device)
    if m.dtype != torch.bool:
        if m.is_floating_point() or m.is_complex() or not bool(((m == 0) | (m == 1)).all()):
            raise ValueError(f"`mask` must be booleans (True = valid frame) or 0/1 integers, got dtype {m.dtype}.")
        m = m.bool()
    if m.shape != frame_shape:
        raise ValueError(
            f"`mask` must have shape {tuple(frame_shape)} (the inputs' shape without the trailing "
            f"joint/xyz dims), got {tuple(m.shape)}."
        )
    return m


def _zero_invalid(x: torch.Tensor, mask: torch.Tensor, name: str) -> torch.Tensor:
    """Check that valid frames are finite and replace padding frames by zeros."""
    frame_mask = mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
    bad = ~torch.isfinite(x) & frame_mask
    if bool(bad.any()):
        raise ValueError(
            f"`{name}` has {int(bad.sum())} non-finite values in valid frames; fix the data or mark those "
            "frames False in `mask`."
        )
    return torch.where(frame_mask, x, torch.zeros((), dtype=x.dtype, device=x.device))


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over True entries of ``mask`` (same shape); NaN when there are none."""
    count = mask.sum()
    if int(count) == 0:
        return torch.tensor(math.nan, dtype=values.dtype, device=values.device)
    return torch.where(mask, values, torch.zeros_like(values)).sum() / count


# --------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------
def mpjpe(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> torch.Tensor:
    """Mean per-joint position error in mm.

    Args:
        pred, target: joints ``(..., J, 3)`` in metres, usually ``(..., T, 21, 3)``.
        mask: ``pred.shape[:-2]`` booleans, True for frames that count (e.g. ``(..., T)``).

    Returns:
        Mean Euclidean distance over all valid frames and all joints, in mm (NaN if no valid frame).
    """
    p, t = _check_pair(pred, target, "pred", "target", "(..., J, 3)", min_ndim=2)
    m = _check_mask(mask, p.shape[:-2], p.device)
    p, t = _zero_invalid(p, m, "pred"), _zero_invalid(t, m, "target")
    per_frame = torch.linalg.vector_norm(p - t, dim=-1).mean(dim=-1)
    return _masked_mean(per_frame, m) * MM_PER_M


def _procrustes_align(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Umeyama (1991) similarity alignment of ``x`` onto ``y``; both ``(..., J, 3)``, finite."""
    n = x.shape[-2]
    mu_x, mu_y = x.mean(dim=-2, keepdim=True), y.mean(dim=-2, keepdim=True)
    xc, yc = x - mu_x, y - mu_y
    var_x = xc.square().sum(dim=(-2, -1)) / n  # sigma_x^2, (...)
    cov = yc.transpose(-2, -1) @ xc / n  # Sigma_xy = 1/n sum (y_i - mu_y)(x_i - mu_x)^T, (..., 3, 3)
    u, s, vh = torch.linalg.svd(cov)
    # Reflection fix: force det(R) = +1 by flipping the weakest singular direction when needed.
    d = torch.sign(torch.linalg.det(u) * torch.linalg.det(vh))
    d = torch.where(d == 0, torch.ones_like(d), d)
    signs = torch.ones_like(s)
    signs[..., -1] = d
    rot = (u * signs.unsqueeze(-2)) @ vh  # U diag(1, 1, d) V^T
    trace = (s * signs).sum(dim=-1)
    degenerate = var_x < _DEGENERATE_VARIANCE_M2
    # A (near-)single-point x: every similarity maps it to one point, the best one is y's centroid.
    scale = torch.where(degenerate, torch.zeros_like(var_x), trace / torch.where(degenerate, 1.0, var_x))
    scale = scale[..., None, None]
    return scale * (xc @ rot.transpose(-2, -1)) + mu_y


def procrustes_align(pred: ArrayLike, target: ArrayLike) -> torch.Tensor:
    """Align each point set of ``pred`` onto ``target`` with the best similarity transform.

    Solves ``min_{s, R, t} sum_j |s R pred_j + t - target_j|^2`` per leading index with
    ``R`` a proper rotation (det +1, reflections are not allowed: a mirrored hand is an error) and
    ``s >= 0``, in closed form (Umeyama 1991, batched 3x3 SVD). If ``pred`` collapses to a point
    (RMS spread < 1 µm) the scale is 0 and every joint maps to ``target``'s centroid, which is the
    optimum in that case and avoids 0/0.

    Args:
        pred, target: ``(..., J, 3)`` finite positions in metres, J >= 1.

    Returns:
        ``(..., J, 3)`` float64 tensor, ``pred`` expressed in ``target``'s frame.
    """
    p, t = _check_pair(pred, target, "pred", "target", "(..., J, 3)", min_ndim=2)
    for name, x in (("pred", p), ("target", t)):
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"`{name}` has non-finite values; Procrustes alignment needs finite positions.")
    if p.shape[-2] == 0:
        raise ValueError("`pred` must have at least one joint: shape (..., J >= 1, 3).")
    return _procrustes_align(p, t)


def pa_mpjpe(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> torch.Tensor:
    """MPJPE in mm after per-frame similarity Procrustes alignment of ``pred`` onto ``target``.

    Removes global position, orientation and size so that only the hand's articulation is scored.
    Same shapes and mask semantics as `mpjpe`; the error is measured in ``target``'s units.
    """
    p, t = _check_pair(pred, target, "pred", "target", "(..., J, 3)", min_ndim=2)
    m = _check_mask(mask, p.shape[:-2], p.device)
    p, t = _zero_invalid(p, m, "pred"), _zero_invalid(t, m, "target")
    aligned = _procrustes_align(p, t)  # padding frames are all-zero: degenerate, finite
    per_frame = torch.linalg.vector_norm(aligned - t, dim=-1).mean(dim=-1)
    return _masked_mean(per_frame, m) * MM_PER_M


def mwte(pred_wrist: ArrayLike, target_wrist: ArrayLike, mask: ArrayLike | None = None) -> torch.Tensor:
    """Mean wrist translation error in mm.

    Args:
        pred_wrist, target_wrist: wrist positions ``(..., T, 3)`` in metres (any ``(..., 3)`` works).
        mask: ``pred_wrist.shape[:-1]`` booleans, True for valid frames.

    Returns:
        Mean over valid frames of ``|pred_wrist - target_wrist|``, in mm (NaN if no valid frame).
    """
    p, t = _check_pair(pred_wrist, target_wrist, "pred_wrist", "target_wrist", "(..., T, 3)", min_ndim=1)
    m = _check_mask(mask, p.shape[:-1], p.device)
    p, t = _zero_invalid(p, m, "pred_wrist"), _zero_invalid(t, m, "target_wrist")
    return _masked_mean(torch.linalg.vector_norm(p - t, dim=-1), m) * MM_PER_M


def mde_per_sequence(
    pred_wrist: ArrayLike,
    target_wrist: ArrayLike,
    mask: ArrayLike | None = None,
    eps_m: float = 1e-3,
) -> torch.Tensor:
    """Motion direction error of each sequence in degrees, NaN where it is excluded.

    Definition (per sequence, i.e. per leading index of ``(..., T, 3)``):

    1. ``f`` = first valid frame, ``l`` = last valid frame (``mask``; without a mask 0 and T-1).
    2. True displacement ``a = target_wrist[l] - target_wrist[f]``, predicted ``b = pred_wrist[l] -
       pred_wrist[f]`` (metres; the net motion over the clip, not the path).
    3. If ``|a| < eps_m`` (default 1 mm, which includes sequences with fewer than 2 valid frames) the
       true direction is undefined: the sequence is **excluded** and its entry is NaN.
    4. Else if ``|b| < eps_m`` the predicted direction is undefined: the entry is **90°**, the
       expected angle of a random direction, so that predicting "no motion" is not rewarded.
    5. Else the entry is ``angle(a, b) = atan2(|a x b|, a . b)`` in [0°, 180°] (stable near 0° and 180°).

    Returns:
        ``pred_wrist.shape[:-2]`` float64 tensor of angles in degrees.
    """
    if eps_m < 0 or not math.isfinite(eps_m):
        raise ValueError(f"`eps_m` must be a finite distance >= 0 in metres, got {eps_m}.")
    p, t = _check_pair(pred_wrist, target_wrist, "pred_wrist", "target_wrist", "(..., T, 3)", min_ndim=2)
    m = _check_mask(mask, p.shape[:-1], p.device)
    p, t = _zero_invalid(p, m, "pred_wrist"), _zero_invalid(t, m, "target_wrist")
    num_frames = m.shape[-1]
    m_int = m.to(torch.int64)
    first = m_int.argmax(dim=-1)  # first True (0 if none; such rows are excluded below)
    last = num_frames - 1 - m_int.flip(-1).argmax(dim=-1)

    def displacement(x: torch.Tensor) -> torch.Tensor:
        def at(idx: torch.Tensor) -> torch.Tensor:
            return torch.gather(x, -2, idx[..., None, None].expand(*idx.shape, 1, 3)).squeeze(-2)

        return at(last) - at(first)

    a, b = displacement(t), displacement(p)
    norm_a, norm_b = torch.linalg.vector_norm(a, dim=-1), torch.linalg.vector_norm(b, dim=-1)
    angle = torch.rad2deg(torch.atan2(torch.linalg.vector_norm(torch.linalg.cross(a, b), dim=-1), (a * b).sum(-1)))
    angle = torch.where(norm_b < eps_m, torch.full_like(angle, _UNDEFINED_DIRECTION_DEG), angle)
    excluded = (norm_a < eps_m) | ~m.any(dim=-1)
    return torch.where(excluded, torch.full_like(angle, math.nan), angle)


def mde(
    pred_wrist: ArrayLike,
    target_wrist: ArrayLike,
    mask: ArrayLike | None = None,
    eps_m: float = 1e-3,
) -> torch.Tensor:
    """Motion direction error in degrees: mean of `mde_per_sequence` over non-excluded sequences.

    A sequence is excluded when its true net wrist displacement (last valid minus first valid frame)
    is shorter than ``eps_m`` metres; the number excluded is logged at INFO. Returns NaN when every
    sequence is excluded. See `mde_per_sequence` for the exact definition.
    """
    per_seq = mde_per_sequence(pred_wrist, target_wrist, mask, eps_m=eps_m)
    kept = ~torch.isnan(per_seq)
    num_excluded = int(per_seq.numel() - kept.sum())
    if num_excluded:
        logger.info(
            "MDE: %d of %d sequences excluded (true wrist displacement < %.3g m).",
            num_excluded,
            per_seq.numel(),
            eps_m,
        )
    return _masked_mean(per_seq, kept)


def hand_motion_metrics(
    pred_joints: ArrayLike,
    target_joints: ArrayLike,
    mask: ArrayLike | None = None,
    eps_m: float = 1e-3,
) -> dict[str, float]:
    """All four Table-1 metrics for hand joint sequences.

    Args:
        pred_joints, target_joints: ``(..., T, 21, 3)`` MediaPipe-order joints in metres; keypoint 0
            is the wrist (used for MWTE and MDE).
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
    m = _check_mask(mask, p.shape[:-2], p.device)
    wrist_p, wrist_t = p[..., WRIST_INDEX, :], t[..., WRIST_INDEX, :]
    return {
        "mpjpe_mm": float(mpjpe(p, t, m)),
        "pa_mpjpe_mm": float(pa_mpjpe(p, t, m)),
        "mwte_mm": float(mwte(wrist_p, wrist_t, m)),
        "mde_deg": float(mde(wrist_p, wrist_t, m, eps_m=eps_m)),
    }
