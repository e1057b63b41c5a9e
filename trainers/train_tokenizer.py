"""Train the part-level GRVQ motion tokenizer.

    python trainers/train_tokenizer.py --output_dir outputs/motion_tokenizer --preset small --max_minutes 4
    accelerate launch trainers/train_tokenizer.py --dataset path/to/unihand_mix --dataset_config lab ...

Data: any `datasets` source with a `motion` column of (T, 2, 162) MANO-D162 clips in (left, right) hand order and
a `hands_present` column (UniHand-Mix's layout); rows without motion (unlabelled wild clips) are skipped. Without
`--dataset`, procedural clips from `dataset_scripts.procedural_motion` are generated.

Each step draws random 15-frame windows (one hand each, left hands mirrored into right-hand space, exactly as the
tokenizer does) from an in-memory frame bank: every chunk is tokenized on its own, so random offsets are free
augmentation. The output folder is Hub-ready (`huggingface_hub.upload_folder` publishes it as it is): config.json with
auto_map, safetensors weights, the modeling code, a model card with Hub metadata, the training log and a plot of the
training curve; recorded arguments keep Hub ids and only the folder names of local paths.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import numpy as np
import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import HfArgumentParser, get_cosine_schedule_with_warmup

if __package__ in (None, ""):  # `python trainers/train_tokenizer.py` and `accelerate launch trainers/...`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataset_scripts.procedural_motion import procedural_motion_dataset
from modeling_jala.configuration_jala import JalaMotionTokenizerConfig
from modeling_jala.hand_jala import D162_DIM, JOINTS_XYZ, NUM_JOINTS, mirror_motion
from modeling_jala.layout_jala import CLIP_MOTION_AXES, ROW_MOTION_AXES, reorder_axes
from modeling_jala.motion_tokenizer_jala import JalaMotionTokenizer
from trainers.accelerator_setup import make_accelerator
from trainers.hub_folder import hub_repo_ids, portable_values
from trainers.metrics.hand_motion import hand_motion_metrics
from trainers.model_card import write_tokenizer_card
from trainers.plotting import plot_training_curves

logger = logging.getLogger("jala.train_tokenizer")

#: Structure presets. `paper`, `small` and `tiny` keep the paper's token layout (downsample 4, 2 groups x 8 residual
#: layers: 64 + 64 tokens per chunk) and differ only in widths and codebook size, so a small model is a drop-in for
#: the paper-sized one. `cpu` is `tiny` with 4 residual layers (32 + 32 tokens per chunk): the JALA sequence is half
#: as long and a 2-core CPU step twice as fast, at a coarser reconstruction (README, "CPU presets"; docs/design.md
#: §1.12). It is the quickstart's tokenizer.
PRESETS: dict[str, dict] = {
    "paper": {},
    "small": {"codebook_size": 512, "code_dim": 64, "hidden_size": 128},
    "tiny": {"codebook_size": 64, "code_dim": 32, "hidden_size": 64, "num_res_blocks": 1},
    "cpu": {"codebook_size": 64, "code_dim": 32, "hidden_size": 64, "num_res_blocks": 1, "num_residual_layers": 4},
}


@dataclass
class TokenizerTrainingArguments:
    output_dir: str = field(default="outputs/motion_tokenizer", metadata={"help": "Where the Hub folder goes."})
    preset: str = field(default="small", metadata={"help": f"Model size preset: {', '.join(PRESETS)}."})
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "JSON dict of JalaMotionTokenizerConfig fields, e.g. '{\"codebook_size\": 1024}'."},
    )
    dataset: str | None = field(
        default=None,
        metadata={"help": "Dataset repo dir, save_to_disk dir or Hub id with a `motion` column; default: procedural."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Dataset config name (e.g. `lab`)."})
    train_split: str = field(default="train")
    eval_split: str | None = field(default=None, metadata={"help": "Held-out split; default: `test_lab` if present."})
    max_train_clips: int = field(default=200_000, metadata={"help": "Clips loaded into the frame bank."})
    num_procedural_clips: int = field(default=2000, metadata={"help": "Procedural training clips (no --dataset)."})
    num_eval_clips: int = field(default=200, metadata={"help": "Held-out clips evaluated at the end."})
    max_steps: int = field(default=3000)
    max_minutes: float | None = field(default=None, metadata={"help": "Stop after this wall time (minutes)."})
    batch_size: int = field(default=64, metadata={"help": "Windows per device per step."})
    learning_rate: float = field(default=1e-3)
    weight_decay: float = field(default=0.0)
    warmup_steps: int = field(default=100)
    max_grad_norm: float = field(default=1.0)
    log_every: int = field(default=25)
    seed: int = field(default=0)
    card_datasets: list[str] = field(
        default_factory=list,
        metadata={"help": "Hub ids for the card's datasets metadata; default: --dataset if it is a Hub id."},
    )


def build_config(args: TokenizerTrainingArguments) -> JalaMotionTokenizerConfig:
    if args.preset not in PRESETS:
        raise ValueError(f"--preset must be one of {sorted(PRESETS)}, got {args.preset!r}.")
    overrides = json.loads(args.config_overrides) if args.config_overrides else {}
    return JalaMotionTokenizerConfig(**{**PRESETS[args.preset], **overrides})


def load_motion_splits(args: TokenizerTrainingArguments) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Training and held-out clips as map-style datasets with `motion` and `hands_present` columns."""
    if args.dataset is None:
        train = procedural_motion_dataset(args.num_procedural_clips, seed=args.seed, prefix="train")
        held_out = procedural_motion_dataset(args.num_eval_clips, seed=args.seed + 10_000, prefix="eval")
        return train, held_out
    path = Path(args.dataset)
    if (path / "dataset_dict.json").exists():
        splits = datasets.load_from_disk(str(path))
    else:
        splits = datasets.load_dataset(args.dataset, args.dataset_config)
    eval_split = args.eval_split or ("test_lab" if "test_lab" in splits else None)
    if args.train_split not in splits or eval_split not in splits:
        raise ValueError(
            f"dataset {args.dataset!r} has splits {sorted(splits)}; pass --train_split and --eval_split that exist."
        )
    columns = {"motion", "hands_present"}
    for name in (args.train_split, eval_split):
        missing = columns - set(splits[name].column_names)
        if missing:
            raise ValueError(f"split {name!r} of {args.dataset!r} lacks the columns {sorted(missing)}.")
    train = splits[args.train_split].select_columns(sorted(columns))
    held_out = splits[eval_split].select_columns(sorted(columns))
    train = train.select(range(min(len(train), args.max_train_clips)))
    return train, held_out.select(range(min(len(held_out), args.num_eval_clips)))


class MotionWindowBank:
    """All labelled hand trajectories of a dataset, right-hand space, with the valid 15-frame window starts."""

    def __init__(self, clips: datasets.Dataset, window: int, show_progress: bool) -> None:
        tracks: list[torch.Tensor] = []
        for row in tqdm(clips.with_format("numpy"), desc="loading motion", disable=not show_progress):
            if row["motion"] is None:
                continue
            motion = torch.as_tensor(np.asarray(row["motion"], dtype=np.float32))
            for slot, present in enumerate(row["hands_present"]):
                if present and motion.shape[0] >= window and torch.isfinite(motion[:, slot]).all():
                    track = motion[:, slot]
                    tracks.append(mirror_motion(track) if slot == 0 else track)
        if not tracks:
            raise ValueError(f"no labelled hand track of at least {window} frames found in the training data.")
        lengths = torch.tensor([len(t) for t in tracks])
        offsets = torch.cumsum(lengths, 0) - lengths
        self.frames = torch.cat(tracks)  # (F, 162)
        self.starts = torch.cat([torch.arange(o, o + n - window + 1) for o, n in zip(offsets, lengths, strict=True)])
        self.window = window
        self.num_tracks = len(tracks)

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """(batch, 1, window, 162) random windows."""
        starts = self.starts[torch.randint(len(self.starts), (batch_size,), generator=generator)]
        index = starts[:, None] + torch.arange(self.window)[None, :]
        return self.frames[index][:, None]


class RestartRateMeter:
    """Fraction of codes restarted per training step between two log records, per part and averaged.

    Restarts happen only at periodic checks (`dead_code_restart_every`), so the fraction restarted at the last
    update is mostly 0; the rate since the previous record, from the model's cumulative restart counts, is what
    shows whether token ids keep their meaning from step to step.
    """

    def __init__(self, config: JalaMotionTokenizerConfig) -> None:
        self.codes_per_part = config.num_groups * config.num_residual_layers * config.codebook_size
        self.last_step = 0
        self.last_totals = {"wrist": 0.0, "finger": 0.0}

    def rates(self, steps_done: int, usage: dict[str, float]) -> dict[str, float]:
        elapsed = max(steps_done - self.last_step, 1)
        rates = {}
        for part, last_total in self.last_totals.items():
            total = usage[f"{part}_restarts_total"]
            rates[f"{part}_restart_fraction_per_step"] = (total - last_total) / (self.codes_per_part * elapsed)
            self.last_totals[part] = total
        rates["restart_fraction_per_step"] = sum(rates.values()) / len(rates)
        self.last_step = steps_done
        return rates


@torch.no_grad()
def evaluate_tokenizer(
    tokenizer: JalaMotionTokenizer, clips: datasets.Dataset, batch_size: int = 16
) -> dict[str, float]:
    """Encode -> decode whole held-out clips; joint errors in mm on the D162 joint block, token statistics."""
    was_training = tokenizer.training
    tokenizer.eval()
    predictions, targets, all_ids = [], [], []
    rows = [row for row in clips.with_format("numpy") if row["motion"] is not None]
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        lengths = torch.tensor([len(row["motion"]) for row in batch])
        motion = torch.zeros(len(batch), 2, int(lengths.max()), D162_DIM)
        for i, row in enumerate(batch):
            motion[i, :, : lengths[i]] = reorder_axes(
                torch.as_tensor(np.asarray(row["motion"])), ROW_MOTION_AXES, CLIP_MOTION_AXES
            )
        hand_mask = torch.tensor(np.stack([row["hands_present"] for row in batch]), dtype=torch.bool)
        keep = lengths >= tokenizer.config.chunk_frames
        if not keep.any():
            continue
        motion, lengths, hand_mask = motion[keep], lengths[keep], hand_mask[keep]
        motion = motion.to(tokenizer.device)
        encoding = tokenizer.encode(motion, lengths=lengths, hand_mask=hand_mask)
        decoded = tokenizer.decode(encoding.ids, encoding.chunk_mask)[:, :, : motion.shape[2]]
        frame_mask = (torch.arange(motion.shape[2])[None, :] < lengths[:, None])[:, None] & hand_mask[:, :, None]
        for b, h in frame_mask.any(-1).nonzero().tolist():
            valid = frame_mask[b, h]
            predictions.append(decoded[b, h, valid, JOINTS_XYZ].reshape(-1, NUM_JOINTS, 3).cpu())
            targets.append(motion[b, h, valid, JOINTS_XYZ].reshape(-1, NUM_JOINTS, 3).cpu())
        all_ids.append(encoding.ids[encoding.chunk_mask].cpu())
    tokenizer.train(was_training)
    # Pad the per-hand sequences to one length and mask the padding (metrics are per sequence for MDE).
    longest = max(len(p) for p in predictions)
    pred = torch.zeros(len(predictions), longest, NUM_JOINTS, 3)
    true = torch.zeros_like(pred)
    mask = torch.zeros(len(predictions), longest, dtype=torch.bool)
    for i, (p, t) in enumerate(zip(predictions, targets, strict=True)):
        pred[i, : len(p)], true[i, : len(t)], mask[i, : len(p)] = p, t, True
    report = hand_motion_metrics(pred, true, mask=mask)
    report.update(tokenizer.token_statistics(torch.cat(all_ids)))
    return report


def train(args: TokenizerTrainingArguments) -> dict[str, float]:
    accelerator = make_accelerator()
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING)
    set_seed(args.seed)
    output_dir = Path(args.output_dir)
    config = build_config(args)

    with accelerator.main_process_first():
        train_clips, held_out = load_motion_splits(args)
    bank = MotionWindowBank(train_clips, config.chunk_frames, accelerator.is_main_process)
    logger.info("frame bank: %d tracks, %d frames, %d windows", bank.num_tracks, len(bank.frames), len(bank.starts))

    model = JalaMotionTokenizer(config)
    # Normalization statistics come from the same data on every rank, so all ranks agree without communication.
    model.fit_normalization(bank.frames)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, args.warmup_steps, args.max_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    unwrapped: JalaMotionTokenizer = accelerator.unwrap_model(model)
    generator = torch.Generator().manual_seed(args.seed * 1000 + accelerator.process_index)

    history: list[dict] = []
    restart_meter = RestartRateMeter(config)
    started = time.monotonic()
    progress = tqdm(range(args.max_steps), desc="training tokenizer", disable=not accelerator.is_main_process)
    model.train()
    for step in progress:
        windows = bank.sample(args.batch_size, generator).to(accelerator.device)
        output = model(windows, handedness=("right",))
        accelerator.backward(output.loss)
        accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        elapsed = time.monotonic() - started
        out_of_time = args.max_minutes is not None and elapsed > 60 * args.max_minutes
        if step % args.log_every == 0 or step == args.max_steps - 1 or out_of_time:
            record = {
                "step": step,
                "seconds": round(elapsed, 1),
                "loss": accelerator.reduce(output.loss.detach(), "mean").item(),
                "reconstruction_loss": output.reconstruction_loss.item(),
                "velocity_loss": output.velocity_loss.item(),
                "commitment_loss": output.commitment_loss.item(),
                "lr": scheduler.get_last_lr()[0],
            }
            usage = unwrapped.codebook_usage()
            record.update(usage)
            record.update(restart_meter.rates(step + 1, usage))
            history.append(record)
            progress.set_postfix(
                loss=f"{record['loss']:.4f}",
                ppl=f"{record['finger_perplexity']:.0f}",
                restart=f"{record['restart_fraction_per_step']:.2%}",
            )
        if out_of_time:
            logger.info("stopping at step %d: --max_minutes %.1f reached", step, args.max_minutes)
            break

    steps_done = history[-1]["step"] + 1
    report = {}
    if accelerator.is_main_process:
        report = evaluate_tokenizer(unwrapped, held_out)
        report.update(steps=steps_done, train_minutes=round((time.monotonic() - started) / 60, 2))
        logger.info("held-out evaluation: %s", json.dumps(report, indent=1))
        save_tokenizer(unwrapped, output_dir, args, report, history)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return report


def save_tokenizer(
    model: JalaMotionTokenizer, output_dir: Path, args: TokenizerTrainingArguments, report: dict, history: list[dict]
) -> None:
    """Write the Hub folder: weights, config with auto_map, code, card, log and curve plot."""
    output_dir.mkdir(parents=True, exist_ok=True)
    model.config.register_for_auto_class()
    model.register_for_auto_class("AutoModel")
    model.save_pretrained(output_dir)
    with open(output_dir / "training_log.jsonl", "w") as log:
        for record in history:
            log.write(json.dumps(record) + "\n")
    (output_dir / "eval_results.json").write_text(json.dumps(report, indent=2))
    arguments = portable_values(asdict(args))
    (output_dir / "training_args.json").write_text(json.dumps(arguments, indent=2))
    plot_training_curves(
        history,
        ["loss", "reconstruction_loss", "finger_perplexity", "wrist_perplexity", "restart_fraction_per_step"],
        output_dir / "training_curve.png",
    )
    datasets = args.card_datasets or hub_repo_ids([args.dataset])
    write_tokenizer_card(output_dir, model.config, report, arguments, datasets=datasets)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = HfArgumentParser(TokenizerTrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    return train(args)


if __name__ == "__main__":
    main()
