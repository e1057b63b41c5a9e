"""Configuration classes for JALA.

`JalaMotionTokenizerConfig` describes the part-level grouped residual VQ (GRVQ) that turns MANO-D162 hand
motion into discrete tokens. Its defaults are the paper's (arXiv 2602.21736, §3): a 1D-conv encoder with
temporal downsample 4, 2 groups x 8 residual layers, a 4096-entry codebook of 512-d codes per (group, layer),
one 15-frame chunk -> 64 wrist + 64 finger tokens.
"""

from __future__ import annotations

import math

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


@strict
class JalaMotionTokenizerConfig(PreTrainedConfig):
    r"""Configuration of [`JalaMotionTokenizer`].

    Args:
        chunk_frames (`int`, defaults to 15):
            Frames per motion chunk (1 s at 15 fps). Each chunk is tokenized on its own so that the VLM can mask
            and predict whole chunks.
        downsample_factor (`int`, defaults to 4):
            Temporal downsampling of the 1D-conv encoder; a power of two. A chunk is edge-padded to the next
            multiple (15 -> 16 frames) so it yields `ceil(chunk_frames / downsample_factor)` latent steps.
        num_groups (`int`, defaults to 2):
            Groups of the grouped RVQ: the encoder output is split channel-wise into this many groups, each
            quantized by its own residual stack.
        num_residual_layers (`int`, defaults to 8):
            Residual quantizers per group.
        codebook_size (`int`, defaults to 4096):
            Entries per codebook. Every (part, group, layer) has its own codebook, so a token id is in
            `[0, codebook_size)` and its meaning depends on its slot in the chunk.
        code_dim (`int`, defaults to 512):
            Dimension of one code, i.e. of one group's slice of the encoder output.
        hidden_size (`int`, defaults to 512):
            Channels of the conv encoder/decoder.
        num_res_blocks (`int`, defaults to 2):
            Residual conv blocks per resolution level.
        commitment_weight (`float`, defaults to 0.02):
            Weight of the commitment loss ||r - sg(q)||^2 summed over residual layers.
        velocity_weight (`float`, defaults to 0.5):
            Weight of the reconstruction loss on frame-to-frame differences, which keeps decoded motion smooth.
        ema_decay (`float`, defaults to 0.99):
            Decay of the exponential moving averages that update the codebooks (no codebook gradients).
        dead_code_threshold (`float`, defaults to 1.0):
            A code whose EMA usage count falls below this is restarted from a random encoder output of the
            current batch.
        mirror_left_hand (`bool`, defaults to `True`):
            Left hands are mirrored into right-hand space before encoding (and back after decoding), so one
            set of codebooks serves both hands and sees twice the data.
        initializer_range (`float`, defaults to 0.02): Std of the normal init of linear layers.
    """

    model_type = "jala_motion_tokenizer"

    chunk_frames: int = 15
    downsample_factor: int = 4
    num_groups: int = 2
    num_residual_layers: int = 8
    codebook_size: int = 4096
    code_dim: int = 512
    hidden_size: int = 512
    num_res_blocks: int = 2
    commitment_weight: float = 0.02
    velocity_weight: float = 0.5
    ema_decay: float = 0.99
    dead_code_threshold: float = 1.0
    mirror_left_hand: bool = True
    initializer_range: float = 0.02

    def validate_tokenizer_layout(self) -> None:
        """Part of `@strict` validation: fail at construction, naming the field, not deep inside a forward."""
        positive = {
            "chunk_frames": self.chunk_frames,
            "num_groups": self.num_groups,
            "num_residual_layers": self.num_residual_layers,
            "codebook_size": self.codebook_size,
            "code_dim": self.code_dim,
            "hidden_size": self.hidden_size,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"JalaMotionTokenizerConfig.{name} must be a positive int, got {value!r}.")
        factor = self.downsample_factor
        if factor < 1 or factor & (factor - 1):
            raise ValueError(
                f"JalaMotionTokenizerConfig.downsample_factor must be a power of two (1, 2, 4, ...), got {factor!r}."
            )
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"JalaMotionTokenizerConfig.ema_decay must be in (0, 1), got {self.ema_decay}.")
        if self.num_res_blocks < 0:
            raise ValueError(f"JalaMotionTokenizerConfig.num_res_blocks must be >= 0, got {self.num_res_blocks}.")

    @property
    def padded_chunk_frames(self) -> int:
        """Chunk length after edge padding to a multiple of the downsampling factor (15 -> 16)."""
        return math.ceil(self.chunk_frames / self.downsample_factor) * self.downsample_factor

    @property
    def latent_steps(self) -> int:
        """Latent time steps per chunk (4 with the defaults)."""
        return self.padded_chunk_frames // self.downsample_factor

    @property
    def tokens_per_part(self) -> int:
        """Tokens one part (wrist or finger) contributes per chunk: steps x groups x residual layers (64)."""
        return self.latent_steps * self.num_groups * self.num_residual_layers

    @property
    def tokens_per_chunk(self) -> int:
        """Tokens per hand per chunk: wrist tokens then finger tokens (128 with the defaults)."""
        return 2 * self.tokens_per_part
