"""Configuration classes for JALA.

`JalaMotionTokenizerConfig` describes the part-level grouped residual VQ (GRVQ) that turns MANO-D162 hand
motion into discrete tokens. Its defaults are the paper's (arXiv 2602.21736, §3): a 1D-conv encoder with
temporal downsample 4, 2 groups x 8 residual layers, a 4096-entry codebook of 512-d codes per (group, layer),
one 15-frame chunk -> 64 wrist + 64 finger tokens.
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path, PureWindowsPath
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .attention_jala import BLOCK_CAUSAL_ATTENTION_FORMATS
from .layout_jala import CHUNK_FRAMES, LEROBOT_IMAGE_KEY

logger = logging.getLogger(__name__)


#: A Hub repository id: "name" or "namespace/name" (letters, digits, "-", "_", ".").
#: Which SSL-encoder output tokens the perceivers read (`JalaConfig.ssl_token_selection`), like InternVL's
#: `vision_feature_select_strategy`: the (pooled) patch grid, CLS + registers + patches, or CLS alone.
SSL_TOKEN_SELECTIONS: tuple[str, ...] = ("patches", "all", "cls")
HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def hub_repo_id(name_or_path: str | os.PathLike | None) -> str | None:
    """`name_or_path` when it names a Hub repository rather than a local folder, else None. transformers' own rule:
    an existing local path wins over a repository of the same name; paths with ".." are never repositories."""
    if not name_or_path:
        return None
    text = str(name_or_path).rstrip("/\\")
    if HUB_REPO_ID.match(text) and ".." not in text and not Path(text).expanduser().exists():
        return text
    return None


def shareable_name_or_path(name_or_path: str | os.PathLike | None) -> str | None:
    """A checkpoint reference fit for a file that will be published (config.json, a card, recorded arguments): a Hub
    id as it is; a local path (absolute or relative, existing or not) replaced by its last folder name, which says
    what it was without revealing the machine's directory layout (docs/design.md §6)."""
    if not name_or_path:
        return None if name_or_path is None else str(name_or_path)
    if repo_id := hub_repo_id(name_or_path):
        return repo_id
    text = str(name_or_path).rstrip("/\\")
    if "\\" in text:
        return PureWindowsPath(text).name
    return Path(os.path.abspath(os.path.expanduser(text))).name


#: `generate_motion` strategies: the paper's sampled iterative decoding, the expected-latent (MMSE) decoding chunk by
#: chunk, or the expected latents of every chunk from one pass with all chunks hidden (`"joint"`).
DECODING_STRATEGIES = ("expected", "sample", "joint")
#: How the LAP / LSP mark a feature token's place in the SSL patch grid (`perceiver_jala.grid_sincos_positions`).
PERCEIVER_PATCH_POSITIONS: tuple[str, ...] = ("sincos_2d", "none")


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
        dead_code_usage_fraction (`float`, defaults to 0.03):
            A code is dead when its EMA usage (assignments per step) falls below this fraction of the expected
            usage of a code, N / codebook_size for N vectors quantized per step (all ranks together; measured as
            the EMA of N, so it follows the batch size). Dead codes are restarted from random encoder outputs
            of the current batch. Stating the threshold relative to the expected usage makes one value serve
            every size: the small preset (512 codes, 256 vectors per step: 0.5 expected uses) and the paper size
            (4096 codes, e.g. 8192 vectors per step: 2 expected uses) alike, where an absolute count (the old
            `dead_code_threshold` = 1 use per step) is above the expected usage in the first and restarted most
            of the codebook every step. With `ema_decay` 0.99 a code falls from average usage to 3 % of it
            after ln(1 / 0.03) / (1 - 0.99) ~ 350 steps without a single assignment, so only codes the data
            has truly abandoned, or that never won any data, are restarted; rarely used but live codes (the
            tail of a skewed code distribution) keep their meaning. 0 disables restarts.
        dead_code_restart_every (`int`, defaults to 200):
            Dead codes are looked for and restarted only every this many codebook updates (training steps), not
            every step: token ids keep their meaning between restarts, and a restarted code gets time to attract
            data (it restarts at the expected usage, so it is judged after several checks, not the next one).
            200 steps is two EMA time constants at `ema_decay` 0.99.
        mirror_left_hand (`bool`, defaults to `True`):
            Left hands are mirrored into right-hand space before encoding (and back after decoding), so one
            set of codebooks serves both hands and sees twice the data.
        initializer_range (`float`, defaults to 0.02): Std of the normal init of linear layers.
    """

    model_type = "jala_motion_tokenizer"

    chunk_frames: int = CHUNK_FRAMES
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
    dead_code_usage_fraction: float = 0.03
    dead_code_restart_every: int = 200
    mirror_left_hand: bool = True
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs) -> None:
        # Configs saved before the relative threshold hold `dead_code_threshold`, an absolute EMA count of uses per
        # step that meant something else; it is dropped (loudly) rather than kept as a stray attribute.
        legacy = kwargs.pop("dead_code_threshold", None)
        if legacy is not None:
            logger.warning(
                "JalaMotionTokenizerConfig ignores dead_code_threshold=%r (an absolute usage count of older "
                "versions); dead codes are now set by dead_code_usage_fraction=%r of the expected usage.",
                legacy,
                self.dead_code_usage_fraction,
            )
        super().__post_init__(**kwargs)

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
        if not 0.0 <= self.dead_code_usage_fraction < 1.0:
            raise ValueError(
                "JalaMotionTokenizerConfig.dead_code_usage_fraction must be in [0, 1) (a fraction of the expected "
                f"usage of a code; 0 disables restarts), got {self.dead_code_usage_fraction}."
            )
        if self.dead_code_restart_every < 1:
            raise ValueError(
                "JalaMotionTokenizerConfig.dead_code_restart_every must be a positive int (training steps between "
                f"dead-code restarts), got {self.dead_code_restart_every!r}."
            )

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


@strict
class JalaActionHeadConfig(PreTrainedConfig):
    r"""Configuration of the post-training action model's new parts ([`JalaForActionPrediction`]): the DiT
    flow-matching head, the proprio encoder, the readout of predictive embeddings and the fine-tuning switches.

    Time convention (docs/design.md §1.11, diffusers' `FlowMatchEulerDiscreteScheduler`): σ = 1 is pure noise,
    σ = 0 the action chunk; x_σ = (1 - σ) A + σ ε, and the head predicts the velocity v = ε - A (the paper's Eq. 7),
    so that one Euler step x_{σ'} = x_σ + (σ' - σ) v moves towards the actions as σ decreases.

    Training noise levels (D): u ~ Beta(`noise_beta_alpha`, `noise_beta_beta`) = Beta(1.5, 1) and
    σ = `sigma_min` + (1 - `sigma_min`) u, i.e. the density of σ is ∝ (σ - σ_min)^0.5 on [σ_min, 1]. This is π0's
    schedule (p(τ) = Beta((s - τ) / s; 1.5, 1), s = 0.999, with τ = 1 - σ in their clean-at-1 convention) written in
    diffusers' convention: it puts more training mass on the noisy end, where the velocity is hardest to predict,
    and never trains at σ exactly 0, where the target is degenerate.

    Args:
        action_dim (`int`, defaults to 7): dimensions of one action (set from the robot dataset).
        state_dim (`int`, defaults to 8): dimensions of the proprioceptive state (set from the robot dataset).
        chunk_size (`int`, defaults to 16): actions predicted per call (one action chunk).
        n_action_steps (`int`, *optional*): actions of each predicted chunk that `select_action` executes before
            predicting the next one (LeRobot's `n_action_steps`; at most `chunk_size`). None: the whole chunk.
            `trainers/posttrain.py` stores half a chunk by default (8 of 16, the Meta-World runs' receding horizon).
        hidden_size / num_layers / num_heads (`int`, defaults to 2048 / 16 / 32): DiT width, blocks (alternating
            cross-attention to h and self-attention over proprio + action tokens, starting with cross-attention)
            and attention heads — the paper's sizes.
        mlp_ratio (`float`, defaults to 4.0): (D) DiT feed-forward width / hidden_size.
        timestep_embedding_dim (`int`, defaults to 256): (D) sinusoidal channels of diffusers' `Timesteps`.
        num_train_timesteps (`int`, defaults to 1000): the scheduler's time scale; the timestep fed to the
            embedding is t = σ * num_train_timesteps, exactly `scheduler.timesteps` at sampling.
        num_inference_steps (`int`, defaults to 4): Euler steps at sampling (paper: 4), uniform in σ.
        noise_beta_alpha / noise_beta_beta (`float`, defaults to 1.5 / 1.0): the Beta distribution of u (above).
        sigma_min (`float`, defaults to 0.001): smallest training σ (π0's 1 - s).
        readout_chunks (`int`, defaults to 1): placeholder motion chunks appended after the observation and
            instruction; h at their 2 hands x K slots (256 tokens per chunk) is the head's cross-attention context.
        image_keys (`list[str]`, defaults to `["observation.image"]`): the cameras the policy sees, as the robot
            dataset's image features (LeRobot names, e.g. `["observation.images.front", "observation.images.wrist"]`);
            each gets an image block in this order, and the first is the primary camera the SSL encoder reads.
        vision_tower_trainable (`bool`, *optional*): fine-tune the VLM's vision tower in post-training. None (the
            default) decides by where the backbone came from: frozen for a released VLM (`backbone_name_or_path`
            set — the paper keeps InternViT frozen), trained for a backbone built from scratch, whose random vision
            tower would otherwise show the policy fixed random projections of the pixels.
        use_lora (`bool`, defaults to `False`): fine-tune the language model through LoRA adapters (peft) instead
            of all its weights.
        lora_rank / lora_alpha / lora_dropout / lora_target_modules: the LoRA adapters (D: 16 / 32 / 0.0 / the
            attention projections).
        initializer_range (`float`, defaults to 0.02): std of the normal init of the new layers.
    """

    model_type = "jala_action_head"

    action_dim: int = 7
    state_dim: int = 8
    chunk_size: int = 16
    n_action_steps: int | None = None
    hidden_size: int = 2048
    num_layers: int = 16
    num_heads: int = 32
    mlp_ratio: float = 4.0
    timestep_embedding_dim: int = 256
    num_train_timesteps: int = 1000
    num_inference_steps: int = 4
    noise_beta_alpha: float = 1.5
    noise_beta_beta: float = 1.0
    sigma_min: float = 0.001
    readout_chunks: int = 1
    image_keys: list[str] | None = None
    vision_tower_trainable: bool | None = None
    use_lora: bool = False
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: list[str] | None = None
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs) -> None:
        if self.lora_target_modules is None:
            self.lora_target_modules = ["q_proj", "k_proj", "v_proj", "o_proj"]
        if self.image_keys is None:
            self.image_keys = [LEROBOT_IMAGE_KEY]
        super().__post_init__(**kwargs)

    def validate_action_head(self) -> None:
        """Part of `@strict` validation: a wrong size fails at construction, naming the field."""
        positive = {
            "action_dim": self.action_dim,
            "state_dim": self.state_dim,
            "chunk_size": self.chunk_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "timestep_embedding_dim": self.timestep_embedding_dim,
            "num_train_timesteps": self.num_train_timesteps,
            "num_inference_steps": self.num_inference_steps,
            "readout_chunks": self.readout_chunks,
            "lora_rank": self.lora_rank,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"JalaActionHeadConfig.{name} must be a positive int, got {value!r}.")
        if self.n_action_steps is not None and not 1 <= self.n_action_steps <= self.chunk_size:
            raise ValueError(
                f"JalaActionHeadConfig.n_action_steps={self.n_action_steps} must be in [1, chunk_size="
                f"{self.chunk_size}]: a policy executes at least one and at most all actions of a chunk (None: all)."
            )
        if not self.image_keys or len(set(self.image_keys)) != len(self.image_keys):
            raise ValueError(
                f"JalaActionHeadConfig.image_keys={self.image_keys!r} must name at least one camera, each once "
                "(the robot dataset's image features, e.g. ['observation.images.front', 'observation.images.wrist'])."
            )
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"JalaActionHeadConfig.hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}; "
                "pick num_heads dividing the width (paper: 2048 / 32)."
            )
        if self.timestep_embedding_dim % 2:
            raise ValueError(
                "JalaActionHeadConfig.timestep_embedding_dim must be even (sin + cos), got "
                f"{self.timestep_embedding_dim}."
            )
        if self.noise_beta_alpha <= 0 or self.noise_beta_beta <= 0:
            raise ValueError(
                "JalaActionHeadConfig.noise_beta_alpha and noise_beta_beta must be > 0 (Beta distribution), got "
                f"{self.noise_beta_alpha}, {self.noise_beta_beta}."
            )
        if not 0.0 <= self.sigma_min < 1.0:
            raise ValueError(f"JalaActionHeadConfig.sigma_min must be in [0, 1), got {self.sigma_min}.")
        if self.mlp_ratio <= 0:
            raise ValueError(f"JalaActionHeadConfig.mlp_ratio must be > 0, got {self.mlp_ratio}.")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"JalaActionHeadConfig.lora_dropout must be in [0, 1), got {self.lora_dropout}.")
        if self.use_lora and not self.lora_target_modules:
            raise ValueError("JalaActionHeadConfig.use_lora needs lora_target_modules (e.g. ['q_proj', 'v_proj']).")


#: InternVL3-2B's language model (Qwen2.5-1.5B structure); the vision tower is InternVLVisionConfig's default
#: (InternViT-300M at 448 px, patch 14). Values from the released InternVL3-2B-hf config.
INTERNVL3_2B_TEXT_CONFIG = {
    "model_type": "qwen2",
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "vocab_size": 151674,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"},
    "tie_word_embeddings": True,
}
#: DINOv3 ViT-L/16 (the frozen SSL encoder of the LAP), as released by Meta.
DINOV3_VITL16_CONFIG = {
    "model_type": "dinov3_vit",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "num_register_tokens": 4,
    "layerscale_value": 1e-5,
    "image_size": 224,
    "patch_size": 16,
}
#: The paper's ablations (Table 1 / §4.3), each one switch.
VARIANTS = ("jala", "wo_align", "wo_latent", "wo_dec", "jala_act", "lapa")
#: {0.05, 0.15, ..., 0.95, 1.0}: mask ratios of the target chunk in masked chunk prediction.
DEFAULT_TARGET_MASK_RATIOS = [round(0.05 + 0.1 * i, 2) for i in range(10)] + [1.0]


@strict
class JalaConfig(PreTrainedConfig):
    r"""Configuration of the JALA models ([`JalaModel`], [`JalaForMotionPretraining`], [`JalaForActionPrediction`]).

    The defaults reproduce the paper: an InternVL3-2B backbone, a frozen DINOv3 encoder for the latent action
    perceiver, the part-level GRVQ motion tokenizer, alignment at decoder layer 19 with λ = 0.5 and a decoupled EMA
    with α = 0.999. Values the paper does not give are marked (D) and documented in the README.

    Args:
        vlm_config (`dict` or `PreTrainedConfig`):
            Any Hugging Face image-text-to-text VLM whose base model exposes `get_image_features`, `language_model`
            and `get_input_embeddings` (InternVL, LLaVA-style models). Default: InternVL3-2B's structure. (The
            field is not called `backbone_config` because transformers reserves that name for vision backbones.)
        ssl_encoder_config (`dict` or `PreTrainedConfig`):
            The frozen self-supervised image encoder (`dinov3_vit` or `vjepa2`). Default: DINOv3 ViT-L/16.
        motion_tokenizer_config (`dict` or `JalaMotionTokenizerConfig`): the motion tokenizer's structure.
        action_head_config (`dict` or `JalaActionHeadConfig`): the post-training action model's flow head, proprio
            encoder and fine-tuning switches; used by [`JalaForActionPrediction`] only (the pretraining model ignores
            it, so every existing config stays valid with its defaults).
        backbone_name_or_path (`str`, *optional*): checkpoint the VLM was initialised from (provenance). A Hub id
            is saved as it is; a local folder is saved as its folder name only (e.g. `/home/me/ckpt/vlm` -> `vlm`),
            so that a published config.json holds no local path.
        ssl_encoder_name_or_path (`str`, *optional*): checkpoint the SSL encoder was initialised from; saved like
            `backbone_name_or_path`.
        variant (`str`, defaults to `"jala"`):
            One of `jala`, `wo_align` (λ = 0), `wo_latent` (no LAP: only labelled and pseudo-labelled clips),
            `wo_dec` (plain coupled EMA), `jala_act` (labelled subset only), `lapa` (LAPA†: latent codes from an
            inverse/forward model in SSL-feature space as pseudo-labels).
        align_layer (`int`, defaults to 19): decoder layer whose output at motion slots is the predictive embedding h.
        align_weight (`float`, defaults to 0.5): λ of L = 1[labelled] L_MCP + λ L_align.
        ema_decay (`float`, defaults to 0.999): α of the EMA linking LAP and LSP.
        perceiver_hidden_size / perceiver_num_layers / perceiver_num_heads / perceiver_mlp_ratio:
            LAP/LSP width (D: 1024), blocks (2, the paper's), heads (D: 16) and MLP ratio (D: 4).
        perceiver_patch_positions (`str`, defaults to `"sincos_2d"`): (D) how the LAP and LSP know where a feature
            token sits in the SSL patch grid: `sincos_2d` adds a fixed 2D sine-cosine code to each projected token;
            `none` reads the tokens as a set, which loses where the hand and the objects are (docs/design.md §1.5).
        ssl_pool_grid (`int`, *optional*): (D) average-pool the SSL patch grid to G x G tokens before the perceiver.
        ssl_token_selection (`str`, defaults to `"patches"`): (D) which encoder tokens the perceivers read:
            `patches` (the pooled patch grid, no CLS / register tokens), `all` (prefix tokens + pooled patches) or
            `cls`. Precomputed dataset features must be built with the same choice (`build --ssl-tokens`).
        target_mask_ratios (`list[float]`): mask ratios drawn for the target chunk.
        future_mask_ratio (`float`, defaults to 0.05): mask ratio of the chunks after the target.
        all_chunks_hidden_share (`float`, defaults to 0.0): (D) share of labelled clips whose every chunk is hidden
            and scored instead of the target-chunk masking, so each chunk learns to be predicted from the instruction
            and frame alone — what `decoding_strategy="joint"` asks of it. 0 is the paper's masking.
        block_causal_attention (`str`, defaults to `"dense"`): (D) how the language model receives the block-causal
            pattern: `dense`, an additive (B, 1, L, L) mask for sdpa / eager attention (the reference), or `flex`, a
            FlexAttention BlockMask read by `attention_jala.block_flex_attention` (skips fully masked tiles; compiled
            per shape on CUDA, eager on CPU). Same outputs either way (tests/test_attention.py).
        block_per_time_chunk (`bool`, defaults to `True`):
            (D) one bidirectional attention block holds chunk k of both hands (left then right), so the hands of
            one second see each other; `False` gives each hand-chunk its own block.
        lapa_codebook_size (`int`, defaults to 8): LAPA† latent-code vocabulary per query.
        decoding_steps (`int`, defaults to 16): passes of iterative masked decoding per chunk at generation.
        decoding_ensemble (`int`, defaults to 4): decodings averaged per generated chunk.
        decoding_strategy (`str`, defaults to `"expected"`): how `generate_motion` turns token predictions into
            motion. `"sample"` is the paper's: iterative masked decoding over `decoding_steps` passes, sampling
            and committing the most confident tokens, `decoding_ensemble` decodings averaged. `"expected"` (D):
            one pass per chunk with every slot masked, each slot's distribution turned into its expected code and
            the expected latent decoded — the minimum-mean-squared-error motion under the model's per-slot
            marginals, which is what MPJPE rewards; that motion, tokenized again, is then committed as context
            for the next chunk. It costs one pass per chunk and needs no ensemble (docs/design.md §1.8).
            `"joint"` (D): one pass with every chunk hidden, each chunk's expected latent decoded; no chunk is
            conditioned on the model's own guesses of earlier ones, so their errors do not compound. Meant for models
            trained with `all_chunks_hidden_share` > 0 (docs/design.md §1.8).
        description_weight (`float`, defaults to 1.0): (D) weight of L_desc, the language-model loss on the description
            text of motion-description samples (docs/design.md §1.13); it applies only to batches that carry such
            samples, so a run without them trains exactly L_MCP + λ L_align.
        initializer_range (`float`, defaults to 0.02): std of the normal init of new linear/embedding layers.
    """

    model_type = "jala"
    sub_configs_defaults = {
        "vlm_config": SubConfigSpec(
            config_class=AutoConfig, model_type="internvl", init_kwargs={"text_config": INTERNVL3_2B_TEXT_CONFIG}
        ),
        "ssl_encoder_config": SubConfigSpec(
            config_class=AutoConfig, model_type="dinov3_vit", init_kwargs=DINOV3_VITL16_CONFIG
        ),
        "motion_tokenizer_config": JalaMotionTokenizerConfig,
        "action_head_config": JalaActionHeadConfig,
    }

    vlm_config: dict | PreTrainedConfig | None = None
    ssl_encoder_config: dict | PreTrainedConfig | None = None
    motion_tokenizer_config: dict | PreTrainedConfig | None = None
    action_head_config: dict | PreTrainedConfig | None = None
    backbone_name_or_path: str | None = None
    ssl_encoder_name_or_path: str | None = None
    variant: str = "jala"
    align_layer: int = 19
    align_weight: float = 0.5
    ema_decay: float = 0.999
    perceiver_hidden_size: int = 1024
    perceiver_num_layers: int = 2
    perceiver_num_heads: int = 16
    perceiver_mlp_ratio: float = 4.0
    perceiver_patch_positions: str = "sincos_2d"
    ssl_pool_grid: int | None = None
    ssl_token_selection: str = "patches"
    target_mask_ratios: list[float] | None = None
    future_mask_ratio: float = 0.05
    all_chunks_hidden_share: float = 0.0
    block_per_time_chunk: bool = True
    block_causal_attention: str = "dense"
    lapa_codebook_size: int = 8
    decoding_steps: int = 16
    decoding_ensemble: int = 4
    decoding_strategy: str = "expected"
    description_weight: float = 1.0
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs) -> None:
        if self.target_mask_ratios is None:
            self.target_mask_ratios = list(DEFAULT_TARGET_MASK_RATIOS)
        super().__post_init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> JalaConfig:
        """`PreTrainedConfig.from_dict`, reading a config.json written before `perceiver_patch_positions` existed as
        what it was trained with: perceivers without patch positions (`"none"`), not the new default."""
        if "perceiver_patch_positions" not in config_dict:
            config_dict = {**config_dict, "perceiver_patch_positions": "none"}
        return super().from_dict(config_dict, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """`PreTrainedConfig.to_dict` (what config.json holds) without local paths.

        Sub-configs carry the `_name_or_path` of the folder they were read from (an absolute path when local) and
        the motion tokenizer's also the `auto_map` of its own subfolder; neither means anything inside this
        config, so both are dropped. Checkpoint references keep Hub ids and lose local folders
        (`shareable_name_or_path`). The config in memory is unchanged.
        """
        output = super().to_dict()
        for key in self.sub_configs_defaults:
            if isinstance(output.get(key), dict):
                output[key].pop("_name_or_path", None)
                output[key].pop("auto_map", None)
        for key in ("backbone_name_or_path", "ssl_encoder_name_or_path"):
            output[key] = shareable_name_or_path(output.get(key))
        return output

    # -- derived switches: the variant is the single source of truth ----------------------------------------------
    @property
    def uses_latent_actions(self) -> bool:
        """Whether the LAP and the alignment loss exist (every variant but w/o align, w/o latent and LAPA†)."""
        return self.variant in ("jala", "wo_dec", "jala_act")

    @property
    def ema_mode(self) -> str:
        return "coupled" if self.variant == "wo_dec" else "decoupled"

    @property
    def trains_on_unlabelled(self) -> bool:
        """Unlabelled wild clips enter training only through the latent-action alignment (or LAPA† codes)."""
        return self.variant in ("jala", "wo_dec", "lapa")

    @property
    def trains_on_labelled_only(self) -> bool:
        """Variants whose training stream is the labelled (and pseudo-labelled) clips alone: w/o latent and JALA-act.
        w/o align keeps JALA's stream, in which unlabelled clips then take batch slots without a loss."""
        return self.variant in ("wo_latent", "jala_act")

    @property
    def motion_tokens_per_chunk(self) -> int:
        return self.motion_tokenizer_config.tokens_per_chunk

    @property
    def hidden_size(self) -> int:
        return self.vlm_config.get_text_config().hidden_size

    def validate_jala(self) -> None:
        """Part of `@strict` validation: invalid combinations fail here, naming the fields."""
        if self.variant not in VARIANTS:
            raise ValueError(f"JalaConfig.variant must be one of {VARIANTS}, got {self.variant!r}.")
        num_layers = self.vlm_config.get_text_config().num_hidden_layers
        if not 1 <= self.align_layer <= num_layers:
            raise ValueError(
                f"JalaConfig.align_layer={self.align_layer} must lie in [1, {num_layers}] (the VLM's decoder layers)."
            )
        if self.uses_latent_actions and self.align_weight <= 0:
            raise ValueError(
                f"variant {self.variant!r} aligns h with z, so align_weight must be > 0 (got {self.align_weight}); "
                "use variant='wo_align' for the λ = 0 ablation."
            )
        if self.variant == "wo_align" and self.align_weight != 0:
            raise ValueError(f"variant 'wo_align' means λ = 0; set align_weight=0.0 (got {self.align_weight}).")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"JalaConfig.ema_decay must be in [0, 1), got {self.ema_decay}.")
        if self.perceiver_patch_positions not in PERCEIVER_PATCH_POSITIONS:
            raise ValueError(
                f"JalaConfig.perceiver_patch_positions must be one of {PERCEIVER_PATCH_POSITIONS}, got "
                f"{self.perceiver_patch_positions!r}."
            )
        if self.perceiver_patch_positions == "sincos_2d" and self.perceiver_hidden_size % 4:
            raise ValueError(
                f"perceiver_patch_positions='sincos_2d' needs perceiver_hidden_size divisible by 4, got "
                f"{self.perceiver_hidden_size}; use a multiple of 4 or perceiver_patch_positions='none'."
            )
        if self.perceiver_hidden_size % self.perceiver_num_heads:
            raise ValueError(
                f"perceiver_hidden_size={self.perceiver_hidden_size} is not divisible by "
                f"perceiver_num_heads={self.perceiver_num_heads}."
            )
        ratios = self.target_mask_ratios
        if not ratios or not all(0.0 < ratio <= 1.0 for ratio in ratios):
            raise ValueError(f"JalaConfig.target_mask_ratios must be non-empty values in (0, 1], got {ratios}.")
        if not 0.0 <= self.future_mask_ratio <= 1.0:
            raise ValueError(f"JalaConfig.future_mask_ratio must be in [0, 1], got {self.future_mask_ratio}.")
        if not 0.0 <= self.all_chunks_hidden_share <= 1.0:
            raise ValueError(
                f"JalaConfig.all_chunks_hidden_share must be in [0, 1], got {self.all_chunks_hidden_share}."
            )
        encoder_type = self.ssl_encoder_config.model_type
        if encoder_type not in ("dinov3_vit", "vjepa2"):
            raise ValueError(f"ssl_encoder_config.model_type must be 'dinov3_vit' or 'vjepa2', got {encoder_type!r}.")
        if self.ssl_pool_grid is not None and self.ssl_pool_grid < 1:
            raise ValueError(f"JalaConfig.ssl_pool_grid must be a positive int or None, got {self.ssl_pool_grid}.")
        if self.ssl_token_selection not in SSL_TOKEN_SELECTIONS:
            raise ValueError(
                f"JalaConfig.ssl_token_selection must be one of {SSL_TOKEN_SELECTIONS}, "
                f"got {self.ssl_token_selection!r}."
            )
        if self.block_causal_attention not in BLOCK_CAUSAL_ATTENTION_FORMATS:
            raise ValueError(
                f"JalaConfig.block_causal_attention must be one of {BLOCK_CAUSAL_ATTENTION_FORMATS}, "
                f"got {self.block_causal_attention!r}."
            )
        if self.decoding_steps < 1 or self.decoding_ensemble < 1:
            raise ValueError("JalaConfig.decoding_steps and decoding_ensemble must be >= 1.")
        if self.description_weight < 0:
            raise ValueError(f"JalaConfig.description_weight must be >= 0, got {self.description_weight}.")
        if self.decoding_strategy not in DECODING_STRATEGIES:
            raise ValueError(
                f"JalaConfig.decoding_strategy must be one of {DECODING_STRATEGIES}, got {self.decoding_strategy!r}."
            )
