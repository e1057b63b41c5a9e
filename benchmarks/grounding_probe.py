"""Can the backbone learn to find the object an instruction names? The grounding the tiny JALA lacks on test_lab.

`benchmarks/motion_ceilings.py` shows that on test_lab no reader of the scene facts gets much under 0.75x the mean
motion without the *target object's* position: the instruction names it ("the pink cup"), so a model must find that
object in the first frame. A pretrained VLM brings this skill; a from-scratch one has to learn it from the motion loss.
This script asks how fast the JALA folder's VLM (its InternVL structure, its processor) learns the skill when it is
trained for nothing else: referring localisation. Given "the {colour} {noun}" and a first frame, in the prompt layout
the motion positions read (`[text][<img> ... </img>]`), a linear head on the last prefix token's final state
predicts the named object's camera-frame position.

* Training frames: `--scenes` first frames rendered afresh from the procedural world (half lab, half wild) at
  `--world_seed`, a seed the dataset builds do not use; every object of a frame is a query. Frames go through the
  same renderer, sensor noise and JPEG as dataset rows (`render_frame`).
* Test: the first frames of the dataset's held-out clips (the quickstart's `EVAL_CLIPS` per split), every object.
* Baselines: `global mean` (the training objects' mean position) and `scene mean` (the mean of the frame's own
  objects: knows where the objects are, not which one is named). A model under `scene mean` tells objects apart.
* `--init random` starts the VLM as the quickstart's pretraining does (JALA's from-scratch initialisation);
  `--init trained` starts from the folder's trained VLM (what motion pretraining left in it).

Mean 3D error in mm ± standard error over queries, every `--eval_every` steps; a table, a JSON record and a plot.

    python benchmarks/grounding_probe.py --model outputs/quickstart/jala --dataset outputs/quickstart/unihand_mix
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainers.grounding_data import (
    GROUNDING_WORLD_SEED,
    HELD_OUT_SPLITS,
    GroundingQuery,
    baseline_errors,
    held_out_scenes,
    phrase,
    render_scenes,
    summary_mm,
)
from trainers.quickstart import EVAL_CLIPS
from trainers.train_grounding_vlm import FrameBatcher

SPLITS = HELD_OUT_SPLITS


class GroundingProbe(torch.nn.Module):
    """The VLM plus a linear head on the last prefix token: (text, frame) -> standardised position."""

    def __init__(self, vlm: torch.nn.Module, hidden_size: int) -> None:
        super().__init__()
        self.vlm = vlm
        self.head = torch.nn.Linear(hidden_size, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor):
        # Prompts are left-padded (JalaProcessor), so the last position is every sample's last prefix token.
        states = self.vlm(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values)
        return self.head(states.last_hidden_state[:, -1])


def load_vlm(folder: str | Path, init: str) -> tuple[torch.nn.Module, Any, Any]:
    """The folder's VLM (trained, or initialised as JALA pretraining starts it), its processor and its JalaConfig."""
    from modeling_jala.configuration_jala import JalaConfig
    from modeling_jala.modeling_jala import JalaForMotionPretraining
    from modeling_jala.processing_jala import JalaProcessor

    processor = JalaProcessor.from_pretrained(folder)
    if init == "trained":
        model = JalaForMotionPretraining.from_pretrained(folder)
        return model.model.vlm, processor, model.config
    if init != "random":
        raise ValueError(f"--init must be 'random' or 'trained', got {init!r}.")
    config = JalaConfig.from_pretrained(folder)
    return JalaForMotionPretraining(config).model.vlm, processor, config


@torch.no_grad()
def model_errors(
    probe: GroundingProbe,
    encoder: FrameBatcher,
    scenes: Sequence[Sequence[GroundingQuery]],
    mean: np.ndarray,
    std: np.ndarray,
) -> np.ndarray:
    probe.eval()
    queries = [query for scene in scenes for query in scene]
    errors = []
    for start in range(0, len(queries), 64):
        part = queries[start : start + 64]
        inputs = encoder(part, [phrase(q.colour, q.kind) for q in part])
        predicted = probe(**inputs).double().numpy() * std + mean
        errors += list(np.linalg.norm(predicted - np.stack([q.position for q in part]), axis=1))
    probe.train()
    return np.asarray(errors)


def plot_curve(record: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trainers.plotting import save_figure

    figure, axes = plt.subplots(1, len(SPLITS), figsize=(5 * len(SPLITS), 3.6), squeeze=False)
    steps = [point["step"] for point in record["curve"]]
    for axis, split in zip(axes[0], SPLITS, strict=True):
        values = np.array([point[split]["mm"] for point in record["curve"]])
        errors = np.array([point[split]["se_mm"] for point in record["curve"]])
        axis.plot(steps, values, marker="o", label=f"VLM ({record['init']} init)")
        axis.fill_between(steps, values - errors, values + errors, alpha=0.2)
        for name, style in (("global mean", ":"), ("scene mean", "--")):
            axis.axhline(record["baselines"][split][name]["mm"], linestyle=style, color="grey", label=name)
        axis.set(title=split, xlabel="training step", ylabel="3D error of the named object (mm)")
        axis.legend(fontsize=8)
    return save_figure(figure, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a JALA folder: its VLM structure (or weights) and processor")
    parser.add_argument("--dataset", required=True, help="the UniHand-Mix folder whose held-out clips are the test")
    parser.add_argument("--init", choices=("random", "trained"), default="random")
    parser.add_argument("--scenes", type=int, default=4000, help="training scenes rendered (half lab, half wild)")
    parser.add_argument(
        "--world_seed", type=int, default=GROUNDING_WORLD_SEED, help="procedural-world seed of the training scenes"
    )
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=3e-4)
    parser.add_argument("--eval_every", type=int, default=500)
    parser.add_argument("--eval_clips", type=int, default=EVAL_CLIPS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help="write the record here (.json; the plot goes beside it as .png)")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    vlm, processor, config = load_vlm(args.model, args.init)
    train = render_scenes(args.scenes, args.world_seed)
    tests = {split: held_out_scenes(args.dataset, split, args.eval_clips) for split in SPLITS}
    positions = np.stack([query.position for scene in train for query in scene]).astype(np.float64)
    mean, std = positions.mean(0), positions.std(0)
    baselines = {
        split: {name: summary_mm(errors) for name, errors in baseline_errors(scenes, mean).items()}
        for split, scenes in tests.items()
    }

    probe = GroundingProbe(vlm, config.vlm_config.text_config.hidden_size)
    encoder = FrameBatcher(processor)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=args.learning_rate, weight_decay=0.01)
    warmup = max(1, args.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
    )
    curve = []

    def evaluate(step: int) -> None:
        point = {"step": step}
        for split, scenes in tests.items():
            point[split] = summary_mm(model_errors(probe, encoder, scenes, mean, std))
        curve.append(point)

    started = time.monotonic()
    evaluate(0)
    for step in tqdm(range(1, args.steps + 1), desc="grounding", unit="step"):
        scenes = [train[i] for i in rng.integers(len(train), size=args.batch_size)]
        queries = [scene[rng.integers(len(scene))] for scene in scenes]
        inputs = encoder(queries, [phrase(q.colour, q.kind, rng) for q in queries])
        target = torch.tensor((np.stack([q.position for q in queries]) - mean) / std, dtype=torch.float32)
        loss = torch.nn.functional.smooth_l1_loss(probe(**inputs), target)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(probe.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % args.eval_every == 0 or step == args.steps:
            evaluate(step)

    record = {
        "model": str(args.model),
        "init": args.init,
        "scenes": len(train),
        "queries": int(len(positions)),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
        "minutes": round((time.monotonic() - started) / 60, 2),
        "baselines": baselines,
        "curve": curve,
    }
    lines = [
        "| step | " + " | ".join(f"{split} (mm)" for split in SPLITS) + " |",
        "|---|" + "---|" * len(SPLITS),
    ]
    for name in ("global mean", "scene mean"):
        cells = [f"{baselines[s][name]['mm']:.1f} ± {baselines[s][name]['se_mm']:.1f}" for s in SPLITS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for point in curve:
        cells = [f"{point[s]['mm']:.1f} ± {point[s]['se_mm']:.1f}" for s in SPLITS]
        lines.append(f"| VLM, step {point['step']} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(record, indent=2))
        plot_curve(record, args.output.with_suffix(".png"))
    return record


if __name__ == "__main__":
    main()
