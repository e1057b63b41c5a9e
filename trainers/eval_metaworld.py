"""Roll out a post-trained JALA policy in Meta-World and report the success rate per task.

    MUJOCO_GL=egl python trainers/eval_metaworld.py --model outputs/jala_mt10 --tasks MT10 \
        --episodes_per_task 10 --workers 2 --output outputs/jala_mt10/eval_mt10.json [--video_dir videos/]

Episodes use object/goal placements drawn with `--seed` (default 1000), which the demonstrations (seed 0) never showed
(`--seed 0` replays the training placements: a rung of the diagnostic ladder). The policy sees what the demonstrations
recorded — its cameras (`action_head_config.image_keys`: `observation.image` is the upright 128 px `corner2` view,
`observation.images.<camera>` any other Meta-World camera), the end-effector state and the task instruction — and acts
through the policy's own `reset()` / `select_action()`: it predicts a chunk of actions, executes the first
`n_action_steps` of them (the policy's config, or `--n_action_steps`) and predicts again (receding horizon). An
episode succeeds as soon as Meta-World reports success, and fails after `--max_steps` steps. `--frame_round_trip
lerobot` passes every rendered frame through the video codec a dataset was written with (frame parity with a policy
trained on AV1 frames; the Meta-World demonstrations are lossless by default). `--model expert` runs Meta-World's
scripted expert through the same loop (the ladder's top rung: what the environment, placements and step limit allow);
`--model expert-goal-withheld` the same expert with the goal replaced by the mean training goal (what a policy that
cannot see the goal could at best do).
Worker processes each load the policy once and take episodes from a shared queue; each episode's sampling noise is
seeded from (seed, task, episode), so results do not depend on the number of workers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import multiprocessing
import os
import platform
import sys
import time
import zlib
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import torch
from tqdm.auto import tqdm

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from robot_data.lerobot_v3 import VIDEO_ENCODINGS, codec_round_trip
from robot_data.metaworld_demos import (
    DEMONSTRATION_SEED,
    EVALUATION_SEED,
    MetaWorldTaskEnv,
    camera_for_image_key,
    instruction_for,
    resolve_tasks,
)
from robot_data.metaworld_goal_visibility import GOAL_SLICE, mean_training_goal

logger = logging.getLogger("jala.eval_metaworld")

__all__ = ["EXPERT", "EXPERT_GOAL_WITHHELD", "ScriptedExpert", "evaluate_policy", "main", "rollout"]

#: `--model` value that evaluates Meta-World's scripted expert through the same loop.
EXPERT = "expert"
#: `--model` value for the scripted expert that does not know the goal (it sees the mean training goal instead).
EXPERT_GOAL_WITHHELD = "expert-goal-withheld"
# Per-process state of an evaluation worker (set by `_init_worker`).
_WORKER: dict[str, Any] = {}


def load_policy(model: str, device: str = "cpu", trust_remote_code: bool = False) -> Any:
    """The action model and its processor from a post-training folder (local classes, or the folder's own code)."""
    if trust_remote_code:
        from transformers import AutoModel

        policy = AutoModel.from_pretrained(model, trust_remote_code=True)
    else:
        from modeling_jala.modeling_jala_action import JalaForActionPrediction

        policy = JalaForActionPrediction.from_pretrained(model)
    policy.to(device).eval()
    if not hasattr(policy, "predict_action"):
        raise TypeError(f"{model} holds a {type(policy).__name__}, not an action model (JalaForActionPrediction).")
    if not hasattr(policy, "select_action"):
        raise TypeError(
            f"the code saved in {model} predates select_action / reset; evaluate without --trust_remote_code (this "
            "repository's classes) or re-save the policy with the current code."
        )
    policy._default_processor()  # load the folder's processor now, once per worker
    return policy


class ScriptedExpert:
    """Meta-World's scripted expert behind the policy interface (`reset` / `select_action`), so that it runs through
    exactly the evaluation loop a learned policy does. It reads the full simulator observation (object and goal
    poses), which no learned policy here is given.

    With `goal_withheld` the goal entries of the observation (`GOAL_SLICE`) are replaced by the mean goal of the
    task's training placements: the best a policy can do that sees everything except the goal — the rung that says
    how much of a task hinges on reading the goal (`robot_data.metaworld_goal_visibility` measures how visible it is).
    """

    queued_actions = 0  # acts on every step's observation

    def __init__(self, goal_withheld: bool = False) -> None:
        self.goal_withheld = goal_withheld
        self.task_env: MetaWorldTaskEnv | None = None
        self.policy: Any = None
        self._mean_goals: dict[str, np.ndarray] = {}

    def bind(self, task_env: MetaWorldTaskEnv) -> None:
        from metaworld.policies import ENV_POLICY_MAP

        self.task_env, self.policy = task_env, ENV_POLICY_MAP[task_env.task]()
        if self.goal_withheld and task_env.task not in self._mean_goals:
            self._mean_goals[task_env.task] = mean_training_goal(task_env.task)

    def reset(self) -> None:
        pass

    def observation(self) -> np.ndarray:
        """What the expert acts on: the simulator observation, its goal swapped for the mean training goal when
        withheld."""
        assert self.task_env is not None and self.task_env.obs is not None, "bind() and reset the environment first"
        observation = np.array(self.task_env.obs, dtype=np.float64)
        if self.goal_withheld:
            observation[GOAL_SLICE] = self._mean_goals[self.task_env.task]
        return observation

    def select_action(self, images: Any, instruction: str, state: Any, **kwargs: Any) -> torch.Tensor:
        action = np.clip(self.policy.get_action(self.observation()), -1.0, 1.0).astype(np.float32)
        return torch.from_numpy(action)[None]


def observe(task_env: MetaWorldTaskEnv, image_keys: list[str], frame_round_trip: str | None) -> dict[str, np.ndarray]:
    """{image key: (H, W, 3) uint8} of the policy's cameras, through the codec round trip when one is asked for."""
    images = {key: task_env.render(camera_for_image_key(key)) for key in image_keys}
    if frame_round_trip is None:
        return images
    return {key: codec_round_trip(image[None], frame_round_trip)[0] for key, image in images.items()}


def policy_image_keys(policy: Any) -> list[str]:
    """The cameras a policy observes (none for the scripted expert, which reads the simulator state)."""
    if isinstance(policy, ScriptedExpert):
        return []
    return list(policy.config.action_head_config.image_keys)


def rollout(
    policy: Any,
    task_env: MetaWorldTaskEnv,
    episode: int,
    max_steps: int,
    seed: int,
    num_inference_steps: int | None = None,
    record_video: bool = False,
    frame_round_trip: str | None = None,
) -> dict[str, Any]:
    """One closed-loop episode through the policy's `reset()` / `select_action()`; success, steps taken, policy
    calls (chunks predicted) and (optionally) the frames of the first camera."""
    task_env.reset(episode)
    if isinstance(policy, ScriptedExpert):
        policy.bind(task_env)
    policy.reset()
    image_keys = policy_image_keys(policy)
    instruction = instruction_for(task_env.task)
    generator = torch.Generator().manual_seed(seed)
    frames: list[np.ndarray] = []
    success, steps, calls = False, 0, 0
    policy_time = 0.0
    while steps < min(max_steps, task_env.max_path_length):
        predicts = policy.queued_actions == 0  # the observation is read only when a chunk is predicted
        images = observe(task_env, image_keys, frame_round_trip) if predicts and image_keys else None
        start = time.perf_counter()
        action = policy.select_action(
            images, instruction, task_env.state(), generator=generator, num_inference_steps=num_inference_steps
        )
        if predicts:
            policy_time += time.perf_counter() - start
            calls += 1
        if record_video:
            frames.append(task_env.render())
        success = task_env.step(action[0].cpu().numpy())
        steps += 1
        if success:
            break
    if record_video:
        frames.append(task_env.render())
    return {
        "success": success,
        "steps": steps,
        "policy_calls": calls,
        "policy_seconds": policy_time,
        "frames": frames,
    }


def _init_worker(options: dict[str, Any]) -> None:
    torch.set_num_threads(options["threads"])
    _WORKER.clear()
    _WORKER.update(options)
    if options["model"] in (EXPERT, EXPERT_GOAL_WITHHELD):
        _WORKER["policy"] = ScriptedExpert(goal_withheld=options["model"] == EXPERT_GOAL_WITHHELD)
    else:
        _WORKER["policy"] = load_policy(options["model"], options["device"], options["trust_remote_code"])
        if options["n_action_steps"] is not None:
            _WORKER["policy"].config.action_head_config.n_action_steps = options["n_action_steps"]
    _WORKER["envs"] = {}


def _episode_seed(seed: int, task: str, episode: int) -> int:
    return (seed * 1_000_003 + zlib.crc32(task.encode()) + episode) % (2**31)


def _run_episode(job: tuple[str, int]) -> dict[str, Any]:
    task, episode = job
    envs: dict[str, MetaWorldTaskEnv] = _WORKER["envs"]
    if task not in envs:
        for other in list(envs):  # one task's scene at a time per worker
            envs.pop(other).close()
        cameras = [camera_for_image_key(key) for key in policy_image_keys(_WORKER["policy"])] or ["corner2"]
        envs[task] = MetaWorldTaskEnv(task, seed=_WORKER["seed"], image_size=_WORKER["image_size"], cameras=cameras)
    start = time.perf_counter()
    result = rollout(
        _WORKER["policy"],
        envs[task],
        episode,
        max_steps=_WORKER["max_steps"],
        seed=_episode_seed(_WORKER["seed"], task, episode),
        num_inference_steps=_WORKER["num_inference_steps"],
        record_video=_WORKER["video_dir"] is not None,
        frame_round_trip=_WORKER["frame_round_trip"],
    )
    frames = result.pop("frames")
    if frames:
        result["video"] = str(_write_video(Path(_WORKER["video_dir"]), task, episode, frames, result["success"]))
    policy = _WORKER["policy"]
    if isinstance(policy, ScriptedExpert):
        executed = 1
    else:
        executed = policy.config.action_head_config.n_action_steps or policy.config.action_head_config.chunk_size
    result.update(task=task, episode=episode, seconds=time.perf_counter() - start, n_action_steps=executed)
    return result


def _write_video(folder: Path, task: str, episode: int, frames: list[np.ndarray], success: bool) -> Path:
    import av

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{task}_episode{episode:03d}_{'success' if success else 'failure'}.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def evaluate_policy(
    model: str,
    tasks: list[str],
    episodes_per_task: int = 10,
    seed: int = EVALUATION_SEED,
    max_steps: int = 300,
    n_action_steps: int | None = None,
    num_inference_steps: int | None = None,
    workers: int = 1,
    device: str = "cpu",
    image_size: int = 128,
    video_dir: str | Path | None = None,
    trust_remote_code: bool = False,
    frame_round_trip: str | None = None,
) -> dict[str, Any]:
    """Success rate per task (and their mean) of the policy in `model` (a post-training folder, or `EXPERT` for
    Meta-World's scripted expert) over the placements of `seed`; `n_action_steps` overrides the policy's
    `action_head_config.n_action_steps` (None keeps it); `frame_round_trip` names a `VIDEO_ENCODINGS` entry every
    observed frame passes through."""
    if frame_round_trip is not None and frame_round_trip not in VIDEO_ENCODINGS:
        raise ValueError(f"frame_round_trip={frame_round_trip!r}; choose one of {sorted(VIDEO_ENCODINGS)} or None.")
    if n_action_steps is not None and n_action_steps < 1:
        raise ValueError(f"n_action_steps must be >= 1, got {n_action_steps}.")
    options = {
        "model": str(model),
        "device": device,
        "trust_remote_code": trust_remote_code,
        "seed": seed,
        "image_size": image_size,
        "max_steps": max_steps,
        "n_action_steps": n_action_steps,
        "num_inference_steps": num_inference_steps,
        "video_dir": None if video_dir is None else str(video_dir),
        "frame_round_trip": frame_round_trip,
        "threads": max(1, (os.cpu_count() or 1) // max(1, workers)),
    }
    jobs = [(task, episode) for task in tasks for episode in range(episodes_per_task)]
    results: list[dict[str, Any]] = []
    start = time.perf_counter()
    progress = tqdm(total=len(jobs), desc="meta-world rollouts", unit="episode")
    if workers > 1:
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, initializer=_init_worker, initargs=(options,)) as pool:
            for result in pool.imap_unordered(_run_episode, jobs):
                results.append(result)
                progress.update()
                progress.set_postfix(success=f"{np.mean([r['success'] for r in results]):.2f}")
    else:
        _init_worker(options)
        try:
            for job in jobs:
                results.append(_run_episode(job))
                progress.update()
                progress.set_postfix(success=f"{np.mean([r['success'] for r in results]):.2f}")
        finally:
            for env in _WORKER.get("envs", {}).values():
                env.close()
            _WORKER.clear()
    progress.close()
    per_task = {}
    for task in tasks:
        mine = sorted((r for r in results if r["task"] == task), key=lambda r: r["episode"])
        per_task[task] = {
            "success_rate": float(np.mean([r["success"] for r in mine])),
            "episodes": len(mine),
            "mean_steps": float(np.mean([r["steps"] for r in mine])),
        }
    calls = sum(r["policy_calls"] for r in results)
    return {
        "model": str(model),
        "mean_success_rate": float(np.mean([entry["success_rate"] for entry in per_task.values()])),
        "tasks": per_task,
        "episodes_per_task": episodes_per_task,
        "seed": seed,
        "max_steps": max_steps,
        "n_action_steps": results[0]["n_action_steps"] if results else n_action_steps,
        "num_inference_steps": num_inference_steps,
        "frame_round_trip": frame_round_trip,
        "workers": workers,
        "mean_predict_action_seconds": sum(r["policy_seconds"] for r in results) / max(1, calls),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.node()} ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs)",
        "episodes": sorted(
            ({k: v for k, v in r.items() if k != "policy_seconds"} for r in results),
            key=lambda r: (r["task"], r["episode"]),
        ),
    }


def format_table(report: dict[str, Any]) -> str:
    lines = ["| task | success rate | mean steps |", "|---|---|---|"]
    for task, entry in report["tasks"].items():
        lines.append(f"| {task} | {entry['success_rate']:.2f} | {entry['mean_steps']:.0f} |")
    lines.append(f"| **mean** | **{report['mean_success_rate']:.3f}** | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        required=True,
        help=f"Post-training output folder (JalaForActionPrediction), {EXPERT!r}: Meta-World's scripted expert, or "
        f"{EXPERT_GOAL_WITHHELD!r}: that expert seeing the mean training goal instead of the goal.",
    )
    parser.add_argument("--tasks", default="MT10", help="'MT10', 'all' or comma-separated task names.")
    parser.add_argument("--episodes_per_task", type=int, default=10)
    parser.add_argument(
        "--seed",
        type=int,
        default=EVALUATION_SEED,
        help=f"Placement seed (demonstrations used {DEMONSTRATION_SEED}).",
    )
    parser.add_argument("--max_steps", type=int, default=300, help="Steps before an episode counts as failed.")
    parser.add_argument(
        "--n_action_steps",
        type=int,
        default=None,
        help="Actions executed per predicted chunk (default: the policy's action_head_config.n_action_steps).",
    )
    parser.add_argument("--num_inference_steps", type=int, default=None, help="Euler steps (default: the model's).")
    parser.add_argument("--workers", type=int, default=1, help="Parallel rollout processes.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--video_dir", default=None, help="Write one mp4 per episode here.")
    parser.add_argument("--trust_remote_code", action="store_true", help="Load with the folder's own code.")
    parser.add_argument(
        "--frame_round_trip",
        default=None,
        choices=sorted(VIDEO_ENCODINGS),
        help="Pass observed frames through this video encoding (what a policy trained on such video saw).",
    )
    parser.add_argument("--output", default=None, help="Write the report (JSON) here.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    report = evaluate_policy(
        args.model,
        resolve_tasks(args.tasks),
        episodes_per_task=args.episodes_per_task,
        seed=args.seed,
        max_steps=args.max_steps,
        n_action_steps=args.n_action_steps,
        num_inference_steps=args.num_inference_steps,
        workers=args.workers,
        device=args.device,
        image_size=args.image_size,
        video_dir=args.video_dir,
        trust_remote_code=args.trust_remote_code,
        frame_round_trip=args.frame_round_trip,
    )
    logger.info("success rates of %s\n%s", args.model, format_table(report))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
