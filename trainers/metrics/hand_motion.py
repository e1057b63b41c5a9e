"""Hand-motion metrics of the JALA paper (Table 1): MPJPE, PA-MPJPE, MWTE and MDE, for torch callers.

The math has one home, `jala_hand_motion/hand_motion_math.py` (numpy only, so that the `evaluate` module beside it
loads where this repository is not installed; docs/design.md §5). This module is its torch face, used by training,
benchmarks and the Space: it takes tensors on any device (or numpy arrays, nested lists), computes on the CPU in
float64, and returns 0-dim float64 tensors (arrays for `procrustes_align` and `mde_per_sequence`) on the device of
the first tensor argument. `hand_motion_metrics` returns Python floats. Inputs are in metres, outputs in
millimetres or degrees; see the math module for the masks, NaN and edge-case conventions.

These are evaluation metrics, not losses: they do not carry gradients.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from trainers.metrics.jala_hand_motion import hand_motion_math
from trainers.metrics.jala_hand_motion.hand_motion_math import MM_PER_M, NUM_HAND_JOINTS, WRIST_INDEX

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


def _as_numpy(value: Any) -> Any:
    """Tensors (any device, with or without grad) as numpy arrays; everything else as it is."""
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value


def _torch_face(compute: Callable[..., Any]) -> Callable[..., torch.Tensor]:
    """`compute` of the math module taking tensors and returning a float64 tensor on the inputs' device."""

    @functools.wraps(compute)
    def metric(*args: Any, **kwargs: Any) -> torch.Tensor:
        tensors = [value for value in (*args, *kwargs.values()) if isinstance(value, torch.Tensor)]
        result = compute(*map(_as_numpy, args), **{key: _as_numpy(value) for key, value in kwargs.items()})
        return torch.as_tensor(result, dtype=torch.float64, device=tensors[0].device if tensors else None)

    return metric


mpjpe = _torch_face(hand_motion_math.mpjpe)
pa_mpjpe = _torch_face(hand_motion_math.pa_mpjpe)
procrustes_align = _torch_face(hand_motion_math.procrustes_align)
mwte = _torch_face(hand_motion_math.mwte)
mde_per_sequence = _torch_face(hand_motion_math.mde_per_sequence)
mde = _torch_face(hand_motion_math.mde)


@functools.wraps(hand_motion_math.hand_motion_metrics)
def hand_motion_metrics(
    pred_joints: Any, target_joints: Any, mask: Any = None, eps_m: float = 1e-3
) -> dict[str, float]:
    return hand_motion_math.hand_motion_metrics(
        _as_numpy(pred_joints), _as_numpy(target_joints), _as_numpy(mask), eps_m=eps_m
    )
