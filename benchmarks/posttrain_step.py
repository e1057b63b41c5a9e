"""Milliseconds per post-training step at the MT10 setting: collate (preprocessing or cache reads) and model update.

    MUJOCO_GL=egl python benchmarks/posttrain_step.py --pretrained outputs/quickstart/jala \
        --dataset outputs/mt10/demos --cameras observation.images.corner2,observation.images.gripperPOV

Each row is one pipeline configuration of the same model and batch, timed over `--steps` steps after two warm-up
steps, one after the other in one process (same machine load):

* `PIL collate, frozen vision` — the collator as it was: PIL image processors per sample, SSL encoder and frozen
  vision tower run every step (the paper's frozen InternViT);
* `tensor collate, frozen vision` — batched tensor preprocessing (`preprocess_frame_tensors`);
* `cache, frozen vision` — `FrozenFeatureCache`: SSL and vision-tower features read per frame, no pixels at all;
* `tensor collate, trainable vision` / `cache, trainable vision` — the from-scratch default (the vision tower
  learns, so only the SSL features can be cached).

Prints a markdown table and writes `benchmarks/results/posttrain_step_<device>_<date>.{json,md}`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from benchmark_machine import cpu_model

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from robot_data.lerobot_v3 import ActionChunkDataset, LeRobotV3Dataset  # noqa: E402
from trainers.feature_cache import FrozenFeatureCache  # noqa: E402
from trainers.posttrain import ActionChunkCollator, ModelArguments, build_model, extend_word_vocabulary  # noqa: E402


class PilCollator(ActionChunkCollator):
    """The collator before batched tensor preprocessing: lists of numpy frames through the PIL image processors."""

    def processor_inputs(self, images, texts):
        return self.processor(images=images, text=texts, return_tensors="pt")


def time_steps(model, collate, chunks, batch_size: int, steps: int, seed: int) -> dict[str, float]:
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    rng = np.random.default_rng(seed)
    collate_ms, update_ms = [], []
    for step in range(steps + 2):
        start = time.perf_counter()
        batch = collate([chunks[int(i)] for i in rng.integers(0, len(chunks), batch_size)])
        collated = time.perf_counter()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step >= 2:
            collate_ms.append(1000 * (collated - start))
            update_ms.append(1000 * (time.perf_counter() - collated))
    return {
        "collate_ms": float(np.mean(collate_ms)),
        "update_ms": float(np.mean(update_ms)),
        "step_ms": float(np.mean(collate_ms) + np.mean(update_ms)),
        "step_ms_std": float(np.std(np.add(collate_ms, update_ms))),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", required=True, help="JALA pretraining folder (its structure is used).")
    parser.add_argument("--dataset", required=True, help="LeRobot v3.0 robot dataset.")
    parser.add_argument("--cameras", default="observation.image", help="Comma-separated image keys.")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--head", default="128,4,4", help="DiT width,layers,heads.")
    parser.add_argument("--threads", type=int, default=None, help="Torch threads (default: all cores).")
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    image_keys = [key.strip() for key in args.cameras.split(",") if key.strip()]
    width, layers, heads = (int(part) for part in args.head.split(","))
    dataset = LeRobotV3Dataset(args.dataset)
    rows = []
    with tempfile.TemporaryDirectory() as cache_dir:
        for vision_trainable in (False, True):
            torch.manual_seed(0)
            model_args = ModelArguments(
                model_name_or_path=args.pretrained,
                from_scratch=True,
                head_hidden_size=width,
                head_num_layers=layers,
                head_num_heads=heads,
                vision_tower_trainable=vision_trainable,
            )
            model, processor = build_model(model_args, 4, 4, image_keys)
            if extend_word_vocabulary(processor, list(dataset.tasks.values())):
                model.resize_text_embeddings(len(processor.tokenizer))
            chunks = ActionChunkDataset(
                dataset, chunk_size=model.config.action_head_config.chunk_size, image_keys=image_keys
            )
            model.set_normalization_stats(chunks.normalization_stats())
            vision = "trainable vision" if vision_trainable else "frozen vision"
            collators = {} if vision_trainable else {f"PIL collate, {vision}": PilCollator(processor)}
            collators[f"tensor collate, {vision}"] = ActionChunkCollator(processor)
            cache_start = time.perf_counter()
            cache = FrozenFeatureCache(model, processor, chunks, cache_dir=cache_dir)
            cache_build_s = time.perf_counter() - cache_start
            collators[f"cache, {vision}"] = ActionChunkCollator(processor, cache)
            for name, collate in collators.items():
                timing = time_steps(model, collate, chunks, args.batch_size, args.steps, seed=0)
                rows.append({"pipeline": name, **timing, "cache_build_s": cache_build_s if "cache" in name else None})
                print(f"{name}: {timing['step_ms']:.0f} ms/step (collate {timing['collate_ms']:.0f})", flush=True)
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{cpu_model()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
        f"Python {platform.python_version()}",
        "setting": {
            "cameras": image_keys,
            "batch_size": args.batch_size,
            "dit_width_layers_heads": [width, layers, heads],
            "frames": len(chunks),
            "steps_timed": args.steps,
        },
        "rows": rows,
    }
    table = markdown(report)
    print(table)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    stem = f"posttrain_step_{device}_{report['date']}"
    (results / f"{stem}.json").write_text(json.dumps(report, indent=1))
    (results / f"{stem}.md").write_text(table)
    return report


def markdown(report: dict) -> str:
    setting = report["setting"]
    lines = [
        f"# Post-training step time — {report['date']}",
        "",
        f"Machine: {report['machine']}. Cameras {setting['cameras']}, batch {setting['batch_size']}, DiT "
        f"{setting['dit_width_layers_heads']}, {setting['frames']} frames, mean of {setting['steps_timed']} steps.",
        "",
        "| pipeline | ms / step | ± std | collate ms | forward + backward + AdamW ms | cache build (s) |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        build = f"{row['cache_build_s']:.0f}" if row["cache_build_s"] is not None else ""
        lines.append(
            f"| {row['pipeline']} | {row['step_ms']:.0f} | {row['step_ms_std']:.0f} | {row['collate_ms']:.0f} | "
            f"{row['update_ms']:.0f} | {build} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
