"""Grounding co-training: referring localisation kept as a second loss while JALA pretrains on motion.

Why: on test_lab the motion a clip asks for depends on where the *named* object is, and the motion loss alone does
not teach a from-scratch VLM to find it (docs/design.md §2.1): like a position regression, it gives each clip a few
numbers to explain, not which image region the words refer to. VLA recipes co-train their VLM on vision-language
data for the same reason (to keep and use what the VLM knows); here that data is the grounding stand-in's
(`trainers/train_grounding_vlm.py`): "the pink cup" on freshly rendered procedural scenes, a per-image-token
cross-entropy plus a score-weighted position regression, read at `readout_layer` of the language model. Every
pretraining step adds `weight` x that loss on one batch of queries; the two heads are scaffolding and are not saved.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from modeling_jala.layout_jala import HANDS
from trainers.grounding_data import (
    GROUNDING_WORLD_SEED,
    HELD_OUT_SPLITS,
    baseline_errors,
    held_out_targets_and_objects,
    render_scenes,
    summary_mm,
)
from trainers.train_grounding_vlm import GroundingTrainer, QuerySampler, position_statistics

#: What the co-training asks: `instruction`, where each hand the clip's instruction moves goes first (the
#: instruction is the prompt, one answer slot per hand); `phrase`, where the object "the pink cup" names is.
GROUNDING_TASKS = ("instruction", "phrase")


class GroundingCoTraining:
    """One grounding loss per call, on the VLM that the JALA model trains."""

    def __init__(
        self,
        vlm: nn.Module,
        processor: Any,
        weight: float,
        scenes: int = 3000,
        batch_size: int = 32,
        readout_layer: int | None = None,
        task: str = "instruction",
        position_weight: float = 1.0,
        world_seed: int = GROUNDING_WORLD_SEED,
        seed: int = 0,
    ) -> None:
        if weight <= 0:
            raise ValueError(f"--grounding_weight must be > 0 to co-train grounding, got {weight}.")
        if task not in GROUNDING_TASKS:
            raise ValueError(f"--grounding_task must be one of {GROUNDING_TASKS}, got {task!r}.")
        self.weight = weight
        self.position_weight = position_weight
        self.instruction_targets = task == "instruction"
        rendered = render_scenes(scenes, world_seed, instruction_targets=self.instruction_targets)
        self.sample = QuerySampler(rendered, batch_size, seed)
        mean, std = position_statistics(rendered)
        slots = len(HANDS) if self.instruction_targets else 1
        self.trainer = GroundingTrainer(vlm, processor, mean, std, readout_layer, slots=slots)
        device = next(vlm.parameters()).device
        self.trainer.heads.to(device)

    def parameters(self) -> list[nn.Parameter]:
        """The scaffolding heads' parameters (the VLM's are the model's own)."""
        return list(self.trainer.heads.parameters())

    def losses(self, outputs: Any = None, inputs: Any = None) -> dict[str, Tensor]:
        """One fresh batch of grounding queries (the pretraining `outputs` / `inputs` are not read): `loss`
        (weighted) and its unweighted `grounding_cell_loss` / `grounding_position_loss`."""
        terms = self.trainer.loss(*self.sample(), self.position_weight)
        return {
            "loss": self.weight * terms["loss"],
            "grounding_cell_loss": terms["cell_loss"],
            "grounding_position_loss": terms["position_loss"],
        }

    def evaluate(self, dataset: str, clips: int = 40) -> dict[str, dict[str, Any]]:
        """Held-out first frames of `dataset`: the answer's 3D error (mm ± SE) and right-token share, beside the
        two baselines that read no words (the training answers' mean, the mean of the frame's objects)."""
        scores = {}
        for split in HELD_OUT_SPLITS:
            targets, objects = held_out_targets_and_objects(dataset, split, clips)
            queries = targets if self.instruction_targets else objects
            if not any(queries):
                continue
            baselines = baseline_errors(queries, self.trainer.mean, frame_objects=objects)
            scores[split] = {
                **self.trainer.evaluate(queries),
                **{f"{name} baseline": summary_mm(errors) for name, errors in baselines.items()},
            }
        return scores
