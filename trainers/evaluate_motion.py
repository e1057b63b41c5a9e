"""Motion-generation metrics of a JALA model on held-out UniHand-Mix clips (the paper's Table 1 quantities).

For each labelled clip of a split, the model sees only the instruction and the first frame, generates as many
chunks as the clip has (up to `max_chunks`) for the hands the clip uses, and the 21 generated joints are compared
with the ground truth: MPJPE, PA-MPJPE, MWTE (mm) and MDE (degrees), over the clip's valid frames.

    python -m trainers.evaluate_motion outputs/quickstart/jala --dataset outputs/quickstart/unihand_mix
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from dataset_scripts.collator import UniHandCollator
from dataset_scripts.streaming import UniHandStream
from modeling_jala.hand_jala import JOINTS_XYZ, NUM_JOINTS
from trainers.metrics.hand_motion import hand_motion_metrics
from trainers.motion_baselines import MeanMotionBaseline, NearestNeighbourBaseline, load_training_rows

logger = logging.getLogger("jala.evaluate_motion")


def labelled_rows(repo: str | Path, split: str, max_clips: int) -> list[dict[str, Any]]:
    stream = UniHandStream(repo, split=split, infinite=False, shuffle=False, rank=0, world_size=1)
    rows = []
    for row in stream:
        if row["labelled"] and row["motion"] is not None:
            rows.append(row)
        if len(rows) >= max_clips:
            break
    return rows


def model_frame_features(model: Any, processor: Any) -> Any:
    """First frames (B, H, W, 3) uint8 -> (B, D) mean-pooled features of the model's frozen SSL encoder, preprocessed
    exactly as the model sees them (the nearest-neighbour baseline's image key)."""

    @torch.no_grad()
    def features(images: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(images), 64):
            chunk = list(images[start : start + 64])
            pixels = processor(images=chunk, text=[""] * len(chunk))["ssl_pixel_values"].to(model.device)
            out.append(model.model.ssl_features(pixels).float().mean(1).cpu().numpy())
        return np.concatenate(out)

    return features


def first_frames_of(rows: list[dict[str, Any]], image_size: tuple[int, int]) -> np.ndarray:
    collator = UniHandCollator(image_size=image_size, max_chunks=1, boundary="none")
    return np.concatenate(
        [collator(rows[start : start + 64])["first_frames"].numpy() for start in range(0, len(rows), 64)]
    )


def fit_baselines(
    repo: str | Path, model: Any, processor: Any, max_train_clips: int = 100_000
) -> tuple[MeanMotionBaseline, NearestNeighbourBaseline]:
    """The mean-motion and nearest-neighbour baselines from the labelled training clips of `repo`."""
    rows = load_training_rows(repo, max_train_clips)
    size = processor.image_processor.size
    frames = first_frames_of(rows, (size["height"], size["width"]))
    return MeanMotionBaseline.fit(rows), NearestNeighbourBaseline.fit(
        rows, frames, model_frame_features(model, processor)
    )


def _metrics(predictions: list, targets: list, masks: list) -> dict[str, float]:
    """The four metrics over all hand sequences, plus the standard error of MPJPE over sequences."""
    longest = max(len(p) for p in predictions)

    def stack(tensors: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(
            [torch.nn.functional.pad(t, (0,) * (2 * (t.dim() - 1)) + (0, longest - len(t))) for t in tensors]
        )

    pred, truth, mask = stack(predictions), stack(targets), stack(masks)
    report = hand_motion_metrics(pred, truth, mask=mask)
    per_frame = (pred - truth).norm(dim=-1).mean(-1)  # (S, T)
    per_sequence = (per_frame * mask).sum(-1) / mask.sum(-1).clamp_min(1)
    report["mpjpe_se_mm"] = float(1000 * per_sequence.std() / max(1, len(per_sequence)) ** 0.5)
    return report


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
    baselines: tuple[MeanMotionBaseline, NearestNeighbourBaseline] | None = None,
) -> dict[str, Any]:
    """Generate for up to `max_clips` labelled clips of `split`; returns the four metrics (+ MPJPE standard error)
    and the clip count. With `baselines` (from `fit_baselines`), the report also holds `baselines`: the same
    metrics of the mean-motion and nearest-neighbour predictions on exactly the same clips, hands and frames."""
    rows = labelled_rows(repo, split, max_clips)
    if not rows:
        raise ValueError(f"{repo} has no labelled {split} clips to evaluate.")
    size = processor.image_processor.size
    collator = UniHandCollator(image_size=(size["height"], size["width"]), max_chunks=max_chunks, boundary="none")
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    predictions, targets, masks = [], [], []
    baseline_predictions: dict[str, list] = {"mean motion": [], "nearest neighbour": []}
    for start in tqdm(range(0, len(rows), batch_size), desc=f"generating {split}", disable=not show_progress):
        batch_rows = rows[start : start + batch_size]
        batch = collator(batch_rows)
        inputs = processor(images=list(batch["first_frames"].numpy()), text=batch["instructions"])
        inputs = {key: value.to(model.device) for key, value in inputs.items()}
        num_chunks = int(batch["num_chunks"].max())
        generated = model.generate_motion(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            pixel_values=inputs["pixel_values"],
            ssl_pixel_values=inputs["ssl_pixel_values"][:, None],
            num_chunks=num_chunks,
            hands=batch["hands_present"],
            decoding_steps=decoding_steps,
            ensemble=ensemble,
            generator=generator,
        )
        frames = batch["motion"].shape[2]
        joints = generated.joints[:, :, :frames].cpu()
        truth = batch["motion"][..., JOINTS_XYZ].reshape(*batch["motion"].shape[:3], NUM_JOINTS, 3)
        valid = torch.arange(frames)[None, :] < batch["frame_lengths"][:, None]
        retrieved = None
        if baselines is not None:
            retrieved = baselines[1].predict_batch(
                batch_rows, batch["first_frames"].numpy(), [frames] * len(batch_rows)
            )
        for b, hand in batch["hands_present"].nonzero().tolist():
            predictions.append(joints[b, hand])
            targets.append(truth[b, hand])
            masks.append(valid[b])
            if baselines is not None:
                mean = baselines[0].predict(batch_rows[b], hand, frames)
                baseline_predictions["mean motion"].append(torch.from_numpy(mean).float())
                baseline_predictions["nearest neighbour"].append(torch.from_numpy(retrieved[b][hand]).float())
    report: dict[str, Any] = _metrics(predictions, targets, masks)
    report["clips"] = len(rows)
    report["hand_sequences"] = len(predictions)
    if baselines is not None:
        report["baselines"] = {name: _metrics(p, targets, masks) for name, p in baseline_predictions.items()}
    return report


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="JALA folder (loaded with AutoModel / AutoProcessor, trust_remote_code)")
    parser.add_argument("--dataset", required=True, help="UniHand-Mix repo folder")
    parser.add_argument("--splits", nargs="+", default=["test_lab", "test_wild"])
    parser.add_argument("--max_clips", type=int, default=32)
    parser.add_argument("--max_chunks", type=int, default=4)
    parser.add_argument("--output", type=Path, help="write the metrics as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(args.model, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(args.model, trust_remote_code=True)
    baselines = fit_baselines(args.dataset, model, processor)
    results = {
        split: evaluate_generation(
            model, processor, args.dataset, split, args.max_clips, args.max_chunks, baselines=baselines
        )
        for split in args.splits
    }
    logger.info("%s", format_table(results))
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))
    return results


def format_table(results: dict[str, dict[str, Any]], title: str = "generated motion vs ground truth") -> str:
    """One row per split and predictor: the model, then its baselines; `vs mean` = MPJPE / mean-motion MPJPE."""
    lines = [
        f"{title} (first frame + instruction only; mm / degrees; ± = standard error over hand sequences)",
        "| split | predictor | clips | MPJPE (mm) | vs mean | PA-MPJPE (mm) | MWTE (mm) | MDE (°) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for split, report in results.items():
        rows = {"JALA": report, **report.get("baselines", {})}
        mean = report.get("baselines", {}).get("mean motion", {}).get("mpjpe_mm")
        for name, metrics in rows.items():
            ratio = f"{metrics['mpjpe_mm'] / mean:.2f}" if mean else "–"
            se = f" ± {metrics['mpjpe_se_mm']:.1f}" if "mpjpe_se_mm" in metrics else ""
            lines.append(
                f"| {split} | {name} | {report['clips']} | {metrics['mpjpe_mm']:.1f}{se} | {ratio} | "
                f"{metrics['pa_mpjpe_mm']:.1f} | {metrics['mwte_mm']:.1f} | {metrics['mde_deg']:.1f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
