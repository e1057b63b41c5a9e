"""Meta-World demonstrations from the package's scripted experts, written as a LeRobot v3.0 dataset.

    MUJOCO_GL=egl python -m robot_data.metaworld_demos --output_dir outputs/metaworld_mt10 \
        --tasks MT10 --episodes_per_task 20

Each episode is one goal variation of a task (Meta-World's MT1 benchmark: 50 object/goal placements per task,
drawn from `--seed`; evaluation draws its placements from another seed, so they are held out). The expert runs
until the task reports success (`--max_steps` at most); failed demonstrations are dropped and the next placement is
tried. Per step the dataset holds:

* `observation.image`: the `corner2` camera at 128 px, flipped vertically — Meta-World's cameras render upside
  down; with several `--cameras` (e.g. `corner2,gripperPOV`: an external and a wrist camera, as LIBERO-style and
  real robots have) one feature per camera, `observation.images.<camera>` (LeRobot's naming, `image_key_for`);
* `observation.state`: end-effector xyz + gripper opening (obs[:4]), the robot's proprioception;
* `observation.environment_state`: the full 39-d observation (object poses, goal) — stored for completeness,
  never given to the policy, which must find the objects and goals in the image;
* `action`: the expert's 4-d action (end-effector delta xyz, gripper effort), clipped to the action space [-1, 1].

Rendering: MuJoCo with shadows, reflections and multisampling off. On a machine without a GPU MuJoCo renders in
software (Mesa llvmpipe through EGL), where shadows and reflections cost ~95% of the time (0.23 s -> 0.013 s per
128 px frame here); demonstrations and evaluation rollouts use this same renderer, so the policy sees the same
images in both.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
from tqdm.auto import tqdm

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modeling_jala.layout_jala import (
    LEROBOT_ACTION_KEY,
    LEROBOT_CAMERA_KEY_PREFIX,
    LEROBOT_IMAGE_KEY,
    LEROBOT_STATE_KEY,
)
from robot_data.lerobot_v3 import VIDEO_ENCODINGS, LeRobotV3Writer

logger = logging.getLogger(__name__)

__all__ = [
    "INSTRUCTIONS",
    "DEMONSTRATION_SEED",
    "EVALUATION_SEED",
    "MT10_TASKS",
    "MetaWorldTaskEnv",
    "camera_for_image_key",
    "image_key_for",
    "generate_demos",
    "instruction_for",
    "record_demo",
    "resolve_tasks",
]

MT10_TASKS = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
)
#: Language instructions for the MT10 tasks; other tasks get their name in words (`instruction_for`).
INSTRUCTIONS = {
    "reach-v3": "reach the goal position",
    "push-v3": "push the puck to the goal",
    "pick-place-v3": "pick up the puck and place it at the goal",
    "door-open-v3": "open the door",
    "drawer-open-v3": "open the drawer",
    "drawer-close-v3": "close the drawer",
    "button-press-topdown-v3": "press the button from the top",
    "peg-insert-side-v3": "insert the peg into the hole from the side",
    "window-open-v3": "slide the window open",
    "window-close-v3": "slide the window closed",
}
DEFAULT_CAMERA = "corner2"
#: Placement seeds: demonstrations record placements of the first, evaluation draws held-out ones from the second.
DEMONSTRATION_SEED, EVALUATION_SEED = 0, 1000
ENV_STATE_KEY = "observation.environment_state"
STATE_NAMES = ["hand_x", "hand_y", "hand_z", "gripper_opening"]
ACTION_NAMES = ["delta_x", "delta_y", "delta_z", "gripper_effort"]


def instruction_for(task: str) -> str:
    return INSTRUCTIONS.get(task, task.removesuffix("-v3").replace("-", " "))


def image_key_for(camera: str, cameras: Sequence[str]) -> str:
    """The dataset feature of `camera` in a recording of `cameras`: `observation.image` when it is the only one,
    else `observation.images.<camera>`."""
    return LEROBOT_IMAGE_KEY if list(cameras) == [camera] else LEROBOT_CAMERA_KEY_PREFIX + camera


def camera_for_image_key(image_key: str) -> str:
    """The Meta-World camera an image feature was recorded from (the inverse of `image_key_for`)."""
    if image_key == LEROBOT_IMAGE_KEY:
        return DEFAULT_CAMERA
    if image_key.startswith(LEROBOT_CAMERA_KEY_PREFIX):
        return image_key[len(LEROBOT_CAMERA_KEY_PREFIX) :]
    raise ValueError(
        f"image key {image_key!r} names no Meta-World camera; expected {LEROBOT_IMAGE_KEY!r} ({DEFAULT_CAMERA}) or "
        f"'{LEROBOT_CAMERA_KEY_PREFIX}<camera>' (e.g. {LEROBOT_CAMERA_KEY_PREFIX}gripperPOV)."
    )


def resolve_tasks(spec: str | list[str]) -> list[str]:
    """'MT10', 'all' or comma-separated task names -> task names (validated against Meta-World's V3 tasks)."""
    import metaworld

    names = spec if isinstance(spec, list) else [part.strip() for part in spec.split(",") if part.strip()]
    if names == ["MT10"]:
        return list(MT10_TASKS)
    known = list(metaworld.env_dict.ALL_V3_ENVIRONMENTS)
    if names == ["all"]:
        return known
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown Meta-World tasks {unknown}; use 'MT10', 'all' or names like {known[:3]}.")
    return names


class MetaWorldTaskEnv:
    """One Meta-World task: goal-varied episodes and fast, upright cameras (`corner2` by default).

    Args:
        task: a V3 task name (e.g. "reach-v3").
        seed: seeds the 50 object/goal placements of Meta-World's MT1 benchmark for this task; placement
            `episode % 50` is used for episode `episode`.
        image_size: square camera resolution.
        cameras: cameras of the Meta-World scene (topview, corner, corner2, corner3, corner4, behindGripper,
            gripperPOV: the wrist camera); `render()` shows the first, `render_cameras()` all of them.
    """

    def __init__(
        self, task: str, seed: int, image_size: int = 128, cameras: Sequence[str] = (DEFAULT_CAMERA,)
    ) -> None:
        import metaworld
        import mujoco

        self.task = task
        self.benchmark = metaworld.MT1(task, seed=seed)
        self.env = self.benchmark.train_classes[task]()
        self.env.set_task(self.benchmark.train_tasks[0])
        self.env.model.vis.quality.offsamples = 0  # no multisampling (set before the renderer sizes its buffers)
        self.renderer = mujoco.Renderer(self.env.model, image_size, image_size)
        if isinstance(cameras, str) or not cameras:
            raise ValueError(f"cameras must be a non-empty list of camera names, got {cameras!r}.")
        known = [
            mujoco.mj_id2name(self.env.model, mujoco.mjtObj.mjOBJ_CAMERA, index)
            for index in range(self.env.model.ncam)
        ]
        unknown = [camera for camera in cameras if camera not in known]
        if unknown:
            raise ValueError(f"cameras {unknown} are not in the {task} scene; its cameras: {known}.")
        self.cameras = {camera: known.index(camera) for camera in cameras}
        self.max_path_length = int(self.env.max_path_length)
        self.fps = round(1.0 / self.env.dt)
        self.obs: np.ndarray | None = None

    @property
    def num_placements(self) -> int:
        return len(self.benchmark.train_tasks)

    def reset(self, episode: int) -> np.ndarray:
        self.env.set_task(self.benchmark.train_tasks[episode % self.num_placements])
        self.obs, _ = self.env.reset()
        return self.obs

    def render(self, camera: str | None = None) -> np.ndarray:
        """(H, W, 3) uint8 of `camera` (default: the first), upright (Meta-World's cameras render upside down, so
        the image is flipped)."""
        import mujoco

        name = next(iter(self.cameras)) if camera is None else camera
        self.renderer.update_scene(self.env.data, camera=self.cameras[name])
        self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        return np.ascontiguousarray(self.renderer.render()[::-1])

    def render_cameras(self) -> dict[str, np.ndarray]:
        """{camera: (H, W, 3) uint8} for every camera of this environment."""
        return {camera: self.render(camera) for camera in self.cameras}

    def state(self) -> np.ndarray:
        """Proprioception: end-effector xyz and gripper opening (the first 4 entries of the observation)."""
        assert self.obs is not None, "call reset() first"
        return self.obs[:4].astype(np.float32)

    def step(self, action: np.ndarray) -> bool:
        """Apply one action (clipped to [-1, 1]); True once the task reports success."""
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self.obs, _, _, _, info = self.env.step(action)
        return bool(info["success"])

    def close(self) -> None:
        self.renderer.close()
        self.env.close()


def record_demo(task_env: MetaWorldTaskEnv, episode: int, max_steps: int) -> dict[str, np.ndarray] | None:
    """Run the scripted expert on one placement; the episode's frames, or None when it did not succeed."""
    from metaworld.policies import ENV_POLICY_MAP

    policy = ENV_POLICY_MAP[task_env.task]()
    obs = task_env.reset(episode)
    keys = {camera: image_key_for(camera, list(task_env.cameras)) for camera in task_env.cameras}
    images: dict[str, list[np.ndarray]] = {key: [] for key in keys.values()}
    states, env_states, actions = [], [], []
    for _ in range(min(max_steps, task_env.max_path_length)):
        action = np.clip(policy.get_action(obs), -1.0, 1.0).astype(np.float32)
        for camera, image in task_env.render_cameras().items():
            images[keys[camera]].append(image)
        states.append(task_env.state())
        env_states.append(obs.astype(np.float32))
        actions.append(action)
        success = task_env.step(action)
        obs = task_env.obs
        if success:
            return {
                **{key: np.stack(frames) for key, frames in images.items()},
                LEROBOT_STATE_KEY: np.stack(states),
                ENV_STATE_KEY: np.stack(env_states),
                LEROBOT_ACTION_KEY: np.stack(actions),
            }
    return None


def _task_demos(
    job: tuple[str, int, int, int, int, tuple[str, ...]],
) -> tuple[str, list[dict[str, np.ndarray]], int, int]:
    """Worker: `count` successful demonstrations of one task (placements tried in order)."""
    task, count, seed, image_size, max_steps, cameras = job
    task_env = MetaWorldTaskEnv(task, seed=seed, image_size=image_size, cameras=cameras)
    demos: list[dict[str, np.ndarray]] = []
    attempts = 0
    try:
        while len(demos) < count and attempts < 2 * count + 10:
            demo = record_demo(task_env, attempts, max_steps)
            attempts += 1
            if demo is not None:
                demos.append(demo)
        fps = task_env.fps
    finally:
        task_env.close()
    return task, demos, attempts, fps


def generate_demos(
    output_dir: str | Path,
    tasks: list[str],
    episodes_per_task: int,
    seed: int = DEMONSTRATION_SEED,
    image_size: int = 128,
    cameras: Sequence[str] = (DEFAULT_CAMERA,),
    max_steps: int = 500,
    workers: int = 1,
    video_encoding: str = "lossless",
) -> Path:
    """Record `episodes_per_task` successful expert demonstrations of every task into a LeRobot v3.0 dataset.

    Tasks are recorded in parallel (`workers` processes); episodes are written in task order, so the dataset
    is the same for any number of workers.
    """
    if episodes_per_task < 1:
        raise ValueError(f"episodes_per_task must be >= 1, got {episodes_per_task}.")
    jobs = [(task, episodes_per_task, seed, image_size, max_steps, tuple(cameras)) for task in tasks]
    results: dict[str, tuple[list[dict[str, np.ndarray]], int, int]] = {}
    progress = tqdm(total=len(tasks), desc="expert demonstrations", unit="task")
    if workers > 1:
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers) as pool:
            for task, demos, attempts, fps in pool.imap_unordered(_task_demos, jobs):
                results[task] = (demos, attempts, fps)
                progress.update()
    else:
        for job in jobs:
            task, demos, attempts, fps = _task_demos(job)
            results[task] = (demos, attempts, fps)
            progress.update()
    progress.close()
    fps = {result[2] for result in results.values()}
    if len(fps) != 1:
        raise RuntimeError(f"tasks run at different control rates {fps}; record them into separate datasets.")
    features = {
        **{
            image_key_for(camera, cameras): {
                "dtype": "video",
                "shape": [image_size, image_size, 3],
                "names": ["height", "width", "channels"],
            }
            for camera in cameras
        },
        LEROBOT_STATE_KEY: {"dtype": "float32", "shape": [4], "names": STATE_NAMES},
        ENV_STATE_KEY: {"dtype": "float32", "shape": [39], "names": None},
        LEROBOT_ACTION_KEY: {"dtype": "float32", "shape": [4], "names": ACTION_NAMES},
    }
    with LeRobotV3Writer(
        output_dir, fps=fps.pop(), features=features, robot_type="sawyer", video_encoding=video_encoding
    ) as writer:
        for task in tasks:
            demos, attempts, _ = results[task]
            if len(demos) < episodes_per_task:
                logger.warning(
                    "%s: only %d of %d demonstrations succeeded in %d attempts",
                    task,
                    len(demos),
                    episodes_per_task,
                    attempts,
                )
            for demo in demos:
                writer.add_episode(demo, task=instruction_for(task))
            lengths = [len(demo[LEROBOT_ACTION_KEY]) for demo in demos]
            logger.info(
                "%s: %d demos (%d attempts), %.0f steps on average", task, len(demos), attempts, np.mean(lengths)
            )
    return Path(output_dir)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True, help="New LeRobot v3.0 dataset folder.")
    parser.add_argument("--tasks", default="MT10", help="'MT10', 'all' or comma-separated names (reach-v3,...).")
    parser.add_argument("--episodes_per_task", type=int, default=20)
    parser.add_argument(
        "--seed", type=int, default=DEMONSTRATION_SEED, help="Seeds the object/goal placements (eval uses another)."
    )
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument(
        "--cameras",
        default=DEFAULT_CAMERA,
        help="Comma-separated cameras, e.g. corner2,gripperPOV (external + wrist); one feature per camera.",
    )
    parser.add_argument("--max_steps", type=int, default=500, help="Longest demonstration (Meta-World: 500).")
    parser.add_argument("--workers", type=int, default=1, help="Processes recording tasks in parallel.")
    parser.add_argument(
        "--video_encoding",
        default="lossless",
        choices=sorted(VIDEO_ENCODINGS),
        help="Camera video encoding: lossless (default; the policy trains on the pixels evaluation renders) or "
        "lerobot (LeRobot's AV1 CRF 30).",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    start = time.perf_counter()
    folder = generate_demos(
        args.output_dir,
        resolve_tasks(args.tasks),
        args.episodes_per_task,
        seed=args.seed,
        image_size=args.image_size,
        cameras=[camera.strip() for camera in args.cameras.split(",") if camera.strip()],
        max_steps=args.max_steps,
        workers=args.workers,
        video_encoding=args.video_encoding,
    )
    logger.info("done in %.0f s: %s", time.perf_counter() - start, folder)
    return folder


if __name__ == "__main__":
    main()
