"""The paper's central comparison (Table 1): does unlabelled wild video, tied in through latent actions, improve
motion prediction in wild scenes? Trains each variant with the same data, tokenizer and budget, then evaluates
generation on held-out lab and wild scenes.

    python benchmarks/table1_ablation.py --dataset outputs/unihand_mix_mini \
        --motion_tokenizer outputs/quickstart/motion_tokenizer --output_dir outputs/table1 --steps 2000

Variants (rows): lab-only (lab clips only, no alignment), w/o align (all clips, λ = 0: wild clips help only through
their pseudo-labels), w/o latent (no LAP: labelled and pseudo-labelled clips only), JALA (all clips, alignment).
Prints a markdown table (MPJPE / PA-MPJPE / MWTE in mm, MDE in degrees) with the machine, date and budget, and
below the variants the two baselines of `trainers/motion_baselines.py` (per-frame mean training motion, nearest
training clip by instruction + first frame through the frozen SSL encoder) on the same clips, hands and frames.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modeling_jala.modeling_jala import JalaForMotionPretraining
from modeling_jala.processing_jala import JalaProcessor
from trainers import pretrain
from trainers.evaluate_motion import evaluate_baselines, evaluate_generation, fit_baselines

VARIANTS = {
    "lab-only": ["--variant=wo_align", "--lab_weight=1.0"],
    "w/o align": ["--variant=wo_align"],
    "w/o latent": ["--variant=wo_latent"],
    "JALA": ["--variant=jala"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--motion_tokenizer", required=True)
    parser.add_argument("--output_dir", type=Path, default=Path("outputs/table1"))
    parser.add_argument("--structure", default="tiny")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--eval_clips", type=int, default=64)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()

    results: dict[str, dict] = {}
    baselines = None
    for name in args.variants:
        folder = args.output_dir / name.replace("/", "").replace(" ", "_")
        started = time.monotonic()
        pretrain.main(
            [
                f"--dataset={args.dataset}",
                f"--motion_tokenizer={args.motion_tokenizer}",
                f"--output_dir={folder}",
                f"--structure={args.structure}",
                f"--max_steps={args.steps}",
                f"--per_device_train_batch_size={args.batch_size}",
                f"--learning_rate={args.learning_rate}",
                "--max_chunks=4",
                "--logging_steps=50",
                "--save_strategy=no",
                "--eval_strategy=no",
                "--seed=0",
                *VARIANTS[name],
            ]
        )
        minutes = (time.monotonic() - started) / 60
        model = JalaForMotionPretraining.from_pretrained(folder)
        processor = JalaProcessor.from_pretrained(folder)
        results[name] = {
            split: evaluate_generation(model, processor, args.dataset, split, max_clips=args.eval_clips)
            for split in ("test_lab", "test_wild")
        }
        results[name]["train_minutes"] = round(minutes, 1)
        if baselines is None:  # fitted once, on the data; the neighbour's image key is this variant's SSL encoder
            baselines = fit_baselines(args.dataset, model, processor)
            size = processor.image_processor.size
            for split in ("test_lab", "test_wild"):
                scores = evaluate_baselines(
                    args.dataset, split, baselines, (size["height"], size["width"]), max_clips=args.eval_clips
                )["baselines"]
                for baseline, metrics in scores.items():
                    results.setdefault(f"baseline: {baseline}", {})[split] = metrics
    results = {name: results[name] for name in sorted(results, key=lambda key: key.startswith("baseline: "))}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "table1.json").write_text(json.dumps(results, indent=2))
    print(
        f"# Table 1 reproduction: {args.structure} JALA, {args.steps} steps x batch {args.batch_size}, "
        f"{datetime.date.today()}, {platform.node()} ({platform.machine()})"
    )
    metrics = ("MPJPE", "PA-MPJPE", "MWTE", "MDE")
    print("| variant | " + " | ".join(f"{domain} {m}" for domain in ("Lab", "Wild") for m in metrics) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, result in results.items():  # the variants, then the baselines
        lab, wild = result["test_lab"], result["test_wild"]
        cells = [f"{r[key]:.1f}" for r in (lab, wild) for key in ("mpjpe_mm", "pa_mpjpe_mm", "mwte_mm", "mde_deg")]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("mm for MPJPE / PA-MPJPE / MWTE, degrees for MDE; lower is better.")


if __name__ == "__main__":
    main()
