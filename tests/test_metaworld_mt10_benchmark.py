"""The MT10 benchmark's post-training command: checkpoints, resuming an unfinished run with --reuse, and the
record's note on runs resumed under another step budget."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from metaworld_mt10 import budget_change_line, posttrain_command  # noqa: E402


def _args(reuse: bool) -> argparse.Namespace:
    return argparse.Namespace(
        pretrained="outputs/jala",
        max_steps=100,
        batch_size=4,
        learning_rate=1e-3,
        head="64,2,2",
        save_steps=20,
        reuse=reuse,
    )


def _flag(command: list[str], name: str) -> str | None:
    values = [part.split("=", 1)[1] for part in command if part.startswith(f"--{name}=")]
    return values[-1] if values else None


def test_command_checkpoints_beside_the_run_and_starts_fresh(tmp_path):
    command = posttrain_command(_args(reuse=True), tmp_path / "scratch_seed0", "scratch", 0, tmp_path / "demos", ["a"])
    assert "--from_scratch" in command
    assert _flag(command, "checkpoint_dir") == str(tmp_path / "scratch_seed0-checkpoints")
    assert _flag(command, "save_steps") == "20" and _flag(command, "save_strategy") == "steps"
    assert _flag(command, "resume_from_checkpoint") is None
    assert command[command.index("--image_keys") + 1] == "a"


def test_reuse_resumes_from_the_last_checkpoint_only_when_asked(tmp_path):
    checkpoints = tmp_path / "jala_seed1-checkpoints"
    for step in (20, 40):
        (checkpoints / f"checkpoint-{step}").mkdir(parents=True)
    output = tmp_path / "jala_seed1"
    resumed = posttrain_command(_args(reuse=True), output, "jala", 1, tmp_path / "demos", ["a", "b"])
    assert _flag(resumed, "resume_from_checkpoint") == str(checkpoints / "checkpoint-40")
    assert "--from_scratch" not in resumed and _flag(resumed, "seed") == "1"
    fresh = posttrain_command(_args(reuse=False), output, "jala", 1, tmp_path / "demos", ["a", "b"])
    assert _flag(fresh, "resume_from_checkpoint") is None


def test_the_record_names_runs_resumed_under_another_step_budget():
    runs = {
        "scratch_seed0": {"budget_change_on_resume": {"at_step": 2000, "max_steps_before": 8000}},
        "jala_seed0": {"budget_change_on_resume": None},
        "jala_seed1": {},
    }
    line = budget_change_line(runs)
    assert "scratch_seed0 at step 2000 (started toward 8000 steps)" in line and "jala" not in line
    assert budget_change_line({"jala_seed0": {"budget_change_on_resume": None}}) is None
