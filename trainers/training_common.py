"""What the pretraining and post-training Trainers share: the paper's optimiser defaults, strict resume and the
Hub folder they write at the end."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import ProcessorMixin, Trainer, TrainingArguments


@dataclass
class PaperTrainingArguments(TrainingArguments):
    """TrainingArguments with the paper's optimisation: AdamW (β2 0.95), weight decay 0.05, 5% linear warmup then
    cosine decay, gradient clipping 1.0. Each stage sets its own learning rate.

    Every default here must override a real `TrainingArguments` field (a test checks): transformers silently keeps
    unknown dataclass fields, so a renamed argument (5.x: `warmup_ratio` -> fractional `warmup_steps`) would
    otherwise stop applying without an error.
    """

    weight_decay: float = field(default=0.05)
    adam_beta2: float = field(default=0.95)
    warmup_steps: float = field(default=0.05, metadata={"help": "Warmup steps, or a fraction of all steps if < 1."})
    lr_scheduler_type: str = field(default="cosine")
    max_grad_norm: float = field(default=1.0)
    remove_unused_columns: bool = field(default=False)
    logging_steps: float = field(default=10)
    #: pinned host memory only helps copies to an accelerator; on CPU-only machines torch warns about it.
    dataloader_pin_memory: bool = field(default_factory=torch.cuda.is_available)


class StrictResumeMixin:
    """`Trainer` mixin: resume through the model's own strict `from_pretrained`.

    transformers saves sub-models (e.g. DINOv3) under their original checkpoint key names and renames them back in
    `from_pretrained`; the Trainer's generic resume loads the raw file with `strict=False`, which would silently
    skip those tensors. Loading the checkpoint as the model's class and copying its full state dict strictly makes
    resume exact or an error. FSDP / DeepSpeed checkpoints keep the Trainer's own loader.
    """

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            return
        target = model if model is not None else self.model
        target = target.module if hasattr(target, "module") else target
        loaded = type(target).from_pretrained(resume_from_checkpoint)
        target.load_state_dict(loaded.state_dict(), strict=True)


def save_hub_folder(trainer: Trainer, processor: ProcessorMixin, output_dir: Path) -> list[dict]:
    """Write the trained model as a Hub repo (rank 0 only): config with auto_map, safetensors, the modeling code,
    the processor, the training arguments as JSON and the logged history (training_log.json); returns the history.

    `trainer.save_model` (not `model.save_pretrained`) so FSDP / DeepSpeed gather the full state dict. The Hub
    folder holds no pickle: the Trainer's training_args.bin is replaced by training_args.json.
    """
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.config.register_for_auto_class()
    model.register_for_auto_class("AutoModel")
    processor.register_for_auto_class()
    trainer.save_model(str(output_dir))
    (output_dir / "training_args.bin").unlink(missing_ok=True)
    (output_dir / "training_args.json").write_text(trainer.args.to_json_string())
    processor.save_pretrained(output_dir)
    history = [entry for entry in trainer.state.log_history if "loss" in entry]
    (output_dir / "training_log.json").write_text(json.dumps(history, indent=1))
    return history
