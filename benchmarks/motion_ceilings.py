"""How much of a procedural clip's motion the first frame + instruction can explain: reference predictors that read
the hand world's hidden scene facts (which a model must infer from pixels and words).

A ridge regression from per-hand facts to the hand's whole joint trajectory (first `--frames` frames), fitted on the
labelled training clips, scored by MPJPE on held-out clips beside the mean-motion baseline:

* `family + hand`: what the instruction alone says (the motion family) and which hand acts;
* `+ start wrist`: plus the hand's true start position (visible in the first frame);
* `+ start + nearest object`: the start plus the position of the object nearest the hand's start (objects found in
  the frame, but no word grounded: the nearest object is often, not always, the named one);
* `+ target object`: plus the target object's true position (instruction words grounded in the frame);
* `all facts`: everything above;
* `all facts, target ± X mm`: the target's position known only to within a Gaussian error of mean 3D size X mm
  (`--target_errors_mm`), in training and held-out clips alike, the way a model that localises the named object
  imperfectly would know it. It says how precise grounding has to be to pay off.

These are not baselines a model can run (they read the scene JSON, which only the procedural world has); they tell
what a model that perfectly extracted each fact could reach, i.e. where a gap to the mean-motion baseline comes
from. Millimetres, over the same held-out clips per split that the quickstart evaluates (`EVAL_CLIPS`, 40).

    python benchmarks/motion_ceilings.py --dataset outputs/quickstart/unihand_mix
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modeling_jala.layout_jala import HANDS
from trainers.evaluate_motion import labelled_rows
from trainers.grounding_data import hand_scene_positions
from trainers.motion_baselines import MeanMotionBaseline, clip_joints, hold_to_length, present_hands
from trainers.quickstart import EVAL_CLIPS

FACT_SETS = {
    "family + hand": ("family", "hand"),
    "+ start wrist": ("family", "hand", "start"),
    "+ start + nearest object": ("family", "hand", "start", "nearest"),
    "+ target object": ("family", "hand", "target"),
    "all facts": ("family", "hand", "start", "target"),
}


#: Mean norm of a 3D standard normal vector: a per-axis sigma of X / this gives a mean 3D error of X.
MEAN_NORM_3D = float(np.sqrt(8 / np.pi))


def scene_facts(
    row: dict,
    hand: int,
    families: list[str],
    target_error_m: float = 0.0,
    rng: np.random.Generator | None = None,
    known: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """The hand's facts from the scene JSON; `known` replaces the true `start` / `target` position by an estimate
    (e.g. what a probe reads from a model: benchmarks/motion_target_probe.py)."""
    scene = json.loads(row["scene"])
    positions = hand_scene_positions(scene, HANDS[hand])
    known = known or {}
    start = known.get("start", positions.start)
    target = np.zeros(3) if positions.target is None else known.get("target", positions.target)
    if target_error_m > 0:
        target = target + (rng or np.random.default_rng()).normal(0.0, target_error_m / MEAN_NORM_3D, size=3)
    nearest = np.zeros(3) if positions.nearest is None else positions.nearest
    family = np.zeros(len(families))
    if scene["motion"]["family"] in families:  # a family no training clip shows stays all zeros
        family[families.index(scene["motion"]["family"])] = 1.0
    return {
        "family": family,
        "hand": np.array([hand, positions.target is not None], dtype=float),
        # Positions interact with the family (a reach goes to the target, a wave stays near the start).
        "start": np.outer(start, family).ravel(),
        "target": np.outer(target, family).ravel(),
        "nearest": np.outer(nearest, family).ravel(),
    }


def design(
    rows: list[dict],
    facts: tuple[str, ...],
    families: list[str],
    frames: int,
    target_error_m: float = 0.0,
    known: dict[tuple[int, int], dict[str, np.ndarray]] | None = None,
):
    """Features, flattened trajectories and (row index, hand) keys of every acting hand; `known[(index, hand)]`:
    estimates that replace true positions (`scene_facts`)."""
    features, targets, keys = [], [], []
    rng = np.random.default_rng(0)
    for index, row in enumerate(rows):
        joints = clip_joints(row)
        for hand in np.flatnonzero(present_hands(row)):
            values = scene_facts(row, hand, families, target_error_m, rng, (known or {}).get((index, int(hand))))
            features.append(np.concatenate([values[name] for name in facts]))
            targets.append(hold_to_length(joints[:, hand], frames).reshape(-1))
            keys.append((index, hand))
    return np.asarray(features), np.asarray(targets), keys


def ridge(train_x: np.ndarray, train_y: np.ndarray, alpha: float = 1.0):
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    design_matrix = np.c_[(train_x - mean) / std, np.ones(len(train_x))]
    weights = np.linalg.solve(
        design_matrix.T @ design_matrix + alpha * np.eye(design_matrix.shape[1]), design_matrix.T @ train_y
    )
    return lambda x: np.c_[(x - mean) / std, np.ones(len(x))] @ weights


def mpjpe_mm(prediction: np.ndarray, truth: np.ndarray) -> float:
    return float(1000 * np.linalg.norm(prediction - truth, axis=-1).mean())


def reader_errors(
    train: list[dict],
    test: list[dict],
    facts: tuple[str, ...],
    families: list[str],
    frames: int,
    target_error_m: float = 0.0,
    known_train: dict | None = None,
    known_test: dict | None = None,
) -> tuple[list[float], list[tuple[int, int]]]:
    """MPJPE (mm) of the ridge reader of `facts` fitted on `train`, per acting hand of `test` (its valid frames
    among the first `frames`), and the (row index, hand) keys."""
    train_x, train_y, _ = design(train, facts, families, frames, target_error_m, known_train)
    predict = ridge(train_x, train_y)
    test_x, _, keys = design(test, facts, families, frames, target_error_m, known_test)
    predictions = predict(test_x).reshape(len(keys), frames, 21, 3)
    errors = []
    for (index, hand), prediction in zip(keys, predictions, strict=True):
        truth = clip_joints(test[index])[:frames, hand]
        errors.append(mpjpe_mm(prediction[: len(truth)], truth))
    return errors, keys


def mean_motion_errors(
    mean: MeanMotionBaseline, test: list[dict], keys: list[tuple[int, int]], frames: int
) -> list[float]:
    """MPJPE (mm) of the mean training motion per (row index, hand) of `test`, on the frames a reader is scored on."""
    errors = []
    for index, hand in keys:
        truth = clip_joints(test[index])[:frames, hand]
        errors.append(mpjpe_mm(mean.predict(test[index], hand, len(truth)), truth))
    return errors


def fact_families(train: list[dict]) -> list[str]:
    """The motion families of the training scenes, in a fixed order (the readers' one-hot)."""
    return sorted({json.loads(row["scene"])["motion"]["family"] for row in train})


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--eval_clips", type=int, default=EVAL_CLIPS)
    parser.add_argument("--frames", type=int, default=60, help="frames scored (4 chunks of 15)")
    parser.add_argument(
        "--target_errors_mm",
        type=float,
        nargs="*",
        default=[30.0, 60.0, 100.0],
        help="rows with the target known to within this mean 3D error (mm)",
    )
    parser.add_argument("--output", type=Path, help="write the table as JSON here")
    args = parser.parse_args(argv)
    train = labelled_rows(args.dataset, "train", 100_000)
    families = fact_families(train)
    mean = MeanMotionBaseline.fit(train)
    results: dict[str, dict[str, float]] = {}
    for split in ("test_lab", "test_wild"):
        test = labelled_rows(args.dataset, split, args.eval_clips)
        errors = {"mean motion": []}
        readers = [(name, facts, 0.0) for name, facts in FACT_SETS.items()] + [
            (f"all facts, target ± {error:g} mm", FACT_SETS["all facts"], error / 1000)
            for error in args.target_errors_mm
        ]
        for facts_name, facts, target_error_m in readers:
            errors[facts_name], keys = reader_errors(train, test, facts, families, args.frames, target_error_m)
        errors["mean motion"] = mean_motion_errors(mean, test, keys, args.frames)
        results[split] = {name: float(np.mean(values)) for name, values in errors.items()}
    lines = ["| predictor (reads hidden scene facts) | test_lab MPJPE (mm) | test_wild MPJPE (mm) |", "|---|---|---|"]
    for name in results["test_lab"]:
        lines.append(f"| {name} | {results['test_lab'][name]:.1f} | {results['test_wild'][name]:.1f} |")
    print("\n".join(lines))
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
