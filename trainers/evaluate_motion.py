"""Motion-generation metrics of a JALA model on held-out UniHand-Mix clips (the paper's Table 1 quantities).

For each labelled clip of a split, the model sees only the instruction and the first frame, generates as many
chunks as the clip has (up to `max_chunks`) for the hands the clip uses, and the 21 generated joints are compared
with the ground truth: MPJPE, PA-MPJPE, MWTE (mm) and MDE (degrees), over the clip's valid frames.

Every number is printed beside two baselines fitted on the train split (`trainers/motion_baselines.py`): the
per-frame mean training motion and a nearest-neighbour retrieval, scored on exactly the same clips, hands and
frames by the same metric function, with the standard error of MPJPE over clips.

    python -m trainers.evaluate_motion outputs/quickstart/jala --dataset outputs/quickstart/unihand_mix
    python -m trainers.evaluate_motion outputs/quickstart/jala --dataset ... --baselines_only   # no generation
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from dataset_scripts.collator import UniHandCollator
from modeling_jala.configuration_jala import DECODING_STRATEGIES
from modeling_jala.hand_jala import JOINTS_XYZ, NUM_JOINTS
from modeling_jala.layout_jala import CHUNK_FRAMES
from trainers.metrics.hand_motion import hand_motion_metrics
from trainers.motion_baselines import (
    FrameFeatures,
    MeanMotionBaseline,
    NearestNeighbourBaseline,
    labelled_rows,
    load_training_rows,
    standard_error,
)

__all__ = [
    "MotionBaselines",
    "evaluate_baselines",
    "evaluate_generation",
    "fit_baselines",
    "format_table",
    "labelled_rows",
    "model_frame_features",
]

logger = logging.getLogger("jala.evaluate_motion")

#: (batch rows, collated batch, frames T) -> (B, 2, T, 21, 3) joints in metres; only the hands a clip uses are read.
Predictor = Callable[[list[dict[str, Any]], dict[str, Any], int], torch.Tensor]


class MotionBaselines(NamedTuple):
    """The two reference predictors of every evaluation (`trainers/motion_baselines.py`)."""

    mean_motion: MeanMotionBaseline
    nearest_neighbour: NearestNeighbourBaseline


def model_frame_features(model: Any, processor: Any, batch_size: int = 64) -> FrameFeatures:
    """First frames (B, H, W, 3) uint8 -> (B, D) patch-mean features of the model's frozen SSL encoder, preprocessed
    by the processor's SSL image pipeline exactly as the model sees them (the nearest-neighbour image key)."""

    @torch.no_grad()
    def features(images: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(images), batch_size):
            chunk = list(images[start : start + batch_size])
            pixels = processor(images=chunk, text=[""] * len(chunk))["ssl_pixel_values"].to(model.device)
            out.append(model.model.ssl_features(pixels).float().mean(1).cpu().numpy())
        return np.concatenate(out)

    return features


def first_frames_of(rows: list[dict[str, Any]], image_size: tuple[int, int]) -> np.ndarray:
    """(N, H, W, 3) uint8 first frames, decoded and resized by the collator as in evaluation batches."""
    collator = UniHandCollator(image_size=image_size, max_chunks=1, boundary="none")
    return np.concatenate(
        [collator(rows[start : start + 64])["first_frames"].numpy() for start in range(0, len(rows), 64)]
    )


def _image_size(processor: Any) -> tuple[int, int]:
    size = processor.image_processor.size
    return size["height"], size["width"]


def fit_baselines(
    repo: str | Path | Sequence[str | Path],
    model: Any,
    processor: Any,
    max_train_clips: int = 100_000,
    frame_features: FrameFeatures | None = None,
) -> MotionBaselines:
    """Mean-motion and nearest-neighbour baselines from the labelled train clips of `repo`. The neighbour's image
    key is `frame_features` of the first frames, by default the model's frozen SSL encoder (`model_frame_features`)."""
    rows = load_training_rows(repo, max_train_clips)
    frames = first_frames_of(rows, _image_size(processor))
    features = frame_features or model_frame_features(model, processor)
    return MotionBaselines(MeanMotionBaseline.fit(rows), NearestNeighbourBaseline.fit(rows, frames, features))


def baseline_predictors(baselines: MotionBaselines) -> dict[str, Predictor]:
    """The baselines as `Predictor`s, under the row names the table prints."""

    def mean_motion(rows: list[dict[str, Any]], batch: dict[str, Any], frames: int) -> torch.Tensor:
        return torch.from_numpy(
            np.stack([[baselines.mean_motion.predict(row, hand, frames) for hand in range(2)] for row in rows])
        )

    def nearest_neighbour(rows: list[dict[str, Any]], batch: dict[str, Any], frames: int) -> torch.Tensor:
        retrieved = baselines.nearest_neighbour.predict_batch(
            rows, batch["first_frames"].numpy(), [frames] * len(rows)
        )
        return torch.from_numpy(np.stack(retrieved))

    return {"mean motion": mean_motion, "nearest neighbour": nearest_neighbour}


def _metrics(
    predictions: list[torch.Tensor], targets: list[torch.Tensor], masks: list[torch.Tensor], clips: list[int]
) -> dict[str, float]:
    """The four metrics over all hand sequences (pooled, as `hand_motion_metrics`), the standard error of MPJPE over
    clips (each clip's MPJPE over its hands and valid frames), and MPJPE per chunk (pooled over the valid frames of
    each 15-frame chunk: where generation errors grow along the clip)."""
    longest = max(len(p) for p in predictions)

    def stack(tensors: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(
            [torch.nn.functional.pad(t, (0,) * (2 * (t.dim() - 1)) + (0, longest - len(t))) for t in tensors]
        ).double()

    pred, truth, mask = stack(predictions), stack(targets), stack(masks).bool()
    report = hand_motion_metrics(pred, truth, mask=mask)
    per_frame = torch.where(mask, (pred - truth).norm(dim=-1).mean(-1), 0.0)  # (S, T), padding may hold NaN
    error_sums = np.bincount(clips, weights=per_frame.sum(-1).numpy())
    frame_counts = np.bincount(clips, weights=mask.sum(-1).numpy())
    per_clip = 1000 * error_sums[frame_counts > 0] / frame_counts[frame_counts > 0]
    report["mpjpe_se_mm"] = standard_error(per_clip)
    report["mpjpe_per_chunk_mm"] = []
    for start in range(0, longest, CHUNK_FRAMES):
        chunk_frames = mask[:, start : start + CHUNK_FRAMES].sum()
        if chunk_frames > 0:
            errors = per_frame[:, start : start + CHUNK_FRAMES].sum()
            report["mpjpe_per_chunk_mm"].append(1000 * float(errors / chunk_frames))
    return report


def score_predictors(
    rows: list[dict[str, Any]],
    predictors: dict[str, Predictor],
    image_size: tuple[int, int],
    max_chunks: int = 4,
    batch_size: int = 8,
    description: str = "scoring",
    show_progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Metrics of every predictor on the same hand sequences: each acting hand of each clip, over the clip's first
    `max_chunks` chunks (the collator's leading crop) and its valid frames. Predictors run in the given order."""
    collator = UniHandCollator(image_size=image_size, max_chunks=max_chunks, boundary="none")
    predictions: dict[str, list[torch.Tensor]] = {name: [] for name in predictors}
    targets, masks, clips = [], [], []
    for start in tqdm(range(0, len(rows), batch_size), desc=description, disable=not show_progress):
        batch_rows = rows[start : start + batch_size]
        batch = collator(batch_rows)
        frames = batch["motion"].shape[2]
        truth = batch["motion"][..., JOINTS_XYZ].reshape(*batch["motion"].shape[:3], NUM_JOINTS, 3)
        valid = torch.arange(frames)[None, :] < batch["frame_lengths"][:, None]
        outputs = {name: predict(batch_rows, batch, frames).float().cpu() for name, predict in predictors.items()}
        for b, hand in batch["hands_present"].nonzero().tolist():
            targets.append(truth[b, hand])
            masks.append(valid[b])
            clips.append(start + b)
            for name, output in outputs.items():
                predictions[name].append(output[b, hand, :frames])
    return {name: _metrics(predicted, targets, masks, clips) for name, predicted in predictions.items()}


def _model_predictor(
    model: Any,
    processor: Any,
    decoding_steps: int | None,
    ensemble: int | None,
    seed: int,
    strategy: str | None = None,
) -> Predictor:
    """JALA from the first frame and instruction only, for the hands the clip uses."""
    generator = torch.Generator().manual_seed(seed)

    def predict(rows: list[dict[str, Any]], batch: dict[str, Any], frames: int) -> torch.Tensor:
        inputs = processor(images=list(batch["first_frames"].numpy()), text=batch["instructions"])
        inputs = {key: value.to(model.device) for key, value in inputs.items()}
        generated = model.generate_motion(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            pixel_values=inputs["pixel_values"],
            ssl_pixel_values=inputs["ssl_pixel_values"][:, None],
            num_chunks=int(batch["num_chunks"].max()),
            hands=batch["hands_present"],
            decoding_steps=decoding_steps,
            ensemble=ensemble,
            generator=generator,
            strategy=strategy,
        )
        return generated.joints[:, :, :frames]

    return predict


def _held_out_rows(repo: str | Path, split: str, max_clips: int) -> list[dict[str, Any]]:
    rows = labelled_rows(repo, split, max_clips)
    if not rows:
        raise ValueError(f"{repo} has no labelled {split} clips to evaluate.")
    return rows


@torch.no_grad()
def evaluate_generation(
    model: Any,
    processor: Any,
    repo: str | Path,
    split: str,
    max_clips: int = 32,
    max_chunks: int = 4,
    batch_size: int = 8,
    decoding_steps: int | None = None,
    ensemble: int | None = None,
    seed: int = 0,
    show_progress: bool = True,
    baselines: MotionBaselines | None = None,
    strategy: str | None = None,
) -> dict[str, Any]:
    """Generate for up to `max_clips` labelled clips of `split`; returns the four metrics, the MPJPE standard error
    over clips, and the clip / hand-sequence counts. With `baselines` (from `fit_baselines`) the report also holds
    `baselines`: name -> the same metrics of that baseline on exactly the same clips, hands and frames. `strategy`:
    `generate_motion`'s decoding strategy (default: the model config's)."""
    rows = _held_out_rows(repo, split, max_clips)
    model.eval()
    predictors = {"JALA": _model_predictor(model, processor, decoding_steps, ensemble, seed, strategy)}
    if baselines is not None:
        predictors.update(baseline_predictors(baselines))
    scores = score_predictors(
        rows, predictors, _image_size(processor), max_chunks, batch_size, f"generating {split}", show_progress
    )
    report: dict[str, Any] = scores.pop("JALA")
    report["clips"] = len(rows)
    report["hand_sequences"] = _hand_sequences(rows)
    if baselines is not None:
        report["baselines"] = scores
    return report


def evaluate_baselines(
    repo: str | Path,
    split: str,
    baselines: MotionBaselines,
    image_size: tuple[int, int],
    max_clips: int = 32,
    max_chunks: int = 4,
    batch_size: int = 8,
) -> dict[str, Any]:
    """The baselines alone, on the clips, hands and frames `evaluate_generation` would score (same arguments);
    a report without a model row, which `format_table` prints too."""
    rows = _held_out_rows(repo, split, max_clips)
    scores = score_predictors(rows, baseline_predictors(baselines), image_size, max_chunks, batch_size, split, False)
    return {"clips": len(rows), "hand_sequences": _hand_sequences(rows), "baselines": scores}


def _hand_sequences(rows: list[dict[str, Any]]) -> int:
    return int(sum(np.asarray(row["hands_present"], dtype=bool).sum() for row in rows))


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="JALA folder (loaded with AutoModel / AutoProcessor, trust_remote_code)")
    parser.add_argument("--dataset", required=True, help="UniHand-Mix repo folder")
    parser.add_argument("--splits", nargs="+", default=["test_lab", "test_wild"])
    parser.add_argument("--max_clips", type=int, default=32)
    parser.add_argument("--max_chunks", type=int, default=4)
    parser.add_argument("--max_train_clips", type=int, default=100_000, help="train clips the baselines are fitted on")
    parser.add_argument(
        "--baselines_only",
        action="store_true",
        help="score only the baselines (the model's SSL encoder still gives the neighbour's image features)",
    )
    parser.add_argument(
        "--strategy", choices=DECODING_STRATEGIES, help="generate_motion's decoding (default: the model config's)"
    )
    parser.add_argument("--output", type=Path, help="write the metrics as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(args.model, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(args.model, trust_remote_code=True)
    baselines = fit_baselines(args.dataset, model, processor, args.max_train_clips)
    results = {
        split: (
            evaluate_baselines(args.dataset, split, baselines, _image_size(processor), args.max_clips, args.max_chunks)
            if args.baselines_only
            else evaluate_generation(
                model,
                processor,
                args.dataset,
                split,
                args.max_clips,
                args.max_chunks,
                baselines=baselines,
                strategy=args.strategy,
            )
        )
        for split in args.splits
    }
    logger.info("%s", format_table(results))
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))
    return results


#: What the table's columns mean; the model card prints it above the table too.
TABLE_LEGEND = (
    "first frame + instruction only; mm / degrees; ± = standard error over clips; vs mean = MPJPE / mean-motion "
    "MPJPE (< 1 beats the mean training motion)"
)


def format_table(results: dict[str, dict[str, Any]], title: str = "generated motion vs ground truth") -> str:
    """Markdown table, one row per split and predictor: the model (when the report has it), then its baselines."""
    lines = [
        f"{title} ({TABLE_LEGEND})",
        "| split | predictor | clips | MPJPE (mm) | vs mean | PA-MPJPE (mm) | MWTE (mm) | MDE (°) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for split, report in results.items():
        baselines = report.get("baselines", {})
        rows = ({"JALA": report} if "mpjpe_mm" in report else {}) | baselines
        mean = baselines.get("mean motion", {}).get("mpjpe_mm")
        for name, metrics in rows.items():
            ratio = f"{metrics['mpjpe_mm'] / mean:.2f}" if mean else "–"
            se = metrics.get("mpjpe_se_mm", float("nan"))
            se_text = f" ± {se:.1f}" if se == se else ""  # NaN (fewer than two clips): no error bar
            lines.append(
                f"| {split} | {name} | {report['clips']} | {metrics['mpjpe_mm']:.1f}{se_text} | {ratio} | "
                f"{metrics['pa_mpjpe_mm']:.1f} | {metrics['mwte_mm']:.1f} | {metrics['mde_deg']:.1f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
