"""`JalaPretrainTrainer`: the hybrid JALA loss in `transformers.Trainer`, with the decoupled EMA and latent health.

* `compute_loss` runs `JalaForMotionPretraining` and keeps the MCP, alignment and description terms (`mcp_loss`,
  `align_loss`, `description_loss` = L_desc) so they are logged separately (averaged over the steps since the
  last log; L_desc over the steps whose batch held a description sample).
* `DecoupledEmaCallback` calls `model.ema_step()` in `on_step_end`, i.e. once per optimizer step — not per
  micro-batch — so gradient accumulation does not speed up the EMA; the EMA tensors are parameters, so checkpoints
  and resume carry them.
* Latent health, from h (predictive embeddings) and z (latent actions) at the valid motion slots: mean
  per-dimension standard deviation, mean L2 norm, effective rank (Roy & Vetterli 2007) and mean cosine(h, z). The
  norms tell whether a falling L_align is alignment or only h shrinking towards a small z. Representation
  collapse — every slot mapped to nearly the same vector, which trivially minimises |h - z| — shows as a
  per-dimension std near 0 or an effective rank near 1, and is logged as a warning.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset
from transformers import Trainer, TrainerCallback

from trainers.training_common import LigerKernelMixin, StrictResumeMixin

logger = logging.getLogger(__name__)

#: Below these, the latent space is treated as collapsed.
COLLAPSE_STD = 1e-3
COLLAPSE_EFFECTIVE_RANK = 2.0


def effective_rank(vectors: Tensor) -> float:
    """exp(entropy of the normalised singular values) of centred (M, D) vectors: 1 = all on a line."""
    if vectors.shape[0] < 2:
        return float("nan")
    centred = vectors.float() - vectors.float().mean(0, keepdim=True)
    singular = torch.linalg.svdvals(centred)
    probabilities = singular / singular.sum().clamp_min(1e-12)
    entropy = -(probabilities * probabilities.clamp_min(1e-12).log()).sum()
    return float(entropy.exp())


def latent_health(predictive: Tensor, latent: Tensor | None, slot_mask: Tensor, max_vectors: int = 2048) -> dict:
    """Health statistics of h (and z) at valid slots: (B, N, 2, K, H) tensors, (B, N, 2) slot mask."""
    h = predictive.detach()[slot_mask].flatten(0, -2).float()
    if h.shape[0] == 0:
        return {}
    sample = torch.randperm(h.shape[0], device=h.device)[:max_vectors]
    report = {
        "h_std": float(h.std(0).mean()),
        "h_norm": float(h.norm(dim=-1).mean()),
        "h_effective_rank": effective_rank(h[sample]),
    }
    if latent is not None:
        z = latent.detach()[slot_mask].flatten(0, -2).float()
        report["z_std"] = float(z.std(0).mean())
        report["z_norm"] = float(z.norm(dim=-1).mean())
        report["z_effective_rank"] = effective_rank(z[sample])
        report["cosine_h_z"] = float(torch.nn.functional.cosine_similarity(h, z, dim=-1).mean())
    return report


def collapsed(report: dict) -> list[str]:
    """Names of the health statistics that indicate collapse."""
    problems = []
    for name in ("h", "z"):
        if report.get(f"{name}_std", 1.0) < COLLAPSE_STD:
            problems.append(f"{name}_std={report[f'{name}_std']:.2e}")
        rank = report.get(f"{name}_effective_rank", float("inf"))
        if rank == rank and rank < COLLAPSE_EFFECTIVE_RANK:  # NaN-safe
            problems.append(f"{name}_effective_rank={rank:.2f}")
    return problems


def codebook_terms(outputs: Any, tokenizer_config: Any) -> dict[str, float]:
    """Masked-token loss / accuracy per residual layer (`mcp_accuracy_layer0` = coarsest) and per part.

    Residual layer l of every (part, group) codebook is pooled; codebooks without masked tokens this step are
    skipped. With an RVQ, the coarse layers carry most of the motion and should be learned first.
    """
    if outputs.mcp_accuracy_per_codebook is None:
        return {}
    layers = tokenizer_config.num_residual_layers
    # (2 parts x G groups x L layers), the codebook order of `MotionSlotLayout`.
    shape = (2, tokenizer_config.num_groups, layers)
    terms: dict[str, float] = {}
    for name, values in (("loss", outputs.mcp_loss_per_codebook), ("accuracy", outputs.mcp_accuracy_per_codebook)):
        grid = values.detach().float().view(shape)
        for layer in range(layers):
            terms[f"mcp_{name}_layer{layer}"] = float(grid[:, :, layer].nanmean())
        for index, part in enumerate(("wrist", "finger")):
            terms[f"mcp_{name}_{part}"] = float(grid[index].nanmean())
    return {key: value for key, value in terms.items() if value == value}  # drop NaN (no masked tokens)


class DecoupledEmaCallback(TrainerCallback):
    """One EMA update of the LAP/LSP after every optimizer step."""

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is None:
            return
        unwrapped = model.module if hasattr(model, "module") else model
        unwrapped.ema_step()


class JalaPretrainTrainer(LigerKernelMixin, StrictResumeMixin, Trainer):
    """`Trainer` for `JalaForMotionPretraining`; pass the data collator that yields the model's batch dict."""

    def __init__(
        self, *args: Any, health_every: int | None = None, auxiliaries: list | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.add_callback(DecoupledEmaCallback())
        self._terms: dict[str, list[float]] = defaultdict(list)
        self.health_every = health_every
        # Extra training losses with scaffolding heads outside the model (`GroundingCoTraining`,
        # `WaypointAuxiliary`): `.losses(outputs, inputs)` -> {"loss": weighted, **logged terms}, `.parameters()`.
        self.auxiliaries = list(auxiliaries or [])
        if self.auxiliaries and self.args.world_size > 1:
            # Their heads live outside the DDP/FSDP wrapper (no gradient all-reduce: each rank's copy would drift)
            # and grounding co-training runs the VLM outside it too, so distributed runs would silently diverge.
            raise ValueError(
                f"auxiliary losses ({', '.join(type(a).__name__ for a in self.auxiliaries)}) run in a single process "
                f"only, but this run has {self.args.world_size} processes: drop --grounding_weight / "
                "--waypoint_weight or launch one process."
            )

    def create_optimizer(self, *args: Any, **kwargs: Any) -> Any:
        """The Trainer's optimizer, plus the auxiliary losses' heads (scaffolding outside the model)."""
        optimizer = super().create_optimizer(*args, **kwargs)
        if self.auxiliaries and not getattr(self, "_auxiliary_heads_added", False):
            for auxiliary in self.auxiliaries:
                optimizer.add_param_group({"params": auxiliary.parameters(), "weight_decay": self.args.weight_decay})
            self._auxiliary_heads_added = True
        return optimizer

    def _rank_aware_loader(self, dataset: Any, batch_size: int) -> DataLoader | None:
        """A plain DataLoader for streams that split themselves per rank (UniHandStream).

        `accelerator.prepare` would shard such a stream a second time (every rank keeping 1/world_size of its own
        already-split batches), so these loaders bypass it; the Trainer still moves batches to the device.
        """
        if not isinstance(dataset, IterableDataset) or getattr(dataset, "world_size", None) != self.args.world_size:
            return None
        return DataLoader(
            dataset,
            batch_size=batch_size,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
        )

    def get_train_dataloader(self) -> DataLoader:
        loader = self._rank_aware_loader(self.train_dataset, self._train_batch_size)
        return loader if loader is not None else super().get_train_dataloader()

    def get_eval_dataloader(self, eval_dataset: Any = None) -> DataLoader:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        loader = self._rank_aware_loader(dataset, self.args.eval_batch_size)
        return loader if loader is not None else super().get_eval_dataloader(eval_dataset)

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        outputs = model(**inputs)
        loss = outputs.loss
        for auxiliary in self.auxiliaries if model.training else ():
            terms = auxiliary.losses(outputs, inputs)
            loss = loss + terms.pop("loss")
            for key, value in terms.items():
                self._terms[key].append(value.item())
        if model.training:
            self._terms["mcp_loss"].append(float(outputs.mcp_loss))
            self._terms["mcp_accuracy"].append(float(outputs.mcp_accuracy))
            unwrapped = model.module if hasattr(model, "module") else model
            for key, value in codebook_terms(outputs, unwrapped.config.motion_tokenizer_config).items():
                self._terms[key].append(value)
            if outputs.align_loss is not None:
                self._terms["align_loss"].append(float(outputs.align_loss))
            if outputs.description_loss is not None:
                self._terms["description_loss"].append(float(outputs.description_loss))
            every = self.health_every or self.args.logging_steps
            if self.state.global_step % max(1, every) == 0:
                report = latent_health(outputs.predictive_embeddings, outputs.latent_actions, outputs.slot_mask)
                for key, value in report.items():
                    self._terms[key].append(value)
                problems = collapsed(report)
                if problems:
                    logger.warning(
                        "latent collapse at step %d: %s. Lower the learning rate or align_weight, or check that "
                        "the LAP sees different boundary frames.",
                        self.state.global_step,
                        ", ".join(problems),
                    )
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if self._terms and "loss" in logs:
            for key, values in self._terms.items():
                logs[key] = round(sum(values) / len(values), 6)
            self._terms.clear()
        super().log(logs, *args, **kwargs)

    def prediction_step(self, model: Any, inputs: dict[str, Any], prediction_loss_only: bool, ignore_keys=None):
        """Evaluation loss only: JALA's outputs are not logits a generic metric could use."""
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None
