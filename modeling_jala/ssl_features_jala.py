"""The one place where frozen SSL-encoder outputs become the features JALA's perceivers read.

Why a module of its own: the model computes these features on the fly (`JalaModel.ssl_features`) and the dataset
builder precomputes them (`dataset_scripts.builder.SslFeatureHook`). If the two selected tokens or pooled the patch
grid differently, a model trained on precomputed columns would silently read other features at inference. Both
call `encode_ssl_frames` (encoder forward + `select_ssl_tokens`), so they cannot drift apart.

Hub remote code: relative imports only (this file travels with `modeling_jala.py` into a model folder).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .configuration_jala import SSL_TOKEN_SELECTIONS as TOKEN_SELECTIONS

#: The normalisation DINOv3 (and InternVL) use, and the SSL encoder's default when its folder says nothing else.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def ssl_image_settings(encoder_dir: str | os.PathLike) -> dict[str, Any]:
    """Input size, mean and std of a saved SSL encoder folder: its `preprocessor_config.json` where present (read
    as JSON, because DINOv3's own processor class needs torchvision), else `config.image_size` and ImageNet's.

    The one reading of these settings: the JALA processor's SSL image processor (`trainers.presets`) and the dataset
    builder's precomputed features (`SslFeatureHook`) both take them from here.
    """
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(encoder_dir)
    size = int(getattr(config, "image_size", 224) or 224)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    saved = Path(encoder_dir, "preprocessor_config.json")
    if saved.exists():
        settings = json.loads(saved.read_text())
        sizes = settings.get("size") or {}
        size = int(sizes.get("height", sizes.get("shortest_edge", size)))
        mean, std = tuple(settings.get("image_mean", mean)), tuple(settings.get("image_std", std))
    return {"image_size": size, "image_mean": [float(v) for v in mean], "image_std": [float(v) for v in std]}


def ssl_image_processor(image_size: int, image_mean: Any = IMAGENET_MEAN, image_std: Any = IMAGENET_STD) -> Any:
    """The SSL encoder's preprocessing as a torchvision-free transformers image processor: resize to
    image_size x image_size (bilinear), rescale, normalise with `image_mean` / `image_std`."""
    from transformers import ViTImageProcessorPil

    return ViTImageProcessorPil(
        size={"height": image_size, "width": image_size}, image_mean=list(image_mean), image_std=list(image_std)
    )


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


def selected_prefix_token_count(encoder_config: Any, token_selection: TokenSelection) -> int:
    """How many of `select_ssl_tokens`' output tokens precede the patch grid (CLS, registers): they have no grid
    position, so a reader that adds patch positions must skip them."""
    if token_selection == "patches":
        return 0
    if token_selection == "cls":
        return 1
    return ssl_num_prefix_tokens(encoder_config)


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
