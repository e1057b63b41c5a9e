"""Part-level grouped residual VQ (GRVQ) motion tokenizer for MANO-D162 hand motion.

Each hand's motion is cut into 15-frame chunks and every chunk is tokenized on its own, so that the VLM can mask
and predict whole chunks. A chunk splits into two parts that are quantized separately (the paper's "part-level"
design): the wrist (rot6d + translation, 9-d) and the fingers (15 joint rot6d + 20 joints relative to the wrist,
150-d). Per part: a 1D-conv encoder downsamples time by 4 (15 -> 16 padded -> 4 latent steps), its output is
split channel-wise into 2 groups, and each group is quantized by 8 residual codebooks updated by EMA. A chunk thus
becomes 4 steps x 2 groups x 8 layers = 64 wrist + 64 finger tokens.

Token order inside a chunk: all wrist tokens, then all finger tokens; inside a part, step-major, then group, then
residual layer. Left hands are mirrored into right-hand space before encoding (config.mirror_left_hand).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_jala import JalaMotionTokenizerConfig
from .hand_jala import D162_DIM, FINGER_PART_DIM, WRIST_PART_DIM, merge_parts, mirror_motion, split_parts
from .layout_jala import HANDS, IGNORE_TOKEN_ID
from .strict_loading_jala import StrictLoadingMixin

logger = logging.getLogger(__name__)

#: Physical blocks of each part that share one normalization scale (see fit_normalization).
WRIST_BLOCKS = (slice(0, 6), slice(6, 9))  # rot6d, translation
FINGER_BLOCKS = (slice(0, 90), slice(90, 150))  # joint rot6d, joints relative to the wrist


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@dataclass
class CodebookHealth:
    """Training-time health of one codebook, from its EMA statistics and restart counters."""

    perplexity: float  # exp(entropy) of the EMA usage distribution
    dead_fraction: float  # codes below the dead-code threshold now (restarted at the next check)
    restart_fraction: float  # codes restarted at the last restart check
    restarts_total: int  # codes restarted since construction or loading (restarts are not saved)


class EmaCodebook(nn.Module):
    """One codebook whose entries follow an exponential moving average of the vectors assigned to them.

    EMA updates (van den Oord et al. 2017, appendix) train the codebook without gradients and are far less prone
    to collapse than the codebook loss. `cluster_size` is the EMA of assignments per step, so its sum is the EMA
    of the vectors quantized per step and `sum / codebook_size` the expected usage of one code. Every
    `restart_every` updates, codes used less than `dead_fraction` of that expected usage are restarted from
    random vectors of the current batch (Dhariwal et al. 2020, Jukebox; Zeghidour et al. 2021, SoundStream):
    relative to the expected usage so that one threshold suits any batch and codebook size, and periodic so that
    live codes keep their meaning between checks. The EMA statistics are persistent buffers, so a resumed run
    continues them exactly; the update counter that schedules restarts is not saved (a resumed run's first
    check comes up to `restart_every` steps later, which changes nothing else). Under torch.distributed the
    assignment statistics are summed over ranks and restarts come from rank 0, so every rank keeps an identical
    codebook.
    """

    def __init__(
        self, codebook_size: int, code_dim: int, decay: float, dead_fraction: float, restart_every: int
    ) -> None:
        super().__init__()
        self.decay = decay
        self.dead_fraction = dead_fraction
        self.restart_every = restart_every
        self.register_buffer("codebook", torch.randn(codebook_size, code_dim))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed_sum", torch.zeros(codebook_size, code_dim))
        self.register_buffer("initialized", torch.tensor(False))
        self.num_updates = 0
        self.last_restart_count = 0
        self.restarts_total = 0

    @property
    def codebook_size(self) -> int:
        return self.codebook.shape[0]

    def nearest(self, vectors: Tensor) -> Tensor:
        """Index of the closest code (squared Euclidean distance) for each row of `vectors` (N, D).

        Always in float32, whatever the model's dtype: |v|^2 - 2 v.c + |c|^2 subtracts large, nearly equal terms,
        and in bfloat16 (8 mantissa bits) the rounding error exceeds the gap between close codes, so the argmin
        would pick wrong codes (docs/design.md §1.2).
        """
        vectors = vectors.float()
        codebook = self.codebook.float()
        distances = (
            vectors.pow(2).sum(-1, keepdim=True) - 2 * vectors @ codebook.t() + codebook.pow(2).sum(-1)[None, :]
        )
        return distances.argmin(dim=-1)

    def lookup(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, self.codebook)

    def expected_usage(self) -> Tensor:
        """EMA of the assignments one code gets per step if all codes were used equally (all ranks together)."""
        return self.cluster_size.sum() / self.codebook_size

    def dead_codes(self) -> Tensor:
        """(codebook_size,) bool: codes used less than `dead_fraction` of the expected usage."""
        return self.cluster_size < self.dead_fraction * self.expected_usage()

    @torch.no_grad()
    def initialize_from(self, vectors: Tensor) -> None:
        """Data-dependent init: codes start as random encoder outputs, so none starts far from the data.

        Every code starts at the expected usage of this batch (an average code): none is born dead, and one
        that never wins data falls below `dead_fraction` of the expected usage after ln(1 / dead_fraction) /
        (1 - decay) updates (~350 with the defaults), so it is restarted at the first check after that.
        """
        vectors = vectors.float()
        picks = torch.randint(0, vectors.shape[0], (self.codebook_size,), device=vectors.device)
        jitter = 0.01 * vectors.std() * torch.randn_like(self.codebook)
        self.codebook.copy_(vectors[picks] + jitter)
        self._broadcast(self.codebook)
        num_vectors = torch.tensor(float(vectors.shape[0]), device=vectors.device)
        if _distributed():
            dist.all_reduce(num_vectors)
        self.cluster_size.fill_(float(num_vectors) / self.codebook_size)
        self.embed_sum.copy_(self.codebook * self.cluster_size[:, None])
        self.initialized.fill_(True)

    @torch.no_grad()
    def update(self, vectors: Tensor, ids: Tensor) -> None:
        """One EMA step from the assignments of a batch; every `restart_every` steps, restart dead codes."""
        vectors = vectors.float()
        one_hot = F.one_hot(ids, self.codebook_size).type_as(vectors)
        counts = one_hot.sum(0)
        sums = one_hot.t() @ vectors
        if _distributed():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        # Laplace smoothing keeps rarely used codes from dividing by ~0.
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + 1e-5) / (total + self.codebook_size * 1e-5) * total
        self.codebook.copy_(self.embed_sum / smoothed[:, None])
        self.num_updates += 1
        if self.dead_fraction > 0 and self.num_updates % self.restart_every == 0:
            self._restart_dead_codes(vectors)

    def _restart_dead_codes(self, vectors: Tensor) -> None:
        """Move dead codes onto random vectors of rank 0's batch, at the expected usage.

        Restarting at the expected usage (not at the threshold) gives a restarted code an average code's inertia
        and ~350 updates (the same grace as after data init) to attract data before it can be judged dead again,
        so codes are not recycled check after check.
        """
        dead = self.dead_codes()  # identical on every rank: cluster_size is all-reduced
        num_dead = int(dead.sum())
        self.last_restart_count = num_dead
        self.restarts_total += num_dead
        if num_dead == 0:
            return
        if num_dead <= vectors.shape[0]:  # distinct vectors, so no two restarted codes coincide
            picks = torch.randperm(vectors.shape[0], device=vectors.device)[:num_dead]
        else:
            picks = torch.randint(0, vectors.shape[0], (num_dead,), device=vectors.device)
        replacement = torch.zeros_like(self.codebook)
        replacement[dead] = vectors[picks] + 0.01 * vectors.std() * torch.randn_like(vectors[picks])
        self._broadcast(replacement)  # every rank restarts with rank 0's samples
        usage = self.expected_usage()
        self.codebook[dead] = replacement[dead]
        self.cluster_size[dead] = usage
        self.embed_sum[dead] = replacement[dead] * usage

    @staticmethod
    def _broadcast(tensor: Tensor) -> None:
        if _distributed():
            dist.broadcast(tensor, src=0)

    def health(self) -> CodebookHealth:
        """Perplexity of the EMA usage, dead and last-restarted fractions: cheap training-time health."""
        probs = self.cluster_size / self.cluster_size.sum().clamp_min(1e-12)
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum()
        return CodebookHealth(
            perplexity=float(entropy.exp()),
            dead_fraction=float(self.dead_codes().float().mean()),
            restart_fraction=self.last_restart_count / self.codebook_size,
            restarts_total=self.restarts_total,
        )


@dataclass
class QuantizerOutput:
    quantized: Tensor  # (N, G*D), straight-through: gradients flow to the encoder as if unquantized
    ids: Tensor  # (N, G, L)
    commitment_loss: Tensor  # scalar


class GroupedResidualQuantizer(nn.Module):
    """Grouped residual VQ (Yang et al. 2023, HiFi-Codec): channel groups, each a stack of residual codebooks."""

    def __init__(self, config: JalaMotionTokenizerConfig) -> None:
        super().__init__()
        self.num_groups = config.num_groups
        self.num_layers = config.num_residual_layers
        self.code_dim = config.code_dim
        self.codebooks = nn.ModuleList(
            EmaCodebook(
                config.codebook_size,
                config.code_dim,
                config.ema_decay,
                config.dead_code_usage_fraction,
                config.dead_code_restart_every,
            )
            for _ in range(self.num_groups * self.num_layers)
        )

    def codebook(self, group: int, layer: int) -> EmaCodebook:
        return self.codebooks[group * self.num_layers + layer]

    def forward(self, latents: Tensor, update_codebooks: bool) -> QuantizerOutput:
        grouped = latents.float().view(latents.shape[0], self.num_groups, self.code_dim)
        quantized = torch.zeros_like(grouped)
        ids = torch.empty(grouped.shape[:2] + (self.num_layers,), dtype=torch.long, device=latents.device)
        commitment = grouped.new_zeros(())
        for group in range(self.num_groups):
            residual = grouped[:, group]
            for layer in range(self.num_layers):
                book = self.codebook(group, layer)
                if update_codebooks and not bool(book.initialized):
                    book.initialize_from(residual.detach())
                layer_ids = book.nearest(residual.detach())
                if update_codebooks:
                    book.update(residual.detach(), layer_ids)
                code = book.lookup(layer_ids).float()
                commitment = commitment + F.mse_loss(residual, code.detach())
                quantized[:, group] += code
                residual = residual - code.detach()
                ids[:, group, layer] = layer_ids
        quantized = quantized.view_as(latents).to(latents.dtype)
        straight_through = latents + (quantized - latents).detach()
        return QuantizerOutput(straight_through, ids, commitment)

    def dequantize(self, ids: Tensor) -> Tensor:
        """(N, G, L) ids -> (N, G*D) sum of the residual codes, summed in float32 like all codebook arithmetic."""
        parts = []
        for group in range(self.num_groups):
            group_sum = sum(
                self.codebook(group, layer).lookup(ids[:, group, layer]).float() for layer in range(self.num_layers)
            )
            parts.append(group_sum)
        return torch.cat(parts, dim=-1)

    def expected_dequantize(self, probabilities: Tensor) -> Tensor:
        """(N, G, L, V) per-codebook probabilities -> (N, G*D) expected latent E[sum of the residual codes].

        A residual latent is a sum of one code per layer, so its expectation under independent per-layer
        distributions is the sum of each layer's probability-weighted mean code — exact, no sampling.
        """
        parts = []
        for group in range(self.num_groups):
            parts.append(
                sum(
                    probabilities[:, group, layer].float() @ self.codebook(group, layer).codebook.float()
                    for layer in range(self.num_layers)
                )
            )
        return torch.cat(parts, dim=-1)

    def health(self) -> list[CodebookHealth]:
        """Health of every codebook, group-major (index group * num_layers + layer)."""
        return [book.health() for book in self.codebooks]


class ResidualConvBlock(nn.Module):
    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.SiLU(),
            nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation),
            nn.SiLU(),
            nn.Conv1d(channels, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


def _res_stack(channels: int, count: int) -> list[nn.Module]:
    # Growing dilation widens the temporal receptive field without more layers.
    return [ResidualConvBlock(channels, dilation=3**i) for i in range(count)]


class MotionConvEncoder(nn.Module):
    """(M, C, T) -> (M, G*D, T / downsample): strided 1D convolutions with residual blocks."""

    def __init__(self, in_dim: int, config: JalaMotionTokenizerConfig) -> None:
        super().__init__()
        width = config.hidden_size
        layers: list[nn.Module] = [nn.Conv1d(in_dim, width, 3, padding=1)]
        for _ in range(int(math.log2(config.downsample_factor))):
            layers += _res_stack(width, config.num_res_blocks)
            layers.append(nn.Conv1d(width, width, 4, stride=2, padding=1))
        layers += _res_stack(width, config.num_res_blocks)
        layers += [nn.SiLU(), nn.Conv1d(width, config.num_groups * config.code_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class MotionConvDecoder(nn.Module):
    """(M, G*D, S) -> (M, C, S * downsample): mirror of the encoder with nearest upsampling."""

    def __init__(self, out_dim: int, config: JalaMotionTokenizerConfig) -> None:
        super().__init__()
        width = config.hidden_size
        layers: list[nn.Module] = [nn.Conv1d(config.num_groups * config.code_dim, width, 1)]
        for _ in range(int(math.log2(config.downsample_factor))):
            layers += _res_stack(width, config.num_res_blocks)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv1d(width, width, 3, padding=1)]
        layers += _res_stack(width, config.num_res_blocks)
        layers += [nn.SiLU(), nn.Conv1d(width, out_dim, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class PartTokenizer(nn.Module):
    """Encoder, grouped RVQ and decoder for one part (wrist or fingers), with its feature normalization."""

    def __init__(self, feature_dim: int, config: JalaMotionTokenizerConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("feature_mean", torch.zeros(feature_dim))
        self.register_buffer("feature_std", torch.ones(feature_dim))
        self.encoder = MotionConvEncoder(feature_dim, config)
        self.quantizer = GroupedResidualQuantizer(config)
        self.decoder = MotionConvDecoder(feature_dim, config)

    @property
    def network_dtype(self) -> torch.dtype:
        """The dtype the conv encoder and decoder run in (the model's: float32, or bfloat16 when loaded so)."""
        return self.decoder.net[0].weight.dtype

    def normalize(self, features: Tensor) -> Tensor:
        """Raw features -> unit-scale features, in float32 (motion is physical data; see `encode_latents`)."""
        return (features.float() - self.feature_mean.float()) / self.feature_std.float()

    def denormalize(self, features: Tensor) -> Tensor:
        return features.float() * self.feature_std.float() + self.feature_mean.float()

    def _pad_time(self, features: Tensor) -> Tensor:
        """(M, chunk_frames, C) -> (M, C, padded) with edge padding (a held final pose, not zeros)."""
        pad = self.config.padded_chunk_frames - features.shape[1]
        if pad:
            features = torch.cat([features, features[:, -1:].expand(-1, pad, -1)], dim=1)
        return features.transpose(1, 2)

    def encode_latents(self, features: Tensor) -> Tensor:
        """(M, chunk_frames, C) raw features -> (M * steps, G*D) encoder outputs in the network's dtype.

        Features are normalised in float32 and only then cast to the network's dtype, so a bfloat16 model rounds
        unit-scale values rather than raw ones (a wrist 0.5 m away would otherwise lose millimetres); callers may
        pass float32 motion to a bfloat16 tokenizer.
        """
        normalized = self.normalize(features).to(self.network_dtype)
        latents = self.encoder(self._pad_time(normalized))
        return latents.transpose(1, 2).reshape(-1, latents.shape[1])

    def decode_latents(self, latents: Tensor, num_chunks: int) -> Tensor:
        """(M * steps, G*D) latents of any float dtype -> (M, chunk_frames, C) normalized features in float32."""
        latents = latents.to(self.network_dtype).view(num_chunks, -1, latents.shape[-1]).transpose(1, 2)
        return self.decoder(latents)[:, :, : self.config.chunk_frames].transpose(1, 2).float()

    def ids_to_tokens(self, ids: Tensor, num_chunks: int) -> Tensor:
        return ids.reshape(num_chunks, -1)  # (M*S, G, L) -> (M, S*G*L), step-major

    def tokens_to_ids(self, tokens: Tensor) -> Tensor:
        return tokens.reshape(-1, self.config.num_groups, self.config.num_residual_layers)


@dataclass
class JalaMotionTokenizerOutput(ModelOutput):
    """Output of a training forward pass of [`JalaMotionTokenizer`].

    Args:
        loss: reconstruction + velocity_weight * velocity + commitment_weight * commitment.
        reconstruction_loss: smooth-L1 between normalized features, mean over valid frames of both parts.
        velocity_loss: the same on frame-to-frame differences inside a chunk.
        commitment_loss: sum over residual layers of ||r - sg(q)||^2, averaged over parts and groups.
        reconstruction: (B, H, N * chunk_frames, 162) decoded motion; zeros where no chunk exists.
        token_ids: (B, H, N, tokens_per_chunk) ids; IGNORE_TOKEN_ID where no chunk exists.
        chunk_mask: (B, H, N) which chunks exist.
        batch_perplexity: (2, G, L) perplexity of this batch's code assignments per part, group and layer.
    """

    loss: Tensor | None = None
    reconstruction_loss: Tensor | None = None
    velocity_loss: Tensor | None = None
    commitment_loss: Tensor | None = None
    reconstruction: Tensor | None = None
    token_ids: Tensor | None = None
    chunk_mask: Tensor | None = None
    batch_perplexity: Tensor | None = None


@dataclass
class JalaMotionEncoding(ModelOutput):
    """Token ids of a batch of clips: ids (B, H, N, K) with IGNORE_TOKEN_ID at missing chunks, chunk_mask (B, H, N)."""

    ids: Tensor | None = None
    chunk_mask: Tensor | None = None


@dataclass
class _Chunks:
    motion: Tensor  # (B, H, N, chunk_frames, 162), right-hand space where mirrored
    frame_mask: Tensor  # (B, H, N, chunk_frames)
    chunk_mask: Tensor  # (B, H, N)
    mirrored: Tensor  # (H,) bool


class JalaMotionTokenizerPreTrainedModel(StrictLoadingMixin, PreTrainedModel):
    config_class = JalaMotionTokenizerConfig
    base_model_prefix = "motion_tokenizer"
    main_input_name = "motion"
    _no_split_modules = ["PartTokenizer"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv1d):
            # PyTorch's default conv init (Kaiming-uniform) suits this ReLU-family conv stack better than N(0, 0.02).
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                bound = 1 / math.sqrt(module.weight.shape[1] * module.weight.shape[2])
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, EmaCodebook):
            init.normal_(module.codebook)
            init.zeros_(module.embed_sum)
            init.zeros_(module.cluster_size)
            init.zeros_(module.initialized)
        elif isinstance(module, PartTokenizer):
            init.zeros_(module.feature_mean)
            init.ones_(module.feature_std)


class JalaMotionTokenizer(JalaMotionTokenizerPreTrainedModel):
    """Part-level GRVQ tokenizer: MANO-D162 motion of one or two hands <-> discrete chunk tokens.

    Inputs are batches of clips `motion` (B, H, T, 162) with H = 1 or 2 hands, optional `lengths` (B,) of valid
    frames per clip, optional `hand_mask` (B, H) of hands present, and `handedness` naming each hand slot
    (default ("left", "right") for two hands, ("right",) for one). A clip has `ceil(length / 15)` chunks; a last
    partial chunk is completed by holding the final pose.
    """

    def __init__(self, config: JalaMotionTokenizerConfig) -> None:
        super().__init__(config)
        self.wrist = PartTokenizer(WRIST_PART_DIM, config)
        self.finger = PartTokenizer(FINGER_PART_DIM, config)
        self.post_init()

    @property
    def parts(self) -> tuple[PartTokenizer, PartTokenizer]:
        return self.wrist, self.finger

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """`PreTrainedModel.save_pretrained` as a repository of its own: `auto_map` and the code files, always.

        A tokenizer folder is published as it is, alone or as the `motion_tokenizer/` subfolder of a JALA model
        (docs/design.md §3), and either must load with `AutoModel.from_pretrained(..., trust_remote_code=True)`;
        so the classes are registered for the Auto classes here rather than left to each caller. transformers
        takes every class whose name contains "Tokenizer" for a text tokenizer and writes a (slow, fast) pair into
        `auto_map`; this model is a motion tokenizer, so plain class references are written.
        """
        if self._auto_class is None:
            self.register_for_auto_class("AutoModel")
        if getattr(self.config, "_auto_class", None) is None:
            self.config.register_for_auto_class()
        super().save_pretrained(save_directory, *args, **kwargs)
        auto_map = getattr(self.config, "auto_map", None) or {}
        if not any(isinstance(target, list | tuple) for target in auto_map.values()):
            return
        self.config.auto_map = {
            auto_class: target[0] if isinstance(target, list | tuple) else target
            for auto_class, target in auto_map.items()
        }
        config_file = Path(save_directory) / "config.json"
        if config_file.exists():  # absent on non-main processes
            saved = json.loads(config_file.read_text())
            saved["auto_map"] = self.config.auto_map
            config_file.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")

    # ------------------------------------------------------------------ inputs
    def _validate_and_chunk(
        self,
        motion: Tensor,
        lengths: Tensor | Sequence[int] | None,
        hand_mask: Tensor | None,
        handedness: Sequence[str] | None,
    ) -> _Chunks:
        if not isinstance(motion, Tensor):
            raise TypeError(f"motion must be a torch.Tensor of shape (batch, hands, frames, 162), got {type(motion)}.")
        if motion.dim() != 4:
            raise ValueError(
                f"motion must have shape (batch, hands, frames, {D162_DIM}), got {tuple(motion.shape)}; "
                "add the missing batch or hand dimension with motion[None] or motion[:, None]."
            )
        batch, hands, frames, dim = motion.shape
        if hands not in (1, 2):
            raise ValueError(
                f"motion has {hands} hands in dimension 1; expected 1 or 2 (left, right). "
                "Put extra people or clips into the batch dimension."
            )
        if dim != D162_DIM:
            raise ValueError(f"motion's last dimension must be {D162_DIM} (MANO-D162), got {dim}.")
        chunk = self.config.chunk_frames
        device = motion.device
        if lengths is None:
            lengths_t = torch.full((batch,), frames, device=device, dtype=torch.long)
        else:
            lengths_t = torch.as_tensor(lengths, device=device, dtype=torch.long)
            if lengths_t.shape != (batch,):
                raise ValueError(f"lengths must have shape ({batch},), one per clip, got {tuple(lengths_t.shape)}.")
            if int(lengths_t.max()) > frames:
                raise ValueError(f"lengths has {int(lengths_t.max())} frames but motion holds only {frames}.")
        if int(lengths_t.min()) < chunk:
            bad = int(lengths_t.argmin())
            raise ValueError(
                f"clip {bad} has {int(lengths_t[bad])} frames, shorter than one chunk ({chunk} frames at 15 fps); "
                "drop it or pad it to a full chunk by repeating its last pose."
            )
        if hand_mask is None:
            hand_mask = torch.ones(batch, hands, dtype=torch.bool, device=device)
        elif hand_mask.shape != (batch, hands):
            raise ValueError(f"hand_mask must have shape ({batch}, {hands}), got {tuple(hand_mask.shape)}.")
        hand_mask = hand_mask.to(device=device, dtype=torch.bool)
        if handedness is None:
            handedness = HANDS if hands == 2 else ("right",)
        if len(handedness) != hands or any(h not in HANDS for h in handedness):
            raise ValueError(
                f"handedness must name each of the {hands} hand slots as 'left' or 'right', got {handedness}."
            )

        num_chunks = math.ceil(frames / chunk)
        time = torch.arange(num_chunks * chunk, device=device)
        frame_valid = time[None, :] < lengths_t[:, None]  # (B, T')
        # Frames past a clip's end repeat its last valid frame (a held pose), never padding garbage.
        source = torch.minimum(time[None, :], lengths_t[:, None] - 1)  # (B, T')
        gathered = torch.gather(motion, 2, source[:, None, :, None].expand(batch, hands, -1, dim))
        valid = frame_valid[:, None, :] & hand_mask[:, :, None]  # (B, H, T')
        if not torch.isfinite(gathered[valid]).all():
            where = (~torch.isfinite(gathered) & valid[..., None]).nonzero()[0].tolist()
            raise ValueError(
                f"motion has non-finite values (NaN/inf) at clip {where[0]}, hand {where[1]}, frame {where[2]}, "
                f"dim {where[3]}; fix or drop the frame, or mark the hand absent with hand_mask."
            )
        # Absent hands may hold anything (NaN included); they become zeros so no arithmetic sees them.
        zero = torch.zeros((), dtype=gathered.dtype, device=device)
        gathered = torch.where(hand_mask[:, :, None, None], gathered, zero)
        mirrored = torch.tensor([h == "left" and self.config.mirror_left_hand for h in handedness], device=device)
        if mirrored.any():
            gathered = torch.where(mirrored[None, :, None, None], mirror_motion(gathered), gathered)
        chunk_motion = gathered.view(batch, hands, num_chunks, chunk, dim)
        frame_mask = valid.view(batch, hands, num_chunks, chunk)
        return _Chunks(chunk_motion, frame_mask, frame_mask[..., 0], mirrored)

    # ------------------------------------------------------------------ core
    def _encode_chunks(self, chunks: Tensor, update_codebooks: bool) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """(M, chunk_frames, 162) -> per part: ids (M*S, G, L), straight-through latents; and commitment loss."""
        ids, latents, commitment = [], [], chunks.new_zeros(())
        for part, features in zip(self.parts, split_parts(chunks), strict=True):
            encoded = part.quantizer(part.encode_latents(features), update_codebooks=update_codebooks)
            ids.append(encoded.ids)
            latents.append(encoded.quantized)
            commitment = commitment + encoded.commitment_loss / (2 * part.quantizer.num_groups)
        return ids, latents, commitment

    def _decode_latents(self, latents: Sequence[Tensor], num_chunks: int) -> tuple[Tensor, list[Tensor]]:
        """Per-part latents -> (M, chunk_frames, 162) motion and the normalized per-part features."""
        normalized = [part.decode_latents(z, num_chunks) for part, z in zip(self.parts, latents, strict=True)]
        wrist, finger = (part.denormalize(x) for part, x in zip(self.parts, normalized, strict=True))
        return merge_parts(wrist, finger), normalized

    def _unmirror(self, motion: Tensor, mirrored: Tensor) -> Tensor:
        if not mirrored.any():
            return motion
        return torch.where(mirrored[None, :, None, None], mirror_motion(motion), motion)

    def forward(
        self,
        motion: Tensor,
        lengths: Tensor | Sequence[int] | None = None,
        hand_mask: Tensor | None = None,
        handedness: Sequence[str] | None = None,
        return_dict: bool = True,
    ) -> JalaMotionTokenizerOutput:
        """Encode, quantize (updating the EMA codebooks in training mode) and decode; returns the losses."""
        chunks = self._validate_and_chunk(motion, lengths, hand_mask, handedness)
        batch, hands, num_chunks, chunk, dim = chunks.motion.shape
        selected = chunks.motion[chunks.chunk_mask]  # (M, chunk, 162): only chunks that exist
        frame_mask = chunks.frame_mask[chunks.chunk_mask]  # (M, chunk)
        num_selected = selected.shape[0]
        ids, latents, commitment = self._encode_chunks(selected, update_codebooks=self.training)
        decoded, normalized = self._decode_latents(latents, num_selected)

        weights = frame_mask.to(decoded.dtype)
        pair_weights = weights[:, 1:] * weights[:, :-1]
        reconstruction_loss = decoded.new_zeros(())
        velocity_loss = decoded.new_zeros(())
        for part, predicted, target in zip(self.parts, normalized, split_parts(selected), strict=True):
            target = part.normalize(target)
            error = F.smooth_l1_loss(predicted, target, reduction="none", beta=0.1).mean(-1)
            reconstruction_loss = reconstruction_loss + (error * weights).sum() / weights.sum().clamp_min(1)
            velocity_error = F.smooth_l1_loss(
                predicted.diff(dim=1), target.diff(dim=1), reduction="none", beta=0.1
            ).mean(-1)
            velocity_loss = velocity_loss + (velocity_error * pair_weights).sum() / pair_weights.sum().clamp_min(1)
        loss = (
            reconstruction_loss
            + self.config.velocity_weight * velocity_loss
            + self.config.commitment_weight * commitment
        )

        reconstruction = decoded.new_zeros(batch, hands, num_chunks, chunk, dim)
        reconstruction[chunks.chunk_mask] = decoded
        reconstruction = self._unmirror(reconstruction.view(batch, hands, num_chunks * chunk, dim), chunks.mirrored)
        token_ids = self._scatter_tokens(ids, num_selected, chunks.chunk_mask)
        batch_perplexity = torch.stack([_perplexity(part_ids, self.config.codebook_size) for part_ids in ids])
        return JalaMotionTokenizerOutput(
            loss=loss,
            reconstruction_loss=reconstruction_loss.detach(),
            velocity_loss=velocity_loss.detach(),
            commitment_loss=commitment.detach(),
            reconstruction=reconstruction,
            token_ids=token_ids,
            chunk_mask=chunks.chunk_mask,
            batch_perplexity=batch_perplexity,
        )

    def _scatter_tokens(self, ids: Sequence[Tensor], num_selected: int, chunk_mask: Tensor) -> Tensor:
        tokens = torch.cat(
            [part.ids_to_tokens(part_ids, num_selected) for part, part_ids in zip(self.parts, ids, strict=True)],
            dim=-1,
        )
        out = torch.full(
            (*chunk_mask.shape, self.config.tokens_per_chunk), IGNORE_TOKEN_ID, dtype=torch.long, device=tokens.device
        )
        out[chunk_mask] = tokens
        return out

    # ------------------------------------------------------------------ public verbs
    @torch.no_grad()
    def encode(
        self,
        motion: Tensor,
        lengths: Tensor | Sequence[int] | None = None,
        hand_mask: Tensor | None = None,
        handedness: Sequence[str] | None = None,
    ) -> JalaMotionEncoding:
        """Motion (B, H, T, 162) -> token ids (B, H, ceil(T/15), 128). Never updates the codebooks."""
        chunks = self._validate_and_chunk(motion, lengths, hand_mask, handedness)
        selected = chunks.motion[chunks.chunk_mask]
        ids = []
        for part, features in zip(self.parts, split_parts(selected), strict=True):
            ids.append(part.quantizer(part.encode_latents(features), update_codebooks=False).ids)
        return JalaMotionEncoding(
            ids=self._scatter_tokens(ids, selected.shape[0], chunks.chunk_mask), chunk_mask=chunks.chunk_mask
        )

    @torch.no_grad()
    def decode(
        self,
        ids: Tensor,
        chunk_mask: Tensor | None = None,
        handedness: Sequence[str] | None = None,
    ) -> Tensor:
        """Token ids (B, H, N, 128) -> motion (B, H, N * 15, 162); frames of missing chunks are zeros."""
        if ids.dim() != 4 or ids.shape[-1] != self.config.tokens_per_chunk:
            raise ValueError(
                f"ids must have shape (batch, hands, chunks, {self.config.tokens_per_chunk}), got {tuple(ids.shape)}."
            )
        batch, hands, num_chunks, _ = ids.shape
        if hands not in (1, 2):
            raise ValueError(f"ids has {hands} hands in dimension 1; expected 1 or 2 (left, right).")
        if chunk_mask is None:
            chunk_mask = (ids != IGNORE_TOKEN_ID).all(-1)
        selected = ids[chunk_mask]
        if selected.numel() and (selected.min() < 0 or selected.max() >= self.config.codebook_size):
            raise ValueError(
                f"token ids must lie in [0, {self.config.codebook_size}) for chunks in chunk_mask, got values in "
                f"[{int(selected.min())}, {int(selected.max())}]; were they produced by a tokenizer with another "
                "codebook_size?"
            )
        per_part = selected.split(self.config.tokens_per_part, dim=-1)
        latents = [
            part.quantizer.dequantize(part.tokens_to_ids(tokens))
            for part, tokens in zip(self.parts, per_part, strict=True)
        ]
        return self._latents_to_motion(latents, chunk_mask, handedness)

    @torch.no_grad()
    def decode_expected(
        self, probabilities: Tensor, chunk_mask: Tensor, handedness: Sequence[str] | None = None
    ) -> Tensor:
        """Per-slot token distributions (B, H, N, 128, V) -> motion (B, H, N * 15, 162) of the expected latent.

        The minimum-mean-squared-error estimate in latent space: where a generator is unsure between codes, it
        decodes their probability-weighted average instead of one sampled code (see `expected_dequantize`).
        """
        expected = (*chunk_mask.shape, self.config.tokens_per_chunk, self.config.codebook_size)
        if tuple(probabilities.shape) != expected:
            raise ValueError(
                f"probabilities must have shape {expected} (batch, hands, chunks, slots, codes), got "
                f"{tuple(probabilities.shape)}."
            )
        selected = probabilities[chunk_mask]  # (M, 128, V)
        per_part = selected.split(self.config.tokens_per_part, dim=1)
        latents = []
        for part, part_probabilities in zip(self.parts, per_part, strict=True):
            quantizer = part.quantizer
            grid = part_probabilities.reshape(-1, quantizer.num_groups, quantizer.num_layers, selected.shape[-1])
            latents.append(quantizer.expected_dequantize(grid))
        return self._latents_to_motion(latents, chunk_mask, handedness)

    def _latents_to_motion(
        self, latents: Sequence[Tensor], chunk_mask: Tensor, handedness: Sequence[str] | None
    ) -> Tensor:
        """Per-part latents of the chunks in `chunk_mask` (B, H, N) -> (B, H, N * 15, 162), missing chunks zero."""
        batch, hands, num_chunks = chunk_mask.shape
        decoded, _ = self._decode_latents(latents, int(chunk_mask.sum()))
        chunk = self.config.chunk_frames
        motion = decoded.new_zeros(batch, hands, num_chunks, chunk, D162_DIM)
        motion[chunk_mask] = decoded
        if handedness is None:
            handedness = HANDS if hands == 2 else ("right",)
        mirrored = torch.tensor(
            [h == "left" and self.config.mirror_left_hand for h in handedness], device=chunk_mask.device
        )
        return self._unmirror(motion.view(batch, hands, num_chunks * chunk, D162_DIM), mirrored)

    @torch.no_grad()
    def fit_normalization(self, motion_frames: Tensor) -> None:
        """Set feature means and block scales of both parts from right-hand-space frames (F, 162).

        Normalizing puts metres of translation and unit rot6d components on one scale, which the VQ needs. The
        scale is shared inside each physical block (wrist rot6d, wrist translation, finger rot6d, finger joints):
        per-dimension scaling would blow nearly constant components (second-order rot6d terms of hinge joints)
        up to unit variance and spend the codebooks on noise.
        """
        if motion_frames.dim() != 2 or motion_frames.shape[-1] != D162_DIM:
            raise ValueError(f"motion_frames must have shape (frames, {D162_DIM}), got {tuple(motion_frames.shape)}.")
        if not torch.isfinite(motion_frames).all():
            raise ValueError("motion_frames has non-finite values; filter NaN frames before fitting normalization.")
        blocks = (WRIST_BLOCKS, FINGER_BLOCKS)
        for part, features, part_blocks in zip(self.parts, split_parts(motion_frames.float()), blocks, strict=True):
            part.feature_mean.copy_(features.mean(0))
            variance = features.var(0)
            for block in part_blocks:
                part.feature_std[block] = variance[block].mean().sqrt().clamp_min(1e-6)

    def token_statistics(self, ids: Tensor) -> dict[str, float]:
        """Codebook statistics of encoded chunks `ids` (..., 128), as `encode` returns them.

        Per part, averaged over its codebooks: the perplexity of the code distribution and the fraction of codes
        used at least once. This is the evaluation-time measure; the EMA one in `codebook_usage` lags behind.
        """
        config = self.config
        flat = ids.reshape(-1, ids.shape[-1])
        flat = flat[(flat != IGNORE_TOKEN_ID).all(-1)]
        report = {}
        for index, name in enumerate(("wrist", "finger")):
            part_ids = flat[:, index * config.tokens_per_part : (index + 1) * config.tokens_per_part]
            per_book = part_ids.reshape(-1, config.num_groups, config.num_residual_layers)
            report[f"{name}_perplexity"] = float(_perplexity(per_book, config.codebook_size).mean())
            used = torch.zeros(config.codebook_size, per_book[0].numel(), dtype=torch.bool, device=ids.device)
            used.scatter_(0, per_book.reshape(per_book.shape[0], -1), True)
            report[f"{name}_usage"] = float(used.float().mean())
        return report

    def codebook_usage(self) -> dict[str, float]:
        """Training-time codebook health from the EMA statistics, per part (`wrist_...`, `finger_...`).

        `{part}_perplexity` and `{part}_dead_fraction` are means over the part's codebooks; `{part}_restart_fraction`
        is the fraction of the part's codes restarted at the last restart check, `restart_fraction` its mean over
        both parts, and `{part}_restarts_total` the count of restarted codes so far (to turn into a rate per step
        between two reports); `{part}_perplexity_g{group}_l{layer}` is the perplexity of each codebook.
        """
        report: dict[str, float] = {}
        restart_fractions = []
        for name, part in zip(("wrist", "finger"), self.parts, strict=True):
            health = part.quantizer.health()
            report[f"{name}_perplexity"] = sum(h.perplexity for h in health) / len(health)
            report[f"{name}_dead_fraction"] = sum(h.dead_fraction for h in health) / len(health)
            report[f"{name}_restart_fraction"] = sum(h.restart_fraction for h in health) / len(health)
            report[f"{name}_restarts_total"] = sum(h.restarts_total for h in health)
            restart_fractions.append(report[f"{name}_restart_fraction"])
            for index, book_health in enumerate(health):
                group, layer = divmod(index, part.quantizer.num_layers)
                report[f"{name}_perplexity_g{group}_l{layer}"] = book_health.perplexity
        report["restart_fraction"] = sum(restart_fractions) / len(restart_fractions)
        return report


def _perplexity(ids: Tensor, codebook_size: int) -> Tensor:
    """(N, G, L) ids -> (G, L) perplexity exp(H(p)) of the empirical code distribution per codebook."""
    flat = ids.reshape(ids.shape[0], -1)
    counts = torch.zeros(codebook_size, flat.shape[1], device=ids.device).scatter_add_(
        0, flat, torch.ones_like(flat, dtype=torch.float)
    )
    probs = counts / counts.sum(0, keepdim=True).clamp_min(1)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(0)
    return entropy.exp().view(ids.shape[1:])


__all__ = [
    "JalaMotionEncoding",
    "JalaMotionTokenizer",
    "JalaMotionTokenizerOutput",
    "JalaMotionTokenizerPreTrainedModel",
]
