"""The data contract shared by UniHand-Mix rows, the collators, the motion tokenizer and the model, written once.

Everything here is imported, never copied: the hand order, the frame rate, the chunk length, the ignore id, the
motion-token slot layout and the axis orders of motion and token arrays with the one function that converts
between them (docs/design.md §3, "Data contract"). The SSL token selection and pooling live next door in
`ssl_features_jala.py`. Hub remote code: relative imports only (this file travels with the modeling code).

Axis orders (names, not positions, so a reader sees what a permutation does):

=====================  ===============================  =====================================================
name                   axes                             where
=====================  ===============================  =====================================================
ROW_MOTION_AXES        (frame, hand, feature)           a dataset row's `motion` (T, 2, 162)
ROW_TOKEN_AXES         (chunk, hand, slot)              a dataset row's `motion_tokens` (N, 2, K)
CLIP_MOTION_AXES       (hand, frame, feature)           one clip of a batch: the collator's `motion`
                                                        (B, 2, T, 162) and the motion tokenizer's input
CLIP_TOKEN_AXES        (hand, chunk, slot)              the tokenizer's ids, the collator's `motion_tokens`
SEQUENCE_TOKEN_AXES    (chunk, hand, slot)              the model's `motion_token_ids` (B, N, 2, K): the
                                                        sequence order, hands alternating chunk by chunk
=====================  ===============================  =====================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

#: Hand order of every hand axis (motion, tokens, `hands_present`, the sequence): left, then right.
HANDS: tuple[str, str] = ("left", "right")
#: Frame rate of all UniHand-Mix motion and of every model input derived from it (frames per second).
FPS: float = 15.0
#: Frames per motion chunk (1 s at `FPS`); the motion tokenizer config's `chunk_frames` defaults to it.
CHUNK_FRAMES: int = 15
#: Fill value of token ids / labels that carry no target (missing chunk or hand, padding); CE's `ignore_index`.
IGNORE_TOKEN_ID: int = -100

AxisNames = tuple[str, ...]
ROW_MOTION_AXES: AxisNames = ("frame", "hand", "feature")
ROW_TOKEN_AXES: AxisNames = ("chunk", "hand", "slot")
CLIP_MOTION_AXES: AxisNames = ("hand", "frame", "feature")
CLIP_TOKEN_AXES: AxisNames = ("hand", "chunk", "slot")
SEQUENCE_TOKEN_AXES: AxisNames = ("chunk", "hand", "slot")

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)


def reorder_axes(array: ArrayT, source: AxisNames, target: AxisNames) -> ArrayT:
    """Permute the trailing `len(source)` axes of a numpy array or tensor from the `source` order to `target`.

    Leading axes (a batch axis, say) stay where they are, so one call serves a row and a batch alike. A tensor
    comes back as a view (call `.contiguous()` where needed); numpy likewise.
    """
    if sorted(source) != sorted(target) or len(set(source)) != len(source):
        raise ValueError(f"axis orders {source} and {target} must name the same distinct axes.")
    if array.ndim < len(source):
        raise ValueError(f"an array with axes {source} needs at least {len(source)} dimensions, got {array.ndim}.")
    lead = array.ndim - len(source)
    order = list(range(lead)) + [lead + source.index(name) for name in target]
    return array.permute(order) if isinstance(array, Tensor) else np.transpose(array, order)


@dataclass(frozen=True)
class MotionSlotLayout:
    """Which codebook each of a hand's 2 x tokens_per_part slots reads, derived from a tokenizer config.

    A part's tokens are step-major over (latent step, group, residual layer) (`PartTokenizer.ids_to_tokens`), so
    slot `s` of part `p` uses codebook `(p, (s mod G*L))`: G*L codebooks per part, 2*G*L per hand (32 for the
    paper's 2 groups x 8 layers). Token id i of one codebook means something unrelated to id i of another, so
    embeddings and output heads are indexed by (codebook, id), never by id alone. Wrist slots come first.
    """

    num_groups: int
    num_residual_layers: int
    latent_steps: int
    codebook_size: int

    @classmethod
    def from_config(cls, config: Any) -> MotionSlotLayout:
        """From a `JalaMotionTokenizerConfig` (or anything with its four fields)."""
        return cls(config.num_groups, config.num_residual_layers, config.latent_steps, config.codebook_size)

    @property
    def codebooks_per_part(self) -> int:
        return self.num_groups * self.num_residual_layers

    @property
    def tokens_per_part(self) -> int:
        return self.latent_steps * self.codebooks_per_part

    @property
    def tokens_per_chunk(self) -> int:
        """Slots per hand per chunk: wrist then finger tokens (128 for the paper's tokenizer)."""
        return 2 * self.tokens_per_part

    @property
    def num_codebooks(self) -> int:
        return 2 * self.codebooks_per_part

    def codebook_of_slot(self, device: torch.device | None = None) -> Tensor:
        """(tokens_per_chunk,) codebook index in [0, num_codebooks) of every slot of a hand's chunk."""
        slot = torch.arange(self.tokens_per_chunk, device=device)
        part = slot // self.tokens_per_part
        return part * self.codebooks_per_part + (slot % self.tokens_per_part) % self.codebooks_per_part

    def residual_layer_of_slot(self, device: torch.device | None = None) -> Tensor:
        """(tokens_per_chunk,) residual layer (0 = coarsest) of every slot."""
        return self.codebook_of_slot(device) % self.num_residual_layers

    def part_of_slot(self, device: torch.device | None = None) -> Tensor:
        """(tokens_per_chunk,) 0 for wrist slots, 1 for finger slots."""
        return self.codebook_of_slot(device) // self.codebooks_per_part


#: LeRobot's feature names of a robot dataset (and of the statistics' keys in its meta/stats.json): one camera,
#: the proprioceptive state, the action. Datasets with several cameras name them `observation.images.<camera>`.
LEROBOT_IMAGE_KEY = "observation.image"
LEROBOT_CAMERA_KEY_PREFIX = "observation.images."
LEROBOT_STATE_KEY = "observation.state"
LEROBOT_ACTION_KEY = "action"


__all__ = [
    "CHUNK_FRAMES",
    "LEROBOT_ACTION_KEY",
    "LEROBOT_CAMERA_KEY_PREFIX",
    "LEROBOT_IMAGE_KEY",
    "LEROBOT_STATE_KEY",
    "CLIP_MOTION_AXES",
    "CLIP_TOKEN_AXES",
    "FPS",
    "HANDS",
    "IGNORE_TOKEN_ID",
    "ROW_MOTION_AXES",
    "ROW_TOKEN_AXES",
    "SEQUENCE_TOKEN_AXES",
    "MotionSlotLayout",
    "reorder_axes",
]
