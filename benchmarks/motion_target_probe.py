"""Do the motion positions know where the instructed object is? A linear probe of h for each acting hand's target.

On test_lab the motion depends on where the object the instruction names stands (`benchmarks/motion_ceilings.py`).
This asks how precisely a pretrained JALA's motion positions carry that position: h (the `align_layer` states at a
hand's motion slots, mean over the slots, chunks 0 and 1, every chunk hidden as in generation) of the labelled lab
training clips is fitted by ridge regression to the hand's first target object (camera frame, from the procedural
scene JSON), the ridge strength chosen by 5-fold cross-validation on the training clips, and scored on held-out
clips. Baselines read no words: the training targets' mean, the mean of the frame's objects, and the object nearest
the hand's true start (the object a hand reaches most often, read from the scene). Mean 3D error in mm ± SE.

Read it beside the ceiling readers' `all facts, target ± X mm` rows: how much a target known that precisely is
worth for the motion.

    python benchmarks/motion_target_probe.py --model outputs/quickstart/jala --dataset outputs/quickstart/unihand_mix
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataset_scripts.collator import UniHandCollator
from modeling_jala.layout_jala import HANDS
from modeling_jala.modeling_jala import JalaForMotionPretraining
from modeling_jala.processing_jala import JalaProcessor
from trainers.evaluate_motion import _image_size
from trainers.grounding_data import hand_scene_positions, summary_mm
from trainers.motion_baselines import labelled_rows
from trainers.pretrain_collator import JalaPretrainCollator
from trainers.quickstart import EVAL_CLIPS

RIDGE_STRENGTHS = (1.0, 10.0, 100.0, 1000.0, 10000.0)
PROBED_CHUNKS = (0, 1)


def hand_targets(row: dict[str, Any]) -> dict[int, dict[str, np.ndarray]]:
    """Per hand index with a target object: its position, the frame's objects' mean, the object nearest the start."""
    scene = json.loads(row["scene"])
    answers = {}
    for index, hand in enumerate(HANDS):
        positions = hand_scene_positions(scene, hand)
        if positions.target is not None:
            answers[index] = {
                "target": positions.target,
                "frame objects": positions.objects.mean(0),
                "nearest object": positions.nearest,
            }
    return answers


@torch.no_grad()
def probe_features(
    model: JalaForMotionPretraining, processor: JalaProcessor, rows: list[dict], batch_size: int = 8
) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """(M, len(PROBED_CHUNKS) * H) features of every (clip, acting hand with a target), and its answers."""
    collator = JalaPretrainCollator(
        processor, UniHandCollator(image_size=_image_size(processor), max_chunks=max(PROBED_CHUNKS) + 1)
    )
    features, answers = [], []
    for start in tqdm(range(0, len(rows), batch_size), desc="probe features", unit="batch", leave=False):
        part = rows[start : start + batch_size]
        inputs = collator(part)
        chunks = inputs["chunk_mask"].shape[1]
        hidden = torch.ones(len(part), chunks, len(HANDS), model.config.motion_tokens_per_chunk, dtype=torch.bool)
        outputs = model(**inputs, placeholder_slots=hidden)
        h = outputs.predictive_embeddings.float().mean(3)  # (B, N, 2, H)
        for b, row in enumerate(part):
            for hand, answer in hand_targets(row).items():
                if not bool(outputs.slot_mask[b, 0, hand]):
                    continue
                chosen = [h[b, min(chunk, chunks - 1), hand] for chunk in PROBED_CHUNKS]
                features.append(torch.cat(chosen).numpy())
                answers.append(answer)
    return np.asarray(features, np.float64), answers


def fit_ridge(x: np.ndarray, y: np.ndarray, strength: float):
    """Standardised ridge with an unpenalised intercept; returns the predictor."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    design = (x - mean) / std
    weights = np.linalg.solve(design.T @ design + strength * np.eye(x.shape[1]), design.T @ (y - y.mean(0)))
    return lambda new: (new - mean) / std @ weights + y.mean(0)


def cross_validated_strength(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """The ridge strength with the lowest mean 3D error over `folds` splits of the training set."""
    order = np.random.default_rng(seed).permutation(len(x))
    parts = np.array_split(order, min(folds, len(x)))
    scores = {}
    for strength in RIDGE_STRENGTHS:
        errors = []
        for part in parts:
            keep = np.setdiff1d(order, part)
            predict = fit_ridge(x[keep], y[keep], strength)
            errors += list(np.linalg.norm(predict(x[part]) - y[part], axis=1))
        scores[strength] = float(np.mean(errors))
    return min(scores, key=scores.get)


def probe_model(folder: str, dataset: str, eval_clips: int, train_clips: int) -> dict[str, Any]:
    model = JalaForMotionPretraining.from_pretrained(folder).eval()
    processor = JalaProcessor.from_pretrained(folder)
    train_x, train_answers = probe_features(model, processor, labelled_rows(dataset, "train", train_clips, "lab"))
    test_x, test_answers = probe_features(model, processor, labelled_rows(dataset, "test_lab", eval_clips))
    train_y = np.stack([answer["target"] for answer in train_answers])
    test_y = np.stack([answer["target"] for answer in test_answers])
    strength = cross_validated_strength(train_x, train_y)
    predicted = fit_ridge(train_x, train_y, strength)(test_x)
    result = {"probe of h": summary_mm(np.linalg.norm(predicted - test_y, axis=1)), "ridge_strength": strength}
    result["training targets' mean"] = summary_mm(np.linalg.norm(train_y.mean(0) - test_y, axis=1))
    for name in ("frame objects", "nearest object"):
        guesses = np.stack([answer[name] for answer in test_answers])
        result[f"{name} (reads the scene)"] = summary_mm(np.linalg.norm(guesses - test_y, axis=1))
    result["queries"] = {"train": len(train_y), "test_lab": len(test_y)}
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", required=True, help="JALA pretraining folder(s)")
    parser.add_argument("--dataset", required=True, help="a procedural UniHand-Mix build (scene JSON)")
    parser.add_argument("--eval_clips", type=int, default=EVAL_CLIPS)
    parser.add_argument("--train_clips", type=int, default=100_000, help="labelled lab training clips fitted on")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    results = {folder: probe_model(folder, args.dataset, args.eval_clips, args.train_clips) for folder in args.model}
    lines = ["| model | probe of h (mm) | targets' mean | frame's objects | nearest object |", "|---|---|---|---|---|"]
    for folder, result in results.items():
        cells = [result[key] for key in ("probe of h", "training targets' mean")]
        cells += [result[f"{name} (reads the scene)"] for name in ("frame objects", "nearest object")]
        lines.append(f"| {folder} | " + " | ".join(f"{c['mm']:.1f} ± {c['se_mm']:.1f}" for c in cells) + " |")
    print("\n".join(lines))
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
