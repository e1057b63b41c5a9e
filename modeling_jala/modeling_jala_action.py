"""JALA post-training: a flow-matching DiT turns the pretrained predictive embeddings h into robot action chunks.

The observation (current camera image) and the instruction form the prefix exactly as in pretraining, followed by
placeholder motion chunks; the `align_layer` states at those slots are the DiT's cross-attention context
(docs/design.md §1.11). Normalisation statistics travel with the weights, so `predict_action` takes and returns raw
robot units. Hub remote code: relative imports only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_jala import JalaActionHeadConfig, JalaConfig
from .flow_head_jala import (
    JalaFlowHead,
    flow_matching_sample,
    interpolate,
    make_scheduler,
    sample_training_sigmas,
    velocity_target,
)
from .layout_jala import LEROBOT_ACTION_KEY, LEROBOT_STATE_KEY
from .modeling_jala import (
    HubSource,
    JalaForMotionPretraining,
    JalaModel,
    JalaPreTrainedModel,
    SequencePart,
)
from .processing_jala import JalaProcessor

logger = logging.getLogger(__name__)


#: State/action std below this is treated as this (units of the data): a dimension that never moved in the robot
#: data (std 0) must not turn sensor noise at deployment into huge normalised inputs.
NORMALIZATION_STD_FLOOR = 1e-3


@dataclass
class JalaActionOutput(ModelOutput):
    """Output of [`JalaForActionPrediction`] in training.

    Args:
        loss: mean squared error between predicted and target velocity over valid (not padded) chunk steps.
        velocity: (B, T, action_dim) predicted v in normalised action units.
        target: (B, T, action_dim) ε - A.
        sigma: (B,) the noise levels used.
    """

    loss: Tensor | None = None
    velocity: Tensor | None = None
    target: Tensor | None = None
    sigma: Tensor | None = None


class JalaForActionPrediction(JalaPreTrainedModel):
    """JALA post-training: a flow-matching DiT that turns the pretrained predictive embeddings into action chunks.

    The observation (current camera image) and the instruction form the prefix exactly as in pretraining —
    [instruction, image, LSP tokens of the image] — followed by `readout_chunks` motion chunks whose every slot is a
    placeholder, i.e. the model is asked to *predict* hand motion. The `align_layer` hidden states at those slots
    (the predictive embeddings h, trained in pretraining to match latent actions) are the DiT's cross-attention
    context; the proprioceptive state enters as one token next to the noisy action tokens.

    What is trained: the language model (all weights, or LoRA adapters with `action_head_config.use_lora`), the
    VLM's projector, the LSP, the motion placeholders' embeddings, the proprio encoder and the DiT, and the VLM's
    vision tower when `action_head_config.vision_tower_trainable` resolves to True (`vision_tower_is_trainable`:
    by default only for backbones built from scratch; the paper keeps a pretrained InternViT frozen). Frozen: the
    SSL encoder, and what the readout never uses (code embeddings of real motion tokens, the language model's final
    norm: h is taken before it).

    Cameras: `action_head_config.image_keys` names the robot dataset's image features the policy sees; each camera
    gets its own image block in the prefix, the first also feeds the SSL encoder and the LSP.

    State and action normalisation statistics (per-dimension mean / std) are buffers: they are saved with the
    weights and set from the robot dataset with `set_normalization_stats` — `predict_action` takes and returns
    raw robot units.
    """

    _no_split_modules = ["PerceiverBlock", "MotionTokenEmbedding", "DiTBlock"]

    def __init__(self, config: JalaConfig) -> None:
        super().__init__(config)
        head = config.action_head_config
        # The LAP and LAPA† exist only to train h during pretraining; post-training reads h.
        self.model = JalaModel(config, with_pretraining_modules=False)
        width = head.hidden_size
        self.proprio_encoder = nn.Sequential(nn.Linear(head.state_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.action_head = JalaFlowHead(head, context_dim=config.hidden_size)
        self.register_buffer("state_mean", torch.zeros(head.state_dim))
        self.register_buffer("state_std", torch.ones(head.state_dim))
        self.register_buffer("action_mean", torch.zeros(head.action_dim))
        self.register_buffer("action_std", torch.ones(head.action_dim))
        self.register_buffer("normalization_fitted", torch.zeros((), dtype=torch.bool))
        self.post_init()
        if head.use_lora:
            # After post_init: peft initialises its adapters itself (B = 0, so training starts from the backbone).
            self._inject_lora()
        self.freeze_fixed_parts()
        self.processor: JalaProcessor | None = None
        self._scheduler = None
        self._warned_unfitted = False
        self._inference_action_head: Any = None  # set by compile_inference
        self._action_queue: list[Tensor] = []  # select_action's pending actions, each (B, action_dim)

    # -- structure ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """JALA's init, plus DiT's adaLN-Zero: modulation and output layers start at zero (blocks = identity)."""
        std = self.config.action_head_config.initializer_range
        if isinstance(module, nn.LayerNorm) and module.weight is None:
            return  # the DiT's norms carry no affine parameters (adaLN provides them)
        if isinstance(module, nn.Linear) and getattr(module, "zero_init", False):
            init.zeros_(module.weight)
            init.zeros_(module.bias)
            return
        super()._init_weights(module)
        if isinstance(module, JalaFlowHead):
            init.normal_(module.position_embedding, std=std)

    def _inject_lora(self) -> None:
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError as error:
            raise ImportError(
                f"action_head_config.use_lora=True needs a peft that works with this transformers (peft >= 0.18, the "
                f"floor in pyproject.toml): importing it failed with {error!r}. Run pip install -U peft, or set "
                "use_lora=False."
            ) from error
        head = self.config.action_head_config
        lora = LoraConfig(
            r=head.lora_rank,
            lora_alpha=head.lora_alpha,
            lora_dropout=head.lora_dropout,
            target_modules=list(head.lora_target_modules),
        )
        inject_adapter_in_model(lora, self.model.language_model)

    def freeze_fixed_parts(self) -> None:
        """What post-training trains: the DiT, the proprio encoder, the LSP, the language model (or its LoRA
        adapters) and, where `vision_tower_is_trainable`, the vision tower; never the SSL encoder, the motion-code
        embeddings or the final norm."""
        vlm = self.model.vlm
        vision_tower = getattr(vlm, "vision_tower", None)
        if vision_tower is None:
            raise ValueError(
                f"{type(vlm).__name__} has no `vision_tower`; JalaForActionPrediction freezes the VLM's vision "
                "encoder and expects an InternVL/LLaVA-style VLM (vision_tower, multi_modal_projector, "
                "language_model)."
            )
        self.model.lsp.requires_grad_(True)  # no EMA in post-training: the whole LSP learns
        vision_tower.requires_grad_(self.vision_tower_is_trainable)
        self.model.ssl_encoder.requires_grad_(False)
        self.model.motion_embedding.code_embeddings.requires_grad_(False)
        language_model = self.model.language_model
        if self.config.action_head_config.use_lora:
            for name, parameter in language_model.named_parameters():
                parameter.requires_grad_("lora_" in name)
        norm = getattr(language_model, "norm", None)
        if norm is not None:
            norm.requires_grad_(False)

    @property
    def vision_tower_is_trainable(self) -> bool:
        """`action_head_config.vision_tower_trainable`, or (None) whether the backbone was built from scratch."""
        trainable = self.config.action_head_config.vision_tower_trainable
        return self.config.backbone_name_or_path is None if trainable is None else bool(trainable)

    def train(self, mode: bool = True) -> JalaForActionPrediction:
        super().train(mode)
        if not self.vision_tower_is_trainable:
            self.model.vlm.vision_tower.eval()  # frozen: no dropout / drop-path
        return self

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.vlm.set_input_embeddings(value)

    def resize_text_embeddings(self, new_num_tokens: int) -> None:
        """Grow the text vocabulary (new instruction words of the robot data); new rows start at the mean row."""
        embeddings = self.get_input_embeddings()
        old_num_tokens, width = embeddings.weight.shape
        if new_num_tokens == old_num_tokens:
            return
        if new_num_tokens < old_num_tokens:
            raise ValueError(f"new_num_tokens={new_num_tokens} < current vocabulary {old_num_tokens}; only growing.")
        resized = nn.Embedding(new_num_tokens, width, padding_idx=embeddings.padding_idx)
        resized.to(device=embeddings.weight.device, dtype=embeddings.weight.dtype)
        with torch.no_grad():
            resized.weight[:old_num_tokens] = embeddings.weight
            resized.weight[old_num_tokens:] = embeddings.weight.mean(0, keepdim=True)
        resized.weight.requires_grad_(embeddings.weight.requires_grad)
        self.set_input_embeddings(resized)
        self.config.vlm_config.get_text_config().vocab_size = new_num_tokens

    @property
    def scheduler(self):
        """diffusers' `FlowMatchEulerDiscreteScheduler`, the sampler of `predict_action` (made on first use)."""
        if self._scheduler is None:
            self._scheduler = make_scheduler(self.config.action_head_config)
        return self._scheduler

    def set_processor(self, processor: JalaProcessor) -> None:
        """The processor `predict_action` uses when none is passed (default: loaded from the model's folder)."""
        self.processor = processor

    # -- starting points ----------------------------------------------------------------------------------------
    @staticmethod
    def config_for_actions(
        config: JalaConfig,
        action_head_config: dict | JalaActionHeadConfig | None = None,
        truncate_after_align_layer: bool = True,
    ) -> JalaConfig:
        """The action model's config from a (pretraining) JALA config.

        `truncate_after_align_layer` keeps only decoder layers 1..align_layer: h is read at `align_layer`, and
        attention is causal towards the placeholder slots, so later layers cannot change it — they would cost
        compute (9 of InternVL3-2B's 28 layers at the paper's layer 19) and hold unused weights.
        """
        data = config.to_dict()
        for key in ("architectures", "auto_map", "_name_or_path", "transformers_version"):
            data.pop(key, None)
        head = data.get("action_head_config") or {}
        if isinstance(action_head_config, JalaActionHeadConfig):
            action_head_config = action_head_config.to_dict()
        data["action_head_config"] = {**head, **(action_head_config or {})}
        if truncate_after_align_layer:
            text = data["vlm_config"]["text_config"]
            text["num_hidden_layers"] = config.align_layer
            if text.get("layer_types"):
                text["layer_types"] = text["layer_types"][: config.align_layer]
            if text.get("max_window_layers") is not None:
                text["max_window_layers"] = min(text["max_window_layers"], config.align_layer)
        return JalaConfig.from_dict(data)

    @classmethod
    def from_pretrained_jala(
        cls,
        pretrained_model_name_or_path: str | Path,
        action_head_config: dict | JalaActionHeadConfig | None = None,
        truncate_after_align_layer: bool = True,
        **kwargs: Any,
    ) -> JalaForActionPrediction:
        """Start post-training from a `JalaForMotionPretraining` folder: every backbone tensor the action model
        uses is copied (strictly); the proprio encoder and the DiT are new."""
        pretrained = JalaForMotionPretraining.from_pretrained(pretrained_model_name_or_path, **kwargs)
        config = cls.config_for_actions(pretrained.config, action_head_config, truncate_after_align_layer)
        model = cls(config)
        model.load_backbone(pretrained.model)
        # The default processor is the pretrained folder's, from the same revision, cache and subfolder.
        model.hub_source = pretrained.hub_source
        return model

    def load_backbone(self, backbone: JalaModel) -> None:
        """Copy a pretrained `JalaModel`'s tensors into this model's backbone.

        Dropped on purpose: the LAP / LAPA† (pretraining only) and decoder layers past this model's last one.
        With LoRA, pretrained `x.weight` lands in the adapter-wrapped `x.base_layer.weight`. Any other mismatch is
        an error naming the keys.
        """
        target = self.model.state_dict()
        num_layers = len(self.model.language_model.layers)
        layer_prefix = "vlm.language_model.layers."
        source: dict[str, Tensor] = {}
        for key, tensor in backbone.state_dict().items():
            if key.startswith(("lap.", "lapa.")):
                continue
            if key.startswith(layer_prefix) and int(key[len(layer_prefix) :].split(".")[0]) >= num_layers:
                continue
            if key not in target:
                stem, _, leaf = key.rpartition(".")
                wrapped = f"{stem}.base_layer.{leaf}"
                key = wrapped if wrapped in target else key
            source[key] = tensor
        missing = sorted(key for key in target if key not in source and ".lora_" not in key)
        unexpected = sorted(key for key in source if key not in target)
        mismatched = sorted(key for key in source if key in target and source[key].shape != target[key].shape)
        if missing or unexpected or mismatched:
            raise ValueError(
                "the pretrained JALA backbone does not match the action model: "
                f"missing {missing[:8]}, unexpected {unexpected[:8]}, shape mismatch {mismatched[:8]}. Build the "
                "action model with JalaForActionPrediction.config_for_actions(pretrained.config)."
            )
        self.model.load_state_dict(source, strict=False)

    # -- normalisation ------------------------------------------------------------------------------------------
    def set_normalization_stats(
        self,
        stats: dict[str, dict[str, Any]],
        state_key: str = LEROBOT_STATE_KEY,
        action_key: str = LEROBOT_ACTION_KEY,
    ) -> None:
        """Set the per-dimension mean / std from LeRobot-style statistics: {feature: {"mean": [...], "std": [...]}}."""
        head = self.config.action_head_config
        for key, mean_name, std_name, size, field_name in (
            (state_key, "state_mean", "state_std", head.state_dim, "state_dim"),
            (action_key, "action_mean", "action_std", head.action_dim, "action_dim"),
        ):
            if key not in stats:
                raise KeyError(f"normalization stats have no {key!r} entry (keys: {sorted(stats)}).")
            for stat, buffer_name in (("mean", mean_name), ("std", std_name)):
                value = torch.as_tensor(np.asarray(stats[key][stat], dtype=np.float32)).flatten()
                if value.numel() != size:
                    raise ValueError(
                        f"stats[{key!r}][{stat!r}] has {value.numel()} dimensions but "
                        f"action_head_config.{field_name}={size}; build the model with {field_name}={value.numel()}."
                    )
                getattr(self, buffer_name).copy_(value)
        self.normalization_fitted.fill_(True)

    def normalization_stats(self) -> dict[str, dict[str, list[float]]]:
        """The statistics in LeRobot's stats.json layout (what `set_normalization_stats` reads)."""
        return {
            LEROBOT_STATE_KEY: {"mean": self.state_mean.tolist(), "std": self.state_std.tolist()},
            LEROBOT_ACTION_KEY: {"mean": self.action_mean.tolist(), "std": self.action_std.tolist()},
        }

    def normalize_state(self, state: Tensor) -> Tensor:
        return (state - self.state_mean) / self.state_std.clamp_min(NORMALIZATION_STD_FLOOR)

    def normalize_actions(self, actions: Tensor) -> Tensor:
        return (actions - self.action_mean) / self.action_std.clamp_min(NORMALIZATION_STD_FLOOR)

    def unnormalize_actions(self, actions: Tensor) -> Tensor:
        return actions * self.action_std.clamp_min(NORMALIZATION_STD_FLOOR) + self.action_mean

    # -- readout ------------------------------------------------------------------------------------------------
    def predictive_embeddings(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        pixel_values: Tensor | None = None,
        ssl_features: Tensor | None = None,
        ssl_pixel_values: Tensor | None = None,
        image_features: Tensor | None = None,
    ) -> Tensor:
        """h at the placeholder motion slots after [instruction, image, LSP]: (B, readout_chunks * 2 * K, H).

        `image_features` (B * cameras, tokens, D) replace `pixel_values` with what a frozen vision tower gave the
        projector (cached once per frame: `trainers/feature_cache.py`); `ssl_features` replace `ssl_pixel_values`.
        """
        if ssl_features is None:
            if ssl_pixel_values is None:
                raise ValueError("pass ssl_pixel_values (the image for the SSL encoder) or precomputed ssl_features.")
            ssl_features = self.model.ssl_features(ssl_pixel_values)
        if ssl_features.dim() == 4:  # (B, 1, P, D): the first (and only) frame
            ssl_features = ssl_features[:, 0]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        batch = input_ids.shape[0]
        chunks = self.config.action_head_config.readout_chunks
        tokens = self.config.motion_tokens_per_chunk
        device = input_ids.device
        if image_features is not None and self.vision_tower_is_trainable:
            raise ValueError(
                "image_features skip the vision tower, but this policy fine-tunes it (vision_tower_trainable); pass "
                "pixel_values."
            )
        context, _ = self.model.context_part(input_ids, attention_mask, pixel_values, ssl_features, image_features)
        placeholders = self.model.motion_part(
            torch.zeros(batch, chunks, 2, tokens, dtype=torch.long, device=device),
            torch.ones(batch, chunks, 2, tokens, dtype=torch.bool, device=device),
            torch.ones(batch, chunks, 2, dtype=torch.bool, device=device),
            context,
            first_chunk=0,
        )
        sequence = SequencePart.cat([context, placeholders])
        mask = self.model.block_causal_attention_mask(
            sequence.block_ids, sequence.key_valid, sequence.embeddings.dtype
        )
        _, align_states = self.model.run_language_model(sequence.embeddings, mask, sequence.position_ids)
        blocks = align_states[:, context.embeddings.shape[1] :].view(batch, chunks, 2, tokens + 2, -1)
        return blocks[:, :, :, 1:-1].flatten(1, 3)

    def _conditioning(self, inputs: dict[str, Any], state: Tensor) -> tuple[Tensor, Tensor]:
        """(cross-attention context, proprio token) of a batch; computed once per observation."""
        head = self.config.action_head_config
        if state.shape[-1] != head.state_dim:
            raise ValueError(
                f"state has {state.shape[-1]} dimensions but action_head_config.state_dim={head.state_dim}."
            )
        h = self.predictive_embeddings(
            inputs["input_ids"],
            inputs.get("attention_mask"),
            inputs.get("pixel_values"),
            inputs.get("ssl_features"),
            inputs.get("ssl_pixel_values"),
            inputs.get("image_features"),
        )
        context = self.action_head.encode_context(h)
        proprio = self.proprio_encoder(self.normalize_state(state.to(context.dtype)))[:, None]
        return context, proprio

    # -- training -----------------------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        pixel_values: Tensor | None = None,
        ssl_pixel_values: Tensor | None = None,
        ssl_features: Tensor | None = None,
        image_features: Tensor | None = None,
        state: Tensor | None = None,
        actions: Tensor | None = None,
        action_is_pad: Tensor | None = None,
        noise: Tensor | None = None,
        sigma: Tensor | None = None,
    ) -> JalaActionOutput:
        """Flow-matching loss on raw-unit `state` (B, state_dim) and `actions` (B, T, action_dim).

        `action_is_pad` (B, T) marks chunk steps past the episode end (LeRobot's convention); they carry no loss.
        `ssl_features` / `image_features` replace `ssl_pixel_values` / `pixel_values` with cached frozen features
        (`predictive_embeddings`). `noise` and `sigma` override the sampled ε and σ (tests).
        """
        if state is None or actions is None:
            raise ValueError(
                "JalaForActionPrediction.forward needs state (B, state_dim) and actions (B, T, action_dim)."
            )
        head = self.config.action_head_config
        if actions.shape[-1] != head.action_dim or actions.shape[1] > head.chunk_size:
            raise ValueError(
                f"actions must be (batch, <= chunk_size={head.chunk_size}, action_dim={head.action_dim}), got "
                f"{tuple(actions.shape)}; set action_head_config.chunk_size / action_dim to the data."
            )
        inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "pixel_values": pixel_values,
            "ssl_pixel_values": ssl_pixel_values,
            "ssl_features": ssl_features,
            "image_features": image_features,
        }
        context, proprio = self._conditioning(inputs, state)
        target_actions = self.normalize_actions(actions.to(context.dtype))
        batch = actions.shape[0]
        if noise is None:
            noise = torch.randn_like(target_actions)
        if sigma is None:
            sigma = sample_training_sigmas(batch, head, device=actions.device)
        noisy = interpolate(target_actions, noise, sigma)
        velocity = self.action_head(noisy, sigma, context, proprio)
        target = velocity_target(target_actions, noise)
        error = (velocity.float() - target.float()).pow(2).mean(-1)  # (B, T)
        valid = torch.ones_like(error) if action_is_pad is None else (~action_is_pad.bool()).to(error.dtype)
        loss = (error * valid).sum() / valid.sum().clamp_min(1.0)
        return JalaActionOutput(loss=loss, velocity=velocity, target=target, sigma=sigma)

    # -- inference ----------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the queued actions; call at the start of every episode (LeRobot's policy convention)."""
        self._action_queue = []

    @property
    def queued_actions(self) -> int:
        """Actions `select_action` will return before it predicts the next chunk."""
        return len(self._action_queue)

    @torch.no_grad()
    def select_action(self, images: Any, instruction: str | Sequence[str], state: Any, **kwargs: Any) -> Tensor:
        """The next action (B, action_dim) in raw robot units, closed loop: when the queue is empty, predict a chunk
        from this observation and queue its first `action_head_config.n_action_steps` actions (None: the whole
        chunk); then pop one.

        The observation is read only when a chunk is predicted, as in LeRobot's action-chunking policies. `kwargs`
        go to `predict_action` (processor, generator, num_inference_steps, ...). Call `reset()` between episodes.
        """
        if not self._action_queue:
            chunk = self.predict_action(images, instruction, state, **kwargs)
            head = self.config.action_head_config
            steps = head.n_action_steps or head.chunk_size
            self._action_queue = list(chunk[:, :steps].unbind(1))
        return self._action_queue.pop(0)

    def compile_inference(self, mode: str | None = "reduce-overhead", backend: str = "inductor") -> None:
        """Compile the DiT velocity field that `predict_action` runs `num_inference_steps` times per chunk.

        Its inputs have fixed shapes for a given batch size (noisy chunk, σ, the readout context, the proprio
        token), so on CUDA `mode="reduce-overhead"` captures the steps as CUDA graphs: the per-kernel launch cost
        that dominates a small-batch DiT step goes away. The first call per batch size pays the compile / capture
        (timed by `benchmarks/action_latency.py --compile`). `backend="eager"` checks the wiring without a
        compiler. Training and `forward` never use the compiled module.
        """
        compiled = torch.compile(self.action_head, mode=mode, backend=backend, fullgraph=True)
        # Not a submodule: the state dict (and so save / strict loading) must not see the wrapper's copy of the keys.
        object.__setattr__(self, "_inference_action_head", compiled)

    @torch.no_grad()
    def predict_action(
        self,
        images: Any,
        instruction: str | Sequence[str],
        state: Any,
        processor: JalaProcessor | None = None,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
        num_inference_steps: int | None = None,
    ) -> Tensor:
        """Action chunks (B, chunk_size, action_dim) in raw robot units for camera images, instructions and states.

        `images`: one image (H, W, 3 uint8 array or PIL) or a list, or a uint8 tensor (H, W, 3) / (B, H, W, 3) —
        preprocessed as tensor ops on the model's device, no PIL round trip — or, for any number of cameras, a dict
        {image key: such images} holding every key of `action_head_config.image_keys` (`camera_frames`);
        `instruction`: a string or a list;
        `state`: (state_dim,) or (B, state_dim) in raw units. Sampling starts from `noise` (B, T, action_dim) or from
        `torch.randn` with `generator`, and runs `num_inference_steps` (default: the config's 4) Euler steps of
        diffusers' `FlowMatchEulerDiscreteScheduler`.
        """
        head = self.config.action_head_config
        frames = self.camera_frames(images)
        texts = [instruction] * len(frames) if isinstance(instruction, str) else list(instruction)
        state = torch.as_tensor(np.asarray(state, dtype=np.float32)).to(self.device)
        state = state[None] if state.dim() == 1 else state
        if not len(frames) == len(texts) == state.shape[0]:
            raise ValueError(
                f"got {len(frames)} images, {len(texts)} instructions and {state.shape[0]} states; pass one of each "
                "per batch row."
            )
        if not bool(self.normalization_fitted) and not self._warned_unfitted:
            logger.warning(
                "predict_action on a model whose normalisation statistics were never set: states and actions are "
                "treated as already normalised. Call set_normalization_stats(dataset stats) before training."
            )
            self._warned_unfitted = True
        processor = processor or self._default_processor()
        inputs = processor(images=frames, text=texts, return_tensors="pt").to(self.device)
        dtype = self.action_head.action_input.weight.dtype
        inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
        inputs["ssl_pixel_values"] = inputs["ssl_pixel_values"].to(dtype)
        context, proprio = self._conditioning(dict(inputs), state)
        shape = (len(frames), head.chunk_size, head.action_dim)
        if noise is None:
            noise_device = generator.device if generator is not None else self.device
            noise = torch.randn(shape, generator=generator, device=noise_device, dtype=torch.float32)
        elif tuple(noise.shape) != shape:
            raise ValueError(
                f"noise must have shape {shape} (batch, chunk_size, action_dim), got {tuple(noise.shape)}."
            )
        noise = noise.to(self.device, dtype)

        action_head = self.action_head if self._inference_action_head is None else self._inference_action_head
        context_cache = self.action_head.context_cache(context)  # once per chunk, shared by the sampler's steps

        def velocity(sample: Tensor, sigma: Tensor) -> Tensor:
            return action_head(sample, sigma, context, proprio, context_cache=context_cache)

        steps = num_inference_steps or head.num_inference_steps
        actions = flow_matching_sample(velocity, noise, self.scheduler, steps)
        return self.unnormalize_actions(actions.float())

    def camera_frames(self, images: Any) -> Tensor | list[list[Any]]:
        """The policy's cameras of a batch in `image_keys` order: a uint8 tensor (B, cameras, H, W, 3) on the model's
        device, or per-sample lists of images (what `JalaProcessor` takes).

        A dict {image key: image(s)} is matched to `action_head_config.image_keys` (extra keys are ignored, a missing
        one is an error naming the keys present); anything else is the images of a one-camera policy.
        """
        keys = self.config.action_head_config.image_keys
        if isinstance(images, dict):
            missing = [key for key in keys if key not in images]
            if missing:
                raise KeyError(
                    f"the policy sees cameras {keys} but the observation has no {missing}; it holds "
                    f"{sorted(images)}. Pass every camera the policy was trained on (action_head_config.image_keys)."
                )
            per_camera = [images[key] for key in keys]
        elif len(keys) == 1:
            per_camera = [images]
        else:
            raise TypeError(
                f"the policy sees {len(keys)} cameras {keys}; pass images as a dict {{image key: image(s)}}."
            )
        if all(isinstance(camera, Tensor) for camera in per_camera):
            batched = [camera[None] if camera.dim() == 3 else camera for camera in per_camera]
            return torch.stack(batched, dim=1).to(self.device)
        listed = [list(camera) if isinstance(camera, list | tuple) else [camera] for camera in per_camera]
        if len({len(camera) for camera in listed}) != 1:
            raise ValueError(
                f"cameras {keys} hold {[len(camera) for camera in listed]} images; pass one per batch row each."
            )
        return [list(sample) for sample in zip(*listed, strict=True)]

    def _default_processor(self) -> JalaProcessor:
        """The processor saved with the model, read from where the weights came from (revision, cache, subfolder
        included: docs/design.md §6)."""
        if self.processor is None:
            source = self.hub_source
            if source is None and self.config._name_or_path:
                source = HubSource(self.config._name_or_path)
            if source is None:
                raise ValueError(
                    "predict_action needs a processor: pass processor=..., call set_processor(), or load the model "
                    "from a folder that holds one (processor.save_pretrained(folder))."
                )
            self.processor = source.load(JalaProcessor.from_pretrained)
        return self.processor


__all__ = ["JalaActionOutput", "JalaForActionPrediction"]
