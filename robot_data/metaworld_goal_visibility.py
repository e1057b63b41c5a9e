"""How much a Meta-World frame tells a policy about the task's goal — a rung of the diagnostic ladder.

    MUJOCO_GL=egl python -m robot_data.metaworld_goal_visibility --tasks MT10 --cameras corner2,gripperPOV

A learned policy here sees camera frames, the end-effector state and an instruction; the goal position (where the
hand, puck or peg must end up) is in the simulator's observation but never given to it. For some tasks the goal is
fixed by an object the camera shows (a drawer's goal moves with the drawer); for others Meta-World draws it at random
and the only trace in the image is the goal marker, a 2 cm sphere. Per task this module measures both:

* **fixed by a visible object**: for every body with visible geometry whose position varies between placements, a
  linear map from its position to the goal, fitted on the training placements and scored (R²) on held-out ones; the
  best body and its R². R² near 1: the goal can be read off an object in view. R² near or below 0: no object tells
  where the goal is.
* **marker pixels**: per camera, how many pixels change when the goal marker is made transparent, at the rendered
  resolution, averaged over the held-out placements' first frames.

`trainers/eval_metaworld.py --model expert-goal-withheld` measures the consequence: the scripted expert acting on an
observation whose goal is replaced by the mean training goal — what the best goal-blind behaviour achieves.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from robot_data.metaworld_demos import (
    DEFAULT_CAMERA,
    DEMONSTRATION_SEED,
    EVALUATION_SEED,
    MetaWorldTaskEnv,
    resolve_tasks,
)

logger = logging.getLogger(__name__)

__all__ = ["GOAL_SITE", "GOAL_SLICE", "OBJECT_R2_THRESHOLD", "GoalVisibility", "goal_visibility", "mean_training_goal"]

#: The MuJoCo site Meta-World draws the goal marker with (and moves to the goal on reset).
GOAL_SITE = "goal"
#: Where Meta-World's 39-d observation holds the goal position (its last three entries).
GOAL_SLICE = slice(-3, None)
#: Held-out R² above which a task's goal counts as fixed by a visible object.
OBJECT_R2_THRESHOLD = 0.95


@dataclass
class GoalVisibility:
    task: str
    goal_spread_m: float  # root-mean-square distance of the goal from its mean over training placements, metres
    best_object: str | None  # the visible body whose position best predicts the goal
    object_r2: float  # held-out R² of that prediction
    marker_pixels: dict[str, float]  # camera -> mean pixels the goal marker covers in a first frame
    image_size: int

    @property
    def fixed_by_visible_object(self) -> bool:
        return self.object_r2 >= OBJECT_R2_THRESHOLD


def _visible_bodies(model) -> np.ndarray:
    """Bodies with at least one geom MuJoCo's default scene options draw (alpha > 0, geom group 0–2)."""
    visible = np.zeros(model.nbody, dtype=bool)
    drawn = (model.geom_rgba[:, 3] > 0) & (model.geom_group <= 2)
    visible[model.geom_bodyid[drawn]] = True
    return visible


def _placements(task: str, seed: int, count: int) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Body positions (count, nbody, 3) and goals (count, 3) at reset of `count` placements of `seed`."""
    import mujoco

    task_env = MetaWorldTaskEnv(task, seed=seed)
    try:
        model = task_env.env.model
        bodies, goals = [], []
        for episode in range(count):
            observation = task_env.reset(episode)
            bodies.append(task_env.env.data.xpos.copy())
            goals.append(np.asarray(observation[GOAL_SLICE], dtype=np.float64))
        names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b) or f"body{b}" for b in range(model.nbody)]
        return np.stack(bodies), np.stack(goals), names, _visible_bodies(model)
    finally:
        task_env.close()


def mean_training_goal(task: str, placements: int = 50, seed: int = DEMONSTRATION_SEED) -> np.ndarray:
    """The mean goal over the training placements: the best constant guess of a policy that cannot see the goal."""
    return _placements(task, seed, placements)[1].mean(axis=0)


def _marker_pixels(task: str, seed: int, count: int, cameras: Sequence[str], image_size: int) -> dict[str, float]:
    import mujoco

    task_env = MetaWorldTaskEnv(task, seed=seed, image_size=image_size, cameras=cameras)
    try:
        model = task_env.env.model
        site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, GOAL_SITE)
        if site < 0:
            return {camera: 0.0 for camera in cameras}
        counts: dict[str, list[int]] = {camera: [] for camera in cameras}
        shown_rgba = model.site_rgba[site].copy()
        for episode in range(count):
            task_env.reset(episode)
            shown = task_env.render_cameras()
            model.site_rgba[site, 3] = 0.0
            hidden = task_env.render_cameras()
            model.site_rgba[site] = shown_rgba
            for camera in cameras:
                counts[camera].append(int((shown[camera] != hidden[camera]).any(axis=-1).sum()))
        return {camera: float(np.mean(values)) for camera, values in counts.items()}
    finally:
        task_env.close()


def goal_visibility(
    task: str,
    cameras: Sequence[str] = (DEFAULT_CAMERA,),
    image_size: int = 128,
    training_placements: int = 50,
    held_out_placements: int = 10,
    training_seed: int = DEMONSTRATION_SEED,
    held_out_seed: int = EVALUATION_SEED,
) -> GoalVisibility:
    """The two measurements of the module docstring for one task."""
    train_bodies, train_goals, names, visible = _placements(task, training_seed, training_placements)
    test_bodies, test_goals, _, _ = _placements(task, held_out_seed, held_out_placements)
    mean_goal = train_goals.mean(axis=0)
    total = float(((test_goals - mean_goal) ** 2).sum())
    best_object, best_r2 = None, -np.inf
    for body in np.flatnonzero(visible):
        if train_bodies[:, body].std(axis=0).max() < 1e-6:  # does not move between placements: says nothing
            continue
        design = np.c_[train_bodies[:, body], np.ones(len(train_bodies))]
        weights, *_ = np.linalg.lstsq(design, train_goals, rcond=None)
        predicted = np.c_[test_bodies[:, body], np.ones(len(test_bodies))] @ weights
        r2 = 1.0 - float(((predicted - test_goals) ** 2).sum()) / max(total, 1e-12)
        if r2 > best_r2:
            best_object, best_r2 = names[body], r2
    spread = float(np.sqrt(((train_goals - mean_goal) ** 2).sum(axis=1).mean()))
    return GoalVisibility(
        task=task,
        goal_spread_m=spread,
        best_object=best_object,
        object_r2=float(best_r2) if best_object is not None else float("nan"),
        marker_pixels=_marker_pixels(task, held_out_seed, held_out_placements, cameras, image_size),
        image_size=image_size,
    )


def format_table(rows: Sequence[GoalVisibility]) -> str:
    cameras = list(rows[0].marker_pixels) if rows else []
    size = rows[0].image_size if rows else 0
    lines = [
        "| task | goal spread (cm) | goal fixed by a visible object (held-out R²) | "
        + " | ".join(f"goal marker px, {camera} ({size}²)" for camera in cameras)
        + " |",
        "|---|---|---|" + "---|" * len(cameras),
    ]
    for row in rows:
        verdict = "yes" if row.fixed_by_visible_object else "no"
        pixels = " | ".join(f"{row.marker_pixels[camera]:.1f}" for camera in cameras)
        lines.append(
            f"| {row.task} | {100 * row.goal_spread_m:.1f} | {verdict}: {row.best_object} ({row.object_r2:.2f}) | "
            f"{pixels} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[GoalVisibility]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="MT10", help="'MT10', 'all' or comma-separated task names.")
    parser.add_argument("--cameras", default=DEFAULT_CAMERA, help="Comma-separated cameras, e.g. corner2,gripperPOV.")
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--output", default=None, help="Write the rows (JSON) here.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cameras = [camera.strip() for camera in args.cameras.split(",") if camera.strip()]
    rows = [goal_visibility(task, cameras, args.image_size) for task in resolve_tasks(args.tasks)]
    print(format_table(rows))
    if args.output:
        Path(args.output).write_text(json.dumps([asdict(row) for row in rows], indent=1))
    return rows


if __name__ == "__main__":
    main()
