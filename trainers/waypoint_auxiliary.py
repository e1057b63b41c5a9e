"""Wrist-waypoint auxiliary: the motion positions' states regress where each hand's wrist is at the end of its chunk.

Why: the masked-chunk loss scores a chunk by which of a codebook's codes it is, a categorical signal with no metric:
a code that puts the wrist 2 cm off costs as much as one 30 cm off. Where the hand goes (towards the named
object on test_lab) is a few centimetres of difference in a handful of coarse codes, and the motion positions do
not learn to read it from the prefix (docs/design.md §2.2). This adds a metric signal from the same labels: a linear
head on h (the `align_layer` states at each chunk's motion slots, averaged over the slots) regresses the wrist
translation (camera frame) at the chunk's last frame, smooth L1 in units of `scale` metres, on labelled clips. Only
the motion labels are read, so it applies to any lab set; the head is scaffolding and is not saved.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modeling_jala.hand_jala import WRIST_TRANSL
from modeling_jala.layout_jala import CHUNK_FRAMES


def chunk_end_wrists(motion: Tensor, frame_lengths: Tensor, num_chunks: int) -> Tensor:
    """(B, 2, T, 162) motion -> (B, N, 2, 3) wrist translation at each chunk's last frame (clamped to the clip)."""
    ends = torch.arange(num_chunks, device=motion.device) * CHUNK_FRAMES + CHUNK_FRAMES - 1
    ends = torch.minimum(ends[None], (frame_lengths[:, None] - 1).clamp_min(0))  # (B, N)
    index = ends[:, None, :, None].expand(-1, motion.shape[1], -1, 3)  # (B, 2, N, 3)
    return motion[..., WRIST_TRANSL].gather(2, index).transpose(1, 2)


class WaypointAuxiliary:
    """One weighted regression loss per step, read from the pretraining outputs and batch."""

    def __init__(self, hidden_size: int, weight: float, scale: float = 0.05, device: Any = None) -> None:
        if weight <= 0:
            raise ValueError(f"--waypoint_weight must be > 0 to add the waypoint loss, got {weight}.")
        self.weight = weight
        self.scale = scale
        self.head = nn.Linear(hidden_size, 3).to(device)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def losses(self, outputs: Any, inputs: dict[str, Any]) -> dict[str, Tensor]:
        """`loss` (weighted) and the unweighted `waypoint_loss`; zero when the batch has no labelled motion."""
        h = outputs.predictive_embeddings  # (B, N, 2, K, H)
        if h is None or inputs.get("motion") is None:
            raise ValueError(
                "--waypoint_weight needs raw `motion` and `frame_lengths` in the batch and a model with predictive "
                "embeddings; rows with precomputed `motion_tokens` carry no motion: train from raw motion or drop "
                "--waypoint_weight."
            )
        scored = outputs.slot_mask & inputs["labelled"].to(h.device)[:, None, None]  # (B, N, 2)
        if not bool(scored.any()):
            zero = h.sum() * 0.0
            return {"loss": zero, "waypoint_loss": zero.detach()}
        target = chunk_end_wrists(inputs["motion"].to(h.dtype), inputs["frame_lengths"].to(h.device), h.shape[1])
        predicted = self.head(h.mean(3))  # (B, N, 2, 3)
        loss = F.smooth_l1_loss(predicted[scored] / self.scale, target[scored] / self.scale)
        return {"loss": self.weight * loss, "waypoint_loss": loss.detach()}
