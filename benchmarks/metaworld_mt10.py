"""Meta-World MT10: a small JALA policy post-trained from a JALA-pretrained checkpoint vs the same policy from scratch.

    MUJOCO_GL=egl python benchmarks/metaworld_mt10.py --pretrained outputs/quickstart/jala --work_dir outputs/mt10

1. expert demonstrations (`robot_data.metaworld_demos`, reused when the folder exists);
2. two post-training runs with the same budget — demonstrations, steps, batch, seed, threads — one starting from
   the pretrained JALA folder, one from random weights of the same structure (`--from_scratch`); with
   `--parallel` they run side by side, so both see the same machine load and their wall times compare;
3. closed-loop evaluation of both on held-out placements (`trainers/eval_metaworld.py`);
4. a JSON + markdown record under `benchmarks/results/` with date, machine, budgets and success rates per task,
   and a PNG: both post-training loss curves and the success rate per task side by side.

`--reuse` keeps whatever a previous run in `--work_dir` finished (trained policies, evaluations) and redoes the rest,
e.g. to re-render the record or to evaluate again after an interrupted run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path

from benchmark_machine import cpu_model

REPO = Path(__file__).resolve().parent.parent
logger = logging.getLogger("jala.benchmarks.metaworld_mt10")


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} CPUs (shared), no GPU, Python {platform.python_version()}"


def run(command: list[str], log: Path, threads: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "MUJOCO_GL": "egl"}
    logger.info("%s > %s", " ".join(command), log)
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", required=True, help="JALA pretraining folder (JalaForMotionPretraining).")
    parser.add_argument("--work_dir", default="outputs/mt10")
    parser.add_argument("--episodes_per_task", type=int, default=20, help="Demonstrations per task.")
    parser.add_argument("--max_steps", type=int, default=1000, help="Optimizer steps of each post-training run.")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=1e-4, help="Post-training lr (paper: 1e-4).")
    parser.add_argument("--head", default="128,4,4", help="DiT width,layers,heads.")
    parser.add_argument("--eval_episodes", type=int, default=10, help="Evaluation episodes per task.")
    parser.add_argument("--eval_max_steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1, help="Torch threads per training process.")
    parser.add_argument("--parallel", action="store_true", help="Run both post-trainings at the same time.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--reuse", action="store_true", help="Keep finished runs / evaluations in --work_dir.")
    parser.add_argument("--tag", default="", help="Suffix of the result files (several budgets on one day).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    demos = work / "demos"
    if not (demos / "meta" / "info.json").exists():
        code = run(
            [sys.executable, "-m", "robot_data.metaworld_demos", f"--output_dir={demos}", "--tasks=MT10"]
            + [f"--episodes_per_task={args.episodes_per_task}", "--workers=2"],
            work / "demos.log",
            threads=1,
        ).wait()
        if code:
            raise RuntimeError(f"demonstration recording failed; see {work / 'demos.log'}")
    width, layers, heads = (int(part) for part in args.head.split(","))
    runs = {"policy_from_jala": [f"--model_name_or_path={args.pretrained}"]}
    runs["policy_from_scratch"] = [f"--model_name_or_path={args.pretrained}", "--from_scratch"]
    if any((work / name).resolve() == Path(args.pretrained).resolve() for name in runs):
        raise ValueError(f"--pretrained {args.pretrained} is inside --work_dir under a run's name; move it.")
    processes = {}
    for name, start in runs.items():
        if args.reuse and (work / name / "run_summary.json").exists():
            logger.info("reusing the trained policy %s", work / name)
            continue
        command = [
            sys.executable,
            "trainers/posttrain.py",
            *start,
            f"--dataset={demos}",
            f"--output_dir={work / name}",
        ]
        command += [f"--max_steps={args.max_steps}", f"--per_device_train_batch_size={args.batch_size}"]
        command += [f"--learning_rate={args.learning_rate}"]
        command += [f"--head_hidden_size={width}", f"--head_num_layers={layers}", f"--head_num_heads={heads}"]
        command += [f"--seed={args.seed}", "--report_to=none", "--logging_steps=25", "--disable_tqdm=true"]
        processes[name] = run(command, work / f"{name}.log", args.threads)
        if not args.parallel and processes[name].wait():
            raise RuntimeError(f"post-training {name} failed; see {work / f'{name}.log'}")
    for name, process in processes.items():
        if process.wait():
            raise RuntimeError(f"post-training {name} failed; see {work / f'{name}.log'}")
    report = {
        "date": datetime.datetime.now().isoformat(timespec="minutes"),
        "machine": machine(),
        "pretrained_checkpoint": str(args.pretrained),
        "budget": {
            "demonstrations_per_task": args.episodes_per_task,
            "optimizer_steps": args.max_steps,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "torch_threads_per_run": args.threads,
            "runs_in_parallel": args.parallel,
            "dit_width_layers_heads": [width, layers, heads],
        },
        "evaluation": {"episodes_per_task": args.eval_episodes, "max_steps": args.eval_max_steps, "seed": 1000},
        "runs": {},
    }
    for name in runs:
        output = work / name
        evaluation = output / "eval_mt10.json"
        if not (args.reuse and evaluation.exists()):
            code = run(
                [sys.executable, "trainers/eval_metaworld.py", f"--model={output}", "--tasks=MT10"]
                + [f"--episodes_per_task={args.eval_episodes}", f"--max_steps={args.eval_max_steps}", "--workers=2"]
                + [f"--output={evaluation}"],
                work / f"{name}_eval.log",
                threads=1,
            ).wait()
            if code:
                raise RuntimeError(f"evaluation of {name} failed; see {work / f'{name}_eval.log'}")
        result = json.loads(evaluation.read_text())
        summary = json.loads((output / "run_summary.json").read_text())
        report["runs"][name] = {
            "mean_success_rate": result["mean_success_rate"],
            "success_rate_per_task": {task: entry["success_rate"] for task, entry in result["tasks"].items()},
            "train_wall_time_s": summary["wall_time_s"],
            "final_train_loss": summary["final_loss"],
            "frames": summary["frames"],
            "episodes": summary["episodes"],
            "eval_wall_time_s": result["wall_time_s"],
            "mean_predict_action_s_during_eval": result["mean_predict_action_seconds"],
        }
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    stem = f"metaworld_mt10_{datetime.date.today().isoformat()}" + (f"_{args.tag}" if args.tag else "")
    (results / f"{stem}.json").write_text(json.dumps(report, indent=1))
    (results / f"{stem}.md").write_text(markdown(report))
    plot(report, {name: work / name / "training_log.json" for name in runs}, results / f"{stem}.png")
    logger.info("\n%s", markdown(report))
    return report


def plot(report: dict, training_logs: dict[str, Path], path: Path) -> Path:
    """Left: post-training loss of each run against the step; right: success rate per task, runs side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs = report["runs"]
    tasks = list(next(iter(runs.values()))["success_rate_per_task"])
    figure, (curves, bars) = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1, 2]})
    for name, log in training_logs.items():
        history = [entry for entry in json.loads(log.read_text()) if "loss" in entry]
        curves.plot([entry["step"] for entry in history], [entry["loss"] for entry in history], label=name)
    curves.set(xlabel="step", ylabel="flow-matching loss", yscale="log", title="post-training loss")
    curves.grid(alpha=0.3)
    curves.legend()
    width = 0.8 / len(runs)
    positions = np.arange(len(tasks))
    for index, (name, run_report) in enumerate(runs.items()):
        rates = [run_report["success_rate_per_task"][task] for task in tasks]
        label = f"{name} (mean {run_report['mean_success_rate']:.2f})"
        bars.bar(positions + (index - (len(runs) - 1) / 2) * width, rates, width, label=label)
    bars.set_xticks(positions, [task.removesuffix("-v3") for task in tasks], rotation=30, ha="right")
    bars.set(ylabel="success rate", ylim=(0, 1.05), title="Meta-World MT10, held-out placements")
    bars.grid(alpha=0.3, axis="y")
    bars.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def markdown(report: dict) -> str:
    runs = report["runs"]
    names = list(runs)
    tasks = list(next(iter(runs.values()))["success_rate_per_task"])
    budget = report["budget"]
    lines = [
        f"# Meta-World MT10 post-training — {report['date']}",
        "",
        f"Machine: {report['machine']}. Pretrained checkpoint: `{report['pretrained_checkpoint']}`.",
        f"Budget (each run): {budget['demonstrations_per_task']} expert demonstrations per task, "
        f"{budget['optimizer_steps']} steps x batch {budget['batch_size']}, lr {budget['learning_rate']:g}, "
        f"DiT {budget['dit_width_layers_heads']} (width, layers, heads), "
        f"{budget['torch_threads_per_run']} torch thread(s), runs in parallel: "
        f"{budget['runs_in_parallel']}.",
        f"Evaluation: {report['evaluation']['episodes_per_task']} held-out placements per task (seed "
        f"{report['evaluation']['seed']}), at most {report['evaluation']['max_steps']} steps, success rate.",
        "",
        "| task | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for task in tasks:
        lines.append(
            f"| {task} | " + " | ".join(f"{runs[n]['success_rate_per_task'][task]:.2f}" for n in names) + " |"
        )
    lines.append("| **mean** | " + " | ".join(f"**{runs[n]['mean_success_rate']:.3f}**" for n in names) + " |")
    lines.append("| train wall time (s) | " + " | ".join(f"{runs[n]['train_wall_time_s']:.0f}" for n in names) + " |")
    lines.append("| final train loss | " + " | ".join(f"{runs[n]['final_train_loss']:.3f}" for n in names) + " |")
    lines.append(
        "| predict_action during eval (s) | "
        + " | ".join(f"{runs[n]['mean_predict_action_s_during_eval']:.3f}" for n in names)
        + " |"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
