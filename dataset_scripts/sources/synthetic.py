"""Source `synthetic`: the procedural hand world (MuJoCo), lab and wild regimes, exact or hidden labels.

See `dataset_scripts/hand_world/` for how clips are made; this file turns options into rows, optionally over
several worker processes.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Iterator, Mapping
from typing import Any

from tqdm.auto import tqdm

from dataset_scripts.hand_world.clip import DEFAULT_TASK_MIX, ClipSpec, WorldOptions, plan_clip_spec
from dataset_scripts.hand_world.layout_sampler import FAMILIES

from .base import ClipSource, register_source

logger = logging.getLogger(__name__)

_WORKER_RENDERER = None  # one SceneRenderer per worker process


def _parse_weights(
    value: Mapping[str, float] | str | None, field: str, default: Mapping[str, float]
) -> tuple[tuple[str, float], ...]:
    """A mapping, or a CLI string ``name:weight|name:weight``, as sorted-by-declaration (name, weight) pairs."""
    if value is None:
        return tuple(default.items())
    if isinstance(value, str):
        pairs = {}
        for item in value.split("|"):
            name, sep, weight = item.partition(":")
            if not sep:
                raise ValueError(
                    f"{field}: {item!r} is not 'name:weight'; write e.g. {field}=motion_generation:1|video_only:1."
                )
            pairs[name.strip()] = float(weight)
        value = pairs
    return tuple((str(name), float(weight)) for name, weight in value.items())


def _parse_size(value: int | str | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(value, str):
        parts = value.lower().split("x")
        if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"image_size: {value!r} is not 'N' or 'WxH' (pixels); write e.g. image_size=224.")
        numbers = [int(p) for p in parts]
        return (numbers[0], numbers[-1])
    if isinstance(value, int):
        return (value, value)
    width, height = value
    return (int(width), int(height))


def _ensure_gl_backend() -> None:
    """Headless machines need an offscreen backend chosen before mujoco is imported."""
    os.environ.setdefault("MUJOCO_GL", "egl")


def _init_worker(width: int, height: int, llvmpipe_threads: int | None) -> None:
    global _WORKER_RENDERER
    _ensure_gl_backend()
    if llvmpipe_threads is not None:
        os.environ.setdefault("LP_NUM_THREADS", str(llvmpipe_threads))
    import torch

    torch.set_num_threads(1)
    from dataset_scripts.hand_world.renderer import SceneRenderer

    _WORKER_RENDERER = SceneRenderer(width, height)


def _render_in_worker(job: tuple[WorldOptions, int]) -> dict[str, Any]:
    from dataset_scripts.hand_world.clip import render_row

    options, index = job
    assert _WORKER_RENDERER is not None, "worker was not initialised"
    return render_row(_WORKER_RENDERER, plan_clip_spec(options, index))


@register_source("synthetic")
class SyntheticSource(ClipSource):
    """Procedural hand world: MuJoCo-rendered hands doing instruction-conditioned table-top motions.

    What the hand does depends on the first frame (target position, which hand is closer, object size and
    orientation, obstacles), not on the instruction alone; lab and wild share motion families and layouts and
    differ only in look and label availability (see ``dataset_scripts/hand_world/``).

    Rows: both hands are always in the picture (the first frame must show which one is closer), but
    ``hands_present`` and ``motion`` cover only the acting hand(s); an idle hand rests, visible and unlabelled
    (its motion slot is zeros), as in datasets that annotate the interacting hand. Labels are in the OpenCV frame
    of the row's camera; the ``scene`` column holds objects (world and camera positions), camera pose and
    intrinsics, lighting and textures, the target, the acting hands and the motion family with its parameters.

    Options (keyword arguments; on the CLI ``synthetic:key=value,...``):

    * ``domain`` ("lab"): ``lab`` (fixed camera, plain table, even light, exact labels) or ``wild`` (random
      procedural textures, jittered exo/side/egocentric cameras, lighting, distractors, occluders, sensor noise).
    * ``split`` ("train"): ``train``; ``test_lab`` (lab only) or ``test_wild`` (wild only: held-out seeds and
      held-out surface colours/textures, exact labels for evaluation).
    * ``num_clips`` (100): rows yielded (clip indices 0 .. num_clips - 1).
    * ``seed`` (0): world seed; clip i of a (seed, domain, split) is always the same clip. Use different seeds
      for different builds of the same split.
    * ``image_size`` (224): frame size, ``N`` or ``WxH`` pixels; intrinsics follow it exactly.
    * ``pseudo_label_fraction`` (0.1): wild train clips with a noisy pseudo-label (confidence in [0.65, 1]);
      the rest are unlabelled (``motion`` null, task ``video_only``). Lab and test splits keep exact labels.
    * ``task_mix`` (generation 0.5, continuation 0.2, description 0.2, video-only 0.1): task-type weights for
      labelled clips, a mapping or ``name:weight|name:weight``; unlabelled clips are always ``video_only``.
    * ``family_weights`` (uniform): weights of the motion families reach, grasp, release, pinch, point, wave,
      rotate, push, pour (same format).
    * ``two_hand_probability`` (0.3): chance that a family that allows it is done by both hands.
    * ``jpeg_quality`` (90): JPEG quality of stored frames (wild clips also jitter it down to 70).
    * ``workers`` (1): processes rendering clips, each with its own GL context; rows come out in clip order
      whatever the number of workers. Workers are spawned (not forked), so a calling script needs the usual
      ``if __name__ == "__main__":`` guard. Rendering uses ``MUJOCO_GL`` (default ``egl``).
    * ``progress`` (False): show a progress bar (the builder usually shows its own).
    """

    def __init__(
        self,
        domain: str = "lab",
        split: str = "train",
        num_clips: int = 100,
        seed: int = 0,
        image_size: int | str | tuple[int, int] = 224,
        pseudo_label_fraction: float = 0.1,
        task_mix: Mapping[str, float] | str | None = None,
        family_weights: Mapping[str, float] | str | None = None,
        two_hand_probability: float = 0.3,
        jpeg_quality: int = 90,
        workers: int = 1,
        progress: bool | str = False,
    ) -> None:
        self.options = WorldOptions(
            domain=str(domain),
            split=str(split),
            seed=int(seed),
            image_size=_parse_size(image_size),
            pseudo_label_fraction=float(pseudo_label_fraction),
            task_mix=_parse_weights(task_mix, "task_mix", DEFAULT_TASK_MIX),
            family_weights=_parse_weights(family_weights, "family_weights", dict.fromkeys(FAMILIES, 1.0)),
            two_hand_probability=float(two_hand_probability),
            jpeg_quality=int(jpeg_quality),
        )
        self.num_clips = int(num_clips)
        if self.num_clips < 0:
            raise ValueError(f"num_clips must be >= 0, got {num_clips}.")
        self.workers = int(workers)
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}; use 1 to render in this process.")
        self.progress = progress if isinstance(progress, bool) else str(progress).lower() in ("1", "true", "yes")

    def estimated_rows(self) -> int:
        return self.num_clips

    def plan(self, index: int) -> ClipSpec:
        """Clip ``index`` fully decided (layout, motion, look, text, exact and stored labels) but not rendered."""
        return plan_clip_spec(self.options, index)

    def iter_rows(self) -> Iterator[dict[str, Any]]:
        yield from self.iter_unit_rows(0, self.num_clips)

    def num_units(self) -> int:
        """One unit per clip: clip i depends only on (seed, domain, split, i) (docs/design.md §4)."""
        return self.num_clips

    def iter_unit_rows(self, start: int, stop: int) -> Iterator[dict[str, Any]]:
        indices = range(start, min(stop, self.num_clips))
        rows = self._iter_serial(indices) if self.workers == 1 or len(indices) <= 1 else self._iter_parallel(indices)
        desc = f"synthetic {self.options.domain}/{self.options.split}"
        yield from tqdm(rows, total=len(indices), desc=desc, unit="clip", disable=not self.progress)

    def _iter_serial(self, indices: range) -> Iterator[dict[str, Any]]:
        _ensure_gl_backend()
        from dataset_scripts.hand_world.clip import render_row
        from dataset_scripts.hand_world.renderer import SceneRenderer

        renderer = SceneRenderer(*self.options.image_size)
        try:
            for index in indices:
                yield render_row(renderer, plan_clip_spec(self.options, index))
        finally:
            renderer.close()

    def _iter_parallel(self, indices: range) -> Iterator[dict[str, Any]]:
        # spawn, not fork: a forked child would inherit the parent's GL/EGL state (and torch's thread pool).
        _ensure_gl_backend()
        context = multiprocessing.get_context("spawn")
        jobs = ((self.options, index) for index in indices)
        width, height = self.options.image_size
        with context.Pool(self.workers, initializer=_init_worker, initargs=(width, height, None)) as pool:
            # imap keeps submission order, so the row order does not depend on the number of workers.
            yield from pool.imap(_render_in_worker, jobs, chunksize=2)
        logger.debug("synthetic: %d clips rendered by %d workers.", len(indices), self.workers)
