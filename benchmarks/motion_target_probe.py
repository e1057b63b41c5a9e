"""What do the motion positions carry? Linear probes of h for each acting hand's target object and for its motion.

On test_lab the motion depends on where the object the instruction names stands (`benchmarks/motion_ceilings.py`).
This asks how precisely a pretrained JALA's motion positions carry that position: h (the `align_layer` states at a
hand's motion slots, mean over the slots, chunks 0 and 1, every chunk hidden as in generation) of the labelled lab
training clips is fitted by ridge regression to the hand's first target object (camera frame, from the procedural
scene JSON), the ridge strength chosen by 5-fold cross-validation on the training clips, and scored on held-out
clips. Baselines read no words: the training targets' mean, the mean of the frame's objects, and the object nearest
the hand's true start (the object a hand reaches most often, read from the scene). Mean 3D error in mm ± SE.

Read it beside the ceiling readers' `all facts, target ± X mm` rows: how much a target known that precisely is
worth for the motion.

The second probe asks whether generation loses what h holds: a ridge from h (chunks 0-3, every chunk hidden, plus
the hand) to the hand's joints over the clip's first four chunks, fitted the same way on the labelled lab training
clips, is scored on the held-out clips beside the model's own generation and the mean training motion, on the same
clips, hands and frames (`trainers/evaluate_motion.score_predictors`). If the linear reader beats generation, the
decoder loses information; if it ties, h itself is the limit.

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

from motion_ceilings import FACT_SETS, fact_families, mean_motion_errors, reader_errors

from dataset_scripts.collator import UniHandCollator
from modeling_jala.hand_jala import NUM_JOINTS
from modeling_jala.layout_jala import CHUNK_FRAMES, HANDS
from modeling_jala.modeling_jala import JalaForMotionPretraining
from modeling_jala.processing_jala import JalaProcessor
from trainers.evaluate_motion import (
    Predictor,
    _image_size,
    _model_predictor,
    baseline_predictors,
    fit_baselines,
    score_predictors,
)
from trainers.grounding_data import hand_scene_positions, summary_mm
from trainers.motion_baselines import MeanMotionBaseline, clip_joints, hold_to_length, labelled_rows, present_hands
from trainers.pretrain_collator import JalaPretrainCollator
from trainers.quickstart import EVAL_CLIPS

RIDGE_STRENGTHS = (1.0, 10.0, 100.0, 1000.0, 10000.0)
PROBED_CHUNKS = (0, 1)  # the target probe's h
TRAJECTORY_CHUNKS = (0, 1, 2, 3)  # the motion probe's h, and the chunks it predicts (generation's evaluation crop)
TRAJECTORY_ROWS = ("ridge of h", "JALA generation", "mean motion")


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
def hand_states(
    model: JalaForMotionPretraining,
    processor: JalaProcessor,
    rows: list[dict],
    chunks: tuple[int, ...],
    batch_size: int = 8,
    show_progress: bool = True,
) -> list[dict[int, np.ndarray]]:
    """Per row, per acting hand index: h (the align layer at the hand's motion slots, mean over slots, every chunk
    hidden as in generation) of `chunks` concatenated; a clip shorter than a chunk repeats its last chunk's h."""
    collator = JalaPretrainCollator(
        processor, UniHandCollator(image_size=_image_size(processor), max_chunks=max(chunks) + 1)
    )
    states: list[dict[int, np.ndarray]] = []
    for start in tqdm(
        range(0, len(rows), batch_size), desc="states of h", unit="batch", leave=False, disable=not show_progress
    ):
        part = rows[start : start + batch_size]
        inputs = collator(part)
        available = inputs["chunk_mask"].shape[1]
        hidden = torch.ones(len(part), available, len(HANDS), model.config.motion_tokens_per_chunk, dtype=torch.bool)
        outputs = model(**inputs, placeholder_slots=hidden)
        h = outputs.predictive_embeddings.float().mean(3)  # (B, N, 2, H)
        for b in range(len(part)):
            states.append(
                {
                    hand: torch.cat([h[b, min(chunk, available - 1), hand] for chunk in chunks]).numpy()
                    for hand in range(len(HANDS))
                    if bool(outputs.slot_mask[b, 0, hand])
                }
            )
    return states


def probe_features(
    rows: list[dict], states: list[dict[int, np.ndarray]]
) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """(M, len(PROBED_CHUNKS) * H) features of every (clip, acting hand with a target), and its answers."""
    features, answers = [], []
    for row, hands in zip(rows, states, strict=True):
        for hand, answer in hand_targets(row).items():
            if hand in hands:
                features.append(hands[hand])
                answers.append(answer)
    return np.asarray(features, np.float64), answers


def with_hand(states: np.ndarray, hand: int) -> np.ndarray:
    """h plus a one-hot of the hand, so one ridge serves both hands with a per-hand intercept."""
    return np.concatenate([states, np.eye(len(HANDS))[hand]])


def mean_joint_error(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per sample: mean over frames and joints of the 3D error, for flattened (frames * 21 * 3) trajectories."""
    return np.linalg.norm((predicted - truth).reshape(len(truth), -1, 3), axis=-1).mean(-1)


def trajectory_probe(
    model: JalaForMotionPretraining, processor: JalaProcessor, train_rows: list[dict]
) -> tuple[Predictor, float]:
    """A ridge from h to each hand's joints over `TRAJECTORY_CHUNKS`, fitted on `train_rows`, as a predictor that
    `score_predictors` runs beside generation; and its cross-validated strength."""
    frames = CHUNK_FRAMES * len(TRAJECTORY_CHUNKS)
    features, trajectories = [], []
    for row, states in zip(train_rows, hand_states(model, processor, train_rows, TRAJECTORY_CHUNKS), strict=True):
        joints = clip_joints(row)
        for hand in np.flatnonzero(present_hands(row)):
            if hand in states:
                features.append(with_hand(states[hand], hand))
                trajectories.append(hold_to_length(joints[:, hand], frames).reshape(-1))
    x, y = np.asarray(features, np.float64), np.asarray(trajectories, np.float64)
    strength = cross_validated_strength(x, y, error=mean_joint_error)
    ridge = fit_ridge(x, y, strength)

    def predict(rows: list[dict], batch: dict[str, Any], length: int) -> torch.Tensor:
        output = torch.zeros(len(rows), len(HANDS), length, NUM_JOINTS, 3)
        for b, states in enumerate(hand_states(model, processor, rows, TRAJECTORY_CHUNKS, show_progress=False)):
            for hand, state in states.items():
                trajectory = ridge(with_hand(state, hand)[None])[0].reshape(frames, -1, 3)
                output[b, hand] = torch.from_numpy(hold_to_length(trajectory, length)[:length])
        return output

    return predict, strength


def fit_ridge(x: np.ndarray, y: np.ndarray, strength: float):
    """Standardised ridge with an unpenalised intercept; returns the predictor."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    design = (x - mean) / std
    weights = np.linalg.solve(design.T @ design + strength * np.eye(x.shape[1]), design.T @ (y - y.mean(0)))
    return lambda new: (new - mean) / std @ weights + y.mean(0)


def point_error(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per sample 3D error of (N, 3) positions."""
    return np.linalg.norm(predicted - truth, axis=1)


def out_of_fold(x: np.ndarray, y: np.ndarray, strength: float, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Each training sample's ridge prediction from a fit on the other folds: estimates as a probe would give them
    on clips it never saw, for a reader fitted on the training clips."""
    order = np.random.default_rng(seed).permutation(len(x))
    predicted = np.zeros_like(y)
    for part in np.array_split(order, min(folds, len(x))):
        keep = np.setdiff1d(order, part)
        predicted[part] = fit_ridge(x[keep], y[keep], strength)(x[part])
    return predicted


def cross_validated_strength(
    x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0, error: Any = point_error
) -> float:
    """The ridge strength with the lowest mean `error` (per sample) of its out-of-fold predictions."""
    scores = {
        strength: float(error(out_of_fold(x, y, strength, folds, seed), y).mean()) for strength in RIDGE_STRENGTHS
    }
    return min(scores, key=scores.get)


def probed_positions(
    train_rows: list[dict],
    train_states: list[dict[int, np.ndarray]],
    test_rows: list[dict],
    test_states: list[dict[int, np.ndarray]],
) -> tuple[dict, dict]:
    """(row index, hand) -> {"start", "target"} positions as ridge probes of h estimate them (out of fold on the
    training clips, fitted on all of them for the held-out ones); "target" only for hands with a target."""
    known: tuple[dict, dict] = ({}, {})
    for name in ("start", "target"):
        samples: tuple[list, list] = ([], [])
        for side, (rows, states) in enumerate(((train_rows, train_states), (test_rows, test_states))):
            for index, (row, hands) in enumerate(zip(rows, states, strict=True)):
                scene = json.loads(row["scene"])
                for hand, state in hands.items():
                    position = getattr(hand_scene_positions(scene, HANDS[hand]), name)
                    if position is not None:
                        samples[side].append(((index, hand), state, position))
        x, y = (np.asarray([sample[k] for sample in samples[0]], np.float64) for k in (1, 2))
        strength = cross_validated_strength(x, y)
        test_x = np.asarray([sample[1] for sample in samples[1]], np.float64)
        estimates = (out_of_fold(x, y, strength), fit_ridge(x, y, strength)(test_x))
        for side in (0, 1):
            for (key, _, _), estimate in zip(samples[side], estimates[side], strict=True):
                known[side].setdefault(key, {})[name] = estimate
    return known


def facts_reader(
    train_rows: list[dict],
    train_states: list[dict[int, np.ndarray]],
    test_rows: list[dict],
    test_states: list[dict[int, np.ndarray]],
    frames: int = CHUNK_FRAMES * len(TRAJECTORY_CHUNKS),
) -> dict[str, dict[str, float]]:
    """The ceiling reader of every scene fact (`motion_ceilings`, test_lab) fed with the start and target positions
    as h carries them instead of the truth: what the facts in h are worth for the motion, beside the same reader of
    the true facts and the mean motion on the same hands (mean over hand sequences, mm ± SE)."""
    known_train, known_test = probed_positions(train_rows, train_states, test_rows, test_states)
    only_target = (
        {k: {"target": v["target"]} for k, v in known.items() if "target" in v} for known in (known_train, known_test)
    )
    families = fact_families(train_rows)
    all_facts = FACT_SETS["all facts"]
    readers = {
        "true facts": (None, None),
        "start and target from h": (known_train, known_test),
        "true start, target from h": tuple(only_target),
    }
    result = {}
    for name, (train_known, test_known) in readers.items():
        errors, keys = reader_errors(train_rows, test_rows, all_facts, families, frames, 0.0, train_known, test_known)
        result[name] = summary_mm(np.asarray(errors) / 1000)
    mean_errors = mean_motion_errors(MeanMotionBaseline.fit(train_rows), test_rows, keys, frames)
    result["mean motion"] = summary_mm(np.asarray(mean_errors) / 1000)
    return result


def probe_model(
    folder: str, dataset: str, eval_clips: int, train_clips: int, trajectory: bool = True
) -> dict[str, Any]:
    model = JalaForMotionPretraining.from_pretrained(folder).eval()
    processor = JalaProcessor.from_pretrained(folder)
    train_rows = labelled_rows(dataset, "train", train_clips, "lab")
    test_rows = labelled_rows(dataset, "test_lab", eval_clips)
    train_states = hand_states(model, processor, train_rows, PROBED_CHUNKS)
    test_states = hand_states(model, processor, test_rows, PROBED_CHUNKS)
    train_x, train_answers = probe_features(train_rows, train_states)
    test_x, test_answers = probe_features(test_rows, test_states)
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
    result["facts from h"] = facts_reader(train_rows, train_states, test_rows, test_states)
    if trajectory:
        read_h, result["trajectory_ridge_strength"] = trajectory_probe(model, processor, train_rows)
        predictors: dict[str, Predictor] = {
            "ridge of h": read_h,
            "JALA generation": _model_predictor(model, processor, None, None, seed=0),
            "mean motion": baseline_predictors(fit_baselines(dataset, model, processor))["mean motion"],
        }
        result["trajectory"] = {}
        for split in ("test_lab", "test_wild"):
            rows = labelled_rows(dataset, split, eval_clips)
            if not rows:
                continue
            scores = score_predictors(rows, predictors, _image_size(processor), len(TRAJECTORY_CHUNKS))
            result["trajectory"][split] = {
                name: {key: report[key] for key in ("mpjpe_mm", "mpjpe_se_mm", "mpjpe_per_chunk_mm")}
                for name, report in scores.items()
            }
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", required=True, help="JALA pretraining folder(s)")
    parser.add_argument("--dataset", required=True, help="a procedural UniHand-Mix build (scene JSON)")
    parser.add_argument("--eval_clips", type=int, default=EVAL_CLIPS)
    parser.add_argument("--train_clips", type=int, default=100_000, help="labelled lab training clips fitted on")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--no_trajectory", action="store_true", help="skip the motion probe (it also generates every held-out clip)"
    )
    args = parser.parse_args(argv)
    results = {
        folder: probe_model(folder, args.dataset, args.eval_clips, args.train_clips, not args.no_trajectory)
        for folder in args.model
    }
    lines = ["| model | probe of h (mm) | targets' mean | frame's objects | nearest object |", "|---|---|---|---|---|"]
    for folder, result in results.items():
        cells = [result[key] for key in ("probe of h", "training targets' mean")]
        cells += [result[f"{name} (reads the scene)"] for name in ("frame objects", "nearest object")]
        lines.append(f"| {folder} | " + " | ".join(f"{c['mm']:.1f} ± {c['se_mm']:.1f}" for c in cells) + " |")
    names = ("true facts", "start and target from h", "true start, target from h", "mean motion")
    lines += [
        "",
        "| model | ceiling reader: " + " | ".join(names) + " (test_lab MPJPE, mm) |",
        "|---|---|---|---|---|",
    ]
    for folder, result in results.items():
        cells = [
            f"{result['facts from h'][name]['mm']:.1f} ± {result['facts from h'][name]['se_mm']:.1f}" for name in names
        ]
        lines.append(f"| {folder} | " + " | ".join(cells) + " |")
    if not args.no_trajectory:
        lines += ["", "| model | split | " + " | ".join(TRAJECTORY_ROWS) + " (MPJPE, mm) |", "|---|---|---|---|---|"]
        for folder, result in results.items():
            for split, scores in result["trajectory"].items():
                cells = [
                    f"{scores[name]['mpjpe_mm']:.1f} ± {scores[name]['mpjpe_se_mm']:.1f}" for name in TRAJECTORY_ROWS
                ]
                lines.append(f"| {folder} | {split} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
