"""JALA: a VLM that predicts hand-motion chunks, aligned with latent actions from video.

Sequence (paper §3, docs/design.md §1.3): [instruction x, first frame v_1, LSP tokens, A_1 ... A_N]. Each chunk A_k
holds, for the left then the right hand, `<mot>` + 64 wrist + 64 finger tokens + `</mot>`. Attention is causal
over the prefix and block-causal over the rest: a token sees its own block entirely and every earlier block, never
a later one. The LSP tokens form one block; by default (`block_per_time_chunk`) chunk k of both hands is one block.

Training objective: L = 1[labelled] L_MCP + λ L_align.
* L_MCP: cross-entropy on masked motion tokens (hybrid masking: one target chunk masked at a ratio drawn from
  `target_mask_ratios`, earlier chunks intact, later chunks masked at `future_mask_ratio`); labelled clips only.
* L_align: mean |h - z| over the motion slots of present hands, where h is the output of decoder layer
  `align_layer` at each motion slot (predictive embeddings) and z the LAP's latent actions for that chunk.
Unlabelled clips carry placeholders (mask tokens) in every slot and only contribute L_align.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AutoModel, DynamicCache, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .attention_jala import FLEX_ATTENTION, register_block_flex_attention, sequence_attention_mask
from .configuration_jala import DECODING_STRATEGIES, JalaConfig
from .hand_jala import JOINTS_XYZ, NUM_JOINTS
from .lapa_jala import LatentActionQuantizer
from .layout_jala import (
    CLIP_TOKEN_AXES,
    HANDS,
    IGNORE_TOKEN_ID,
    SEQUENCE_TOKEN_AXES,
    MotionSlotLayout,
    reorder_axes,
)
from .motion_tokenizer_jala import JalaMotionTokenizer
from .perceiver_jala import LatentPerceiver, ema_pairs, ema_update, freeze_ema_targets
from .processing_jala import DESCRIPTION_PROMPT, JalaProcessor
from .ssl_features_jala import encode_ssl_frames, selected_prefix_token_count
from .strict_loading_jala import HUB_DOWNLOAD_KWARGS, StrictLoadingMixin, hub_download_kwargs, join_subfolder

logger = logging.getLogger(__name__)

MOTION_TOKENIZER_SUBFOLDER = "motion_tokenizer"


# ---------------------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class JalaModelOutput(ModelOutput):
    """Output of [`JalaModel`].

    Args:
        last_hidden_state: (B, L, H) final hidden states of the whole sequence.
        motion_hidden_states: (B, N, 2, K, H) final hidden states at the motion slots.
        predictive_embeddings: (B, N, 2, K, H) h, the `align_layer` output at the motion slots.
        latent_actions: (B, N, 2, K, H) z from the LAP, or None without future boundary frames / LAP.
        state_tokens: (B, 2K, H) the LSP context tokens.
        slot_mask: (B, N, 2) chunks that exist for present hands.
        text_hidden_states: (B, Lt, H) final hidden states of the text after the motion (descriptions), or None.
    """

    last_hidden_state: Tensor | None = None
    motion_hidden_states: Tensor | None = None
    predictive_embeddings: Tensor | None = None
    latent_actions: Tensor | None = None
    state_tokens: Tensor | None = None
    slot_mask: Tensor | None = None
    text_hidden_states: Tensor | None = None


@dataclass
class JalaPretrainingOutput(ModelOutput):
    """Output of [`JalaForMotionPretraining`]: the loss, each of its terms, and h / z for diagnostics.

    Args:
        loss: mcp_weight * L_MCP + λ * L_align (the terms that apply to the variant).
        mcp_loss: cross-entropy on masked motion tokens of labelled clips (0 when none are masked).
        align_loss: mean |h - z| over motion slots of present hands (None without latent actions).
        latent_code_loss: LAPA† only — cross-entropy of the VLM's latent-code predictions (pseudo-labels).
        latent_reconstruction_loss: LAPA† only — the forward model's next-frame feature error + VQ terms.
        mcp_accuracy: accuracy of the masked-token predictions.
        mcp_loss_per_codebook / mcp_accuracy_per_codebook: (2 * G * L,) the same per codebook (wrist codebooks
            first, each part group-major then residual layer); NaN where no masked token used that codebook. They
            show the coarse residual layers being learned before the fine ones.
        num_masked_tokens: masked tokens that entered L_MCP.
        description_loss: L_desc, the language-model cross-entropy on the description tokens of description samples
            (None when the batch has none).
        description_logits: (B, Lt, V) the backbone's LM head at the description positions (position t predicts
            token t + 1), or None.
        num_description_tokens: description tokens that entered L_desc.
        placeholder_slots: (B, N, 2, K) which slots were placeholders.
        predictive_embeddings / latent_actions / slot_mask: as in [`JalaModelOutput`].
    """

    loss: Tensor | None = None
    mcp_loss: Tensor | None = None
    align_loss: Tensor | None = None
    latent_code_loss: Tensor | None = None
    latent_reconstruction_loss: Tensor | None = None
    mcp_accuracy: Tensor | None = None
    mcp_loss_per_codebook: Tensor | None = None
    mcp_accuracy_per_codebook: Tensor | None = None
    num_masked_tokens: Tensor | None = None
    description_loss: Tensor | None = None
    description_logits: Tensor | None = None
    num_description_tokens: Tensor | None = None
    placeholder_slots: Tensor | None = None
    predictive_embeddings: Tensor | None = None
    latent_actions: Tensor | None = None
    slot_mask: Tensor | None = None


@dataclass
class JalaMotionGeneration(ModelOutput):
    """Generated motion: token ids (B, N, 2, K), MANO-D162 (B, 2, N*15, 162) and 21 joints (B, 2, N*15, 21, 3)."""

    token_ids: Tensor | None = None
    motion: Tensor | None = None
    joints: Tensor | None = None


@dataclass(frozen=True)
class HubSource:
    """Where a model was loaded from, so that its sub-parts (the motion tokenizer, the default processor) come from
    the same repository, revision, cache and subfolder as its own weights (docs/design.md §6)."""

    name_or_path: str
    subfolder: str = ""
    download_kwargs: dict[str, Any] = field(default_factory=dict)

    def load(self, loader: Any, subfolder: str = "", **kwargs: Any) -> Any:
        """`loader(name_or_path, subfolder=<own subfolder>/<subfolder>, <Hub arguments>, **kwargs)`."""
        return loader(
            self.name_or_path,
            subfolder=join_subfolder(self.subfolder, subfolder),
            **self.download_kwargs,
            **kwargs,
        )


# ---------------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------------


class MotionTokenEmbedding(nn.Module):
    """Embeds motion-token ids of a chunk for both hands, with placeholders for masked slots.

    A slot's embedding is its code embedding — one table row per (codebook, id), so the 2 x G x L codebooks of a
    hand (wrist and finger groups x residual layers) never share a row — or its part's mask embedding when hidden,
    plus a learned slot embedding (position in the chunk: latent step, group, residual layer) and a hand embedding.
    `<mot>` / `</mot>` delimit each hand's block. Cost: 2 G L V x width parameters (the paper's sizes:
    32 x 4096 x 1536 = 201M; the tiny structure: 32 x 512 x 128 = 2.1M).
    """

    def __init__(self, hidden_size: int, layout: MotionSlotLayout) -> None:
        super().__init__()
        self.layout = layout
        self.tokens_per_part = layout.tokens_per_part
        self.codebook_size = layout.codebook_size
        self.code_embeddings = nn.Embedding(layout.num_codebooks * layout.codebook_size, hidden_size)
        self.mask_embeddings = nn.Parameter(torch.zeros(2, hidden_size))
        self.slot_embeddings = nn.Parameter(torch.zeros(2 * layout.tokens_per_part, hidden_size))
        self.hand_embeddings = nn.Parameter(torch.zeros(2, hidden_size))
        self.delimiter_embeddings = nn.Parameter(torch.zeros(2, hidden_size))  # <mot>, </mot>

    def forward(self, token_ids: Tensor, placeholder_slots: Tensor) -> Tensor:
        """(B, N, 2, K) ids and placeholder flags (True = placeholder) -> (B, N, 2, K + 2, H) block embeddings."""
        codebook = self.layout.codebook_of_slot(token_ids.device)
        part = self.layout.part_of_slot(token_ids.device)
        table_rows = token_ids.clamp(0, self.codebook_size - 1) + codebook * self.codebook_size
        codes = self.code_embeddings(table_rows)
        codes = torch.where(placeholder_slots[..., None], self.mask_embeddings[part].to(codes.dtype), codes)
        slots = codes + self.slot_embeddings.to(codes.dtype)
        shape = (*token_ids.shape[:2], 2, 1, codes.shape[-1])
        begin = self.delimiter_embeddings[0].to(codes.dtype).expand(shape)
        end = self.delimiter_embeddings[1].to(codes.dtype).expand(shape)
        blocks = torch.cat([begin, slots, end], dim=3)
        return blocks + self.hand_embeddings.to(codes.dtype)[None, None, :, None, :]


class MotionTokenHeads(nn.Module):
    """One linear classifier per codebook: slot states (..., 2 * tokens_per_part, H) -> logits (..., same, V).

    Like the embeddings, the output layer of a slot is that of its own codebook (2 G L heads of V x H each; the
    tiny structure: 32 x 512 x 128 = 2.1M parameters, the paper's 201M). All slots are scored in one batched
    einsum over (latent step, codebook) — no gather of per-slot weight matrices.
    """

    def __init__(self, hidden_size: int, layout: MotionSlotLayout) -> None:
        super().__init__()
        self.layout = layout
        self.weight = nn.Parameter(torch.empty(layout.num_codebooks, layout.codebook_size, hidden_size))
        self.bias = nn.Parameter(torch.zeros(layout.num_codebooks, layout.codebook_size))

    def forward(self, slot_states: Tensor) -> Tensor:
        layout = self.layout
        leading = slot_states.shape[:-2]
        # (..., part, step, codebook-in-part, H): step-major slots, as the tokenizer lays them out.
        states = slot_states.reshape(-1, 2, layout.latent_steps, layout.codebooks_per_part, slot_states.shape[-1])
        weight = self.weight.view(2, layout.codebooks_per_part, layout.codebook_size, -1).to(states.dtype)
        bias = self.bias.view(2, layout.codebooks_per_part, layout.codebook_size).to(states.dtype)
        logits = torch.einsum("bpsch,pcvh->bpscv", states, weight) + bias[None, :, None]
        return logits.reshape(*leading, 2 * layout.tokens_per_part, layout.codebook_size)


@dataclass
class SequencePart:
    """Embeddings of part of the sequence with what the attention mask and RoPE need to know about it."""

    embeddings: Tensor  # (B, L, H)
    block_ids: Tensor  # (B, L)
    key_valid: Tensor  # (B, L)
    position_ids: Tensor  # (B, L)

    @staticmethod
    def cat(parts: Sequence[SequencePart]) -> SequencePart:
        return SequencePart(*(torch.cat([getattr(p, name) for p in parts], dim=1) for name in SequencePart.fields()))

    @staticmethod
    def fields() -> tuple[str, ...]:
        return ("embeddings", "block_ids", "key_valid", "position_ids")


# ---------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------


class JalaPreTrainedModel(StrictLoadingMixin, PreTrainedModel):
    config_class = JalaConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["PerceiverBlock", "MotionTokenEmbedding"]
    _supports_sdpa = True
    # A custom block-causal 4D mask is required; flash-attention kernels cannot take one.
    _supports_flash_attn = False
    _supports_flex_attn = False
    #: Set by `from_pretrained`: where sub-parts loaded later (the default processor) must come from.
    hub_source: HubSource | None = None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *args: Any, **kwargs: Any) -> Any:
        """Strict `from_pretrained` that remembers the repository, revision, cache and subfolder it read."""
        loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model.freeze_fixed_parts()
        if pretrained_model_name_or_path is not None:
            model.hub_source = HubSource(
                str(pretrained_model_name_or_path), kwargs.get("subfolder") or "", hub_download_kwargs(kwargs)
            )
        return loaded

    def compile_decoder_layers(self, **compile_kwargs: Any) -> int:
        """`torch.compile` each decoder layer of the language model in place (regional compilation); returns how
        many.

        The layers share one code path, so one compiled graph serves all of them and compile time does not grow
        with depth, while the rest of the step (masking, perceivers, EMA, losses) stays eager and free to change
        shape. `nn.Module.compile` keeps parameter names, so saving and strict loading are unaffected.
        `compile_kwargs` go to `torch.compile` (e.g. `backend="aot_eager"` checks the wiring without a compiler).
        """
        layers = self.base_model.language_model.layers
        for layer in layers:
            layer.compile(**compile_kwargs)
        return len(layers)

    def apply_liger_kernels(self, rope: bool = True, rms_norm: bool = True, swiglu: bool = True) -> int:
        """Swap the language model's RMSNorm, SwiGLU MLP and rotary embedding for liger-kernel's fused Triton
        kernels (same arithmetic, fewer memory round trips); returns how many decoder layers were patched.

        Training speed only, on a CUDA GPU, with `pip install liger-kernel`; the weights and their names do not
        change, so saving and strict loading are unaffected. The language model's LM-head cross-entropy kernels are
        left alone: JALA's losses are over the motion codebooks and the description tokens, scored in its own
        heads. Trainers call this for `--use_liger_kernel` (transformers' own switch knows no `jala` model type).
        The rotary swap replaces the function in transformers' Qwen2 module, so it holds for the whole process.
        """
        text_config = self.config.vlm_config.get_text_config()
        if text_config.model_type != "qwen2":
            raise ValueError(
                f"apply_liger_kernels patches a Qwen2 language model; this backbone's is {text_config.model_type!r}. "
                "Drop --use_liger_kernel, or apply liger-kernel's function for that model type yourself."
            )
        if not torch.cuda.is_available():
            raise RuntimeError(
                "liger-kernel's Triton kernels need a CUDA GPU and none is visible; drop --use_liger_kernel on CPU."
            )
        try:
            from liger_kernel.transformers import apply_liger_kernel_to_qwen2
        except ImportError as error:
            raise ImportError("--use_liger_kernel needs liger-kernel: pip install liger-kernel") from error
        language_model = self.base_model.language_model
        apply_liger_kernel_to_qwen2(
            rope=rope,
            rms_norm=rms_norm,
            swiglu=swiglu,
            cross_entropy=False,
            fused_linear_cross_entropy=False,
            model=language_model,
        )
        return len(language_model.layers)

    def freeze_fixed_parts(self) -> None:
        """Turn off gradients for the tensors this model never trains (the frozen SSL encoder, the EMA targets, ...).

        Called at the end of `__init__` and again after `from_pretrained`: transformers' loading re-creates the
        parameters with gradients on, so flags set in `__init__` alone would not survive a reload, and a continued
        run would train the frozen parts."""

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, MotionTokenEmbedding):
            init.normal_(module.code_embeddings.weight, std=std)
            for tensor in (module.mask_embeddings, module.slot_embeddings, module.hand_embeddings):
                init.normal_(tensor, std=std)
            init.normal_(module.delimiter_embeddings, std=std)
        elif isinstance(module, MotionTokenHeads):
            init.normal_(module.weight, std=std)
            init.zeros_(module.bias)
        elif isinstance(module, LatentPerceiver):
            init.normal_(module.queries, std=std)
            init.normal_(module.frame_embedding, std=std)
        elif isinstance(module, LatentActionQuantizer):
            codebook_size = module.codebook.num_embeddings
            init.uniform_(module.codebook.weight, -1.0 / codebook_size, 1.0 / codebook_size)
            init.normal_(module.code_hand_embedding, std=std)
        elif isinstance(module, nn.MultiheadAttention):
            init.xavier_uniform_(module.in_proj_weight)
            init.zeros_(module.in_proj_bias)
            init.zeros_(module.out_proj.bias)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)


class JalaModel(JalaPreTrainedModel):
    """The VLM with motion-token embeddings, the LSP context, the LAP and the block-causal motion sequence."""

    def __init__(self, config: JalaConfig, with_pretraining_modules: bool = True) -> None:
        """`with_pretraining_modules=False` leaves out the LAP and LAPA† (they only train h in pretraining), as the
        action model does."""
        super().__init__(config)
        self.vlm = AutoModel.from_config(config.vlm_config)
        self.ssl_encoder = AutoModel.from_config(config.ssl_encoder_config)
        width = config.hidden_size
        tokenizer_config = config.motion_tokenizer_config
        self.motion_embedding = MotionTokenEmbedding(width, MotionSlotLayout.from_config(tokenizer_config))
        perceiver_kwargs = {
            "feature_dim": config.ssl_encoder_config.hidden_size,
            "width": config.perceiver_hidden_size,
            "out_width": width,
            "num_queries": tokenizer_config.tokens_per_chunk,
            "num_layers": config.perceiver_num_layers,
            "num_heads": config.perceiver_num_heads,
            "mlp_ratio": config.perceiver_mlp_ratio,
            "patch_positions": config.perceiver_patch_positions,
            "num_prefix_tokens": selected_prefix_token_count(config.ssl_encoder_config, config.ssl_token_selection),
        }
        self.lsp = LatentPerceiver(**perceiver_kwargs)
        with_lap = config.uses_latent_actions and with_pretraining_modules
        self.lap = LatentPerceiver(**perceiver_kwargs) if with_lap else None
        self.lapa = None
        if config.variant == "lapa" and with_pretraining_modules:
            self.lapa = LatentActionQuantizer(
                feature_dim=config.ssl_encoder_config.hidden_size,
                width=config.perceiver_hidden_size,
                num_queries=tokenizer_config.tokens_per_chunk,
                num_layers=config.perceiver_num_layers,
                num_heads=config.perceiver_num_heads,
                codebook_size=config.lapa_codebook_size,
                patch_positions=config.perceiver_patch_positions,
                num_prefix_tokens=perceiver_kwargs["num_prefix_tokens"],
            )
        self.post_init()
        self.synchronize_perceivers()
        self.freeze_fixed_parts()
        if config.block_causal_attention == "flex":
            # The attention layers read their config's implementation at call time; only the language model gets
            # the BlockMask (the vision tower and the SSL encoder keep theirs).
            register_block_flex_attention()
            self.language_model.config._attn_implementation = FLEX_ATTENTION

    # -- structure --------------------------------------------------------------------------------------------
    def synchronize_perceivers(self) -> None:
        """LAP and LSP start identical; gradients are then cut from the tensors the EMA overwrites."""
        if self.lap is None:
            return
        self.lap.load_state_dict(self.lsp.state_dict())
        freeze_ema_targets(self.lap, self.lsp, self.config.ema_mode)

    def freeze_fixed_parts(self) -> None:
        """The SSL encoder is frozen; with a LAP, so are the tensors the EMA overwrites."""
        self.ssl_encoder.requires_grad_(False)
        if self.lap is not None:
            freeze_ema_targets(self.lap, self.lsp, self.config.ema_mode)

    @torch.no_grad()
    def ema_step(self) -> None:
        """The decoupled (or, for `wo_dec`, coupled) EMA; call once after every optimizer step."""
        if self.lap is None:
            return
        targets, sources = ema_pairs(self.lap, self.lsp, self.config.ema_mode)
        ema_update(targets, sources, self.config.ema_decay)

    def train(self, mode: bool = True) -> JalaModel:
        super().train(mode)
        self.ssl_encoder.eval()  # frozen: no dropout, no drop-path, no batch statistics
        return self

    @property
    def language_model(self) -> nn.Module:
        return self.vlm.language_model

    def get_input_embeddings(self) -> nn.Module:
        return self.vlm.get_input_embeddings()

    # -- encoders -----------------------------------------------------------------------------------------------
    def image_embeddings(self, pixel_values: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, n_image_tokens, hidden): the VLM's own vision tower and projector."""
        features = self.vlm.get_image_features(pixel_values=pixel_values)
        if isinstance(features, ModelOutput):
            features = features.pooler_output
        if isinstance(features, list | tuple):
            features = torch.stack(list(features))
        return features

    @torch.no_grad()
    def ssl_features(self, pixel_values: Tensor) -> Tensor:
        """(..., 3, h, w) frames -> (..., P, D) frozen SSL features: the tokens `config.ssl_token_selection` names
        (default: the patch grid, no class or register tokens), pooled to `config.ssl_pool_grid`. `encode_ssl_frames`
        is shared with the dataset builder's precomputed features."""
        leading = pixel_values.shape[:-3]
        frames = pixel_values.reshape(-1, *pixel_values.shape[-3:])
        config = self.config
        tokens = encode_ssl_frames(self.ssl_encoder, frames, config.ssl_token_selection, config.ssl_pool_grid)
        return tokens.reshape(*leading, *tokens.shape[-2:])

    def state_context(self, first_frame_features: Tensor) -> Tensor:
        """LSP: (B, P, D) features of v_1, read as the pair (v_1, v_1) -> (B, 2K, hidden) context tokens."""
        tokens = self.lsp(first_frame_features, first_frame_features)
        return tokens.flatten(1, 2)

    def latent_actions(self, boundary_features: Tensor) -> Tensor:
        """LAP: (B, N + 1, P, D) boundary-frame features -> (B, N, 2, K, hidden) latent actions z."""
        if self.lap is None:
            raise ValueError(f"variant {self.config.variant!r} has no latent action perceiver.")
        batch, boundaries = boundary_features.shape[:2]
        start = boundary_features[:, :-1].flatten(0, 1)
        end = boundary_features[:, 1:].flatten(0, 1)
        return self.lap(start, end).view(batch, boundaries - 1, *self.lap_output_shape())

    def lap_output_shape(self) -> tuple[int, int, int]:
        return 2, self.config.motion_tokens_per_chunk, self.config.hidden_size

    # -- sequence -----------------------------------------------------------------------------------------------
    def _prefix_embeddings(
        self, input_ids: Tensor, pixel_values: Tensor | None, image_features: Tensor | None = None
    ) -> Tensor:
        """Text embeddings with the image tokens filled in: from `pixel_values`, or from `image_features` — the
        projector's inputs that a frozen vision tower produced earlier (`trainers/feature_cache.py`)."""
        embeddings = self.get_input_embeddings()(input_ids)
        if image_features is not None:
            image = self.vlm.multi_modal_projector(image_features.to(embeddings.dtype))
        elif pixel_values is not None:
            image = self.image_embeddings(pixel_values)
        else:
            return embeddings
        image = image.to(embeddings.dtype)
        image_token_id = self.config.vlm_config.image_token_id
        slots = input_ids == image_token_id
        if int(slots.sum()) != image.shape[0] * image.shape[1]:
            raise ValueError(
                f"input_ids hold {int(slots.sum())} image tokens (id {image_token_id}) but the vision tower made "
                f"{image.shape[0]} x {image.shape[1]}; build inputs with JalaProcessor for this backbone."
            )
        return embeddings.masked_scatter(slots[..., None], image)

    def context_part(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        pixel_values: Tensor | None,
        first_frame_features: Tensor,
        image_features: Tensor | None = None,
    ) -> tuple[SequencePart, Tensor]:
        """[instruction, v_1] (causal, one block per token) + the LSP tokens (one block); and the LSP tokens."""
        prefix = self._prefix_embeddings(input_ids, pixel_values, image_features)
        state_tokens = self.state_context(first_frame_features.to(prefix.dtype)).to(prefix.dtype)
        batch, prefix_len = input_ids.shape
        state_len = state_tokens.shape[1]
        device = input_ids.device
        prefix_positions = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
        state_positions = prefix_positions[:, -1:] + 1 + torch.arange(state_len, device=device)[None]
        block_ids = torch.cat(
            [torch.arange(prefix_len, device=device), torch.full((state_len,), prefix_len, device=device)]
        )
        part = SequencePart(
            embeddings=torch.cat([prefix, state_tokens], dim=1),
            block_ids=block_ids[None].expand(batch, -1),
            key_valid=torch.cat(
                [attention_mask.bool(), torch.ones(batch, state_len, dtype=torch.bool, device=device)], dim=1
            ),
            position_ids=torch.cat([prefix_positions, state_positions], dim=1),
        )
        return part, state_tokens

    def motion_part(
        self,
        token_ids: Tensor,
        placeholder_slots: Tensor,
        slot_mask: Tensor,
        context: SequencePart,
        first_chunk: int,
    ) -> SequencePart:
        """Chunks first_chunk .. first_chunk + n - 1 ((B, n, 2, K) ids) as sequence blocks after the context.

        `placeholder_slots` (B, n, 2, K) is True where a slot shows a placeholder instead of its token; `slot_mask`
        (B, n, 2) is True where the chunk exists for a present hand. Absent hands and missing chunks are
        placeholders that no query may attend to.
        """
        batch, num_chunks = token_ids.shape[:2]
        device = token_ids.device
        embeddings = self.motion_embedding(token_ids, placeholder_slots | ~slot_mask[..., None])
        block_tokens = embeddings.shape[3]
        chunk_index = first_chunk + torch.arange(num_chunks, device=device)
        if self.config.block_per_time_chunk:
            blocks = chunk_index[:, None].expand(num_chunks, 2)
        else:
            blocks = 2 * chunk_index[:, None] + torch.arange(2, device=device)[None]
        first_block = int(context.block_ids[0, -1]) + 1
        length = num_chunks * 2 * block_tokens
        first_position = context.position_ids[:, -1:] + 1 + first_chunk * 2 * block_tokens
        return SequencePart(
            embeddings=embeddings.flatten(1, 3).to(context.embeddings.dtype),
            block_ids=(first_block + blocks[:, :, None].expand(-1, -1, block_tokens).flatten()).expand(batch, -1),
            key_valid=slot_mask[:, :, :, None].expand(-1, -1, -1, block_tokens).flatten(1),
            position_ids=first_position + torch.arange(length, device=device)[None],
        )

    def text_part(self, text_ids: Tensor, real_token: Tensor, before: SequencePart, offset: int = 0) -> SequencePart:
        """Text tokens after the sequence `before` (the motion, for a description): causal, one block per token,
        as the prefix is (docs/design.md §1.13). `real_token` (B, Lt) is False at padding, which no query may attend
        to. `offset` is the index of the first of these tokens in the text (generation feeds one token at a time)."""
        batch, length = text_ids.shape
        steps = offset + 1 + torch.arange(length, device=text_ids.device)[None]
        return SequencePart(
            embeddings=self.get_input_embeddings()(text_ids).to(before.embeddings.dtype),
            block_ids=(before.block_ids[:, -1:] + steps).expand(batch, -1),
            key_valid=real_token.bool(),
            position_ids=before.position_ids[:, -1:] + steps,
        )

    def block_causal_attention_mask(
        self, block_ids: Tensor, key_valid: Tensor, dtype: torch.dtype, query_block_ids: Tensor | None = None
    ) -> Any:
        """The block-causal mask of a sequence (keys `block_ids` / `key_valid` (B, Lk), queries the last Lq) in the
        format `config.block_causal_attention` names: dense additive (B, 1, Lq, Lk) or a FlexAttention BlockMask."""
        return sequence_attention_mask(
            self.config.block_causal_attention, block_ids, key_valid, dtype, query_block_ids
        )

    def run_language_model(
        self, embeddings: Tensor, mask: Any, position_ids: Tensor, cache: Any = None
    ) -> tuple[Tensor, Tensor]:
        """The VLM's decoder; returns the final hidden states and those of `align_layer` (predictive embeddings)."""
        captured: dict[str, Tensor] = {}
        layer = self.language_model.layers[self.config.align_layer - 1]
        hook = layer.register_forward_hook(lambda _m, _i, out: captured.__setitem__("h", _first(out)))
        try:
            outputs = self.language_model(
                inputs_embeds=embeddings,
                attention_mask=mask,
                position_ids=position_ids,
                cache=cache,
                use_cache=cache is not None,
            )
        finally:
            hook.remove()
        return outputs.last_hidden_state, captured["h"]

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        pixel_values: Tensor | None = None,
        motion_token_ids: Tensor | None = None,
        placeholder_slots: Tensor | None = None,
        chunk_mask: Tensor | None = None,
        hands_present: Tensor | None = None,
        ssl_features: Tensor | None = None,
        ssl_pixel_values: Tensor | None = None,
        compute_latent_actions: bool = True,
        text_ids: Tensor | None = None,
        text_mask: Tensor | None = None,
    ) -> JalaModelOutput:
        """Run the block-causal sequence.

        Args:
            input_ids: (B, Lp) prefix (instruction + image placeholder tokens), left-padded.
            attention_mask: (B, Lp) 1 for real prefix tokens.
            pixel_values: (B, 3, H, W) the first frame for the VLM's vision tower.
            motion_token_ids: (B, N, 2, K) motion-token ids; IGNORE_TOKEN_ID (-100) where no chunk exists.
            placeholder_slots: (B, N, 2, K) True where a slot is a placeholder (masked / unlabelled); default: slots
                without a token.
            chunk_mask: (B, N) chunks that exist; default: chunks with any token.
            hands_present: (B, 2) which hands act; absent hands' blocks are hidden from every query.
            ssl_features: (B, N + 1, P, D) frozen-encoder features of the boundary frames, or (B, 1, P, D) for
                the first frame only (then z is not computed); or pass `ssl_pixel_values` (B, N + 1, 3, h, w).
            text_ids / text_mask: (B, Lt) text after the motion (a description) and True at its real tokens,
                right-padded; causal, after every motion block (docs/design.md §1.13).
        """
        if ssl_features is None:
            if ssl_pixel_values is None:
                raise ValueError("pass ssl_features (precomputed) or ssl_pixel_values (frames for the SSL encoder).")
            ssl_features = self.ssl_features(ssl_pixel_values)
        batch = input_ids.shape[0]
        if motion_token_ids is None:
            raise ValueError("motion_token_ids (B, N, 2, K) is required; use IGNORE_TOKEN_ID for unknown slots.")
        num_chunks, tokens = motion_token_ids.shape[1], motion_token_ids.shape[3]
        if motion_token_ids.shape[2] != 2 or tokens != self.config.motion_tokens_per_chunk:
            raise ValueError(
                f"motion_token_ids must have shape (batch, chunks, 2 hands, {self.config.motion_tokens_per_chunk}), "
                f"got {tuple(motion_token_ids.shape)}."
            )
        device = input_ids.device
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if chunk_mask is None:
            chunk_mask = (motion_token_ids != IGNORE_TOKEN_ID).any(-1).any(-1)
        if hands_present is None:
            hands_present = torch.ones(batch, 2, dtype=torch.bool, device=device)
        if placeholder_slots is None:
            placeholder_slots = motion_token_ids == IGNORE_TOKEN_ID
        chunk_mask, hands_present = chunk_mask.bool(), hands_present.bool()
        placeholder_slots = placeholder_slots.bool()
        slot_mask = chunk_mask[:, :, None] & hands_present[:, None, :]  # (B, N, 2)

        context, state_tokens = self.context_part(input_ids, attention_mask, pixel_values, ssl_features[:, 0])
        motion = self.motion_part(motion_token_ids, placeholder_slots, slot_mask, context, first_chunk=0)
        parts = [context, motion]
        if text_ids is not None:
            real_token = torch.ones_like(text_ids, dtype=torch.bool) if text_mask is None else text_mask
            parts.append(self.text_part(text_ids, real_token, SequencePart.cat(parts)))
        sequence = SequencePart.cat(parts)
        mask = self.block_causal_attention_mask(sequence.block_ids, sequence.key_valid, sequence.embeddings.dtype)
        final_states, align_states = self.run_language_model(sequence.embeddings, mask, sequence.position_ids)
        block_tokens = tokens + 2
        motion_start = context.embeddings.shape[1]
        motion_end = motion_start + motion.embeddings.shape[1]

        def slots(states: Tensor) -> Tensor:
            blocks = states[:, motion_start:motion_end].view(batch, num_chunks, 2, block_tokens, -1)
            return blocks[:, :, :, 1:-1]

        latent = None
        if compute_latent_actions and self.lap is not None and ssl_features.shape[1] == num_chunks + 1:
            latent = self.latent_actions(ssl_features.to(final_states.dtype))
        return JalaModelOutput(
            last_hidden_state=final_states,
            motion_hidden_states=slots(final_states),
            predictive_embeddings=slots(align_states),
            latent_actions=latent,
            state_tokens=state_tokens,
            slot_mask=slot_mask,
            text_hidden_states=None if text_ids is None else final_states[:, motion_end:],
        )


def codebook_means(codebook: Tensor, loss: Tensor, correct: Tensor, num_codebooks: int) -> tuple[Tensor, Tensor]:
    """Mean loss and accuracy per codebook of M scored tokens ((M,) each); NaN for codebooks with no token."""
    counts = torch.zeros(num_codebooks, device=loss.device).index_add_(0, codebook, torch.ones_like(loss))
    loss_sums = torch.zeros(num_codebooks, device=loss.device).index_add_(0, codebook, loss.float())
    correct_sums = torch.zeros(num_codebooks, device=loss.device).index_add_(0, codebook, correct.float())
    empty = counts == 0
    counts = counts.clamp_min(1)
    nan = float("nan")
    return (loss_sums / counts).masked_fill(empty, nan), (correct_sums / counts).masked_fill(empty, nan)


@dataclass
class MotionBatch:
    """The motion side of a pretraining batch, defaults resolved (mask polarity: docs/design.md §3)."""

    token_ids: Tensor  # (B, N, 2, K); IGNORE_TOKEN_ID where no chunk / hand
    chunk_mask: Tensor  # (B, N) True where the chunk exists
    hands_present: Tensor  # (B, 2) True where the hand acts (and, without unlabelled training, is labelled)
    labelled: Tensor  # (B,) True where the motion is a trainable label
    placeholder_slots: Tensor  # (B, N, 2, K) True where the slot shows a placeholder


@dataclass
class McpLoss:
    """L_MCP of a batch with its diagnostics: accuracy, per-codebook loss / accuracy (NaN where unscored)."""

    loss: Tensor
    accuracy: Tensor
    loss_per_codebook: Tensor
    accuracy_per_codebook: Tensor
    num_scored: Tensor


def _first(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple | list) else output


class JalaForMotionPretraining(JalaPreTrainedModel):
    """JALA pretraining: masked chunk prediction + latent-action alignment, and motion generation.

    The frozen motion tokenizer is a submodule (for on-the-fly tokenization and decoding of generated tokens)
    but lives in its own `motion_tokenizer/` subfolder of the saved folder, usable on its own.
    """

    _keys_to_ignore_on_load_missing = [r"^motion_tokenizer\."]

    def __init__(self, config: JalaConfig) -> None:
        super().__init__(config)
        self.model = JalaModel(config)
        tokenizer_config = config.motion_tokenizer_config
        width = config.hidden_size
        self.slot_layout = MotionSlotLayout.from_config(tokenizer_config)
        self.motion_heads = MotionTokenHeads(width, self.slot_layout)
        self.latent_code_head = nn.Linear(width, config.lapa_codebook_size) if config.variant == "lapa" else None
        # The backbone's own LM head for L_desc: its input embeddings when the VLM ties them (InternVL3 does, as
        # transformers decides it: the VLM config's `tie_word_embeddings`), else an untied head of its own.
        self.lm_head = None
        if not getattr(config.vlm_config, "tie_word_embeddings", False):
            text_config = config.vlm_config.get_text_config()
            self.lm_head = nn.Linear(width, text_config.vocab_size, bias=False)
        self.motion_tokenizer = JalaMotionTokenizer(tokenizer_config)
        self.post_init()
        self.model.synchronize_perceivers()
        self.freeze_fixed_parts()

    def freeze_fixed_parts(self) -> None:
        """The backbone's frozen parts and the motion tokenizer (its ids are the targets)."""
        self.model.freeze_fixed_parts()
        self.motion_tokenizer.requires_grad_(False)

    # -- save / load: the tokenizer goes to its own subfolder ---------------------------------------------------
    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> None:
        state_dict = kwargs.pop("state_dict", None) or self.state_dict()
        state_dict = {key: value for key, value in state_dict.items() if not key.startswith("motion_tokenizer.")}
        super().save_pretrained(save_directory, *args, state_dict=state_dict, **kwargs)
        if kwargs.get("is_main_process", True):
            self.motion_tokenizer.save_pretrained(Path(save_directory) / MOTION_TOKENIZER_SUBFOLDER)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *args: Any, **kwargs: Any) -> Any:
        """Load the weights, then the `motion_tokenizer/` subfolder from the same revision, cache and subfolder."""
        loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        source = model.hub_source or HubSource(str(pretrained_model_name_or_path))
        tokenizer = source.load(JalaMotionTokenizer.from_pretrained, MOTION_TOKENIZER_SUBFOLDER)
        model.motion_tokenizer.load_state_dict(tokenizer.state_dict(), strict=True)
        model.motion_tokenizer.to(model.device).eval()
        return loaded

    @classmethod
    def from_components(
        cls,
        backbone_name_or_path: str | Path,
        ssl_encoder_name_or_path: str | Path,
        motion_tokenizer_name_or_path: str | Path | None = None,
        **config_kwargs: Any,
    ) -> JalaForMotionPretraining:
        """A new JALA model initialised from pretrained parts, as the paper starts: the VLM (e.g.
        `OpenGVLab/InternVL3-2B-hf`), the frozen SSL encoder (e.g. a DINOv3 checkpoint) and a trained motion
        tokenizer. New parts (motion embeddings and heads, perceivers) are freshly initialised; every pretrained
        tensor must load (strict).

        Hub arguments among `config_kwargs` (cache_dir, token, local_files_only, ...) go to all three loads; a
        `revision` names one repository's state, so give the three repositories' revisions in their
        `name_or_path` instead (e.g. a local snapshot)."""
        download = hub_download_kwargs(config_kwargs)
        for name in HUB_DOWNLOAD_KWARGS:
            config_kwargs.pop(name, None)
        if "revision" in download:
            raise ValueError(
                "from_components loads three repositories, so one revision= cannot name their states; pass "
                "snapshot folders (huggingface_hub.snapshot_download(repo, revision=...)) as the three paths."
            )
        vlm = AutoModel.from_pretrained(backbone_name_or_path, **download)
        ssl_encoder = AutoModel.from_pretrained(ssl_encoder_name_or_path, **download)
        tokenizer = (
            JalaMotionTokenizer.from_pretrained(motion_tokenizer_name_or_path, **download)
            if motion_tokenizer_name_or_path is not None
            else None
        )
        if tokenizer is not None:
            config_kwargs.setdefault("motion_tokenizer_config", tokenizer.config)
        config = JalaConfig(
            vlm_config=vlm.config,
            ssl_encoder_config=ssl_encoder.config,
            backbone_name_or_path=str(backbone_name_or_path),
            ssl_encoder_name_or_path=str(ssl_encoder_name_or_path),
            **config_kwargs,
        )
        model = cls(config)
        model.model.vlm.load_state_dict(vlm.state_dict(), strict=True)
        model.model.ssl_encoder.load_state_dict(ssl_encoder.state_dict(), strict=True)
        if tokenizer is not None:
            model.set_motion_tokenizer(tokenizer)
        model.model.synchronize_perceivers()
        return model

    @torch.no_grad()
    def init_token_priors(self, token_ids: Tensor, smoothing: float = 1.0) -> Tensor:
        """Set each codebook head's bias to the log frequency of its codes in `token_ids` (..., K) of training
        motion (IGNORE_TOKEN_ID where no chunk exists); returns the (num_codebooks, V) counts.

        A from-scratch model then starts at the codes' unigram distribution instead of uniform (ln V), so its
        first predictions already decode to the average training motion and training spends its steps on what
        the instruction and frame add (the usual "initialise the output bias to the log prior" recipe).
        `smoothing` is an add-k count so unseen codes keep a finite logit.
        """
        layout = self.slot_layout
        if token_ids.shape[-1] != 2 * layout.tokens_per_part:
            raise ValueError(
                f"token_ids must end in {2 * layout.tokens_per_part} slots (one hand's chunk), "
                f"got shape {tuple(token_ids.shape)}."
            )
        slots = token_ids.reshape(-1, token_ids.shape[-1]).to(self.motion_heads.bias.device)
        valid = slots != IGNORE_TOKEN_ID
        codebook = layout.codebook_of_slot(slots.device).expand_as(slots)[valid]
        rows = codebook * layout.codebook_size + slots[valid]
        counts = torch.zeros(layout.num_codebooks * layout.codebook_size, device=slots.device)
        counts.index_add_(0, rows, torch.ones_like(rows, dtype=counts.dtype))
        counts = counts.view(layout.num_codebooks, layout.codebook_size)
        smoothed = counts + smoothing
        self.motion_heads.bias.copy_((smoothed / smoothed.sum(-1, keepdim=True)).log())
        return counts

    def set_motion_tokenizer(self, tokenizer: JalaMotionTokenizer) -> None:
        """Install a trained tokenizer (its structure must match `config.motion_tokenizer_config`)."""
        mine, theirs = self.config.motion_tokenizer_config.to_dict(), tokenizer.config.to_dict()
        differences = {
            key: (mine.get(key), theirs.get(key))
            for key in ("codebook_size", "code_dim", "hidden_size", "num_groups", "num_residual_layers")
            if mine.get(key) != theirs.get(key)
        }
        if differences:
            raise ValueError(
                f"motion tokenizer does not match config.motion_tokenizer_config: {differences} "
                "(config, tokenizer); build the JalaConfig with motion_tokenizer_config=tokenizer.config."
            )
        self.motion_tokenizer.load_state_dict(tokenizer.state_dict(), strict=True)
        self.motion_tokenizer.eval()

    def ema_step(self) -> None:
        self.model.ema_step()

    def train(self, mode: bool = True) -> JalaForMotionPretraining:
        super().train(mode)
        self.motion_tokenizer.eval()
        return self

    # -- masking ------------------------------------------------------------------------------------------------
    def sample_placeholder_slots(
        self,
        slot_mask: Tensor,
        labelled: Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The hybrid masking scheme: (B, N, 2) slot_mask, (B,) labelled -> (B, N, 2, K) placeholders.

        Labelled clip: a target chunk t uniform over its chunks; chunks < t intact; chunk t masked at a ratio
        drawn from `target_mask_ratios` (over the slots of its present hands, at least one); chunks > t masked
        at `future_mask_ratio`. A share `all_chunks_hidden_share` of labelled clips instead hides every chunk (the
        "joint" decoding's input). Unlabelled clip: every slot is a placeholder.
        """
        batch, num_chunks = slot_mask.shape[:2]
        tokens = self.config.motion_tokens_per_chunk
        device = slot_mask.device
        cpu = torch.device("cpu")
        ratios = torch.tensor(self.config.target_mask_ratios)
        mask = torch.ones(batch, num_chunks, 2, tokens, dtype=torch.bool)
        chunk_exists = slot_mask.any(-1).cpu()
        slots = slot_mask.cpu()
        for b in range(batch):
            valid_chunks = int(chunk_exists[b].sum())
            if not bool(labelled[b]) or valid_chunks == 0:
                continue
            hidden_share = self.config.all_chunks_hidden_share
            # Drawn only when the share is set, so the paper's masking consumes the generator as it always did.
            if hidden_share > 0 and float(torch.rand((), generator=generator, device=cpu)) < hidden_share:
                continue  # every chunk stays a placeholder
            target = int(torch.randint(valid_chunks, (1,), generator=generator, device=cpu))
            ratio = float(ratios[torch.randint(len(ratios), (1,), generator=generator, device=cpu)])
            mask[b, :target] = False
            present = slots[b, target]  # (2,)
            candidates = (present[:, None].expand(2, tokens)).flatten().nonzero().flatten()
            count = max(1, round(ratio * len(candidates)))
            order = torch.randperm(len(candidates), generator=generator, device=cpu)
            chunk = torch.zeros(2 * tokens, dtype=torch.bool)
            chunk[candidates[order[:count]]] = True
            mask[b, target] = chunk.view(2, tokens)
            later = torch.rand(num_chunks - target - 1, 2, tokens, generator=generator, device=cpu)
            mask[b, target + 1 :] = later < self.config.future_mask_ratio
        return mask.to(device)

    # -- forward ------------------------------------------------------------------------------------------------
    def motion_logits(self, motion_states: Tensor) -> Tensor:
        """(..., K, H) slot states -> (..., K, V) logits, each slot scored by its own codebook's head."""
        return self.motion_heads(motion_states)

    def text_logits(self, text_states: Tensor) -> Tensor:
        """(..., H) final (normed) states -> (..., vocabulary) logits through the backbone's LM head (tied to the
        input embeddings where the VLM ties them)."""
        weight = self.model.get_input_embeddings().weight if self.lm_head is None else self.lm_head.weight
        return F.linear(text_states, weight.to(text_states.dtype))

    def description_loss(self, text_states: Tensor, description_labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(L_desc, logits, number of scored tokens): next-token cross-entropy where `description_labels` (B, Lt)
        is not IGNORE_TOKEN_ID. Position t predicts token t + 1, so only description tokens (text and end) are ever
        targets: the context before the text has no positions here at all (docs/design.md §1.13)."""
        logits = self.text_logits(text_states)
        targets = description_labels[:, 1:]
        scored = targets != IGNORE_TOKEN_ID
        if bool(scored.any()):
            loss = F.cross_entropy(logits[:, :-1][scored].float(), targets[scored])
        else:
            loss = 0.0 * logits.sum()
        return loss, logits, scored.sum()

    def masked_chunk_loss(self, motion_states: Tensor, motion_token_ids: Tensor, scored_slots: Tensor) -> McpLoss:
        """L_MCP: cross-entropy of each scored slot's true token under its own codebook's head.

        `scored_slots` (B, N, 2, K) is True at the placeholders of labelled clips that have a target token."""
        logits = self.motion_logits(motion_states)[scored_slots]  # (M, V)
        targets = motion_token_ids[scored_slots]
        codebook = self.slot_layout.codebook_of_slot(motion_token_ids.device).expand_as(motion_token_ids)
        if logits.shape[0]:
            token_loss = F.cross_entropy(logits.float(), targets, reduction="none")
            correct = (logits.argmax(-1) == targets).float()
            loss, accuracy = token_loss.mean(), correct.mean()
        else:
            # Keep every parameter in the graph so DDP sees the same set on all ranks.
            loss = 0.0 * sum(parameter.sum() for parameter in self.motion_heads.parameters())
            token_loss = correct = logits.new_zeros(0)
            accuracy = torch.zeros((), device=motion_token_ids.device)
        per_codebook = codebook_means(
            codebook[scored_slots], token_loss.detach(), correct, self.slot_layout.num_codebooks
        )
        return McpLoss(loss, accuracy, per_codebook[0], per_codebook[1], scored_slots.sum())

    @staticmethod
    def alignment_loss(predictive_embeddings: Tensor, latent_actions: Tensor, aligned_slots: Tensor) -> Tensor:
        """L_align: mean |h - z| over the width and over the (B, N, 2) slots where `aligned_slots` is True."""
        difference = (predictive_embeddings - latent_actions).abs().mean(-1)  # (B, N, 2, K)
        weights = aligned_slots[..., None].to(difference.dtype).expand_as(difference)
        return (difference * weights).sum() / weights.sum().clamp_min(1)

    def latent_code_losses(
        self, ssl_features: Tensor, motion_states: Tensor, chunk_mask: Tensor, slot_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """LAPA† (docs/design.md §1.9): (CE of the VLM's latent-code predictions against the quantised IDM codes,
        the forward model's reconstruction + commitment loss)."""
        latent = self.model.lapa(ssl_features.to(motion_states.dtype), chunk_mask)
        code_slots = slot_mask[..., None].expand_as(latent.codes)
        code_logits = self.latent_code_head(motion_states[code_slots])
        code_loss = F.cross_entropy(code_logits.float(), latent.codes[code_slots].detach())
        return code_loss, latent.reconstruction_loss + latent.commitment_loss

    def motion_batch(
        self,
        batch_size: int,
        device: torch.device,
        motion_token_ids: Tensor | None,
        chunk_mask: Tensor | None,
        hands_present: Tensor | None,
        labelled: Tensor | None,
        placeholder_slots: Tensor | None,
        motion: Tensor | None,
        frame_lengths: Tensor | None,
        generator: torch.Generator | None,
    ) -> MotionBatch:
        """The motion side of a batch with every default resolved: token ids (tokenized here from raw motion when
        not given), which chunks and hands exist, and the placeholders (sampled by the hybrid masking unless given;
        unlabelled clips are placeholders throughout)."""
        if hands_present is None:
            hands_present = torch.ones(batch_size, 2, dtype=torch.bool, device=device)
        hands_present = hands_present.bool()
        if labelled is None:
            labelled = torch.ones(batch_size, dtype=torch.bool, device=device)
        labelled = labelled.bool()
        if motion_token_ids is None:
            motion_token_ids, chunk_mask = self.tokenize_motion(motion, frame_lengths, hands_present, labelled)
        if chunk_mask is None:
            chunk_mask = (motion_token_ids != IGNORE_TOKEN_ID).any(-1).any(-1)
        chunk_mask = chunk_mask.bool()
        if not self.config.trains_on_unlabelled:
            # w/o latent, JALA-act: unlabelled clips carry no signal at all.
            hands_present = hands_present & labelled[:, None]
        slot_mask = chunk_mask[:, :, None] & hands_present[:, None, :]
        if placeholder_slots is None:
            placeholder_slots = self.sample_placeholder_slots(slot_mask, labelled, generator)
        # Unlabelled clips never show their (pseudo-)tokens: they are placeholders throughout.
        placeholder_slots = placeholder_slots.bool() | ~labelled[:, None, None, None]
        return MotionBatch(motion_token_ids, chunk_mask, hands_present, labelled, placeholder_slots)

    @staticmethod
    def description_batch(
        describe: Tensor | None,
        labelled: Tensor,
        placeholder_slots: Tensor,
        description_mask: Tensor | None,
        description_labels: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(describe, placeholder_slots, description_mask, description_labels) of a batch with description text:
        description rows see their whole motion; other rows' text is invisible and unscored (docs/design.md §1.13)."""
        if describe is None or description_labels is None:
            raise ValueError("description_ids need `describe` (B,) and description_labels (B, Lt) as well.")
        describe = describe.bool()
        if bool((describe & ~labelled).any()):
            raise ValueError("description samples need labelled motion (the motion is the context).")
        placeholder_slots = placeholder_slots & ~describe[:, None, None, None]
        if description_mask is None:
            description_mask = description_labels != IGNORE_TOKEN_ID
        description_mask = description_mask.bool() & describe[:, None]
        description_labels = description_labels.masked_fill(~describe[:, None], IGNORE_TOKEN_ID)
        return describe, placeholder_slots, description_mask, description_labels

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        pixel_values: Tensor | None = None,
        motion_token_ids: Tensor | None = None,
        placeholder_slots: Tensor | None = None,
        chunk_mask: Tensor | None = None,
        hands_present: Tensor | None = None,
        labelled: Tensor | None = None,
        ssl_features: Tensor | None = None,
        ssl_pixel_values: Tensor | None = None,
        motion: Tensor | None = None,
        frame_lengths: Tensor | None = None,
        generator: torch.Generator | None = None,
        describe: Tensor | None = None,
        description_ids: Tensor | None = None,
        description_mask: Tensor | None = None,
        description_labels: Tensor | None = None,
    ) -> JalaPretrainingOutput:
        """Hybrid loss on a batch (the collator contract of `dataset_scripts.collator`).

        Motion comes as `motion_token_ids` (B, N, 2, K), or as raw `motion` (B, 2, T, 162) + `frame_lengths`,
        tokenized here by the frozen tokenizer. `placeholder_slots` (B, N, 2, K, True = the slot shows a
        placeholder) overrides the sampled masking (tests, evaluation). Masks named `*_mask` are True where the
        thing exists (`attention_mask`, `chunk_mask`, `description_mask`).

        Description samples (docs/design.md §1.13): rows flagged by `describe` (B,) see their whole motion (no
        slot hidden, so no L_MCP and, being a different task, no L_align) and carry `description_ids` /
        `description_mask` / `description_labels` (B, Lt) from `JalaProcessor.description_targets`: the text after
        the motion, scored by L_desc. Without these keys the loss is exactly L_MCP + λ L_align.
        """
        motion_batch = self.motion_batch(
            batch_size=input_ids.shape[0],
            device=input_ids.device,
            motion_token_ids=motion_token_ids,
            chunk_mask=chunk_mask,
            hands_present=hands_present,
            labelled=labelled,
            placeholder_slots=placeholder_slots,
            motion=motion,
            frame_lengths=frame_lengths,
            generator=generator,
        )
        motion_token_ids, chunk_mask = motion_batch.token_ids, motion_batch.chunk_mask
        hands_present, labelled = motion_batch.hands_present, motion_batch.labelled
        placeholder_slots = motion_batch.placeholder_slots
        describing = description_ids is not None
        if describing:
            describe, placeholder_slots, description_mask, description_labels = self.description_batch(
                describe, labelled, placeholder_slots, description_mask, description_labels
            )
        if ssl_features is None:
            if ssl_pixel_values is None:
                raise ValueError("pass ssl_features (precomputed) or ssl_pixel_values (frames for the SSL encoder).")
            ssl_features = self.model.ssl_features(ssl_pixel_values)

        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values,
            motion_token_ids=motion_token_ids,
            placeholder_slots=placeholder_slots,
            chunk_mask=chunk_mask,
            hands_present=hands_present,
            ssl_features=ssl_features,
            text_ids=description_ids,
            text_mask=description_mask,
        )
        slot_mask = outputs.slot_mask
        scored_slots = placeholder_slots & slot_mask[..., None] & labelled[:, None, None, None]
        scored_slots &= motion_token_ids != IGNORE_TOKEN_ID
        mcp = self.masked_chunk_loss(outputs.motion_hidden_states, motion_token_ids, scored_slots)
        loss = mcp.loss

        align_loss = None
        if outputs.latent_actions is not None:
            aligned_slots = slot_mask & (labelled[:, None, None] | self.config.trains_on_unlabelled)
            if describing:
                aligned_slots = aligned_slots & ~describe[:, None, None]
            align_loss = self.alignment_loss(outputs.predictive_embeddings, outputs.latent_actions, aligned_slots)
            loss = loss + self.config.align_weight * align_loss
        code_loss = reconstruction_loss = None
        if self.model.lapa is not None and ssl_features.shape[1] == chunk_mask.shape[1] + 1:
            code_loss, reconstruction_loss = self.latent_code_losses(
                ssl_features, outputs.motion_hidden_states, chunk_mask, slot_mask
            )
            loss = loss + self.config.align_weight * code_loss + reconstruction_loss
        description_loss = description_logits = num_description_tokens = None
        if describing:
            description_loss, description_logits, num_description_tokens = self.description_loss(
                outputs.text_hidden_states, description_labels
            )
            loss = loss + self.config.description_weight * description_loss
        return JalaPretrainingOutput(
            loss=loss,
            mcp_loss=mcp.loss.detach(),
            align_loss=None if align_loss is None else align_loss.detach(),
            latent_code_loss=None if code_loss is None else code_loss.detach(),
            latent_reconstruction_loss=None if reconstruction_loss is None else reconstruction_loss.detach(),
            mcp_accuracy=mcp.accuracy,
            mcp_loss_per_codebook=mcp.loss_per_codebook,
            mcp_accuracy_per_codebook=mcp.accuracy_per_codebook,
            num_masked_tokens=mcp.num_scored,
            description_loss=None if description_loss is None else description_loss.detach(),
            description_logits=description_logits,
            num_description_tokens=num_description_tokens,
            placeholder_slots=placeholder_slots,
            predictive_embeddings=outputs.predictive_embeddings,
            latent_actions=outputs.latent_actions,
            slot_mask=slot_mask,
        )

    @torch.no_grad()
    def tokenize_motion(
        self, motion: Tensor | None, frame_lengths: Tensor | None, hands_present: Tensor, labelled: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Raw (B, 2, T, 162) motion -> (B, N, 2, K) ids and (B, N) chunk mask with the frozen tokenizer.

        Unlabelled clips have no motion; their chunk count comes from `frame_lengths`.
        """
        if motion is None or frame_lengths is None:
            raise ValueError("pass motion_token_ids, or motion (B, 2, T, 162) together with frame_lengths (B,).")
        chunk = self.config.motion_tokenizer_config.chunk_frames
        num_chunks = math.ceil(motion.shape[2] / chunk)
        ids = torch.full(
            (motion.shape[0], num_chunks, 2, self.config.motion_tokens_per_chunk),
            IGNORE_TOKEN_ID,
            device=motion.device,
        )
        lengths = frame_lengths.long()
        chunk_mask = torch.arange(num_chunks, device=motion.device)[None] * chunk < lengths[:, None]
        rows = labelled.nonzero().flatten()
        if len(rows):
            hand_mask = hands_present[rows]
            encoding = self.motion_tokenizer.encode(motion[rows], lengths=lengths[rows], hand_mask=hand_mask)
            ids[rows] = reorder_axes(encoding.ids, CLIP_TOKEN_AXES, SEQUENCE_TOKEN_AXES)
        return ids, chunk_mask

    # -- generation ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate_motion(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        pixel_values: Tensor | None = None,
        ssl_features: Tensor | None = None,
        ssl_pixel_values: Tensor | None = None,
        num_chunks: int = 4,
        hands: Sequence[str] | Tensor = HANDS,
        decoding_steps: int | None = None,
        ensemble: int | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        images: Any = None,
        instructions: str | Sequence[str] | None = None,
        processor: Any = None,
        strategy: str | None = None,
    ) -> JalaMotionGeneration:
        """Generate `num_chunks` motion chunks from the instruction and the first frame.

        Chunks are produced one after the other (block-causal). `strategy` (default `config.decoding_strategy`):
        `"sample"` — the paper's iterative masked decoding: starting from all placeholders, over `decoding_steps`
        passes, the most confident sampled predictions are committed (a cosine schedule: a few % of the slots per
        pass); `ensemble` independent decodings (sampling at `temperature`) are decoded to MANO-D162 and
        averaged. `"expected"` — one pass per chunk with every slot masked; each slot's distribution gives its
        expected code and the expected latent is decoded (the MMSE motion under the per-slot marginals), and that
        motion, tokenized again, becomes the next chunk's context. `"joint"` — one pass with every chunk hidden,
        each chunk's expected latent decoded (for models trained with `all_chunks_hidden_share`; earlier chunks are
        placeholders, never the model's own guesses). Either pass model inputs, or `images` +
        `instructions` + the `processor` (a JalaProcessor) to build them.
        """
        if images is not None:
            if processor is None:
                raise ValueError("pass processor= (a JalaProcessor) together with images and instructions.")
            inputs = processor(images=images, text=instructions, return_tensors="pt").to(self.device)
            input_ids, attention_mask = inputs["input_ids"], inputs["attention_mask"]
            pixel_values, ssl_pixel_values = inputs["pixel_values"], inputs["ssl_pixel_values"][:, None]
        if input_ids is None:
            raise ValueError("pass input_ids (+ pixel_values, ssl_features) or images + instructions + processor.")
        strategy = strategy or self.config.decoding_strategy
        if strategy not in DECODING_STRATEGIES:
            raise ValueError(f"strategy must be one of {DECODING_STRATEGIES}, got {strategy!r}.")
        expected = strategy == "expected"
        # The expected-latent decoding is deterministic: one pass per chunk, nothing to ensemble.
        steps = 1 if expected else decoding_steps or self.config.decoding_steps
        ensemble = 1 if expected else ensemble or self.config.decoding_ensemble
        batch = input_ids.shape[0]
        device = input_ids.device
        if isinstance(hands, Tensor):
            hands_present = hands.to(device=device, dtype=torch.bool)
        else:
            unknown = set(hands) - set(HANDS)
            if unknown or not hands:
                raise ValueError(f"hands must name 'left' and/or 'right', got {hands}.")
            flags = torch.tensor([name in hands for name in HANDS], device=device)
            hands_present = flags[None].expand(batch, 2)
        if ssl_features is None:
            if ssl_pixel_values is None:
                raise ValueError("pass ssl_features or ssl_pixel_values of the first frame.")
            ssl_features = self.model.ssl_features(ssl_pixel_values)
        first_frame = ssl_features[:, :1]
        if strategy == "joint":
            return self._generate_joint(
                input_ids, attention_mask, pixel_values, first_frame, hands_present, num_chunks
            )

        def repeat(tensor: Tensor | None) -> Tensor | None:
            return None if tensor is None else tensor.repeat_interleave(ensemble, dim=0)

        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        tokens = self.config.motion_tokens_per_chunk
        runs = batch * ensemble
        present = repeat(hands_present)
        ids = torch.full((runs, num_chunks, 2, tokens), IGNORE_TOKEN_ID, dtype=torch.long, device=device)
        # The context (instruction, v_1, LSP) and every committed chunk go into a KV cache once; each decoding
        # pass runs only the current chunk against it, then drops that chunk's keys again.
        context, _ = self.model.context_part(
            repeat(input_ids), repeat(attention_mask), repeat(pixel_values), repeat(first_frame)[:, 0]
        )
        cache = DynamicCache(config=self.config.vlm_config.get_text_config())
        self.model.run_language_model(
            context.embeddings,
            self.model.block_causal_attention_mask(context.block_ids, context.key_valid, context.embeddings.dtype),
            context.position_ids,
            cache=cache,
        )
        seen = context
        chunk_motions = []  # expected strategy: each chunk's decoded motion, (runs, 2, 15, 162)
        for k in range(num_chunks):
            undecided = present[:, :, None].expand(runs, 2, tokens).clone()  # True: still a placeholder
            total = undecided.flatten(1).sum(-1)
            slot_mask = present[:, None, :]
            for step in range(steps):
                chunk = self.model.motion_part(
                    ids[:, k : k + 1].clamp_min(0), undecided[:, None], slot_mask, context, k
                )
                states = self._cached_chunk_states(chunk, seen, cache, keep=False)
                logits = self.motion_logits(states).float()  # (runs, 2, K, V)
                probs = torch.softmax(logits / max(temperature, 1e-5), dim=-1)
                if expected:  # the single pass commits every slot: the tokens of the motion it decodes to
                    chunk_motions.append(
                        self.motion_tokenizer.decode_expected(probs[:, :, None], chunk_mask=present[:, :, None])
                    )
                    sampled = self._context_tokens_of(chunk_motions[-1], present)
                else:
                    sampled = torch.multinomial(probs.flatten(0, 2), 1, generator=generator).view(runs, 2, tokens)
                confidence = probs.gather(-1, sampled[..., None])[..., 0].masked_fill(~undecided, -1.0)
                # Cosine schedule: how many slots stay hidden after this pass.
                remaining = torch.floor(total * math.cos(math.pi / 2 * (step + 1) / steps)).long()
                commit = (undecided.flatten(1).sum(-1) - remaining).clamp_min(0)
                order = confidence.flatten(1).argsort(dim=-1, descending=True)
                rank = torch.empty_like(order)
                rank.scatter_(1, order, torch.arange(order.shape[1], device=device).expand_as(order))
                chosen = (rank < commit[:, None]).view(runs, 2, tokens) & undecided
                ids[:, k] = torch.where(chosen, sampled, ids[:, k])
                undecided &= ~chosen
            ids[:, k] = torch.where(present[:, :, None], ids[:, k], IGNORE_TOKEN_ID)
            if k + 1 < num_chunks:  # commit the decided chunk to the cache
                chunk = self.model.motion_part(
                    ids[:, k : k + 1].clamp_min(0), undecided[:, None], slot_mask, context, k
                )
                self._cached_chunk_states(chunk, seen, cache, keep=True)
                seen = SequencePart.cat([seen, chunk])

        # (runs, 2, N * 15, 162); the tokenizer decodes chunks independently, so the expected chunks concatenate.
        motion = torch.cat(chunk_motions, dim=2) if expected else self.decode_tokens(ids, present)
        motion = motion.view(batch, ensemble, *motion.shape[1:]).mean(1)
        joints = motion[..., JOINTS_XYZ].reshape(*motion.shape[:-1], NUM_JOINTS, 3)
        return JalaMotionGeneration(
            token_ids=ids.view(batch, ensemble, *ids.shape[1:])[:, 0], motion=motion, joints=joints
        )

    @torch.no_grad()
    def generate_description_ids(
        self,
        images: Any,
        motion: Any = None,
        processor: JalaProcessor | None = None,
        max_new_tokens: int = 48,
        hands_present: Tensor | None = None,
        frame_lengths: Tensor | None = None,
        motion_token_ids: Tensor | None = None,
        prompt: str = DESCRIPTION_PROMPT,
    ) -> Tensor:
        """Greedy description token ids (B, <= max_new_tokens), padded after each row's end token (which is kept).

        The sequence is the training one (docs/design.md §1.13): [prompt, v_1, LSP, every chunk visible, start,
        text ...]. The prompt, frame and motion go through the decoder once into a `DynamicCache`; each step then
        runs only the newest token against it, as transformers' `generate` does. `motion` is raw MANO-D162
        (B, 2, T, 162) (left, right), tokenized by the frozen tokenizer; or pass `motion_token_ids` (B, N, 2, K).
        `hands_present` (B, 2) defaults to the hands whose motion is not all zeros; `frame_lengths` (B,) to T.
        """
        if processor is None:
            raise ValueError("pass processor= (the model's JalaProcessor): it builds the prompt and decodes the text.")
        frames = list(images) if isinstance(images, list | tuple) else [images]
        batch = len(frames)
        device = self.device
        inputs = processor(images=frames, text=[prompt] * batch, return_tensors="pt").to(device)
        dtype = self.motion_heads.weight.dtype
        if motion_token_ids is None:
            if motion is None:
                raise ValueError("pass the motion: raw `motion` (B, 2, T, 162) or `motion_token_ids` (B, N, 2, K).")
            motion = torch.as_tensor(np.asarray(motion, dtype=np.float32)).to(device)
            if motion.dim() != 4 or motion.shape[0] != batch or motion.shape[1] != 2:
                raise ValueError(f"motion must be (batch={batch}, 2 hands, frames, 162), got {tuple(motion.shape)}.")
            if hands_present is None:
                hands_present = motion.flatten(2).abs().amax(-1) > 0
            if frame_lengths is None:
                frame_lengths = torch.full((batch,), motion.shape[2], device=device)
            labelled = torch.ones(batch, dtype=torch.bool, device=device)
            motion_token_ids, chunk_mask = self.tokenize_motion(motion, frame_lengths, hands_present.bool(), labelled)
        else:
            motion_token_ids = motion_token_ids.to(device)
            chunk_mask = (motion_token_ids != IGNORE_TOKEN_ID).any(-1).any(-1)
            if hands_present is None:
                hands_present = (motion_token_ids != IGNORE_TOKEN_ID).any(-1).any(1)
        slot_mask = chunk_mask[:, :, None] & hands_present.to(device).bool()[:, None, :]
        first_frame = self.model.ssl_features(inputs["ssl_pixel_values"].to(dtype))
        context, _ = self.model.context_part(
            inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"].to(dtype), first_frame
        )
        every_slot_visible = torch.zeros(motion_token_ids.shape, dtype=torch.bool, device=device)
        motion_part = self.model.motion_part(motion_token_ids.clamp_min(0), every_slot_visible, slot_mask, context, 0)
        before_text = SequencePart.cat([context, motion_part])
        start, end = processor.description_token_ids()
        pad = processor.tokenizer.pad_token_id if processor.tokenizer.pad_token_id is not None else end
        token = torch.full((batch, 1), start, dtype=torch.long, device=device)
        real_token = torch.ones(batch, 1, dtype=torch.bool, device=device)
        cache = DynamicCache(config=self.config.vlm_config.get_text_config())
        keys = before_text  # block ids / validity of everything in the cache (embeddings are not reused)
        query = SequencePart.cat([before_text, self.model.text_part(token, real_token, before_text)])
        finished = torch.zeros(batch, dtype=torch.bool, device=device)
        generated = []
        for step in range(max_new_tokens):
            keys = SequencePart.cat([keys, query]) if step else query
            mask = self.model.block_causal_attention_mask(
                keys.block_ids, keys.key_valid, query.embeddings.dtype, query.block_ids
            )
            final_states, _ = self.model.run_language_model(query.embeddings, mask, query.position_ids, cache=cache)
            token = self.text_logits(final_states[:, -1:]).argmax(-1)  # (B, 1)
            token = token.masked_fill(finished[:, None], pad)
            generated.append(token)
            finished |= token[:, 0] == end
            if bool(finished.all()):
                break
            query = self.model.text_part(token, ~finished[:, None], before_text, offset=step + 1)
        return torch.cat(generated, dim=1)

    @torch.no_grad()
    def generate_description(
        self,
        images: Any,
        motion: Any = None,
        processor: JalaProcessor | None = None,
        max_new_tokens: int = 48,
        **kwargs: Any,
    ) -> list[str]:
        """Describe a motion in words: greedy decoding with the KV cache (`generate_description_ids`), one string per
        batch row, special tokens (the end token, padding) removed."""
        ids = self.generate_description_ids(images, motion, processor, max_new_tokens=max_new_tokens, **kwargs)
        _, end = processor.description_token_ids()
        texts = []
        for row in ids.tolist():
            row = row[: row.index(end)] if end in row else row
            texts.append(processor.tokenizer.decode(row, skip_special_tokens=True).strip())
        return texts

    def _generate_joint(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        pixel_values: Tensor | None,
        first_frame: Tensor,
        hands_present: Tensor,
        num_chunks: int,
    ) -> JalaMotionGeneration:
        """The "joint" strategy: one pass with every chunk hidden; each chunk's expected latent is decoded.

        Chunk k still attends to chunks < k (block-causal), but they are placeholders, so its distribution is
        conditioned on the instruction and the frame only — what `all_chunks_hidden_share` trains.
        """
        if self.config.all_chunks_hidden_share == 0:
            logger.warning(
                "decoding_strategy='joint' on a model trained with all_chunks_hidden_share=0: it never saw hidden "
                "earlier chunks, so chunks after the first are far off (docs/design.md §1.8); use strategy='expected'."
            )
        batch, device = input_ids.shape[0], input_ids.device
        tokens = self.config.motion_tokens_per_chunk
        placeholders = torch.ones(batch, num_chunks, 2, tokens, dtype=torch.bool, device=device)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values,
            motion_token_ids=torch.zeros(batch, num_chunks, 2, tokens, dtype=torch.long, device=device),
            placeholder_slots=placeholders,
            chunk_mask=torch.ones(batch, num_chunks, dtype=torch.bool, device=device),
            hands_present=hands_present,
            ssl_features=first_frame,
            compute_latent_actions=False,
        )
        probs = torch.softmax(self.motion_logits(outputs.motion_hidden_states).float(), dim=-1)  # (B, N, 2, K, V)
        per_hand = probs.transpose(1, 2)  # (B, 2, N, K, V): the tokenizer's hand-major layout
        chunk_mask = hands_present[:, :, None].expand(batch, 2, num_chunks)
        motion = self.motion_tokenizer.decode_expected(per_hand, chunk_mask=chunk_mask)
        ids = probs.argmax(-1).masked_fill(~hands_present[:, None, :, None], IGNORE_TOKEN_ID)
        joints = motion[..., JOINTS_XYZ].reshape(*motion.shape[:-1], NUM_JOINTS, 3)
        return JalaMotionGeneration(token_ids=ids, motion=motion, joints=joints)

    def _context_tokens_of(self, chunk_motion: Tensor, hands_present: Tensor) -> Tensor:
        """(B, 2, 15, 162) output motion of one chunk -> (B, 2, K) tokens, the next chunk's context.

        The next chunk then continues the motion that is actually output. Committing each slot's most likely code
        instead gives a token combination whose motion can be far from the output one (every slot's mode taken
        independently) and the next chunk continues from there (docs/design.md §1.8)."""
        return self.motion_tokenizer.encode(chunk_motion, hand_mask=hands_present).ids[:, :, 0].clamp_min(0)

    def _cached_chunk_states(self, chunk: SequencePart, seen: SequencePart, cache: Any, keep: bool) -> Tensor:
        """Run one chunk ((B, 2 (K + 2), H)) against the cached sequence `seen`; its final states at the 2 x K
        motion slots, (B, 2, K, H). Unless `keep`, the chunk's keys are removed from the cache afterwards."""
        mask = self.model.block_causal_attention_mask(
            torch.cat([seen.block_ids, chunk.block_ids], dim=1),
            torch.cat([seen.key_valid, chunk.key_valid], dim=1),
            chunk.embeddings.dtype,
            query_block_ids=chunk.block_ids,
        )
        final_states, _ = self.model.run_language_model(chunk.embeddings, mask, chunk.position_ids, cache=cache)
        if not keep:
            cache.crop(-chunk.embeddings.shape[1])
        return final_states.view(final_states.shape[0], 2, -1, final_states.shape[-1])[:, :, 1:-1]

    def decode_tokens(self, ids: Tensor, hands_present: Tensor) -> Tensor:
        """(B, N, 2, K) ids -> (B, 2, N * 15, 162) motion through the frozen tokenizer (absent hands: zeros)."""
        chunk_mask = hands_present[:, :, None].expand(-1, -1, ids.shape[1])
        clip_ids = reorder_axes(ids, SEQUENCE_TOKEN_AXES, CLIP_TOKEN_AXES)
        return self.motion_tokenizer.decode(clip_ids.clamp_min(0), chunk_mask=chunk_mask)


__all__ = [
    "JalaForMotionPretraining",
    "JalaModel",
    "JalaModelOutput",
    "JalaMotionGeneration",
    "JalaPreTrainedModel",
    "JalaPretrainingOutput",
]
