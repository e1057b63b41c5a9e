"""What the pretraining and post-training Trainers share: the paper's optimiser defaults and strict resume."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import TrainingArguments


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
