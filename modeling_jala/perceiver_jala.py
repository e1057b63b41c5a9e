"""Latent Action / Latent State Perceiver and the decoupled EMA that links them.

One module class serves both roles (paper §3.2):

* **LAP** (Latent Action Perceiver) reads the frozen SSL features of a chunk's two boundary frames (v_t, v_t+15)
  and emits K latent actions per hand — the targets z of the alignment loss.
* **LSP** (Latent State Perceiver) is the same module with the same shapes, fed the initial frame twice (v_1, v_1);
  its 2K output tokens enter the VLM sequence as state context.

Architecture: K learned queries; `num_layers` blocks of [cross-attention to the projected frame features, self-
attention among the queries, feed-forward]; then a 2-layer MLP per hand (the "two-head output") into the VLM width.
Each projected feature token also carries which frame it came from and, by default, a fixed 2D sine-cosine code of
its place in the patch grid: cross-attention reads its keys as a set, and a ViT with rotary positions (DINOv3)
leaves little absolute position in its outputs, so without that code the perceiver could tell *what* is in the
frame but hardly *where* (docs/design.md §1.5).

Decoupled EMA, after every optimizer step (α = 0.999):
    trunk_LAP   <- α trunk_LAP   + (1 - α) trunk_LSP      (everything except the queries)
    queries_LSP <- α queries_LSP + (1 - α) queries_LAP
so the trunk learns only through the LSP (gradients via the VLM) and the queries only through the LAP (gradients
via the alignment loss): `requires_grad` is off for the LAP trunk and the LSP queries. The `coupled` mode (the
paper's "w/o dec." ablation) is a plain BYOL-style target: the whole LAP is an EMA of the LSP, which alone learns.
All EMA tensors are ordinary parameters, so they are in the state dict and a resumed run continues exactly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .configuration_jala import PERCEIVER_PATCH_POSITIONS as PATCH_POSITIONS

QUERIES = "queries"


def grid_sincos_positions(num_tokens: int, width: int, num_prefix_tokens: int = 0) -> Tensor:
    """(num_tokens, width) fixed positions of a square patch grid in raster order (MAE's 2D sine-cosine code).

    Half of the channels encode the row, half the column, each as sines and cosines of geometric frequencies. The
    first `num_prefix_tokens` tokens (CLS, registers) are not grid cells and get zeros. Fixed rather than learned:
    no parameters, and any grid size (pooled or not, another encoder resolution) gets a consistent code.
    """
    if width % 4:
        raise ValueError(f"2D sine-cosine positions need a width divisible by 4, got {width}.")
    cells = num_tokens - num_prefix_tokens
    side = math.isqrt(max(cells, 0))
    if cells < 0 or side * side != cells:
        raise ValueError(
            f"patch positions need a square patch grid, got {cells} patch tokens ({num_tokens} tokens, "
            f"{num_prefix_tokens} before the grid); use perceiver_patch_positions='none' for non-square inputs."
        )
    quarter = width // 4
    frequencies = 1.0 / (10000.0 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    index = torch.arange(side, dtype=torch.float64)
    angles = index[:, None] * frequencies[None]  # (side, quarter)
    axis_code = torch.cat([angles.sin(), angles.cos()], dim=1)  # (side, width / 2)
    rows = axis_code[:, None, :].expand(side, side, -1)
    columns = axis_code[None, :, :].expand(side, side, -1)
    grid = torch.cat([rows, columns], dim=-1).reshape(cells, width)
    return torch.cat([torch.zeros(num_prefix_tokens, width, dtype=grid.dtype), grid]).float()


class PerceiverBlock(nn.Module):
    """Cross-attention from the queries to the frame features, self-attention among queries, feed-forward."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.cross_norm = nn.LayerNorm(width)
        self.context_norm = nn.LayerNorm(width)
        self.cross_attention = nn.MultiheadAttention(width, num_heads, batch_first=True)
        self.self_norm = nn.LayerNorm(width)
        self.self_attention = nn.MultiheadAttention(width, num_heads, batch_first=True)
        self.mlp_norm = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, latents: Tensor, context: Tensor) -> Tensor:
        context = self.context_norm(context)
        query = self.cross_norm(latents)
        latents = latents + self.cross_attention(query, context, context, need_weights=False)[0]
        query = self.self_norm(latents)
        latents = latents + self.self_attention(query, query, query, need_weights=False)[0]
        return latents + self.mlp(self.mlp_norm(latents))


class LatentPerceiver(nn.Module):
    """Boundary-frame SSL features -> (2 hands, K, out_width) latent tokens.

    Args:
        feature_dim: width D of the SSL encoder's tokens.
        width: perceiver width.
        out_width: the VLM's hidden size.
        num_queries: K, equal to the motion tokens per hand and chunk so that z[k] aligns with slot k.
        patch_positions: `sincos_2d` adds `grid_sincos_positions` to every projected feature token; `none` reads
            the tokens as a set (the behaviour before this option existed).
        num_prefix_tokens: feature tokens before the patch grid (CLS, registers), which get no position.
    """

    def __init__(
        self,
        feature_dim: int,
        width: int,
        out_width: int,
        num_queries: int,
        num_layers: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        patch_positions: str = "none",
        num_prefix_tokens: int = 0,
    ) -> None:
        super().__init__()
        if patch_positions not in PATCH_POSITIONS:
            raise ValueError(f"patch_positions must be one of {PATCH_POSITIONS}, got {patch_positions!r}.")
        self.patch_positions = patch_positions
        self.num_prefix_tokens = num_prefix_tokens
        self._position_cache: dict[tuple[int, torch.device, torch.dtype], Tensor] = {}
        self.queries = nn.Parameter(torch.zeros(num_queries, width))
        self.input_projection = nn.Linear(feature_dim, width)
        # Which of the two boundary frames a feature token comes from (v_t or v_t+15).
        self.frame_embedding = nn.Parameter(torch.zeros(2, width))
        self.blocks = nn.ModuleList(PerceiverBlock(width, num_heads, mlp_ratio) for _ in range(num_layers))
        self.output_norm = nn.LayerNorm(width)
        self.hand_heads = nn.ModuleList(
            nn.Sequential(nn.Linear(width, out_width), nn.GELU(), nn.Linear(out_width, out_width)) for _ in range(2)
        )

    def forward(self, start_features: Tensor, end_features: Tensor) -> Tensor:
        """(M, P, D) features of v_t and v_t+15 -> (M, 2, K, out_width) latents for (left, right)."""
        start = self.input_projection(start_features) + self.frame_embedding[0]
        end = self.input_projection(end_features) + self.frame_embedding[1]
        if self.patch_positions == "sincos_2d":
            positions = self.grid_positions(start.shape[1], start.device, start.dtype)
            start, end = start + positions, end + positions
        context = torch.cat([start, end], dim=1)
        latents = self.queries[None].expand(context.shape[0], -1, -1)
        for block in self.blocks:
            latents = block(latents, context)
        latents = self.output_norm(latents)
        return torch.stack([head(latents) for head in self.hand_heads], dim=1)

    def grid_positions(self, num_tokens: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """`grid_sincos_positions` for this perceiver's width, built once per (tokens, device, dtype): the code is
        fixed, so every forward would otherwise rebuild it and copy it to the device."""
        key = (num_tokens, device, dtype)
        if key not in self._position_cache:
            positions = grid_sincos_positions(num_tokens, self.input_projection.out_features, self.num_prefix_tokens)
            self._position_cache[key] = positions.to(device=device, dtype=dtype)
        return self._position_cache[key]

    def trunk_parameters(self) -> list[nn.Parameter]:
        """Every parameter except the learned queries, in a fixed order."""
        return [parameter for name, parameter in self.named_parameters() if name != QUERIES]


def freeze_ema_targets(lap: LatentPerceiver, lsp: LatentPerceiver, mode: str) -> None:
    """Gradients must not reach the tensors the EMA overwrites."""
    for parameter in lap.trunk_parameters():
        parameter.requires_grad_(False)
    for parameter in lsp.trunk_parameters():
        parameter.requires_grad_(True)
    lap.queries.requires_grad_(mode == "decoupled")
    lsp.queries.requires_grad_(mode == "coupled")


def ema_pairs(lap: LatentPerceiver, lsp: LatentPerceiver, mode: str) -> tuple[list[Tensor], list[Tensor]]:
    """(targets, sources) of the EMA: each target moves toward its source.

    decoupled: LAP trunk <- LSP trunk, LSP queries <- LAP queries. coupled ("w/o dec."): the whole LAP <- LSP.
    """
    if mode not in ("decoupled", "coupled"):
        raise ValueError(f"EMA mode must be 'decoupled' or 'coupled', got {mode!r}.")
    targets, sources = lap.trunk_parameters(), lsp.trunk_parameters()
    if mode == "decoupled":
        targets.append(lsp.queries)
        sources.append(lap.queries)
    else:
        targets.append(lap.queries)
        sources.append(lsp.queries)
    return targets, sources


@torch.no_grad()
def ema_update(targets: list[Tensor], sources: list[Tensor], decay: float) -> None:
    """target <- decay * target + (1 - decay) * source, fused over all tensors (as V-JEPA does)."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"EMA decay must be in [0, 1), got {decay}.")
    target_data = [tensor.data for tensor in targets]
    source_data = [tensor.data.to(tensor_t.dtype) for tensor, tensor_t in zip(sources, target_data, strict=True)]
    torch._foreach_mul_(target_data, decay)
    torch._foreach_add_(target_data, source_data, alpha=1.0 - decay)
