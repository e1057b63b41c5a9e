"""Linear probe of frozen SSL frame encoders on UniHand-Mix: first-frame wrist position and grip aperture.

Compares each given encoder folder (e.g. from trainers/train_ssl_encoder.py) with the same architecture at random
init (mean over seeds) and with the mean predictor, on held-out test_lab / test_wild clips (see
`trainers/ssl_probe.py` for the protocol). Prints a Markdown table and writes JSON + Markdown to
benchmarks/results/ssl_probe_<date>[_<tag>].{json,md}, with the date and machine in both.

    python benchmarks/ssl_probe.py --dataset outputs/unihand_mix --encoder ssl=outputs/ssl_encoder
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import sys
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmark_machine import cpu_model  # noqa: E402

from trainers.ssl_probe import TRAIN_LOO, format_probe_table, probe_encoders  # noqa: E402

logger = logging.getLogger("ssl_probe")


def parse_encoders(specs: list[str]) -> dict[str, str]:
    """`name=folder` pairs (a bare folder is named after itself)."""
    encoders = {}
    for spec in specs:
        name, _, folder = spec.rpartition("=")
        folder_path = Path(folder)
        if not (folder_path / "config.json").exists():
            raise SystemExit(f"--encoder {spec!r}: {folder} has no config.json; give NAME=FOLDER of a saved encoder.")
        encoders[name or folder_path.name] = folder
    return encoders


def encoder_training(folder: str) -> dict | None:
    """Steps and minutes of an encoder trained by trainers/train_ssl_encoder.py (its train_report.json)."""
    saved = Path(folder, "train_report.json")
    if not saved.exists():
        return None
    report = json.loads(saved.read_text())
    return {"steps": report["steps"], "minutes": round(report["train_seconds"] / 60, 2), "frames": report["frames"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", nargs="+", required=True, help="UniHand-Mix repo folder(s)")
    parser.add_argument(
        "--encoder", action="append", required=True, help="NAME=FOLDER of a saved encoder (repeatable)"
    )
    parser.add_argument("--random_seeds", default="0,1,2", help="seeds of the random-init baseline ('' for none)")
    parser.add_argument("--pool_grid", type=int, default=None, help="the model's ssl_pool_grid (default: none)")
    parser.add_argument("--output_dir", default=str(REPO_ROOT / "benchmarks" / "results"))
    parser.add_argument("--tag", default="", help="suffix of the result file names")
    parser.add_argument("--num_threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.num_threads:
        torch.set_num_threads(args.num_threads)

    encoders = parse_encoders(args.encoder)
    seeds = tuple(int(seed) for seed in args.random_seeds.split(",") if seed.strip())
    now = datetime.datetime.now().astimezone()
    machine = f"{cpu_model()} ({torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs, {platform.node()})"
    result = probe_encoders(args.dataset, encoders, random_init_seeds=seeds, pool_grid=args.pool_grid)
    result.update(
        date=now.isoformat(timespec="minutes"),
        machine=machine,
        dataset=args.dataset,
        torch=torch.__version__,
        encoder_training={name: encoder_training(folder) for name, folder in encoders.items()},
    )
    trained = ", ".join(
        f"{name}: {info['steps']} steps in {info['minutes']} min"
        for name, info in result["encoder_training"].items()
        if info
    )
    clips = ", ".join(f"{split} {count}" for split, count in result["clips"].items())
    lines = [
        f"SSL encoder linear probe — {machine} — {result['date']} — torch {torch.__version__}",
        "",
        f"Dataset {', '.join(args.dataset)}; labelled clips: {clips}. Features: patch tokens as JALA reads them "
        f"(pool grid {args.pool_grid}), flattened; ridge per hand, penalty by leave-one-out on train. Targets: "
        "first-frame wrist xyz (camera frame) and thumb-index aperture. R² pooled within hands; errors: mean "
        f"Euclidean wrist error, mean absolute aperture error. `{TRAIN_LOO}`: leave-one-out on the train clips."
        + (f" Encoders trained: {trained}." if trained else ""),
        "",
        format_probe_table(result["results"]),
    ]
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stem = f"ssl_probe_{now.date().isoformat()}" + (f"_{args.tag}" if args.tag else "")
    (output_dir / f"{stem}.md").write_text(markdown)
    (output_dir / f"{stem}.json").write_text(json.dumps(result, indent=1))
    logger.info("wrote %s.{md,json} in %s", stem, output_dir)
    return result


if __name__ == "__main__":
    main()
