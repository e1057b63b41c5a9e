"""How much a frozen SSL encoder's patch token says about *where* it sits in the patch grid.

The LAP and LSP cross-attend to the SSL patch tokens, and cross-attention reads its keys as a set: unless each token
carries its place, the perceiver cannot tell where the hand or an object is. A ViT with rotary positions (DINOv3)
keeps little absolute position in its outputs. This probe fits a ridge regression from one patch token (its D
features, nothing else) to the one-hot index of its grid cell on the train clips' first frames and reports the
share of held-out first-frame tokens whose cell it names, beside chance (1 / cells). A low score is why
`JalaConfig.perceiver_patch_positions` adds a fixed grid code to each token (docs/design.md §1.5).

    python benchmarks/patch_position_probe.py --dataset outputs/quickstart/unihand_mix \\
        --encoder outputs/quickstart/ssl_encoder
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoModel, PreTrainedModel

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modeling_jala.ssl_features_jala import ssl_image_settings
from trainers.ssl_probe import frame_features, load_encoder, load_probe_split, preprocess

REPO_ROOT = Path(__file__).resolve().parent.parent


def patch_tokens(encoder: PreTrainedModel, pixel_values: torch.Tensor) -> np.ndarray:
    """(N, P, D) patch tokens as the perceivers read them (no pooling): the SSL probe's features, unflattened."""
    return frame_features(encoder, pixel_values).reshape(len(pixel_values), -1, encoder.config.hidden_size)


def cell_accuracy(train_tokens: np.ndarray, test_tokens: dict[str, np.ndarray], alpha: float) -> dict[str, float]:
    """Ridge from one token's features to its one-hot cell, fitted on `train_tokens`; accuracy on each test set."""
    cells, width = train_tokens.shape[1:]
    features = train_tokens.reshape(-1, width)
    mean, std = features.mean(0), features.std(0) + 1e-8
    x = (features - mean) / std
    y = np.tile(np.eye(cells), (train_tokens.shape[0], 1))
    weight = np.linalg.solve(x.T @ x + alpha * len(x) * np.eye(width), x.T @ (y - y.mean(0)))
    scores = {}
    for name, tokens in test_tokens.items():
        predicted = (((tokens.reshape(-1, width) - mean) / std) @ weight).argmax(1)
        scores[name] = float((predicted == np.tile(np.arange(cells), tokens.shape[0])).mean())
    return scores


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, help="UniHand-Mix folder")
    parser.add_argument("--encoder", required=True, help="SSL encoder folder (AutoModel)")
    parser.add_argument("--random_seeds", default="0,1,2", help="seeds of the same structure at random init")
    parser.add_argument("--alpha", type=float, default=1e-3, help="ridge penalty per sample")
    parser.add_argument("--output_dir", default=str(REPO_ROOT / "benchmarks" / "results"))
    parser.add_argument("--tag", default="", help="suffix of the result file names")
    args = parser.parse_args(argv)

    splits = {name: load_probe_split(args.dataset, name) for name in ("train", "test_lab", "test_wild")}
    pixels = {name: preprocess(ssl_image_settings(args.encoder), split.images) for name, split in splits.items()}

    def score(encoder: PreTrainedModel) -> dict[str, float]:
        tokens = {name: patch_tokens(encoder, values) for name, values in pixels.items()}
        return cell_accuracy(tokens.pop("train"), tokens, args.alpha)

    trained = load_encoder(args.encoder)
    cells = patch_tokens(trained, pixels["test_lab"][:1]).shape[1]
    rows = {"self-supervised": score(trained)}
    seeds = [int(seed) for seed in args.random_seeds.split(",") if seed]
    if seeds:
        per_seed = []
        for seed in seeds:
            torch.manual_seed(seed)
            per_seed.append(score(AutoModel.from_config(AutoConfig.from_pretrained(args.encoder)).eval()))
        rows[f"random init ({len(seeds)} seeds)"] = {
            key: float(np.mean([r[key] for r in per_seed])) for key in per_seed[0]
        }
    rows["chance"] = {"test_lab": 1 / cells, "test_wild": 1 / cells}

    stamp = datetime.now(UTC)
    lines = [
        f"Patch-position probe — {stamp:%Y-%m-%dT%H:%M}+00:00 — encoder {args.encoder}, {cells} patches per frame",
        "",
        f"Ridge (penalty {args.alpha} per sample) from one patch token to its grid cell, fitted on the first frames "
        f"of {len(splits['train'])} labelled train clips; share of held-out first-frame tokens whose cell it names.",
        "",
        "| encoder | test_lab | test_wild |",
        "|---|---|---|",
        *[f"| {name} | {row['test_lab']:.3f} | {row['test_wild']:.3f} |" for name, row in rows.items()],
    ]
    table = "\n".join(lines)
    print(table)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    name = f"patch_position_probe_{stamp:%Y-%m-%d}{'_' + args.tag if args.tag else ''}"
    (output / f"{name}.md").write_text(table + "\n")
    record = {"encoder": args.encoder, "dataset": args.dataset, "cells": cells, "alpha": args.alpha, "results": rows}
    (output / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


if __name__ == "__main__":
    main()
