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
) -> dict[str, float]:
    """Generate for up to `max_clips` labelled clips of `split`; returns the four metrics and the clip count."""
    rows = labelled_rows(repo, split, max_clips)
    if not rows:
        raise ValueError(f"{repo} has no labelled {split} clips to evaluate.")
    size = processor.image_processor.size
    collator = UniHandCollator(image_size=(size["height"], size["width"]), max_chunks=max_chunks, boundary="none")
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    predictions, targets, masks = [], [], []
    for start in tqdm(range(0, len(rows), batch_size), desc=f"generating {split}", disable=not show_progress):
        batch = collator(rows[start : start + batch_size])
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
        for b, hand in batch["hands_present"].nonzero().tolist():
            predictions.append(joints[b, hand])
            targets.append(truth[b, hand])
            masks.append(valid[b])
    longest = max(len(p) for p in predictions)

    def stack(tensors: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(
            [torch.nn.functional.pad(t, (0,) * (2 * (t.dim() - 1)) + (0, longest - len(t))) for t in tensors]
        )

    report = hand_motion_metrics(stack(predictions), stack(targets), mask=stack(masks))
    report["clips"] = len(rows)
    report["hand_sequences"] = len(predictions)
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
    results = {
        split: evaluate_generation(model, processor, args.dataset, split, args.max_clips, args.max_chunks)
        for split in args.splits
    }
    logger.info("%s", format_table(results))
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))
    return results


def format_table(results: dict[str, dict[str, float]], title: str = "generated motion vs ground truth") -> str:
    lines = [
        f"{title} (first frame + instruction only; mm / degrees)",
        "| split | clips | MPJPE (mm) | PA-MPJPE (mm) | MWTE (mm) | MDE (°) |",
        "|---|---|---|---|---|---|",
    ]
    for split, report in results.items():
        lines.append(
            f"| {split} | {report['clips']} | {report['mpjpe_mm']:.1f} | {report['pa_mpjpe_mm']:.1f} | "
            f"{report['mwte_mm']:.1f} | {report['mde_deg']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
