"""The one place where frozen SSL-encoder outputs become the features JALA's perceivers read.

Why a module of its own: the model computes these features on the fly (`JalaModel.ssl_features`) and the dataset
builder precomputes them (`dataset_scripts.builder.SslFeatureHook`). If the two selected tokens or pooled the patch
grid differently, a model trained on precomputed columns would silently read other features at inference. Both
call `encode_ssl_frames` (encoder forward + `select_ssl_tokens`), so they cannot drift apart.

Hub remote code: relative imports only (this file travels with `modeling_jala.py` into a model folder).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .configuration_jala import SSL_TOKEN_SELECTIONS as TOKEN_SELECTIONS

TokenSelection = Literal["patches", "all", "cls"]


def ssl_num_prefix_tokens(encoder_config: Any) -> int:
    """Tokens before the patch grid in the encoder output: CLS + registers for DINOv3, none for V-JEPA2."""
    if encoder_config.model_type == "vjepa2":
        return 0
    return 1 + int(getattr(encoder_config, "num_register_tokens", 0) or 0)


def pool_patch_grid(patches: Tensor, pool_grid: int | None) -> Tensor:
    """(B, side^2, D) patch tokens -> (B, pool_grid^2, D) by average pooling of the square grid; None keeps all.

    A grid finer than the encoder's is an error rather than a silent no-op: the caller asked for more tokens than
    exist, and feature shapes downstream (the perceiver input, a precomputed column) would not be what it expects.
    """
    if pool_grid is None:
        return patches
    if pool_grid < 1:
        raise ValueError(f"pool_grid must be a positive int or None, got {pool_grid}.")
    side = math.isqrt(patches.shape[1])
    if side * side != patches.shape[1]:
        raise ValueError(
            f"pool_grid needs a square patch grid, got {patches.shape[1]} patch tokens; use pool_grid=None "
            "(ssl_pool_grid=None / --ssl-pool-grid unset) for non-square inputs."
        )
    if pool_grid > side:
        raise ValueError(
            f"pool_grid {pool_grid} is finer than the encoder's {side}x{side} patch grid; use pool_grid <= {side} "
            "or None."
        )
    if pool_grid == side:
        return patches
    grid = patches.transpose(1, 2).reshape(patches.shape[0], -1, side, side)
    return F.adaptive_avg_pool2d(grid, pool_grid).flatten(2).transpose(1, 2)


def select_ssl_tokens(
    tokens: Tensor, num_prefix_tokens: int, token_selection: TokenSelection = "patches", pool_grid: int | None = None
) -> Tensor:
    """(B, prefix + patches, D) encoder output -> the kept tokens.

    `patches`: the (pooled) patch grid, what JALA's perceivers read; `all`: prefix tokens (CLS, registers) followed
    by the (pooled) patches; `cls`: the first token only.
    """
    if token_selection not in TOKEN_SELECTIONS:
        raise ValueError(f"token_selection must be one of {TOKEN_SELECTIONS}, got {token_selection!r}.")
    if token_selection == "cls":
        if num_prefix_tokens < 1:
            raise ValueError("token_selection='cls' needs an encoder with a CLS token (V-JEPA2 has none).")
        return tokens[:, :1]
    prefix, patches = tokens[:, :num_prefix_tokens], pool_patch_grid(tokens[:, num_prefix_tokens:], pool_grid)
    return patches if token_selection == "patches" else torch.cat([prefix, patches], dim=1)


def encode_ssl_frames(
    encoder: nn.Module,
    pixel_values: Tensor,
    token_selection: TokenSelection = "patches",
    pool_grid: int | None = None,
) -> Tensor:
    """(B, 3, h, w) preprocessed frames -> (B, P, D) features of a DINOv3-style image or V-JEPA2 video encoder.

    V-JEPA2 reads clips, so a still frame is repeated over one tubelet (its output then is the patch grid).
    """
    config = encoder.config
    pixel_values = pixel_values.to(encoder.dtype)
    if config.model_type == "vjepa2":
        clip = pixel_values[:, None].expand(-1, config.tubelet_size, -1, -1, -1)
        tokens = encoder(pixel_values_videos=clip, skip_predictor=True).last_hidden_state
    else:
        tokens = encoder(pixel_values=pixel_values).last_hidden_state
    return select_ssl_tokens(tokens, ssl_num_prefix_tokens(config), token_selection, pool_grid)
