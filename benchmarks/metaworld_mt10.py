"""Meta-World MT10: a small JALA policy post-trained from a JALA-pretrained checkpoint vs the same policy from scratch,
over several seeds, with a diagnostic ladder that says where a low success rate comes from.

    MUJOCO_GL=egl python benchmarks/metaworld_mt10.py --pretrained outputs/quickstart/jala --work_dir outputs/mt10 \
        --cameras corner2,gripperPOV --seeds 0,1 --max_steps 2000 --parallel

1. expert demonstrations (`robot_data.metaworld_demos`: `--episodes_per_task` placements per task, `--cameras`,
   lossless video by default; reused when `<work_dir>/demos` exists);
2. post-training runs with one budget — demonstrations, steps, batch, lr, threads — from the pretrained JALA folder
   and from random weights of the same structure (`--from_scratch`), once per seed; with `--parallel` all run side
   by side (`--threads` torch threads each), so they see the same machine load;
3. closed-loop evaluation of every policy on held-out placements (`trainers/eval_metaworld.py`, seed 1000), and
   the ladder: Meta-World's scripted expert through the same loop on the same placements (what the environment and
   step limit allow), the same expert with the goal withheld (it sees the mean training goal: what a policy that
   cannot read the goal off the image could at best do), the first seed's policies on their training placements
   (seed 0: fitting vs generalising),
   and with `--frame_parity` the first from-scratch policy with every observed frame through LeRobot's AV1 codec
   (what a policy trained on AV1 frames while evaluated on raw renders faces, in reverse);
4. where the goal is visible (`robot_data.metaworld_goal_visibility`): per task, whether an object in view fixes the
   goal or only its 2 cm marker shows it; means are reported over all tasks and over the tasks whose goal
   an object in view fixes;
5. a JSON + markdown record under `benchmarks/results/` — per task and seed, mean ± standard deviation over seeds,
   the difference pretrained − scratch with its standard error — and a PNG: loss curves and success per task.

`--reuse` keeps whatever a previous run in `--work_dir` finished (trained policies, evaluations), continues an
unfinished post-training from its last checkpoint (every `--save_steps`, beside the run's folder) and redoes the rest,
e.g. after an interrupted run.
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
from dataclasses import asdict
from pathlib import Path

import numpy as np
from benchmark_machine import cpu_model

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from robot_data.metaworld_demos import (  # noqa: E402
    DEMONSTRATION_SEED,
    EVALUATION_SEED,
    MT10_TASKS,
    camera_for_image_key,
    image_key_for,
)
from robot_data.metaworld_goal_visibility import GoalVisibility, format_table, goal_visibility  # noqa: E402
from trainers.eval_metaworld import EXPERT, EXPERT_GOAL_WITHHELD  # noqa: E402

logger = logging.getLogger("jala.benchmarks.metaworld_mt10")
STARTS = {"jala": "pretrained JALA", "scratch": "from scratch"}


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} CPUs (shared), no GPU, Python {platform.python_version()}"


def launch(command: list[str], log: Path, threads: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "MUJOCO_GL": "egl"}
    logger.info("%s > %s", " ".join(command), log)
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def evaluate(policy: str, output: Path, args: argparse.Namespace, log: Path, extra: list[str] = ()) -> dict:
    """One `eval_metaworld.py` run (reused with --reuse when its JSON exists)."""
    if not (args.reuse and output.exists()):
        command = [sys.executable, "trainers/eval_metaworld.py", f"--model={policy}", "--tasks=MT10"]
        command += [f"--episodes_per_task={args.eval_episodes}", f"--max_steps={args.eval_max_steps}"]
        command += [f"--workers={args.eval_workers}", f"--output={output}", *extra]
        if launch(command, log, threads=1).wait():
            raise RuntimeError(f"evaluation of {policy} failed; see {log}")
    return json.loads(output.read_text())


def posttrain_command(
    args: argparse.Namespace, output: Path, start: str, seed: int, demos: Path, image_keys: list[str]
) -> list[str]:
    """The `posttrain.py` command of one run. It checkpoints every `--save_steps` (beside `output`, one kept); with
    `--reuse`, an unfinished run continues from its last checkpoint, so a policy's budget can span several sittings."""
    from transformers.trainer_utils import get_last_checkpoint

    width, layers, heads = (int(part) for part in args.head.split(","))
    checkpoints = output.parent / f"{output.name}-checkpoints"
    command = [sys.executable, "trainers/posttrain.py", f"--model_name_or_path={args.pretrained}"]
    command += ["--from_scratch"] if start == "scratch" else []
    command += [f"--dataset={demos}", f"--output_dir={output}", "--image_keys", *image_keys]
    command += [f"--max_steps={args.max_steps}", f"--per_device_train_batch_size={args.batch_size}"]
    command += [f"--learning_rate={args.learning_rate}"]
    command += [f"--head_hidden_size={width}", f"--head_num_layers={layers}", f"--head_num_heads={heads}"]
    command += [f"--seed={seed}", "--report_to=none", "--logging_steps=25", "--disable_tqdm=true"]
    command += [f"--checkpoint_dir={checkpoints}", "--save_strategy=steps", f"--save_steps={args.save_steps}"]
    command += ["--save_total_limit=1"]
    last = get_last_checkpoint(str(checkpoints)) if args.reuse and checkpoints.is_dir() else None
    if last:
        command.append(f"--resume_from_checkpoint={last}")
    return command


def mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", required=True, help="JALA pretraining folder (JalaForMotionPretraining).")
    parser.add_argument("--work_dir", default="outputs/mt10")
    parser.add_argument("--episodes_per_task", type=int, default=50, help="Demonstrations per task (MT1: 50).")
    parser.add_argument(
        "--cameras", default="corner2", help="Meta-World cameras the policies see, e.g. corner2,gripperPOV."
    )
    parser.add_argument(
        "--video_encoding", default="lossless", help="Demonstration video encoding (lossless / lerobot)."
    )
    parser.add_argument("--seeds", default="0,1", help="Training seeds of each start.")
    parser.add_argument("--max_steps", type=int, default=2000, help="Optimizer steps of each post-training run.")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=3e-4)
    parser.add_argument("--head", default="128,4,4", help="DiT width,layers,heads.")
    parser.add_argument("--eval_episodes", type=int, default=10, help="Evaluation episodes per task.")
    parser.add_argument("--eval_max_steps", type=int, default=300)
    parser.add_argument("--eval_workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="Torch threads per training process.")
    parser.add_argument("--parallel", action="store_true", help="Run all post-trainings at the same time.")
    parser.add_argument("--no_ladder", action="store_true", help="Skip the expert and training-placement rungs.")
    parser.add_argument("--frame_parity", action="store_true", help="Also evaluate through the AV1 round trip.")
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="Keep finished runs / evaluations in --work_dir; continue unfinished runs from their last checkpoint.",
    )
    parser.add_argument("--save_steps", type=int, default=500, help="Checkpoint interval of each post-training run.")
    parser.add_argument("--tag", default="", help="Suffix of the result files (several budgets on one day).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    cameras = [camera.strip() for camera in args.cameras.split(",") if camera.strip()]
    seeds = [int(seed) for seed in args.seeds.split(",")]
    demos = work / "demos"
    if not (demos / "meta" / "info.json").exists():
        code = launch(
            [sys.executable, "-m", "robot_data.metaworld_demos", f"--output_dir={demos}", "--tasks=MT10"]
            + [f"--episodes_per_task={args.episodes_per_task}", "--workers=2", f"--cameras={','.join(cameras)}"]
            + [f"--video_encoding={args.video_encoding}"],
            work / "demos.log",
            threads=1,
        ).wait()
        if code:
            raise RuntimeError(f"demonstration recording failed; see {work / 'demos.log'}")
    recorded = json.loads((demos / "meta" / "info.json").read_text())["features"]
    recorded_cameras = [
        camera_for_image_key(key) for key, spec in recorded.items() if spec["dtype"] in ("video", "image")
    ]
    missing = [camera for camera in cameras if camera not in recorded_cameras]
    if missing:
        raise ValueError(f"{demos} was recorded with cameras {recorded_cameras}, not {missing}; use another work_dir.")
    image_keys = [image_key_for(camera, recorded_cameras) for camera in cameras]
    runs = {f"{start}_seed{seed}": (start, seed) for start in STARTS for seed in seeds}
    if any((work / name).resolve() == Path(args.pretrained).resolve() for name in runs):
        raise ValueError(f"--pretrained {args.pretrained} is inside --work_dir under a run's name; move it.")
    processes, resumed = {}, []
    for name, (start, seed) in runs.items():
        if args.reuse and (work / name / "run_summary.json").exists():
            logger.info("reusing the trained policy %s", work / name)
            continue
        command = posttrain_command(args, work / name, start, seed, demos, image_keys)
        if any(flag.startswith("--resume_from_checkpoint=") for flag in command):
            resumed.append(name)
        processes[name] = launch(command, work / f"{name}.log", args.threads)
        if not args.parallel and processes[name].wait():
            raise RuntimeError(f"post-training {name} failed; see {work / f'{name}.log'}")
    for name, process in processes.items():
        if process.wait():
            raise RuntimeError(f"post-training {name} failed; see {work / f'{name}.log'}")
    visibility = goal_visibility_rows(work / "goal_visibility.json", cameras, args.reuse)
    goal_in_view = [row.task for row in visibility if row.fixed_by_visible_object]
    report = {
        "date": datetime.datetime.now().isoformat(timespec="minutes"),
        "machine": machine(),
        "pretrained_checkpoint": str(args.pretrained),
        "budget": {
            "demonstrations_per_task": args.episodes_per_task,
            "image_keys": image_keys,
            "optimizer_steps": args.max_steps,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "seeds": seeds,
            "torch_threads_per_run": args.threads,
            "runs_in_parallel": args.parallel,
            "dit_width_layers_heads": [int(part) for part in args.head.split(",")],
        },
        "evaluation": {
            "episodes_per_task": args.eval_episodes,
            "max_steps": args.eval_max_steps,
            "seed": EVALUATION_SEED,
        },
        "runs": {},
        "ladder": {},
        "goal_visibility": [asdict(row) for row in visibility],
        "tasks_with_goal_fixed_by_a_visible_object": goal_in_view,
        "reused_policies": [name for name in runs if name not in processes],
        "resumed_policies": resumed,
    }
    for name in runs:
        output = work / name
        result = evaluate(str(output), output / "eval_mt10.json", args, work / f"{name}_eval.log")
        summary = json.loads((output / "run_summary.json").read_text())
        report["runs"][name] = {
            "start": runs[name][0],
            "seed": runs[name][1],
            "mean_success_rate": result["mean_success_rate"],
            "mean_success_rate_goal_in_view": subset_mean(result, goal_in_view),
            "evaluated_episodes": sum(entry["episodes"] for entry in result["tasks"].values()),
            "evaluated_episodes_goal_in_view": sum(result["tasks"][task]["episodes"] for task in goal_in_view),
            "success_rate_per_task": {task: entry["success_rate"] for task, entry in result["tasks"].items()},
            "train_wall_time_s": summary["wall_time_s"],
            "final_train_loss": summary["final_loss"],
            "frames": summary["frames"],
            "episodes": summary["episodes"],
            "eval_wall_time_s": result["wall_time_s"],
            "budget_change_on_resume": json.loads((output / "training_args.json").read_text()).get(
                "budget_change_on_resume"
            ),
            "mean_predict_action_s_during_eval": result["mean_predict_action_seconds"],
        }
    report["summary"] = summarise(report["runs"])
    if not args.no_ladder:
        expert = evaluate(EXPERT, work / "expert_eval.json", args, work / "expert_eval.log")
        report["ladder"]["expert, held-out placements"] = rates(expert)
        blind = evaluate(
            EXPERT_GOAL_WITHHELD, work / "expert_goal_withheld_eval.json", args, work / "expert_goal_withheld_eval.log"
        )
        report["ladder"]["expert, goal withheld (mean training goal), held-out placements"] = rates(blind)
        for start in STARTS:
            name = f"{start}_seed{seeds[0]}"
            training = evaluate(
                str(work / name),
                work / name / "eval_training_placements.json",
                args,
                work / f"{name}_eval_training.log",
                [f"--seed={DEMONSTRATION_SEED}"],
            )
            report["ladder"][f"{STARTS[start]} (seed {seeds[0]}), training placements"] = rates(training)
            report["ladder"][f"{STARTS[start]} (seed {seeds[0]}), held-out placements"] = {
                "mean_success_rate": report["runs"][name]["mean_success_rate"],
                "success_rate_per_task": report["runs"][name]["success_rate_per_task"],
            }
    if args.frame_parity:
        name = f"scratch_seed{seeds[0]}"
        parity = evaluate(
            str(work / name),
            work / name / "eval_av1_round_trip.json",
            args,
            work / f"{name}_eval_av1.log",
            ["--frame_round_trip=lerobot"],
        )
        report["ladder"][f"from scratch (seed {seeds[0]}), held-out, frames through AV1 CRF 30"] = rates(parity)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    stem = f"metaworld_mt10_{datetime.date.today().isoformat()}" + (f"_{args.tag}" if args.tag else "")
    (results / f"{stem}.json").write_text(json.dumps(report, indent=1))
    (results / f"{stem}.md").write_text(markdown(report))
    plot(report, {name: work / name / "training_log.json" for name in runs}, results / f"{stem}.png")
    logger.info("\n%s", markdown(report))
    return report


def goal_visibility_rows(path: Path, cameras: list[str], reuse: bool) -> list[GoalVisibility]:
    """`goal_visibility` of every MT10 task for the policies' cameras (kept in the work dir; reused with --reuse)."""
    if reuse and path.exists():
        rows = [GoalVisibility(**row) for row in json.loads(path.read_text())]
        if rows and list(rows[0].marker_pixels) == cameras:
            return rows
    rows = [goal_visibility(task, cameras) for task in MT10_TASKS]
    path.write_text(json.dumps([asdict(row) for row in rows], indent=1))
    return rows


def subset_mean(result: dict, tasks: list[str]) -> float:
    """Mean success over `tasks` only."""
    return float(np.mean([result["tasks"][task]["success_rate"] for task in tasks])) if tasks else float("nan")


def rates(result: dict) -> dict:
    return {
        "mean_success_rate": result["mean_success_rate"],
        "success_rate_per_task": {task: entry["success_rate"] for task, entry in result["tasks"].items()},
    }


def difference(jala: dict, scratch: dict, suffix: str = "") -> dict:
    """Pretrained − scratch of one mean with two standard errors: over seeds (independent seeds:
    sqrt(s_a² / n_a + s_b² / n_b); with 2 seeds per start this estimate is itself very uncertain) and over episodes
    (each start's pooled success p over its N evaluated episodes as a binomial: sqrt(p_a q_a / N_a + p_b q_b / N_b)).
    Judge a difference by the larger of the two."""
    mean, std, episodes = f"mean_success_rate{suffix}", f"std_over_seeds{suffix}", f"evaluated_episodes{suffix}"
    over_seeds = np.sqrt(jala[std] ** 2 / jala["seeds"] + scratch[std] ** 2 / scratch["seeds"])
    over_episodes = np.sqrt(
        sum(start[mean] * (1 - start[mean]) / max(start[episodes], 1) for start in (jala, scratch))
    )
    return {
        "mean": jala[mean] - scratch[mean],
        "standard_error": float(over_seeds),
        "standard_error_over_episodes": float(over_episodes),
    }


def summarise(runs: dict) -> dict:
    """Per start: mean ± std over seeds of the MT10 mean (all tasks, and the tasks whose goal an object in view fixes)
    and of every task; the pretrained − scratch differences with their standard errors (`difference`)."""
    summary: dict = {}
    for start in STARTS:
        mine = [run for run in runs.values() if run["start"] == start]
        tasks = list(mine[0]["success_rate_per_task"])
        mean, std = mean_std([run["mean_success_rate"] for run in mine])
        in_view_mean, in_view_std = mean_std([run["mean_success_rate_goal_in_view"] for run in mine])
        summary[start] = {
            "seeds": len(mine),
            "mean_success_rate": mean,
            "std_over_seeds": std,
            "evaluated_episodes": sum(run["evaluated_episodes"] for run in mine),
            "mean_success_rate_goal_in_view": in_view_mean,
            "std_over_seeds_goal_in_view": in_view_std,
            "evaluated_episodes_goal_in_view": sum(run["evaluated_episodes_goal_in_view"] for run in mine),
            "per_task": {task: mean_std([run["success_rate_per_task"][task] for run in mine]) for task in tasks},
        }
    jala, scratch = summary["jala"], summary["scratch"]
    summary["difference_jala_minus_scratch"] = difference(jala, scratch)
    summary["difference_jala_minus_scratch_goal_in_view"] = difference(jala, scratch, "_goal_in_view")
    return summary


def plot(report: dict, training_logs: dict[str, Path], path: Path) -> Path:
    """Left: post-training loss of each run; right: success per task (mean over seeds, error bars: std), expert too."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = report["summary"]
    tasks = list(summary["scratch"]["per_task"])
    figure, (curves, bars) = plt.subplots(1, 2, figsize=(14, 4.4), gridspec_kw={"width_ratios": [1, 2]})
    for name, log in training_logs.items():
        history = [entry for entry in json.loads(log.read_text()) if "loss" in entry]
        curves.plot([entry["step"] for entry in history], [entry["loss"] for entry in history], label=name, lw=1)
    curves.set(xlabel="step", ylabel="flow-matching loss", yscale="log", title="post-training loss")
    curves.grid(alpha=0.3)
    curves.legend(fontsize=7)
    series = {
        f"{STARTS[start]} (mean {summary[start]['mean_success_rate']:.2f})": summary[start]["per_task"]
        for start in STARTS
    }
    experts = {
        label: report["ladder"][rung]
        for label, rung in (
            ("scripted expert", "expert, held-out placements"),
            ("expert, goal withheld", "expert, goal withheld (mean training goal), held-out placements"),
        )
        if rung in report["ladder"]
    }
    width = 0.8 / (len(series) + len(experts))
    positions = np.arange(len(tasks))
    for index, (label, per_task) in enumerate(series.items()):
        means = [per_task[task][0] for task in tasks]
        stds = [per_task[task][1] for task in tasks]
        bars.bar(positions + index * width, means, width, yerr=stds, capsize=2, label=label)
    for index, (label, rung) in enumerate(experts.items()):
        bars.bar(
            positions + (len(series) + index) * width,
            [rung["success_rate_per_task"][task] for task in tasks],
            width,
            color="0.7" if index == 0 else "0.88",
            hatch=None if index == 0 else "//",
            label=f"{label} (mean {rung['mean_success_rate']:.2f})",
        )
    in_view = set(report.get("tasks_with_goal_fixed_by_a_visible_object", tasks))
    bars.set_xticks(
        positions + width * (len(series) + len(experts) - 1) / 2,
        [t.removesuffix("-v3") + ("" if t in in_view else " *") for t in tasks],
        rotation=30,
        ha="right",
    )
    bars.set_xlabel("* goal shown only by its 2 cm marker (no object in view fixes it)")
    bars.set(
        ylabel="success rate",
        ylim=(0, 1.3),
        yticks=np.linspace(0, 1, 6),
        title="Meta-World MT10, held-out placements (error bars: std over seeds)",
    )
    bars.grid(alpha=0.3, axis="y")
    bars.legend(fontsize=8, ncol=2, loc="upper center")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def budget_change_line(runs: dict[str, dict]) -> str | None:
    """Which runs were resumed under another step budget than they started with (so their learning-rate schedule
    is not a fresh run's), or None."""
    changed = {name: run.get("budget_change_on_resume") for name, run in runs.items()}
    changed = {name: change for name, change in changed.items() if change}
    if not changed:
        return None
    return (
        "Step budget changed on resume (the learning-rate schedule was rebuilt for the new budget at that step): "
        + "; ".join(
            f"{name} at step {change['at_step']} (started toward {change['max_steps_before']} steps)"
            for name, change in changed.items()
        )
        + "."
    )


def markdown(report: dict) -> str:
    runs, summary, budget = report["runs"], report["summary"], report["budget"]
    names = list(runs)
    tasks = list(summary["scratch"]["per_task"])
    lines = [
        f"# Meta-World MT10 post-training — {report['date']}",
        "",
        f"Machine: {report['machine']}. Pretrained checkpoint: `{report['pretrained_checkpoint']}`.",
        f"Budget (each run): {budget['demonstrations_per_task']} expert demonstrations per task, cameras "
        f"{budget['image_keys']}, {budget['optimizer_steps']} steps x batch {budget['batch_size']}, "
        f"lr {budget['learning_rate']:g}, DiT {budget['dit_width_layers_heads']} (width, layers, heads), "
        f"{budget['torch_threads_per_run']} torch thread(s), runs in parallel: {budget['runs_in_parallel']}.",
        f"Evaluation: {report['evaluation']['episodes_per_task']} held-out placements per task (seed "
        f"{report['evaluation']['seed']}), at most {report['evaluation']['max_steps']} steps, success rate.",
        "",
        "| task | "
        + " | ".join(f"{STARTS[s]} (mean ± std, {summary[s]['seeds']} seeds)" for s in STARTS)
        + " | "
        + " | ".join(names)
        + " |",
        "|---|" + "---|" * (len(STARTS) + len(names)),
    ]
    for task in tasks:
        cells = [f"{summary[s]['per_task'][task][0]:.2f} ± {summary[s]['per_task'][task][1]:.2f}" for s in STARTS]
        cells += [f"{runs[n]['success_rate_per_task'][task]:.2f}" for n in names]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    cells = [f"**{summary[s]['mean_success_rate']:.3f} ± {summary[s]['std_over_seeds']:.3f}**" for s in STARTS]
    cells += [f"**{runs[n]['mean_success_rate']:.3f}**" for n in names]
    lines.append("| **mean** | " + " | ".join(cells) + " |")
    in_view = report["tasks_with_goal_fixed_by_a_visible_object"]
    cells = [
        f"**{summary[s]['mean_success_rate_goal_in_view']:.3f} ± {summary[s]['std_over_seeds_goal_in_view']:.3f}**"
        for s in STARTS
    ]
    cells += [f"**{runs[n]['mean_success_rate_goal_in_view']:.3f}**" for n in names]
    lines.append(f"| **mean, goal fixed by an object in view ({len(in_view)} tasks)** | " + " | ".join(cells) + " |")
    blank = " | " * len(STARTS)
    lines.append(
        "| train wall time (s) |" + blank + " | ".join(f"{runs[n]['train_wall_time_s']:.0f}" for n in names) + " |"
    )
    lines.append(
        "| final train loss |" + blank + " | ".join(f"{runs[n]['final_train_loss']:.3f}" for n in names) + " |"
    )
    every, in_view_only = (
        summary["difference_jala_minus_scratch"],
        summary["difference_jala_minus_scratch_goal_in_view"],
    )
    lines += [
        "",
        f"Pretrained − scratch: {every['mean']:+.3f} ± {every['standard_error']:.3f} (standard error over seeds) "
        f"± {every['standard_error_over_episodes']:.3f} (over episodes); on the {len(in_view)} tasks whose goal an "
        f"object in view fixes: {in_view_only['mean']:+.3f} ± {in_view_only['standard_error']:.3f} (seeds) "
        f"± {in_view_only['standard_error_over_episodes']:.3f} (episodes). Judge by the larger.",
    ]
    if report["reused_policies"]:
        lines.append(
            f"Reused policies (trained by an earlier invocation with the same budget, maybe under another machine "
            f"load; wall time not comparable): {', '.join(report['reused_policies'])}."
        )
    if report.get("resumed_policies"):
        lines.append(
            f"Resumed from a checkpoint (the train wall time counts only the last sitting): "
            f"{', '.join(report['resumed_policies'])}."
        )
    if changed := budget_change_line(report["runs"]):
        lines.append(changed)
    if report["ladder"]:
        lines += [
            "",
            "## Diagnostic ladder",
            "",
            "| rung | mean | " + " | ".join(t.removesuffix("-v3") for t in tasks) + " |",
        ]
        lines.append("|---|---|" + "---|" * len(tasks))
        for rung, entry in report["ladder"].items():
            per_task = " | ".join(f"{entry['success_rate_per_task'][task]:.2f}" for task in tasks)
            lines.append(f"| {rung} | {entry['mean_success_rate']:.2f} | {per_task} |")
    if report["goal_visibility"]:
        lines += [
            "",
            "## Where the goal is visible",
            "",
            "The policies see frames, the end-effector state and an instruction, never the goal position. Goal "
            "fixed by an object in view: a linear map from one visible body's position to the goal, fitted on the "
            "training placements, held-out R². Marker pixels: pixels the 2 cm goal marker covers in a first frame.",
            "",
            format_table([GoalVisibility(**row) for row in report["goal_visibility"]]),
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
