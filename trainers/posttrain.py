"""JALA post-training: a flow-matching DiT action head on the pretrained predictive embeddings, on LeRobot v3 data.

    python trainers/posttrain.py --model_name_or_path outputs/quickstart/jala --dataset outputs/metaworld_mt10 \
        --output_dir outputs/jala_mt10 --max_steps 2000 --per_device_train_batch_size 32 \
        --head_hidden_size 256 --head_num_layers 4 --head_num_heads 4
    accelerate launch --multi_gpu --num_processes 2 trainers/posttrain.py ...   # DDP (CPU: gloo)

`--model_name_or_path` is a JALA pretraining folder (`JalaForMotionPretraining`, the paper's starting point) or an
action-model folder to continue from; `--from_scratch` builds the same action model with random weights (the
baseline "without JALA pretraining"). The language model is fine-tuned (or LoRA adapters with `--use_lora`); the
VLM's vision tower is fine-tuned when the backbone was built from scratch and stays frozen for a released VLM (the
paper's choice), unless `--vision_tower_trainable true|false` says otherwise. `--image_keys` names the cameras (one
or several, e.g. `observation.images.corner2 observation.images.gripperPOV`); they are stored with the policy.
Defaults follow the paper's post-training: AdamW lr 1e-4, weight decay 0.05, betas (0.9, 0.95), 5% warmup + cosine,
gradient clipping 1.0. State/action normalisation statistics come from the
dataset's meta/stats.json and are saved in the model. A word-level text tokenizer (the from-scratch tiny models')
learns the robot data's new instruction words; real VLM tokenizers need nothing.

The output folder is a Hub repo that `huggingface_hub.upload_folder` can publish as it is: config with auto_map,
safetensors (normalisation buffers included), the modeling code, the processor, a card with Hub metadata,
training_log.json and run_summary.json (demos, steps, wall time); no pickle and no local path. Checkpoints, when
`--save_strategy` asks for them, go beside it to `--checkpoint_dir` (default `<output_dir>-checkpoints`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import HfArgumentParser, Trainer, set_seed

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modeling_jala.configuration_jala import JalaConfig, hub_repo_id, shareable_name_or_path
from modeling_jala.layout_jala import LEROBOT_ACTION_KEY, LEROBOT_IMAGE_KEY, LEROBOT_STATE_KEY
from modeling_jala.modeling_jala_action import JalaForActionPrediction
from modeling_jala.processing_jala import JalaProcessor
from robot_data.lerobot_v3 import ActionChunkDataset, LeRobotV3Dataset
from trainers.feature_cache import FrozenFeatureCache
from trainers.model_card import write_policy_card
from trainers.plotting import plot_training_curves
from trainers.presets import words
from trainers.training_common import (
    HubFolderArguments,
    LigerKernelMixin,
    PaperTrainingArguments,
    StrictResumeMixin,
    finish_hub_folder,
    recorded_arguments,
    route_checkpoints,
    save_hub_folder,
)

logger = logging.getLogger("jala.posttrain")


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        metadata={"help": "JALA pretraining folder (JalaForMotionPretraining) or an action-model folder to continue."}
    )
    from_scratch: bool = field(
        default=False, metadata={"help": "Same action model, random weights (the no-pretraining baseline)."}
    )
    chunk_size: int = field(default=16, metadata={"help": "Actions per predicted chunk."})
    n_action_steps: int | None = field(
        default=None,
        metadata={"help": "Actions of each chunk executed before predicting again (default: half a chunk)."},
    )
    head_hidden_size: int = field(default=2048, metadata={"help": "DiT width (paper: 2048)."})
    head_num_layers: int = field(default=16, metadata={"help": "DiT blocks, alternating cross/self (paper: 16)."})
    head_num_heads: int = field(default=32, metadata={"help": "DiT attention heads (paper: 32)."})
    num_inference_steps: int = field(default=4, metadata={"help": "Euler steps of the sampler (paper: 4)."})
    vision_tower_trainable: bool | None = field(
        default=None,
        metadata={"help": "Fine-tune the VLM's vision tower (default: only for a backbone built from scratch)."},
    )
    use_lora: bool = field(default=False, metadata={"help": "Fine-tune the language model through LoRA (peft)."})
    lora_rank: int = field(default=16)
    truncate_after_align_layer: bool = field(
        default=True, metadata={"help": "Drop decoder layers after align_layer (they cannot change h)."}
    )


@dataclass
class DataArguments:
    dataset: str = field(metadata={"help": "LeRobot v3.0 dataset folder (e.g. from robot_data.metaworld_demos)."})
    image_keys: list[str] = field(
        default_factory=lambda: [LEROBOT_IMAGE_KEY],
        metadata={"help": "Camera features the policy sees, in order (the first also feeds the SSL encoder)."},
    )
    state_key: str = field(default=LEROBOT_STATE_KEY)
    action_key: str = field(default=LEROBOT_ACTION_KEY)
    feature_cache: bool = field(
        default=True,
        metadata={
            "help": "Compute frozen per-frame features (SSL encoder; a frozen vision tower's) once and reuse them."
        },
    )
    feature_cache_dir: str | None = field(
        default=None, metadata={"help": "Where cached features live (default: $HF_HOME/jala/feature_cache)."}
    )


@dataclass
class PosttrainTrainingArguments(PaperTrainingArguments):
    """The paper's post-training optimisation (AdamW lr 1e-4, see `PaperTrainingArguments`); the policy is saved once
    at the end (as a Hub folder) unless `--save_strategy` asks for checkpoints."""

    learning_rate: float = field(default=1e-4)
    save_strategy: str = field(default="no")


@dataclass
class ActionChunkCollator:
    """Samples of `ActionChunkDataset` -> the action model's batch: processor inputs + raw state / actions.

    Camera frames of one size are stacked into a uint8 tensor (B, cameras, H, W, 3) and preprocessed as batched
    tensor ops (`preprocess_frame_tensors`: within one 8-bit step of the PIL path, several times faster on CPU);
    frames of mixed sizes take the PIL path. With a `FrozenFeatureCache`, the SSL features (and, for a frozen vision
    tower, the image features) of the batch's frames are read from it instead of being computed.
    """

    processor: JalaProcessor
    feature_cache: FrozenFeatureCache | None = None

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        texts = [sample["instruction"] for sample in samples]
        images = [sample["images"] for sample in samples]
        cached = self.feature_cache.batch_features([s["index"] for s in samples]) if self.feature_cache else {}
        if "image_features" in cached:
            inputs = dict(self.processor.encode_prompts(texts, len(images[0])))
        else:
            inputs = dict(self.processor_inputs(images, texts))
        if cached:
            inputs.pop("ssl_pixel_values", None)
        return {
            **inputs,
            **cached,
            "state": torch.from_numpy(np.stack([sample["state"] for sample in samples])),
            "actions": torch.from_numpy(np.stack([sample["actions"] for sample in samples])),
            "action_is_pad": torch.from_numpy(np.stack([sample["action_is_pad"] for sample in samples])),
        }

    def processor_inputs(self, images: list[list[np.ndarray]], texts: list[str]) -> Any:
        """The processor's outputs for per-sample camera frames: one uint8 tensor when every frame has one size."""
        if len({image.shape for sample in images for image in sample}) == 1:
            return self.processor(images=torch.from_numpy(np.stack([np.stack(s) for s in images])), text=texts)
        return self.processor(images=images, text=texts, return_tensors="pt")


class JalaPosttrainTrainer(LigerKernelMixin, StrictResumeMixin, Trainer):
    """`Trainer` for `JalaForActionPrediction`: flow-matching loss, strict resume, loss-only evaluation."""

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        outputs = model(**inputs)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def prediction_step(self, model: Any, inputs: dict[str, Any], prediction_loss_only: bool, ignore_keys=None):
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None


def extend_word_vocabulary(processor: JalaProcessor, texts: list[str]) -> int:
    """Add the words of `texts` a word-level tokenizer maps to <unk>; returns how many were added.

    Tiny JALA models trained from scratch use a word-level vocabulary of their pretraining instructions, so robot
    instructions ("open the drawer") would mostly become <unk> and the policy could not tell tasks apart. The
    words join the vocabulary with new ids (the embedding rows are added by `resize_text_embeddings`). Subword
    tokenizers of released VLMs cover every word already and are left alone.
    """
    from tokenizers import models

    backend = processor.tokenizer.backend_tokenizer
    if not isinstance(backend.model, models.WordLevel):
        return 0
    vocabulary = backend.get_vocab(with_added_tokens=False)
    everything = backend.get_vocab(with_added_tokens=True)
    new_words = sorted({word for text in texts for word in words(text)} - set(everything))
    if not new_words:
        return 0
    next_id = max(everything.values()) + 1
    vocabulary.update({word: next_id + offset for offset, word in enumerate(new_words)})
    backend.model = models.WordLevel(vocab=vocabulary, unk_token=processor.tokenizer.unk_token)
    logger.info("added %d instruction words to the word-level vocabulary: %s", len(new_words), new_words)
    return len(new_words)


def build_model(
    model_args: ModelArguments, action_dim: int, state_dim: int, image_keys: list[str]
) -> tuple[JalaForActionPrediction, JalaProcessor]:
    """The action model and its processor from `--model_name_or_path` (pretrained, continued or from scratch)."""
    processor = JalaProcessor.from_pretrained(model_args.model_name_or_path)
    config = JalaConfig.from_pretrained(model_args.model_name_or_path)
    head = {
        "action_dim": action_dim,
        "state_dim": state_dim,
        "chunk_size": model_args.chunk_size,
        "n_action_steps": model_args.n_action_steps or max(1, model_args.chunk_size // 2),
        "hidden_size": model_args.head_hidden_size,
        "num_layers": model_args.head_num_layers,
        "num_heads": model_args.head_num_heads,
        "num_inference_steps": model_args.num_inference_steps,
        "image_keys": list(image_keys),
        "vision_tower_trainable": model_args.vision_tower_trainable,
        "use_lora": model_args.use_lora,
        "lora_rank": model_args.lora_rank,
    }
    if "JalaForActionPrediction" in (config.architectures or []):
        if model_args.from_scratch:
            raise ValueError("--from_scratch needs a pretraining folder (its structure), not an action model.")
        model = JalaForActionPrediction.from_pretrained(model_args.model_name_or_path)
        existing = model.config.action_head_config
        if (existing.action_dim, existing.state_dim) != (action_dim, state_dim):
            raise ValueError(
                f"{model_args.model_name_or_path} predicts action_dim={existing.action_dim} from "
                f"state_dim={existing.state_dim}, the dataset has {action_dim} / {state_dim}; start from a "
                "pretraining folder instead."
            )
        if list(existing.image_keys) != list(image_keys):
            raise ValueError(
                f"{model_args.model_name_or_path} sees cameras {existing.image_keys}, --image_keys asks for "
                f"{list(image_keys)}; pass the policy's cameras or start from a pretraining folder."
            )
        return model, processor
    if model_args.from_scratch:
        action_config = JalaForActionPrediction.config_for_actions(
            config, head, truncate_after_align_layer=model_args.truncate_after_align_layer
        )
        return JalaForActionPrediction(action_config), processor
    model = JalaForActionPrediction.from_pretrained_jala(
        model_args.model_name_or_path, head, truncate_after_align_layer=model_args.truncate_after_align_layer
    )
    return model, processor


def main(argv: list[str] | None = None) -> Path:
    parser = HfArgumentParser((ModelArguments, DataArguments, PosttrainTrainingArguments, HubFolderArguments))
    model_args, data_args, training_args, hub_args = parser.parse_args_into_dataclasses(args=argv)
    folders = route_checkpoints(training_args, hub_args)
    logging.basicConfig(level=logging.INFO if training_args.process_index == 0 else logging.WARNING)
    set_seed(training_args.seed)
    dataset = LeRobotV3Dataset(data_args.dataset)
    for key in (data_args.state_key, data_args.action_key, *data_args.image_keys):
        if key not in dataset.features:
            raise KeyError(f"{data_args.dataset} has no feature {key!r}; its features: {sorted(dataset.features)}.")
    state_dim = int(np.prod(dataset.features[data_args.state_key]["shape"]))
    action_dim = int(np.prod(dataset.features[data_args.action_key]["shape"]))
    model, processor = build_model(model_args, action_dim, state_dim, data_args.image_keys)
    if extend_word_vocabulary(processor, list(dataset.tasks.values())):
        model.resize_text_embeddings(len(processor.tokenizer))
    chunks = ActionChunkDataset(
        dataset,
        chunk_size=model.config.action_head_config.chunk_size,
        image_keys=data_args.image_keys,
        state_key=data_args.state_key,
        action_key=data_args.action_key,
    )
    model.set_normalization_stats(chunks.normalization_stats())
    feature_cache = None
    if data_args.feature_cache:
        with training_args.main_process_first(desc="frozen feature cache"):
            model.to(training_args.device)  # the frozen encoders run where training will
            feature_cache = FrozenFeatureCache(model, processor, chunks, data_args.feature_cache_dir)
    logger.info(
        "post-training on %d frames of %d episodes (%d tasks); %.2fM trainable of %.2fM parameters",
        len(chunks),
        dataset.num_episodes,
        len(dataset.tasks),
        sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
        sum(p.numel() for p in model.parameters()) / 1e6,
    )
    trainer = JalaPosttrainTrainer(
        model=model,
        args=training_args,
        train_dataset=chunks,
        data_collator=ActionChunkCollator(processor, feature_cache),
    )
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    wall_time = time.perf_counter() - start
    output_dir = folders.hub_folder
    history = save_hub_folder(trainer, processor, folders, recorded_arguments(training_args, folders))
    if trainer.is_world_process_zero():
        plot_training_curves(history, ["loss", "grad_norm", "learning_rate"], output_dir / "training_curve.png")
        summary = {
            "start": (
                "from_scratch" if model_args.from_scratch else shareable_name_or_path(model_args.model_name_or_path)
            ),
            "dataset": shareable_name_or_path(data_args.dataset),
            "episodes": dataset.num_episodes,
            "frames": len(chunks),
            "tasks": len(dataset.tasks),
            "steps": trainer.state.global_step,
            "global_batch_size": training_args.per_device_train_batch_size
            * training_args.gradient_accumulation_steps
            * training_args.world_size,
            "wall_time_s": round(wall_time, 1),
            "final_loss": history[-1]["loss"] if history else None,
        }
        (output_dir / "run_summary.json").write_text(json.dumps(summary, indent=1))
        base_model = hub_args.card_base_model or (
            None if model_args.from_scratch else hub_repo_id(model_args.model_name_or_path)
        )
        datasets = hub_args.card_datasets or ([summary["dataset"]] if hub_repo_id(data_args.dataset) else [])
        write_policy_card(output_dir, model, summary, list(dataset.tasks.values()), base_model, datasets)
        finish_hub_folder(folders, training_args)
        logger.info("saved %s (%s)", output_dir, summary)
    trainer.accelerator.wait_for_everyone()
    return output_dir


if __name__ == "__main__":
    main()
