"""What the pretraining and post-training Trainers share: the paper's optimiser defaults, strict resume, and the
split between the Hub folder they write at the end (`--output_dir`) and their resumable checkpoints
(`--checkpoint_dir`)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import ProcessorMixin, Trainer, TrainingArguments
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_utils import get_last_checkpoint

from trainers.hub_folder import portable_values, warn_if_not_publishable

logger = logging.getLogger(__name__)


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


class LigerKernelMixin:
    """`Trainer` mixin: make `--use_liger_kernel` (and `--liger_kernel_config`) reach JALA's language model.

    transformers applies liger-kernel by model type and knows no `jala`, so without this the flag would only log
    that nothing was patched. The Qwen2 backbone inside is patched through `apply_liger_kernels` before training
    starts; config keys other than rope / rms_norm / swiglu are dropped with a warning (the LM-head
    cross-entropy kernels would patch `torch.nn.functional.cross_entropy` process-wide and JALA never calls the
    LM head's loss).
    """

    def train(self, *args: Any, **kwargs: Any) -> Any:
        if self.args.use_liger_kernel:
            apply_liger_kernels_from_config(self.model, self.args.liger_kernel_config)
        return super().train(*args, **kwargs)


def apply_liger_kernels_from_config(model: Any, kernel_config: dict[str, Any] | None) -> int:
    """`model.apply_liger_kernels` with the `--liger_kernel_config` keys it understands; returns layers patched."""
    understood = {"rope", "rms_norm", "swiglu"}
    kernel_config = dict(kernel_config or {})
    ignored = sorted(set(kernel_config) - understood)
    if ignored:
        logger.warning("--liger_kernel_config keys %s do not apply to JALA and are ignored", ignored)
    target = model.module if hasattr(model, "module") else model
    patched = target.apply_liger_kernels(**{key: bool(kernel_config[key]) for key in understood & set(kernel_config)})
    logger.info("liger-kernel: patched %d decoder layers of the language model", patched)
    return patched


@dataclass
class HubFolderArguments:
    """Where the Trainer's checkpoints go, and the card's Hub metadata (docs/design.md §6).

    `--output_dir` is the Hub folder: weights, config, code, processor, card, JSON logs and plots, uploadable as it
    is. The Trainer's `checkpoint-N` folders hold optimizer, scheduler and RNG state and its `training_args.bin`,
    all pickles, so they go to a folder beside it. (A separate dataclass: every `PaperTrainingArguments` field must
    be a real `TrainingArguments` field.)
    """

    checkpoint_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where the resumable Trainer checkpoints (checkpoint-N) go; default: <output_dir>-checkpoints "
            "beside the output folder, which stays a clean Hub folder. Resume with --resume_from_checkpoint "
            "<checkpoint_dir>/checkpoint-N, or --resume_from_checkpoint last."
        },
    )
    card_base_model: str | None = field(
        default=None,
        metadata={"help": "Hub id for the card's base_model; default: the model it starts from, if a Hub id."},
    )
    card_datasets: list[str] = field(
        default_factory=list,
        metadata={"help": "Hub ids for the card's datasets metadata; default: the --dataset values that are Hub ids."},
    )


@dataclass
class OutputFolders:
    """The Hub folder, the checkpoint folder, and whether the finished Hub folder is to be uploaded."""

    hub_folder: Path
    checkpoint_dir: Path
    push_to_hub: bool
    budget_change: dict[str, int] | None = None  # set when a resume runs under another --max_steps


def default_checkpoint_dir(output_dir: str | Path) -> Path:
    """`<output_dir>-checkpoints`, beside the Hub folder."""
    folder = Path(output_dir)
    return folder.with_name(f"{folder.name}-checkpoints")


def route_checkpoints(training_args: TrainingArguments, hub_args: HubFolderArguments) -> OutputFolders:
    """Point the Trainer at the checkpoint folder and keep `--output_dir` for the Hub folder (call before building
    the Trainer). `--resume_from_checkpoint last` becomes the newest checkpoint there. `--push_to_hub` would make
    the Trainer push every checkpoint with its pickled arguments, so it is turned into one upload of the finished
    Hub folder (`publish_hub_folder`)."""
    hub_folder = Path(training_args.output_dir)
    checkpoint_dir = Path(hub_args.checkpoint_dir) if hub_args.checkpoint_dir else default_checkpoint_dir(hub_folder)
    hub_resolved, checkpoints_resolved = hub_folder.resolve(), checkpoint_dir.resolve()
    if checkpoints_resolved == hub_resolved or hub_resolved in checkpoints_resolved.parents:
        raise ValueError(
            f"--checkpoint_dir {checkpoint_dir} is inside --output_dir {hub_folder}, which must stay uploadable as "
            f"it is (no optimizer / RNG pickles); put the checkpoints beside it, e.g. "
            f"{default_checkpoint_dir(hub_folder)}."
        )
    if training_args.resume_from_checkpoint == "last":
        last = get_last_checkpoint(str(checkpoint_dir)) if checkpoint_dir.is_dir() else None
        if last is None:
            raise ValueError(f"--resume_from_checkpoint last: no checkpoint-N folder in {checkpoint_dir}.")
        training_args.resume_from_checkpoint = last
    folders = OutputFolders(hub_folder, checkpoint_dir, bool(training_args.push_to_hub))
    if training_args.resume_from_checkpoint:
        folders.budget_change = budget_change_on_resume(Path(training_args.resume_from_checkpoint), training_args)
    training_args.output_dir = str(checkpoint_dir)
    training_args.push_to_hub = False
    return folders


def budget_change_on_resume(checkpoint: Path, training_args: TrainingArguments) -> dict[str, int] | None:
    """The step budget a checkpoint was trained under, when the resume asks for another one: the Trainer then
    rebuilds the learning-rate schedule for the new `--max_steps` (warmup and decay jump at the resume step), so the
    run is not the run a fresh start with that budget would give. Warned about and kept in training_args.json."""
    state_file = checkpoint / "trainer_state.json"
    if training_args.max_steps <= 0 or not state_file.is_file():
        return None
    state = json.loads(state_file.read_text())
    before = int(state.get("max_steps", 0))
    if before in (0, training_args.max_steps):
        return None
    change = {"at_step": int(state.get("global_step", 0)), "max_steps_before": before}
    logger.warning(
        "%s was trained toward %d steps; resuming toward --max_steps %d rebuilds the learning-rate schedule at step "
        "%d (recorded in training_args.json as budget_change_on_resume).",
        checkpoint,
        before,
        training_args.max_steps,
        change["at_step"],
    )
    return change


def recorded_arguments(training_args: TrainingArguments, folders: OutputFolders) -> dict[str, Any]:
    """The training arguments as the user gave them (output_dir = the Hub folder), for training_args.json and the
    card: JSON, with local paths reduced to folder names."""
    values = portable_values(training_args.to_dict())
    values.update(
        output_dir=folders.hub_folder.resolve().name,
        checkpoint_dir=folders.checkpoint_dir.resolve().name,
        push_to_hub=folders.push_to_hub,
    )
    if folders.budget_change:
        values["budget_change_on_resume"] = folders.budget_change
    return values


def save_hub_folder(
    trainer: Trainer, processor: ProcessorMixin, folders: OutputFolders, arguments: dict[str, Any]
) -> list[dict]:
    """Write the trained model as a Hub repo: config with auto_map, safetensors, the modeling code, the processor,
    `arguments` as training_args.json and the logged history (training_log.json); returns the history.

    Call it on every rank: under FSDP / DeepSpeed, `trainer.save_model` gathers the shards collectively (and writes
    on rank 0 only); otherwise rank 0 saves the unwrapped model itself. The folder holds no pickle: the Trainer
    pickles its arguments beside every model it saves (training_args.bin), right for a checkpoint, so it is not
    asked to save here unless the shards need it, and then its pickle is removed.
    """
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.config.register_for_auto_class()
    model.register_for_auto_class("AutoModel")
    processor.register_for_auto_class()
    output_dir = folders.hub_folder
    if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
        trainer.save_model(str(output_dir))
    elif trainer.is_world_process_zero():
        model.save_pretrained(output_dir)
    history = [entry for entry in trainer.state.log_history if "loss" in entry]
    if trainer.is_world_process_zero():
        (output_dir / TRAINING_ARGS_NAME).unlink(missing_ok=True)
        (output_dir / "training_args.json").write_text(json.dumps(arguments, indent=2))
        processor.save_pretrained(output_dir)
        (output_dir / "training_log.json").write_text(json.dumps(history, indent=1))
    return history


def finish_hub_folder(folders: OutputFolders, training_args: TrainingArguments) -> None:
    """Rank 0, after the card: drop an empty checkpoint folder (nothing was saved), warn about leftovers that are
    not publishable, and upload the folder if `--push_to_hub` was given."""
    if folders.checkpoint_dir.is_dir() and not any(folders.checkpoint_dir.iterdir()):
        folders.checkpoint_dir.rmdir()
    warn_if_not_publishable(folders.hub_folder)
    if folders.push_to_hub:
        publish_hub_folder(folders.hub_folder, training_args)


def publish_hub_folder(folder: Path, training_args: TrainingArguments, api: Any = None) -> str:
    """Upload `folder` to `--hub_model_id` (default: the folder's name in the user's namespace), honouring
    `--hub_token`, `--hub_private_repo` and `--hub_revision`; returns the repo id."""
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=training_args.hub_token)
    repo_id = api.create_repo(
        training_args.hub_model_id or folder.name, private=training_args.hub_private_repo, exist_ok=True
    ).repo_id
    if training_args.hub_revision:
        api.create_branch(repo_id, branch=training_args.hub_revision, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        revision=training_args.hub_revision,
        commit_message=f"Upload {folder.name}",
    )
    logger.info("uploaded %s to https://huggingface.co/%s", folder, repo_id)
    return repo_id
