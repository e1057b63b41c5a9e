"""Generation speed of the procedural hand world (source `synthetic`): frames/s and clips/min per worker count.

Runs the real source (plan + render first/boundary frames + JPEG encode) for each (domain, workers) pair and
prints a Markdown table with the machine, the GL renderer and the load average, because software rendering
speed depends on all three. Frames/s counts rendered frames (a clip stores its first frame and every 15-frame
boundary frame, about 6 per clip); the last column extrapolates to the 2,000-clip mini UniHand-Mix.

    MUJOCO_GL=egl python benchmarks/hand_world_speed.py --num_clips 100 --workers 1,2 --repeats 2
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

from benchmark_machine import cpu_model
from tqdm.auto import tqdm

from dataset_scripts.sources.synthetic import SyntheticSource

logger = logging.getLogger("hand_world_speed")


def _gl_renderer() -> str:
    """The OpenGL renderer string (e.g. llvmpipe for Mesa software rendering)."""
    try:
        from mujoco import gl_context
        from OpenGL import GL

        context = gl_context.GLContext(16, 16)
        context.make_current()
        name = GL.glGetString(GL.GL_RENDERER)
        context.free()
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception as error:  # any backend problem only loses the label
        return f"unknown ({type(error).__name__})"


def measure(domain: str, workers: int, num_clips: int, image_size: int, seed: int) -> dict[str, float]:
    source = SyntheticSource(domain=domain, num_clips=num_clips, workers=workers, image_size=image_size, seed=seed)
    start = time.perf_counter()
    frames = 0
    for row in tqdm(source.iter_rows(), total=num_clips, desc=f"{domain} x{workers}", unit="clip", leave=False):
        frames += len(row["boundary_frames"])
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "frames": frames, "clips": num_clips}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_clips", type=int, default=100, help="clips per measurement")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--domains", default="lab,wild", help="comma-separated domains")
    parser.add_argument("--image_size", type=int, default=224, help="square frame size in pixels")
    parser.add_argument("--repeats", type=int, default=2, help="measurements per configuration (machine is shared)")
    parser.add_argument("--target_clips", type=int, default=2000, help="extrapolate build time to this many clips")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    load = os.getloadavg()
    machine = (
        f"{cpu_model()}, {os.cpu_count()} logical CPUs, GL: {_gl_renderer()} (MUJOCO_GL={os.environ['MUJOCO_GL']})"
    )
    rows = []
    for repeat in range(args.repeats):
        for domain in args.domains.split(","):
            for workers in (int(w) for w in args.workers.split(",")):
                result = measure(domain, workers, args.num_clips, args.image_size, args.seed + 1000 * repeat)
                rows.append((domain, workers, repeat, result, os.getloadavg()[0]))

    lines = [
        f"Hand-world generation speed, {datetime.date.today().isoformat()}, {machine}; "
        f"load average at start {load[0]:.2f}.",
        "",
        "| domain | image | workers | run | clips | frames | s | frames/s | clips/min | "
        f"min for {args.target_clips} clips | load after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for domain, workers, repeat, result, load_after in rows:
        clips_per_min = 60.0 * result["clips"] / result["seconds"]
        lines.append(
            f"| {domain} | {args.image_size}x{args.image_size} | {workers} | {repeat + 1} | {result['clips']} | "
            f"{result['frames']} | {result['seconds']:.1f} | {result['frames'] / result['seconds']:.1f} | "
            f"{clips_per_min:.0f} | {args.target_clips / clips_per_min:.1f} | {load_after:.2f} |"
        )
    logger.info("\n".join(lines))


if __name__ == "__main__":
    main()
