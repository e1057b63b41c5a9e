"""LAPA† baseline: latent action codes learned by reconstruction in SSL-feature space, used as pseudo-labels.

The paper's "LAPA†" ablation (after LAPA, Ye et al. 2024) replaces JALA's joint alignment with the usual
two-stage recipe folded into one model: an inverse dynamics model (IDM) reads the boundary frames of a chunk and
emits latent actions, which are vector-quantized into a small codebook; a forward dynamics model (FDM) must
reconstruct the next frame's SSL features from the current frame's and those codes. The VLM is then trained to
predict the codes at its motion slots — for every clip, labelled or not — so wild video enters through discrete
pseudo-labels instead of through the alignment of continuous latents.

The IDM has the LAP's architecture (a `LatentPerceiver`: K queries per hand); codes live in a low-dimensional
space (`code_dim`) so a codebook of `lapa_codebook_size` entries (LAPA: 8) is well used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .perceiver_jala import LatentPerceiver, PerceiverBlock


@dataclass
class LatentCodes:
    codes: Tensor  # (B, N, 2, K) code ids: the VLM's pseudo-labels
    reconstruction_loss: Tensor  # FDM error in SSL-feature space
    commitment_loss: Tensor  # VQ codebook + commitment terms


class LatentActionQuantizer(nn.Module):
    """IDM -> VQ codes -> FDM, trained by next-frame feature reconstruction."""

    def __init__(
        self,
        feature_dim: int,
        width: int,
        num_queries: int,
        num_layers: int,
        num_heads: int,
        codebook_size: int,
        code_dim: int = 32,
        commitment_weight: float = 0.25,
        patch_positions: str = "none",
        num_prefix_tokens: int = 0,
    ) -> None:
        super().__init__()
        self.idm = LatentPerceiver(
            feature_dim,
            width,
            code_dim,
            num_queries,
            num_layers,
            num_heads,
            patch_positions=patch_positions,
            num_prefix_tokens=num_prefix_tokens,
        )
        self.codebook = nn.Embedding(codebook_size, code_dim)
        self.code_projection = nn.Linear(code_dim, width)
        self.code_hand_embedding = nn.Parameter(torch.zeros(2, width))
        self.frame_projection = nn.Linear(feature_dim, width)
        self.fdm_blocks = nn.ModuleList(PerceiverBlock(width, num_heads, 4.0) for _ in range(num_layers))
        self.fdm_output = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, feature_dim))
        self.commitment_weight = commitment_weight

    def quantize(self, latents: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(..., code_dim) -> straight-through quantized latents, code ids, VQ loss (codebook + commitment)."""
        flat = latents.reshape(-1, latents.shape[-1]).float()
        distances = torch.cdist(flat, self.codebook.weight.float())
        ids = distances.argmin(-1).view(latents.shape[:-1])
        quantized = self.codebook(ids).to(latents.dtype)
        loss = F.mse_loss(quantized, latents.detach()) + self.commitment_weight * F.mse_loss(
            latents, quantized.detach()
        )
        return latents + (quantized - latents).detach(), ids, loss

    def forward(self, boundary_features: Tensor, chunk_mask: Tensor) -> LatentCodes:
        """(B, N + 1, P, D) boundary-frame features, (B, N) chunk mask -> codes of every chunk and the losses."""
        batch, boundaries = boundary_features.shape[:2]
        start = boundary_features[:, :-1].flatten(0, 1)
        end = boundary_features[:, 1:].flatten(0, 1)
        latents = self.idm(start, end)  # (B N, 2, K, code_dim)
        quantized, ids, vq_loss = self.quantize(latents)
        codes = self.code_projection(quantized) + self.code_hand_embedding[None, :, None, :]
        predicted = self.frame_projection(start)
        for block in self.fdm_blocks:
            predicted = block(predicted, codes.flatten(1, 2))
        predicted = self.fdm_output(predicted)
        valid = chunk_mask.flatten()
        error = (predicted - end.to(predicted.dtype)).pow(2).mean(dim=(1, 2))
        reconstruction = (error * valid).sum() / valid.sum().clamp_min(1)
        return LatentCodes(
            codes=ids.view(batch, boundaries - 1, *ids.shape[1:]),
            reconstruction_loss=reconstruction,
            commitment_loss=vq_loss,
        )
