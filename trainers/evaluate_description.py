"""Motion-description quality of a JALA model on held-out UniHand-Mix clips, beside two baselines.

For each labelled `motion_description` clip of a split, the model reads the description prompt, the first frame
and the clip's motion (the first `max_chunks` chunks, every slot visible, as in training: docs/design.md §1.13) and
writes a description greedily (`generate_description`). It is scored against the clip's stored description with
the `motion_description` metric (ROUGE-L F1, token F1, exact match; trainers/metrics/motion_description/), beside:

* family mode: the most frequent training description of the clip's motion family (the family is read from the
  clip's `scene` JSON, so this baseline is told the family the model has to recognise from the motion). Synthetic
  descriptions name colours, centimetres and degrees, so nearly every training description is unique; ties are
  broken by the highest mean ROUGE-L F1 to the family's other training descriptions (its medoid).
* nearest motion: the description of the training clip whose motion is nearest (21 joints of both hands at 8 evenly
  spaced frames of the same cropped window, Euclidean); it reads what the model reads, less the frame.

Scores are means over clips ± the standard error over clips, and the model's paired difference to each baseline.
With `--references regenerated` (procedural clips only), every labelled held-out clip gets a reference: the
hand world's own description generator re-run on the clip's layout (`plan_clip_spec` from the clip id's seed and
index); for stored description clips this reproduces the stored text exactly (checked), so the set only grows.

    python -m trainers.evaluate_description outputs/jala --dataset outputs/quickstart/unihand_mix
    python -m trainers.evaluate_description outputs/jala --dataset ... --references regenerated --output desc.json
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from dataset_scripts.collator import UniHandCollator
from modeling_jala.hand_jala import JOINTS_XYZ
from trainers.metrics.motion_description.description_text_math import description_scores, rouge_l_f1
from trainers.motion_baselines import labelled_rows, standard_error
from trainers.pretrain_collator import is_description_row

logger = logging.getLogger("jala.evaluate_description")

#: Frames sampled from the cropped window for the nearest-motion features.
NEAREST_MOTION_FRAMES = 8
SYNTHETIC_ID = re.compile(r"^synthetic-(?P<domain>lab|wild)-(?P<split>\w+)-s(?P<seed>\d+)-(?P<index>\d+)$")


def motion_family(row: dict[str, Any]) -> str:
    """The clip's motion family from its scene JSON (procedural clips); 'unknown' where the source has none."""
    try:
        return str(json.loads(row.get("scene") or "{}")["motion"]["family"])
    except (KeyError, TypeError, ValueError):
        return "unknown"


def description_rows(repo: str | Path, split: str, max_clips: int = 100_000) -> list[dict[str, Any]]:
    """Labelled clips of `split` that hold a description of their motion (stored order)."""
    return [row for row in labelled_rows(repo, split, max_clips=100_000) if is_description_row(row)][:max_clips]


def regenerated_description(row_id: str) -> str:
    """The hand world's description of a procedural clip, re-planned from its id (no rendering).

    The text stream is consumed as the builder does (task-type draw, then the text), so a stored
    `motion_description` clip gets its stored text back; other clips get a description drawn by the same generator.
    """
    from dataset_scripts.hand_world.clip import WorldOptions, _choose, plan_clip_spec
    from dataset_scripts.hand_world.instructions import describe

    match = SYNTHETIC_ID.match(row_id)
    if match is None:
        raise ValueError(f"{row_id!r} is not a procedural clip id; use --references stored for other sources.")
    options = WorldOptions(domain=match["domain"], split=match["split"], seed=int(match["seed"]))
    spec = plan_clip_spec(options, int(match["index"]))
    text_rng = options.rng(spec.index, "text")
    _choose(text_rng, options.task_mix)
    return describe(text_rng, spec.layout)


class FamilyModeBaseline:
    """The most frequent training description of the clip's motion family (ties: the family's ROUGE-L medoid)."""

    def __init__(self, rows: Sequence[dict[str, Any]]) -> None:
        by_family: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            by_family[motion_family(row)].append(str(row["instruction"]))
        self.by_family = {family: self._mode(texts) for family, texts in by_family.items()}
        self.overall = self._mode([str(row["instruction"]) for row in rows])

    @staticmethod
    def _mode(texts: list[str]) -> str:
        counts = Counter(texts)
        top = max(counts.values())
        tied = sorted(text for text, count in counts.items() if count == top)
        if len(tied) == 1:
            return tied[0]
        return max(tied, key=lambda text: np.mean([rouge_l_f1(text, other) for other in texts]))

    def __call__(self, row: dict[str, Any]) -> str:
        return self.by_family.get(motion_family(row), self.overall)


def nearest_motion_features(batch: dict[str, Any]) -> np.ndarray:
    """(B, F) joints of both hands (zeros where absent) at NEAREST_MOTION_FRAMES frames of each clip's window."""
    motion = batch["motion"].numpy()  # (B, 2, T, 162)
    features = []
    for b, length in enumerate(batch["frame_lengths"].tolist()):
        frames = np.linspace(0, max(length - 1, 0), NEAREST_MOTION_FRAMES).round().astype(int)
        joints = motion[b][:, frames][..., JOINTS_XYZ] * batch["hands_present"][b].numpy()[:, None, None]
        features.append(joints.reshape(-1))
    return np.stack(features)


class NearestMotionBaseline:
    """The description of the training clip whose (cropped) motion is nearest."""

    def __init__(self, rows: Sequence[dict[str, Any]], collator: UniHandCollator, batch_size: int = 32) -> None:
        self.texts = [str(row["instruction"]) for row in rows]
        self.features = np.concatenate(
            [nearest_motion_features(collator(rows[i : i + batch_size])) for i in range(0, len(rows), batch_size)]
        )

    def predict(self, batch: dict[str, Any]) -> list[str]:
        query = nearest_motion_features(batch)
        distances = ((query[:, None] - self.features[None]) ** 2).sum(-1)
        return [self.texts[i] for i in distances.argmin(1)]


def summarise(predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """Mean and standard error over clips of every score, plus the per-clip values (for paired differences)."""
    scores = description_scores(predictions, references)
    return {
        name: {"mean": float(values.mean()), "se": standard_error(values), "per_clip": values.tolist()}
        for name, values in scores.items()
    }


@torch.no_grad()
def evaluate_split(
    model: Any,
    processor: Any,
    repo: str | Path,
    split: str,
    baselines: dict[str, Callable[[list[dict[str, Any]], dict[str, Any]], list[str]]],
    references: str = "stored",
    max_clips: int = 100_000,
    max_chunks: int = 4,
    batch_size: int = 8,
    max_new_tokens: int = 48,
) -> dict[str, Any]:
    """Descriptions of the model and of every baseline for the held-out clips of `split`, scored."""
    if references == "stored":
        rows = description_rows(repo, split, max_clips)
        texts = [str(row["instruction"]) for row in rows]
    else:
        rows = labelled_rows(repo, split, max_clips)
        texts = [regenerated_description(str(row["id"])) for row in tqdm(rows, desc=f"references {split}")]
    if not rows:
        raise ValueError(f"{repo} has no labelled description clips in {split}; try --references regenerated.")
    size = processor.image_processor.size
    collator = UniHandCollator(image_size=(size["height"], size["width"]), max_chunks=max_chunks, boundary="none")
    predictions: dict[str, list[str]] = defaultdict(list)
    for start in tqdm(range(0, len(rows), batch_size), desc=f"describing {split}"):
        chunk = rows[start : start + batch_size]
        batch = collator(chunk)
        if model is not None:
            predictions["JALA"] += model.generate_description(
                list(batch["first_frames"].numpy()),
                batch["motion"],
                processor,
                max_new_tokens=max_new_tokens,
                hands_present=batch["hands_present"],
                frame_lengths=batch["frame_lengths"],
            )
        for name, baseline in baselines.items():
            predictions[name] += baseline(chunk, batch)
    result: dict[str, Any] = {"clips": len(rows), "references": references, "predictors": {}}
    for name, texts_of_predictor in predictions.items():
        result["predictors"][name] = summarise(texts_of_predictor, texts)
    if model is not None:
        model_scores = result["predictors"]["JALA"]
        for name in baselines:
            for score, values in result["predictors"][name].items():
                difference = np.asarray(model_scores[score]["per_clip"]) - np.asarray(values["per_clip"])
                values["jala_minus_this"] = {"mean": float(difference.mean()), "se": standard_error(difference)}
    result["examples"] = [
        {"id": str(row["id"]), "reference": text, **{name: predictions[name][i] for name in predictions}}
        for i, (row, text) in enumerate(zip(rows[:5], texts[:5], strict=True))
    ]
    return result


def fit_baselines(
    repo: str | Path, processor: Any, max_chunks: int = 4
) -> dict[str, Callable[[list[dict[str, Any]], dict[str, Any]], list[str]]]:
    """Both baselines, fitted on the labelled training description clips only."""
    training = description_rows(repo, "train")
    if not training:
        raise ValueError(f"{repo} has no labelled motion_description training clips to fit the baselines on.")
    size = processor.image_processor.size
    collator = UniHandCollator(image_size=(size["height"], size["width"]), max_chunks=max_chunks, boundary="none")
    family = FamilyModeBaseline(training)
    nearest = NearestMotionBaseline(training, collator)
    logger.info("baselines fitted on %d training description clips", len(training))
    return {
        "family mode": lambda rows, batch: [family(row) for row in rows],
        "nearest motion": lambda rows, batch: nearest.predict(batch),
    }


def format_table(results: dict[str, dict[str, Any]], title: str = "motion descriptions vs references") -> str:
    """Markdown: per split and predictor, each score as mean ± SE over clips, and JALA's paired difference."""
    lines = [
        f"{title} (mean ± standard error over clips; Δ = JALA minus the baseline, paired over clips)",
        "| split | references | predictor | clips | ROUGE-L F1 | token F1 | exact match | Δ ROUGE-L F1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for split, result in results.items():
        for name, scores in result["predictors"].items():
            cells = [f"{scores[key]['mean']:.3f} ± {scores[key]['se']:.3f}" for key in ("rouge_l_f1", "token_f1")]
            cells.append(f"{scores['exact_match']['mean']:.3f}")
            delta = scores["rouge_l_f1"].get("jala_minus_this")
            cells.append("" if delta is None else f"{delta['mean']:+.3f} ± {delta['se']:.3f}")
            lines.append(
                f"| {split} | {result['references']} | {name} | {result['clips']} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="JALA folder (loaded with AutoModel / AutoProcessor, trust_remote_code)")
    parser.add_argument("--dataset", required=True, help="UniHand-Mix repo folder")
    parser.add_argument("--splits", nargs="+", default=["test_lab", "test_wild"])
    parser.add_argument(
        "--references",
        choices=("stored", "regenerated"),
        default="stored",
        help="stored: the motion_description clips' own text; regenerated: every labelled procedural clip, "
        "described by the hand world's generator",
    )
    parser.add_argument("--max_clips", type=int, default=100_000)
    parser.add_argument("--max_chunks", type=int, default=4, help="motion chunks the model reads (as in training)")
    parser.add_argument("--max_new_tokens", type=int, default=48)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--baselines_only", action="store_true", help="score the baselines without a model")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from transformers import AutoModel, AutoProcessor

    processor = AutoProcessor.from_pretrained(args.model, trust_remote_code=True)
    model = None if args.baselines_only else AutoModel.from_pretrained(args.model, trust_remote_code=True).eval()
    baselines = fit_baselines(args.dataset, processor, args.max_chunks)
    results = {
        split: evaluate_split(
            model,
            processor,
            args.dataset,
            split,
            baselines,
            references=args.references,
            max_clips=args.max_clips,
            max_chunks=args.max_chunks,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
        )
        for split in args.splits
    }
    print(format_table(results))
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
