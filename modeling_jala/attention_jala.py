"""JALA's block-causal attention pattern, as a dense additive mask (the reference) or a FlexAttention BlockMask.

The sequence [instruction, v_1, LSP, A_1 ... A_N] is causal over the prefix and bidirectional inside each motion
block (docs/design.md §1.3): a query sees a key iff the key's block is not later than its own and the key is valid
(not padding, not an absent hand). One predicate, `block_causal_allowed`, defines the pattern; the two formats only
encode it:

* `dense`: a (B, 1, Lq, Lk) additive float mask for the VLM's sdpa / eager attention. Simple and exact, but every
  masked score is still computed and no fused kernel that skips tiles can be used.
* `flex`: a `torch.nn.attention.flex_attention.BlockMask` read by `block_flex_attention`, registered with
  transformers' `AttentionInterface` as the language model's attention implementation: it skips fully masked
  128 x 128 tiles (the LSP block and later motion blocks never see each other's future) and needs no O(L^2) float
  tensor. Selected by `JalaConfig.block_causal_attention = "flex"`. On CUDA the kernel is `torch.compile`d once per
  shape. On CPU (tests and fallbacks, not speed) it runs flex_attention eagerly, exact but unfused — inductor's CPU
  flex template is not reliable across shapes in torch 2.13 — and, where gradients are needed (FlexAttention has
  no CPU backward), sdpa on the boolean mask materialised from the BlockMask's own mask_mod.

Queries are the last Lq of the Lk positions (all by default; fewer when earlier keys sit in a KV cache), and every
query always sees itself, so a padding row is never all masked (NaN in softmax).

Hub remote code: relative imports only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

#: `JalaConfig.block_causal_attention` values: the dense reference mask, or a FlexAttention BlockMask.
BLOCK_CAUSAL_ATTENTION_FORMATS: tuple[str, ...] = ("dense", "flex")
#: The name `block_flex_attention` is registered under in transformers' AttentionInterface.
FLEX_ATTENTION = "jala_block_flex_attention"
_compiled_flex_attention: Any = None


def block_causal_allowed(
    block_ids: Tensor, key_valid: Tensor, query_block_ids: Tensor, batch: Tensor, query: Tensor, key: Tensor
) -> Tensor:
    """Whether query `query` of row `batch` may attend to key `key` (broadcasting index tensors).

    `block_ids` / `key_valid` are (B, Lk) over the keys, `query_block_ids` (B, Lq) over the queries; query q sits at
    key position q + Lk - Lq.
    """
    offset = block_ids.shape[1] - query_block_ids.shape[1]
    later_block = block_ids[batch, key] > query_block_ids[batch, query]
    return (~later_block & key_valid[batch, key]) | (key == query + offset)


def block_causal_mask(
    block_ids: Tensor, key_valid: Tensor, dtype: torch.dtype, query_block_ids: Tensor | None = None
) -> Tensor:
    """Block ids of the keys (B, Lk) and key validity -> (B, 1, Lq, Lk) additive mask (0 = attend, min = not)."""
    if query_block_ids is None:
        query_block_ids = block_ids
    device = block_ids.device
    batch = torch.arange(block_ids.shape[0], device=device)[:, None, None]
    query = torch.arange(query_block_ids.shape[1], device=device)[None, :, None]
    key = torch.arange(block_ids.shape[1], device=device)[None, None, :]
    allowed = block_causal_allowed(block_ids, key_valid.bool(), query_block_ids, batch, query, key)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def block_causal_block_mask(block_ids: Tensor, key_valid: Tensor, query_block_ids: Tensor | None = None) -> Any:
    """The same pattern as a FlexAttention `BlockMask` of shape (B, 1, Lq, Lk) (heads share it)."""
    from torch.nn.attention.flex_attention import create_block_mask

    if query_block_ids is None:
        query_block_ids = block_ids
    key_valid = key_valid.bool()

    def mask_mod(batch: Tensor, head: Tensor, query: Tensor, key: Tensor) -> Tensor:
        return block_causal_allowed(block_ids, key_valid, query_block_ids, batch, query, key)

    return create_block_mask(
        mask_mod,
        B=block_ids.shape[0],
        H=None,
        Q_LEN=query_block_ids.shape[1],
        KV_LEN=block_ids.shape[1],
        device=block_ids.device,
    )


def block_flex_attention(
    module: Any,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Any,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """transformers attention function: (B, H, L, D) query / key / value and a BlockMask -> ((B, L, H, D), None)."""
    global _compiled_flex_attention
    from torch.nn.attention.flex_attention import BlockMask, flex_attention

    if not isinstance(attention_mask, BlockMask):
        raise TypeError(
            f"{FLEX_ATTENTION} reads a BlockMask (JalaModel.block_causal_attention_mask with "
            f"block_causal_attention='flex'), got {type(attention_mask).__name__}."
        )
    if dropout > 0 and getattr(module, "training", False):
        raise ValueError("block_causal_attention='flex' has no attention dropout; set attention_dropout=0.")
    grouped = query.shape[1] != key.shape[1]
    if query.device.type == "cpu" and torch.is_grad_enabled() and query.requires_grad:
        # FlexAttention has no backward on CPU: train on the same pattern, materialised from the BlockMask's
        # mask_mod, through sdpa.
        from torch.nn.attention.flex_attention import create_mask

        batch, _, num_queries, num_keys = attention_mask.shape
        allowed = create_mask(attention_mask.mask_mod, batch, 1, num_queries, num_keys, device=query.device)
        output = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=allowed, scale=scaling, enable_gqa=grouped
        )
        return output.transpose(1, 2).contiguous(), None
    kernel = flex_attention
    if query.device.type == "cuda":
        if _compiled_flex_attention is None:
            _compiled_flex_attention = torch.compile(flex_attention, dynamic=False)
        kernel = _compiled_flex_attention
    output = kernel(query, key, value, block_mask=attention_mask, scale=scaling, enable_gqa=grouped)
    return output.transpose(1, 2).contiguous(), None


def register_block_flex_attention() -> None:
    """Make `FLEX_ATTENTION` a transformers attention implementation (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(FLEX_ATTENTION, block_flex_attention)


def sequence_attention_mask(
    attention_format: str,
    block_ids: Tensor,
    key_valid: Tensor,
    dtype: torch.dtype,
    query_block_ids: Tensor | None = None,
) -> Any:
    """The block-causal mask in `attention_format` (`dense` or `flex`), what the language model's attention reads."""
    if attention_format == "flex":
        return block_causal_block_mask(block_ids, key_valid, query_block_ids)
    if attention_format != "dense":
        raise ValueError(
            f"attention format must be one of {BLOCK_CAUSAL_ATTENTION_FORMATS}, got {attention_format!r}."
        )
    return block_causal_mask(block_ids, key_valid, dtype, query_block_ids)


__all__ = [
    "BLOCK_CAUSAL_ATTENTION_FORMATS",
    "FLEX_ATTENTION",
    "block_causal_allowed",
    "block_causal_block_mask",
    "block_causal_mask",
    "block_flex_attention",
    "register_block_flex_attention",
    "sequence_attention_mask",
]
