"""The DiT flow-matching action head of JALA post-training, and its sampler on diffusers' scheduler.

Time convention (docs/design.md §1.11) is diffusers' `FlowMatchEulerDiscreteScheduler`'s: σ = 1 is pure noise,
σ = 0 the action chunk A, x_σ = (1 - σ) A + σ ε, and the network predicts the velocity v = ε - A (the paper's
Eq. 7). One Euler step from σ to σ' < σ is x_{σ'} = x_σ + (σ' - σ) v, which is exactly
`FlowMatchEulerDiscreteScheduler.step`; this module never writes that update itself, so the sampler is the scheduler
(a test asserts it).

Architecture (paper §3.4: 16 layers, 32 heads, width 2048, all configurable in `JalaActionHeadConfig`):
* tokens = [proprio token(s), noisy action tokens]; action tokens are a linear embedding of x_σ, and every token
  gets a learned position embedding;
* blocks alternate cross-attention (queries: the tokens; keys/values: the predictive embeddings h from the VLM's
  `align_layer`) and self-attention over the tokens, each followed by a feed-forward layer; even blocks are
  cross-attention, so the first block already reads the observation;
* every sub-layer is modulated by adaLN-Zero (DiT, Peebles & Xie 2023): the timestep embedding regresses a shift,
  a scale and a gate per sub-layer; gates start at 0 so each block starts as the identity;
* the timestep embedding is diffusers' `Timesteps` (sinusoidal) + `TimestepEmbedding` (MLP) of t = σ * 1000, the
  same t the scheduler hands out at sampling.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .configuration_jala import JalaActionHeadConfig

# Only the action model needs diffusers; the motion model imports this module but never builds a head, so it loads
# and runs without it. The imports sit in a try block because transformers refuses remote code whose module-level
# or function-level imports name a missing package, and exempts only imports inside try blocks.
try:
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.models.embeddings import TimestepEmbedding, Timesteps
except ImportError as _diffusers_import_error:
    FlowMatchEulerDiscreteScheduler = TimestepEmbedding = Timesteps = None
    DIFFUSERS_IMPORT_ERROR: ImportError | None = _diffusers_import_error
else:
    DIFFUSERS_IMPORT_ERROR = None

__all__ = [
    "DIFFUSERS_IMPORT_ERROR",
    "DiTBlock",
    "JalaFlowHead",
    "flow_matching_sample",
    "interpolate",
    "make_scheduler",
    "require_diffusers",
    "sample_training_sigmas",
    "velocity_target",
    "zero_initialised",
]


def require_diffusers() -> None:
    """Raise a clear ImportError where the action head is built without diffusers (the motion model needs none)."""
    if DIFFUSERS_IMPORT_ERROR is not None:
        raise ImportError(
            "the JALA action model (JalaForActionPrediction: its DiT flow head and sampler) needs diffusers: "
            "pip install diffusers. Loading and running the motion model (JalaForMotionPretraining) does not."
        ) from DIFFUSERS_IMPORT_ERROR


# ---------------------------------------------------------------------------------------------------------------
# Flow-matching conventions (one place, used by training and tests)
# ---------------------------------------------------------------------------------------------------------------


def interpolate(actions: Tensor, noise: Tensor, sigma: Tensor) -> Tensor:
    """x_σ = (1 - σ) A + σ ε, with σ (B,) broadcast over the chunk: σ = 1 gives pure noise."""
    sigma = sigma.to(actions.dtype).view(-1, *([1] * (actions.dim() - 1)))
    return (1.0 - sigma) * actions + sigma * noise


def velocity_target(actions: Tensor, noise: Tensor) -> Tensor:
    """v = ε - A = dx_σ / dσ: the regression target (paper Eq. 7 in diffusers' time convention)."""
    return noise - actions


def sample_training_sigmas(
    batch: int,
    config: JalaActionHeadConfig,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> Tensor:
    """σ = σ_min + (1 - σ_min) u, u ~ Beta(α, β) (default Beta(1.5, 1): density of σ ∝ (σ - σ_min)^0.5).

    Beta samples come from two Gamma draws, u = X / (X + Y), X ~ Gamma(α), Y ~ Gamma(β); `torch._standard_gamma`
    takes no generator, so with a generator (reproducible tests) the β = 1 case uses the exact inverse CDF
    u = U^(1/α) of Beta(α, 1) instead.
    """
    alpha, beta = config.noise_beta_alpha, config.noise_beta_beta
    if generator is not None:
        if beta != 1.0:
            raise ValueError(
                f"sampling σ with a generator needs noise_beta_beta == 1 (exact inverse CDF), got {beta}; "
                "drop the generator (the global RNG is seeded by set_seed) or use Beta(α, 1)."
            )
        uniform = torch.rand(batch, generator=generator, device=generator.device)
        u = uniform.pow(1.0 / alpha).to(device)
    else:
        u = torch.distributions.Beta(torch.tensor(alpha), torch.tensor(beta)).sample((batch,)).to(device)
    return config.sigma_min + (1.0 - config.sigma_min) * u


def make_scheduler(config: JalaActionHeadConfig) -> FlowMatchEulerDiscreteScheduler:
    """The sampler: diffusers' flow-matching Euler scheduler without shifting (σ used as given)."""
    require_diffusers()
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=config.num_train_timesteps, shift=1.0)


@torch.no_grad()
def flow_matching_sample(
    velocity: Callable[[Tensor, Tensor], Tensor],
    noise: Tensor,
    scheduler: FlowMatchEulerDiscreteScheduler,
    num_inference_steps: int,
) -> Tensor:
    """Integrate dx/dσ = v from σ = 1 (x = noise) to σ = 0 with `scheduler.step`.

    `velocity(x, sigma)` gets the current sample and σ per batch row. The σ grid is uniform,
    σ_i = 1 - i / n (i = 0..n-1), handed to the scheduler as custom `sigmas` (it appends the terminal 0): with
    4 steps 1 → 0.75 → 0.5 → 0.25 → 0. (The scheduler's own default grid ends at σ = 1/num_train_timesteps and
    spends its last step going from 0.001 to 0 — a wasted step when there are only four.)
    """
    sigmas = np.linspace(1.0, 1.0 / num_inference_steps, num_inference_steps)
    scheduler.set_timesteps(sigmas=sigmas, device=noise.device)
    sample = noise
    for index, timestep in enumerate(scheduler.timesteps):
        sigma = scheduler.sigmas[index].to(noise.device).expand(noise.shape[0])
        model_output = velocity(sample, sigma)
        sample = scheduler.step(model_output, timestep, sample).prev_sample
    return sample


# ---------------------------------------------------------------------------------------------------------------
# DiT
# ---------------------------------------------------------------------------------------------------------------


def zero_initialised(layer: nn.Linear) -> nn.Linear:
    """Mark a layer for zero init (adaLN-Zero); the model's `_init_weights` honours the mark at every (re)init."""
    layer.zero_init = True
    return layer


class Attention(nn.Module):
    """Multi-head attention through `F.scaled_dot_product_attention`; keys/values from `context` when given."""

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.output = nn.Linear(width, width)

    def _heads(self, tensor: Tensor) -> Tensor:
        batch, length, width = tensor.shape
        return tensor.view(batch, length, self.num_heads, width // self.num_heads).transpose(1, 2)

    def keys_values(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """The context's keys and values, split into heads: (B, heads, L, width / heads) each."""
        return self._heads(self.key(context)), self._heads(self.value(context))

    def forward(
        self,
        tokens: Tensor,
        context: Tensor,
        context_mask: Tensor | None = None,
        keys_values: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """`keys_values` (from `keys_values(context)`) skip the key / value projections of `context`."""
        mask = None if context_mask is None else context_mask[:, None, None, :]
        key, value = keys_values if keys_values is not None else self.keys_values(context)
        attended = F.scaled_dot_product_attention(self._heads(self.query(tokens)), key, value, attn_mask=mask)
        return self.output(attended.transpose(1, 2).flatten(2))


class DiTBlock(nn.Module):
    """One adaLN-Zero block: (cross- or self-) attention, then a feed-forward layer.

    The timestep embedding regresses (shift, scale, gate) for each of the two sub-layers; `modulation[-1]` is
    zero-initialised (marked with `zero_initialised`, honoured by `JalaForActionPrediction._init_weights`), so a new
    block is the identity.
    """

    def __init__(self, width: int, num_heads: int, mlp_ratio: float, cross_attention: bool) -> None:
        super().__init__()
        self.cross_attention = cross_attention
        self.attention_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attention = Attention(width, num_heads)
        self.mlp_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))
        self.modulation = nn.Sequential(nn.SiLU(), zero_initialised(nn.Linear(width, 6 * width)))

    def forward(
        self,
        tokens: Tensor,
        time_embedding: Tensor,
        context: Tensor,
        context_mask: Tensor | None = None,
        context_keys_values: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.modulation(time_embedding)[:, None].chunk(6, dim=-1)
        normed = self.attention_norm(tokens) * (1 + scale_a) + shift_a
        if self.cross_attention:
            attended = self.attention(normed, context, context_mask, context_keys_values)
        else:
            attended = self.attention(normed, normed)
        tokens = tokens + gate_a * attended
        normed = self.mlp_norm(tokens) * (1 + scale_m) + shift_m
        return tokens + gate_m * self.mlp(normed)


class JalaFlowHead(nn.Module):
    """Velocity field v(x_σ, σ | h, proprio) over an action chunk.

    Args:
        config: the action head's configuration (sizes, time scale).
        context_dim: width of the predictive embeddings h (the VLM's hidden size).
    """

    def __init__(self, config: JalaActionHeadConfig, context_dim: int) -> None:
        require_diffusers()
        super().__init__()
        self.config = config
        width = config.hidden_size
        self.time_projection = Timesteps(config.timestep_embedding_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(config.timestep_embedding_dim, width)
        self.action_input = nn.Linear(config.action_dim, width)
        # Position embeddings for one proprio token + the chunk (a longer prefix is rejected in forward).
        self.position_embedding = nn.Parameter(torch.zeros(1 + config.chunk_size, width))
        self.context_norm = nn.LayerNorm(context_dim)
        self.context_projection = nn.Linear(context_dim, width)
        self.blocks = nn.ModuleList(
            DiTBlock(width, config.num_heads, config.mlp_ratio, cross_attention=index % 2 == 0)
            for index in range(config.num_layers)
        )
        self.output_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.output_modulation = nn.Sequential(nn.SiLU(), zero_initialised(nn.Linear(width, 2 * width)))
        self.action_output = zero_initialised(nn.Linear(width, config.action_dim))

    def embed_time(self, sigma: Tensor, dtype: torch.dtype) -> Tensor:
        """σ (B,) -> (B, width): diffusers' sinusoidal projection of t = σ * num_train_timesteps, then an MLP."""
        timesteps = sigma.float() * self.config.num_train_timesteps
        return self.time_embedding(self.time_projection(timesteps).to(dtype))

    def encode_context(self, predictive_embeddings: Tensor) -> Tensor:
        """h (B, L, H) -> keys/values of the cross-attention (B, L, width); computed once per observation."""
        return self.context_projection(self.context_norm(predictive_embeddings))

    def context_cache(self, context: Tensor) -> tuple[tuple[Tensor, Tensor] | None, ...]:
        """Each cross-attention block's keys and values of `context` (None for self-attention blocks).

        They depend on the observation only, not on x_σ or σ, so a sampler computes them once per chunk and hands
        them to every step (`forward(..., context_cache=)`) instead of projecting the L context tokens again in
        each block at each step — at 1 proprio + 16 action tokens against L = 256 context tokens, those
        projections are most of a step's arithmetic.
        """
        return tuple(block.attention.keys_values(context) if block.cross_attention else None for block in self.blocks)

    def forward(
        self,
        noisy_actions: Tensor,
        sigma: Tensor,
        context: Tensor,
        prefix_tokens: Tensor,
        context_mask: Tensor | None = None,
        context_cache: tuple[tuple[Tensor, Tensor] | None, ...] | None = None,
    ) -> Tensor:
        """Velocity (B, T, action_dim) at x_σ.

        Args:
            noisy_actions: (B, T, action_dim) x_σ in normalised action units.
            sigma: (B,) noise levels in [0, 1].
            context: (B, L, width) `encode_context(h)`.
            prefix_tokens: (B, 1, width) the proprio token.
            context_mask: (B, L) True where a context token may be attended to (default: all).
            context_cache: `context_cache(context)`, to skip the blocks' key / value projections of the context.
        """
        batch, steps = noisy_actions.shape[:2]
        prefix = prefix_tokens.shape[1]
        if prefix + steps > self.position_embedding.shape[0]:
            raise ValueError(
                f"the head was built for 1 proprio token + chunk_size={self.config.chunk_size} actions; got "
                f"{prefix} prefix tokens and {steps} actions. Set action_head_config.chunk_size to the chunk length."
            )
        time = self.embed_time(sigma.expand(batch) if sigma.dim() == 0 else sigma, noisy_actions.dtype)
        tokens = torch.cat([prefix_tokens.to(noisy_actions.dtype), self.action_input(noisy_actions)], dim=1)
        tokens = tokens + self.position_embedding[: prefix + steps].to(tokens.dtype)
        cache = context_cache if context_cache is not None else (None,) * len(self.blocks)
        for block, keys_values in zip(self.blocks, cache, strict=True):
            tokens = block(tokens, time, context, context_mask, keys_values)
        shift, scale = self.output_modulation(time)[:, None].chunk(2, dim=-1)
        tokens = self.output_norm(tokens) * (1 + scale) + shift
        return self.action_output(tokens[:, prefix:])
