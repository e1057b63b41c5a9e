"""The paper's Table 1 at small scale: does unlabelled wild video, tied in through latent actions, improve motion
prediction in held-out wild scenes? Every variant trains on one shared data build, motion tokenizer and SSL encoder,
with the same optimizer steps and batch, over several seeds; a scaling curve repeats JALA with less wild video.

    MUJOCO_GL=egl python benchmarks/table1_ablation.py --output_dir outputs/table1 --seeds 0,1,2 --parallel 2

1. **Shared inputs** (built once under `--output_dir`, reused when present): a procedural UniHand-Mix with
   `--lab_clips` labelled lab clips, as many wild clips (`data/unihand_mix`, the quickstart's build), and further
   wild clips up to the largest `--wild_multiples` (`data/wild_<a>x_to_<b>x`, other world seeds); wild training
   clips are unlabelled except a tenth with tracker-like pseudo-labels, as in UniHand-Mix. The motion tokenizer and
   the self-supervised frame encoder are trained as the quickstart does, on the base build.
2. **Runs**: each variant at the main wild multiple (default the largest) once per seed, and JALA at every other
   multiple for the scaling curve; `--parallel` runs side by side (`--threads` torch threads each). A run is one
   `trainers/pretrain.py` call (the `tiny` structure's CPU preset unless `--steps` / `--learning_rate` say
   otherwise) with checkpoints every `--save_steps`; a stopped benchmark started again resumes each unfinished run
   from its last checkpoint and skips finished ones.
3. **Evaluation** of every run on `test_lab` and `test_wild` (`trainers/evaluate_motion.py`, the quickstart's
   decoding settings), beside the mean-motion and nearest-neighbour baselines fitted on the labelled training clips
   of the main data; per run also the final masked-token accuracy and latent health (effective rank and norm of h
   and z, cosine(h, z)), averaged over the last tenth of training.
4. **Record**: `table1_ablation_<date>[_<tag>].{json,md,png}` in `--results_dir`: mean ± standard deviation over
   seeds, every variant's difference from JALA with its standard error (sqrt(s_a²/n_a + s_b²/n_b)), the scaling
   curve, bars with error bars per metric and split, and the training cost.

Variants (docs/design.md §1): lab-only (lab clips only, λ = 0), w/o align (all clips, λ = 0: wild clips help only
through their pseudo-labels), w/o latent (no LAP: labelled and pseudo-labelled clips only), LAPA† (latent codes of
an inverse / forward model in SSL-feature space as the VLM's pseudo-labels), w/o dec (coupled EMA), JALA. lab-only
never reads a wild clip, so its runs serve every point of the scaling curve.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from benchmark_machine import cpu_model

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from trainers import quickstart  # noqa: E402  (the recipe of its shared inputs and its evaluation settings)

logger = logging.getLogger("jala.benchmarks.table1_ablation")

#: Row name -> (folder slug, `trainers/pretrain.py` flags).
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "lab-only": ("lab_only", ["--variant=wo_align", "--lab_weight=1.0"]),
    "w/o align": ("wo_align", ["--variant=wo_align"]),
    "w/o latent": ("wo_latent", ["--variant=wo_latent"]),
    "LAPA†": ("lapa", ["--variant=lapa"]),
    "w/o dec": ("wo_dec", ["--variant=wo_dec"]),
    "JALA": ("jala", ["--variant=jala"]),
}
REFERENCE = "JALA"
LAB_ONLY = "lab-only"
SPLITS = ("test_lab", "test_wild")
METRICS = {"mpjpe_mm": "MPJPE", "pa_mpjpe_mm": "PA-MPJPE", "mwte_mm": "MWTE", "mde_deg": "MDE"}
HEALTH = ("mcp_accuracy", "align_loss", "h_effective_rank", "z_effective_rank", "h_norm", "z_norm", "cosine_h_z")
RESULT_FILE = "result.json"
PROBE_FILE = "latent_probe.json"
GRADIENTS_FILE = "loss_gradients.json"


@dataclass(frozen=True)
class Run:
    """One pretraining run of the benchmark."""

    variant: str
    wild_multiple: int
    seed: int

    @property
    def name(self) -> str:
        return f"{VARIANTS[self.variant][0]}_wild{self.wild_multiple}x_seed{self.seed}"


def plan_runs(variants: list[str], seeds: list[int], main_multiple: int, multiples: list[int]) -> list[Run]:
    """Main-table runs (every variant at the main multiple), then JALA at the other multiples; seed-major, so a
    benchmark stopped early has every variant of the first seeds."""
    runs = [Run(variant, main_multiple, seed) for seed in seeds for variant in variants]
    if REFERENCE in variants:
        runs += [Run(REFERENCE, m, seed) for m in multiples if m != main_multiple for seed in seeds]
    return runs


def wild_increments(multiples: list[int]) -> list[tuple[int, int]]:
    """(low, high) steps of the wild data beyond the base build's 1x: each is a folder of (high - low) x lab clips."""
    above = sorted(m for m in set(multiples) if m > 1)
    return list(zip([1, *above][:-1], above, strict=True))


def increment_folder(data_dir: Path, low: int, high: int) -> Path:
    return data_dir / f"wild_{low}x_to_{high}x"


def datasets_for(data_dir: Path, multiple: int, multiples: list[int]) -> list[Path]:
    """The `--dataset` folders of a run with `multiple` x lab clips of wild video; the base build holds the lab
    clips and 1x wild (a 0x run reads it with `--lab_weight=1.0`)."""
    steps = [increment_folder(data_dir, low, high) for low, high in wild_increments(multiples) if high <= multiple]
    return [data_dir / "unihand_mix", *steps]


def build_shared(args: argparse.Namespace) -> dict[str, Path]:
    """Data, motion tokenizer and SSL encoder for every run (each step skipped when its output exists)."""
    from dataset_scripts.builder import build_unihand
    from dataset_scripts.sources.synthetic import SyntheticSource

    data_dir = args.output_dir / "data"
    base = data_dir / "unihand_mix"
    quickstart.build_data(
        base, {"lab": args.lab_clips, "wild": args.lab_clips, "test": args.test_clips}, args.data_seed
    )
    for low, high in wild_increments(args.wild_multiples):
        folder = increment_folder(data_dir, low, high)
        if not (folder / "README.md").exists():  # another world seed per step: new scenes, same distribution
            seed = args.data_seed + 100 + high
            clips = (high - low) * args.lab_clips
            build_unihand(
                folder, [SyntheticSource(domain="wild", split="train", num_clips=clips, seed=seed, workers=2)]
            )
    tokenizer = args.output_dir / "motion_tokenizer"
    if not (tokenizer / "model.safetensors").exists():
        quickstart.train_motion_tokenizer(base, tokenizer, args.tokenizer_steps, args.data_seed)
    ssl = args.output_dir / "ssl_encoder"
    if not (ssl / "model.safetensors").exists():
        quickstart.train_frame_encoder(base, ssl, args.ssl_steps, args.data_seed)
    return {"data": data_dir, "base": base, "tokenizer": tokenizer, "ssl": ssl}


def run_folder(args: argparse.Namespace, run: Run) -> Path:
    return args.output_dir / "runs" / run.name


def pretrain_argv(args: argparse.Namespace, shared: dict[str, Path], run: Run) -> list[str]:
    folder = run_folder(args, run)
    # One --dataset flag with every folder: HfArgumentParser keeps only the last of repeated flags.
    argv = ["--dataset", *map(str, datasets_for(shared["data"], run.wild_multiple, args.wild_multiples))]
    argv += [
        f"--motion_tokenizer={shared['tokenizer']}",
        f"--ssl_encoder_name_or_path={shared['ssl']}",
        f"--output_dir={folder / 'jala'}",
        f"--checkpoint_dir={folder / 'checkpoints'}",
        f"--structure={args.structure}",
        f"--seed={run.seed}",
        "--max_chunks=4",
        "--logging_steps=25",
        "--save_strategy=steps",
        f"--save_steps={args.save_steps}",
        "--save_total_limit=1",
        "--eval_strategy=no",
        *VARIANTS[run.variant][1],
    ]
    if run.wild_multiple == 0 and run.variant != LAB_ONLY:
        argv.append("--lab_weight=1.0")
    argv += shlex.split(args.pretrain_flags)
    for flag in ("steps", "batch_size", "learning_rate"):
        value = getattr(args, flag)
        if value is not None:
            name = {"steps": "max_steps", "batch_size": "per_device_train_batch_size"}.get(flag, flag)
            argv.append(f"--{name}={value}")
    return argv


def train_and_evaluate(args: argparse.Namespace, shared: dict[str, Path], run: Run) -> dict[str, Any]:
    """Child-process body of one run: pretrain (resuming from its last checkpoint), then score both test splits."""
    import torch
    from transformers.trainer_utils import get_last_checkpoint

    from modeling_jala.modeling_jala import JalaForMotionPretraining
    from modeling_jala.processing_jala import JalaProcessor
    from trainers import pretrain
    from trainers.evaluate_motion import evaluate_generation

    torch.manual_seed(run.seed)
    folder = run_folder(args, run)
    hub = folder / "jala"
    seconds_file = folder / "train_seconds.json"  # summed over invocations, so a resumed run counts all its time
    if not (hub / "model.safetensors").exists():
        argv = pretrain_argv(args, shared, run)
        checkpoints = folder / "checkpoints"
        last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
        if last is not None:
            argv.append(f"--resume_from_checkpoint={last}")
        started = time.monotonic()
        pretrain.main(argv)
        before = json.loads(seconds_file.read_text()) if seconds_file.exists() and last is not None else 0.0
        seconds_file.write_text(json.dumps(before + time.monotonic() - started))
    model = JalaForMotionPretraining.from_pretrained(hub)
    processor = JalaProcessor.from_pretrained(hub)
    evaluation = {
        split: evaluate_generation(
            model,
            processor,
            shared["base"],
            split,
            max_clips=args.eval_clips,
            decoding_steps=args.decoding_steps,
            ensemble=args.ensemble,
            seed=run.seed,
            show_progress=False,
        )
        for split in SPLITS
    }
    history = json.loads((hub / "training_log.json").read_text())
    training_args = json.loads((hub / "training_args.json").read_text())
    result = {
        "run": asdict(run),
        "datasets": [path.name for path in datasets_for(shared["data"], run.wild_multiple, args.wild_multiples)],
        "train_seconds": json.loads(seconds_file.read_text()) if seconds_file.exists() else None,
        "steps": training_args["max_steps"],
        "batch_size": training_args["per_device_train_batch_size"],
        "learning_rate": training_args["learning_rate"],
        "evaluation": evaluation,
        "health": final_health(history, training_args["max_steps"]),
    }
    (folder / RESULT_FILE).write_text(json.dumps(result, indent=2))
    return result


def final_health(history: list[dict[str, Any]], steps: int) -> dict[str, float]:
    """Each `HEALTH` figure averaged over the log entries of the last tenth of training."""
    start = steps - max(1, steps // 10)
    report = {}
    for key in HEALTH:
        values = [entry[key] for entry in history if key in entry and entry.get("step", 0) > start]
        if values:
            report[key] = float(np.mean(values))
    return report


def launch_runs(args: argparse.Namespace, runs: list[Run]) -> dict[Run, dict[str, Any]]:
    """Every run as a child process (`--one_run`), `--parallel` at a time; finished runs are read back."""
    results: dict[Run, dict[str, Any]] = {}
    pending = []
    for run in runs:
        path = run_folder(args, run) / RESULT_FILE
        if path.exists():
            results[run] = json.loads(path.read_text())
        else:
            pending.append(run)
    logger.info("%d runs finished before, %d to do", len(results), len(pending))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}

    def child(run: Run) -> dict[str, Any]:
        folder = run_folder(args, run)
        folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, __file__, *args.forwarded, f"--one_run={json.dumps(asdict(run))}"]
        with (folder / "run.log").open("a") as log:
            code = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        if code:
            raise RuntimeError(f"run {run.name} failed (exit {code}); see {folder / 'run.log'}")
        return json.loads((folder / RESULT_FILE).read_text())

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        futures = {pool.submit(child, run): run for run in pending}
        for done, future in enumerate(as_completed(futures), 1):
            run = futures[future]
            results[run] = future.result()
            logger.info("[%d/%d] %s done", done, len(pending), run.name)
    return results


def mean_std(values: list[float]) -> dict[str, float]:
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def summarise(results: dict[Run, dict[str, Any]], main_multiple: int) -> dict[str, Any]:
    """Per variant at the main multiple: metric and health mean ± std over seeds; differences from JALA; the
    scaling curve (JALA per multiple, lab-only's main runs at every multiple)."""
    table: dict[str, Any] = {}
    for variant in VARIANTS:
        runs = [r for run, r in results.items() if run.variant == variant and run.wild_multiple == main_multiple]
        if not runs:
            continue
        row: dict[str, Any] = {"seeds": sorted(r["run"]["seed"] for r in runs)}
        for split in SPLITS:
            row[split] = {key: mean_std([r["evaluation"][split][key] for r in runs]) for key in METRICS}
        row["health"] = {
            key: mean_std([r["health"][key] for r in runs]) for key in HEALTH if all(key in r["health"] for r in runs)
        }
        table[variant] = row
    differences: dict[str, Any] = {}
    if REFERENCE in table:
        for variant, row in table.items():
            if variant == REFERENCE:
                continue
            differences[variant] = {
                split: {key: difference(row[split][key], table[REFERENCE][split][key]) for key in METRICS}
                for split in SPLITS
            }
    scaling: dict[str, Any] = {}
    multiples = sorted({run.wild_multiple for run in results if run.variant == REFERENCE})
    for variant in (REFERENCE, LAB_ONLY) if len(multiples) > 1 else ():  # a curve needs two points
        for multiple in multiples:
            source = main_multiple if variant == LAB_ONLY else multiple
            runs = [r for run, r in results.items() if run.variant == variant and run.wild_multiple == source]
            if runs:
                scaling.setdefault(variant, {})[str(multiple)] = {
                    split: {key: mean_std([r["evaluation"][split][key] for r in runs]) for key in METRICS}
                    for split in SPLITS
                }
    return {"table": table, "differences_from_jala": differences, "scaling": scaling}


def difference(variant: dict[str, float], reference: dict[str, float]) -> dict[str, Any]:
    """variant − JALA (positive: the variant's error is larger) with the standard error of independent seeds."""
    mean = variant["mean"] - reference["mean"]
    error = float(np.sqrt(variant["std"] ** 2 / variant["n"] + reference["std"] ** 2 / reference["n"]))
    return {
        "mean": mean,
        "standard_error": error,
        "outside_1_se": abs(mean) > error > 0,
        "outside_2_se": abs(mean) > 2 * error > 0,
    }


def fit_and_score_baselines(args: argparse.Namespace, shared: dict[str, Path], run: Run) -> dict[str, Any]:
    """Mean-motion and nearest-neighbour baselines on the labelled training clips of the main data, scored on the
    clips the runs are scored on; the neighbour's image key is the shared frozen SSL encoder (via any run)."""
    from modeling_jala.modeling_jala import JalaForMotionPretraining
    from modeling_jala.processing_jala import JalaProcessor
    from trainers.evaluate_motion import evaluate_baselines, fit_baselines

    hub = run_folder(args, run) / "jala"
    model, processor = JalaForMotionPretraining.from_pretrained(hub), JalaProcessor.from_pretrained(hub)
    baselines = fit_baselines(
        [str(path) for path in datasets_for(shared["data"], run.wild_multiple, args.wild_multiples)], model, processor
    )
    size = processor.image_processor.size
    scores: dict[str, Any] = {}
    for split in SPLITS:
        report = evaluate_baselines(
            shared["base"], split, baselines, (size["height"], size["width"]), max_clips=args.eval_clips
        )
        for name, metrics in report["baselines"].items():
            scores.setdefault(name, {})[split] = {key: metrics[key] for key in METRICS}
    return scores


def run_diagnostics(
    args: argparse.Namespace,
    shared: dict[str, Path],
    runs: list[Run],
    cache_name: str,
    applies: Callable[[Any], bool],
    measure: Callable[[Any, Any, list[Path], Run], dict[str, Any]],
) -> dict[Run, dict[str, Any]]:
    """`measure(model, processor, run's data folders, run)` on each trained run whose config `applies`, cached as
    `cache_name` in the run's folder with the weights file's size and modification time, so a retrained run is
    measured again."""
    from modeling_jala.configuration_jala import JalaConfig
    from modeling_jala.modeling_jala import JalaForMotionPretraining
    from modeling_jala.processing_jala import JalaProcessor

    reports: dict[Run, dict[str, Any]] = {}
    for run in runs:
        hub, cache = run_folder(args, run) / "jala", run_folder(args, run) / cache_name
        weights = (hub / "model.safetensors").stat()
        fingerprint = f"{weights.st_size}-{weights.st_mtime_ns}"
        cached = json.loads(cache.read_text()) if cache.exists() else {}
        if cached.get("weights") == fingerprint:
            reports[run] = cached["report"]
            continue
        if not applies(JalaConfig.from_pretrained(hub)):
            continue
        model, processor = JalaForMotionPretraining.from_pretrained(hub), JalaProcessor.from_pretrained(hub)
        data = datasets_for(shared["data"], run.wild_multiple, args.wild_multiples)
        reports[run] = measure(model, processor, data, run)
        cache.write_text(json.dumps({"weights": fingerprint, "report": reports[run]}, indent=2))
        logger.info("%s of %s done", cache_name, run.name)
    return reports


def latent_probes(args: argparse.Namespace, shared: dict[str, Path], runs: list[Run]) -> dict[Run, dict[str, Any]]:
    """`trainers/latent_probe.py` on every run whose model has a LAP: is z informative about the chunk's motion,
    against a LAP at init and the raw boundary features?"""
    from trainers.latent_probe import probe_latent_actions

    def measure(model: Any, processor: Any, data: list[Path], run: Run) -> dict[str, Any]:
        return probe_latent_actions(
            model, processor, data, shared["base"], max_train_clips=args.probe_train_clips, seed=run.seed
        )

    return run_diagnostics(args, shared, runs, PROBE_FILE, lambda config: config.uses_latent_actions, measure)


def alignment_gradients(
    args: argparse.Namespace, shared: dict[str, Path], runs: list[Run]
) -> dict[Run, dict[str, Any]]:
    """`trainers/loss_gradients.py` on every run with a λ-weighted term (LAPA†: λ weighs its latent-code loss): the
    gradient norm of λ·L_align next to L_MCP's per parameter group, on a few training batches of the run's data."""
    from trainers.loss_gradients import loss_gradient_norms

    def applies(config: Any) -> bool:
        return config.align_weight > 0 and (config.uses_latent_actions or config.variant == "lapa")

    def measure(model: Any, processor: Any, data: list[Path], run: Run) -> dict[str, Any]:
        return loss_gradient_norms(model, processor, data, batches=args.gradient_batches, seed=run.seed)

    return run_diagnostics(args, shared, runs, GRADIENTS_FILE, applies, measure)


def summarise_gradients(reports: dict[Run, dict[str, Any]], main_multiple: int) -> dict[str, Any]:
    """{variant: {group: λ·L_align / L_MCP gradient-norm ratio, mean ± std over seeds}} at the main multiple."""
    summary: dict[str, Any] = {}
    for variant in VARIANTS:
        chosen = [r for run, r in reports.items() if run.variant == variant and run.wild_multiple == main_multiple]
        groups = [g for g in (chosen[0] if chosen else {}) if all("ratio" in r.get(g, {}) for r in chosen)]
        if groups:
            summary[variant] = {group: mean_std([r[group]["ratio"] for r in chosen]) for group in groups}
    return summary


def summarise_probes(probes: dict[Run, dict[str, Any]], main_multiple: int) -> dict[str, Any]:
    """{variant: {feature set: {split: {target: mean ± std over seeds}}}} at the main multiple."""
    summary: dict[str, Any] = {}
    for variant in VARIANTS:
        reports = [r for run, r in probes.items() if run.variant == variant and run.wild_multiple == main_multiple]
        if not reports:
            continue
        summary[variant] = {
            feature_set: {
                split: {
                    key: mean_std([r[feature_set][split][key] for r in reports])
                    for key in reports[0][feature_set][split]
                    if key.endswith("_r2")
                }
                for split in SPLITS
                if all(split in r[feature_set] for r in reports)
            }
            for feature_set in reports[0]
        }
    return summary


def cell(stat: dict[str, float]) -> str:
    return f"{stat['mean']:.1f} ± {stat['std']:.1f}"


def cell_ratio(stat: dict[str, float] | None) -> str:
    return "–" if stat is None else f"{stat['mean']:.2f} ± {stat['std']:.2f}"


def markdown(report: dict[str, Any]) -> str:
    summary, setup = report["summary"], report["setup"]
    lines = [
        f"# Table 1 at small scale ({setup['date']})",
        "",
        f"Machine: {setup['machine']}. {setup['structure']} JALA, {setup['steps']} steps x batch {setup['batch_size']}"
        f" (lr {setup['learning_rate']}) per run, seeds {setup['seeds']}, {setup['parallel']} runs side by side with"
        f" {setup['threads']} thread(s) each; {setup['total_train_hours']:.2f} h of training in all"
        f" ({setup['runs']} runs; a stopped and resumed run counts only the part that ran to the end, so this is a"
        " lower bound); this invocation's wall time"
        f" {setup['wall_hours']:.2f} h.",
        f"Data: {setup['lab_clips']} labelled lab clips; wild clips = {setup['main_multiple']}x the lab clips in the"
        f" main table (a tenth pseudo-labelled, the rest unlabelled); held out: the first {setup['eval_clips']}"
        " labelled clips of test_lab and test_wild (wild test scenes use held-out seeds, colours and textures).",
        "",
        "Mean ± standard deviation over seeds; mm for MPJPE / PA-MPJPE / MWTE, degrees for MDE; lower is better.",
        "",
        "| variant | " + " | ".join(f"{s.split('_')[1]} {m}" for s in SPLITS for m in METRICS.values()) + " |",
        "|---|" + "---|" * (len(SPLITS) * len(METRICS)),
    ]
    for variant, row in summary["table"].items():
        lines.append(f"| {variant} | " + " | ".join(cell(row[s][k]) for s in SPLITS for k in METRICS) + " |")
    for name, row in report["baselines"].items():
        lines.append(f"| baseline: {name} | " + " | ".join(f"{row[s][k]:.1f}" for s in SPLITS for k in METRICS) + " |")
    lines += [
        "",
        "## Difference from JALA (variant − JALA; ± standard error over seeds; * outside 1 SE, ** outside 2 SE)",
        "",
    ]
    lines += ["| variant | " + " | ".join(f"{s.split('_')[1]} {m}" for s in SPLITS for m in METRICS.values()) + " |"]
    lines += ["|---|" + "---|" * (len(SPLITS) * len(METRICS))]
    for variant, row in summary["differences_from_jala"].items():
        cells = []
        for split in SPLITS:
            for key in METRICS:
                d = row[split][key]
                stars = "**" if d["outside_2_se"] else "*" if d["outside_1_se"] else ""
                cells.append(f"{d['mean']:+.1f} ± {d['standard_error']:.1f}{stars}")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Training and latent health (last tenth of training; mean ± std over seeds)",
        "",
        "| variant | masked-token accuracy | L_align | eff. rank h | eff. rank z | norm h | norm z | cos(h, z) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant, row in summary["table"].items():
        health = row["health"]
        cells = [f"{health[key]['mean']:.3f} ± {health[key]['std']:.3f}" if key in health else "–" for key in HEALTH]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    if report.get("latent_probe"):
        lines += [
            "",
            "## Is z informative? (`trainers/latent_probe.py`: ridge probes per chunk and hand, held-out R²)",
            "",
            "Probes fitted on the labelled train clips of the split's domain (wild: pseudo-labelled); mean ± std over"
            " seeds. displacement = the wrist's motion over the chunk, end = its position at the chunk's end.",
            "",
            "| variant | features | lab displacement | lab end | wild displacement | wild end |",
            "|---|---|---|---|---|---|",
        ]
        for variant, sets in report["latent_probe"].items():
            for feature_set, splits in sets.items():
                cells = [
                    f"{splits[split][key]['mean']:.2f} ± {splits[split][key]['std']:.2f}" if split in splits else "–"
                    for split in SPLITS
                    for key in ("displacement_r2", "end_position_r2")
                ]
                lines.append(f"| {variant} | {feature_set} | " + " | ".join(cells) + " |")
    if report.get("alignment_gradients"):
        variants = list(report["alignment_gradients"])
        lines += [
            "",
            "## Where alignment pushes (`trainers/loss_gradients.py`: gradient norm of λ·L_align / that of L_MCP)",
            "",
            "| parameter group | " + " | ".join(variants) + " |",
            "|---|" + "---|" * len(variants),
        ]
        groups = list(dict.fromkeys(g for v in variants for g in report["alignment_gradients"][v]))
        for group in groups:
            cells = [cell_ratio(report["alignment_gradients"][v].get(group)) for v in variants]
            lines.append(f"| {group} | " + " | ".join(cells) + " |")
    if summary["scaling"]:
        lines += ["", "## Scaling: wild video per lab clip (same steps)", ""]
        lines += ["| variant | wild / lab | lab MPJPE | wild MPJPE | wild MDE |", "|---|---|---|---|---|"]
        for variant, points in summary["scaling"].items():
            for multiple, point in points.items():
                lab, wild = point["test_lab"], point["test_wild"]
                lines.append(
                    f"| {variant} | {multiple}x | {cell(lab['mpjpe_mm'])} | {cell(wild['mpjpe_mm'])} |"
                    f" {cell(wild['mde_deg'])} |"
                )
        lines.append("")
        lines.append("lab-only never reads a wild clip: its row repeats its main-table runs at every multiple.")
    lines += ["", f"Command: `{setup['command']}`", ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trainers.plotting import save_figure

    summary = report["summary"]
    variants = list(summary["table"])
    scaling = summary["scaling"]
    columns = len(METRICS)
    rows = len(SPLITS) + (1 if scaling else 0)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.3 * rows), squeeze=False)
    colours = plt.get_cmap("tab10")
    for i, split in enumerate(SPLITS):
        for j, (key, label) in enumerate(METRICS.items()):
            axis = axes[i][j]
            means = [summary["table"][v][split][key]["mean"] for v in variants]
            stds = [summary["table"][v][split][key]["std"] for v in variants]
            axis.bar(
                range(len(variants)), means, yerr=stds, capsize=3, color=[colours(k) for k in range(len(variants))]
            )
            for k, (name, baseline) in enumerate(report["baselines"].items()):
                axis.axhline(baseline[split][key], color="k", linestyle=("--", ":")[k % 2], linewidth=1, label=name)
            axis.set_xticks(range(len(variants)), variants, rotation=35, ha="right", fontsize=8)
            axis.set_title(f"{split}: {label}", fontsize=10)
            if i == 0 and j == 0:
                axis.legend(fontsize=7)
    if scaling:
        for j, (key, label) in enumerate(METRICS.items()):
            axis = axes[-1][j]
            for variant, points in scaling.items():
                for split, style in zip(SPLITS, ("-o", "--s"), strict=True):
                    xs = [int(m) for m in points]
                    ys = [points[m][split][key]["mean"] for m in points]
                    es = [points[m][split][key]["std"] for m in points]
                    axis.errorbar(xs, ys, yerr=es, fmt=style, capsize=3, label=f"{variant}, {split}")
            axis.set_xlabel("wild clips per lab clip")
            axis.set_title(f"scaling: {label}", fontsize=10)
            if j == 0:
                axis.legend(fontsize=7)
    return save_figure(figure, path)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", type=Path, default=Path("outputs/table1"))
    parser.add_argument("--results_dir", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--tag", default="", help="suffix of the record's file names")
    parser.add_argument("--lab_clips", type=int, default=400, help="labelled lab training clips")
    parser.add_argument("--wild_multiples", default="0,1,4", help="wild clips per lab clip: the scaling curve")
    parser.add_argument("--main_multiple", type=int, default=None, help="the main table's (default: the largest)")
    parser.add_argument("--test_clips", type=int, default=40)
    parser.add_argument("--data_seed", type=int, default=0)
    parser.add_argument("--tokenizer_steps", type=int, default=quickstart.TOKENIZER_STEPS)
    parser.add_argument("--ssl_steps", type=int, default=quickstart.SSL_STEPS)
    parser.add_argument("--structure", default="tiny")
    parser.add_argument("--steps", type=int, default=None, help="default: the structure's preset (tiny: 1200)")
    parser.add_argument("--batch_size", type=int, default=None, help="default: the structure's preset (tiny: 8)")
    parser.add_argument("--learning_rate", type=float, default=None, help="default: the structure's preset")
    parser.add_argument(
        "--pretrain_flags",
        default="",
        help="more trainers/pretrain.py flags for every run, e.g. '--bf16 --backbone_name_or_path=... "
        "--processor_name_or_path=...' with --structure paper on a GPU machine with a released VLM, or "
        "'--backbone_name_or_path=...' with the tiny structure around trainers/train_grounding_vlm.py's stand-in",
    )
    parser.add_argument("--save_steps", type=int, default=300, help="checkpoint interval (resume granularity)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated rows")
    parser.add_argument("--eval_clips", type=int, default=quickstart.EVAL_CLIPS)
    parser.add_argument("--decoding_steps", type=int, default=quickstart.DECODING_STEPS)
    parser.add_argument("--ensemble", type=int, default=quickstart.ENSEMBLE)
    parser.add_argument("--probe_train_clips", type=int, default=200, help="train clips per latent probe")
    parser.add_argument("--gradient_batches", type=int, default=4, help="batches per loss-gradient measurement")
    parser.add_argument("--parallel", type=int, default=2, help="runs side by side")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--one_run", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.forwarded = [a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("--one_run")]
    args.output_dir = args.output_dir.resolve()
    args.wild_multiples = sorted({int(m) for m in args.wild_multiples.split(",")})
    args.main_multiple = max(args.wild_multiples) if args.main_multiple is None else args.main_multiple
    if args.main_multiple not in args.wild_multiples:
        raise ValueError(f"--main_multiple {args.main_multiple} is not one of --wild_multiples {args.wild_multiples}.")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}.")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    started = time.monotonic()
    shared = build_shared(args)
    if args.one_run is not None:
        return train_and_evaluate(args, shared, Run(**json.loads(args.one_run)))
    runs = plan_runs(args.variants, args.seeds, args.main_multiple, args.wild_multiples)
    results = launch_runs(args, runs)
    main_runs = [run for run in runs if run.wild_multiple == args.main_multiple]
    baselines = fit_and_score_baselines(args, shared, main_runs[0])
    first = results[main_runs[0]]
    setup = {
        "date": str(datetime.date.today()),
        "machine": f"{cpu_model()}, {os.cpu_count()} CPUs, no GPU",
        "structure": args.structure,
        "steps": first["steps"],
        "batch_size": first["batch_size"],
        "learning_rate": first["learning_rate"],
        "seeds": args.seeds,
        "variants": args.variants,
        "lab_clips": args.lab_clips,
        "wild_multiples": args.wild_multiples,
        "main_multiple": args.main_multiple,
        "eval_clips": args.eval_clips,
        "decoding_steps": args.decoding_steps,
        "ensemble": args.ensemble,
        "parallel": args.parallel,
        "threads": args.threads,
        "runs": len(results),
        "total_train_hours": sum((r["train_seconds"] or 0) for r in results.values()) / 3600,
        "wall_hours": (time.monotonic() - started) / 3600,
        "command": "python benchmarks/table1_ablation.py " + " ".join(args.forwarded),
    }
    probes = latent_probes(args, shared, list(results))
    report = {
        "setup": setup,
        "summary": summarise(results, args.main_multiple),
        "baselines": baselines,
        "latent_probe": summarise_probes(probes, args.main_multiple),
        "alignment_gradients": summarise_gradients(
            alignment_gradients(args, shared, list(results)), args.main_multiple
        ),
        "runs": {run.name: result for run, result in results.items()},
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stem = args.results_dir / f"table1_ablation_{setup['date']}{'_' + args.tag if args.tag else ''}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    stem.with_suffix(".md").write_text(text)
    plot(report, stem.with_suffix(".png"))
    print(text)
    print(f"record: {stem}.{{json,md,png}}")
    return report


if __name__ == "__main__":
    main()
