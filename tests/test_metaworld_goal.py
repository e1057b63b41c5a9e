"""The goal rungs of the Meta-World diagnostic ladder: how visible a task's goal is, and the goal-blind expert."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest

requires_metaworld = pytest.mark.skipif(
    importlib.util.find_spec("metaworld") is None,
    reason="Meta-World is not installed (pip install metaworld==3.1.1 mujoco; MUJOCO_GL=egl on a headless machine)",
)


def _bound_expert(goal_withheld: bool, observation: np.ndarray, mean_goal: np.ndarray):
    from trainers.eval_metaworld import ScriptedExpert

    expert = ScriptedExpert(goal_withheld=goal_withheld)
    expert.task_env = SimpleNamespace(task="reach-v3", obs=observation)
    expert._mean_goals["reach-v3"] = mean_goal
    return expert


def test_goal_withheld_expert_sees_the_mean_goal_and_everything_else_unchanged() -> None:
    observation = np.arange(39, dtype=np.float64)
    mean_goal = np.array([0.1, 0.8, 0.2])
    seen = _bound_expert(True, observation, mean_goal).observation()
    np.testing.assert_array_equal(seen[-3:], mean_goal)
    np.testing.assert_array_equal(seen[:-3], observation[:-3])
    np.testing.assert_array_equal(observation, np.arange(39))  # the environment's own observation is untouched


def test_default_expert_sees_the_true_goal() -> None:
    observation = np.arange(39, dtype=np.float64)
    seen = _bound_expert(False, observation, np.zeros(3)).observation()
    np.testing.assert_array_equal(seen, observation)


@requires_metaworld
def test_reach_goal_is_only_a_marker_while_a_drawer_goal_follows_the_drawer() -> None:
    from robot_data.metaworld_goal_visibility import goal_visibility

    reach = goal_visibility("reach-v3", ["corner2"], training_placements=12, held_out_placements=3)
    assert not reach.fixed_by_visible_object, reach
    assert reach.goal_spread_m > 0.03  # the goal moves several centimetres between placements
    assert 0 < reach.marker_pixels["corner2"] < 64  # visible, but a few pixels of a 128 px frame

    drawer = goal_visibility("drawer-close-v3", ["corner2"], training_placements=12, held_out_placements=3)
    assert drawer.fixed_by_visible_object, drawer
    assert drawer.best_object is not None and drawer.object_r2 > 0.99


@requires_metaworld
def test_mean_training_goal_is_the_average_of_the_demonstration_placements() -> None:
    from robot_data.metaworld_demos import DEMONSTRATION_SEED, MetaWorldTaskEnv
    from robot_data.metaworld_goal_visibility import mean_training_goal

    task_env = MetaWorldTaskEnv("reach-v3", seed=DEMONSTRATION_SEED)
    goals = []
    for episode in range(4):
        task_env.reset(episode)
        goals.append(np.array(task_env.env._target_pos))  # where Meta-World put the goal: obs[GOAL_SLICE] must agree
    task_env.close()
    np.testing.assert_allclose(mean_training_goal("reach-v3", placements=4), np.mean(goals, axis=0))
