"""UniHand-Mix streaming read throughput on one CPU core: raw rows, through the collator, with and without
precomputed SSL features, against plain `datasets` streaming.

Why: a training step must never wait for data. One data-loader worker is one core, so samples/s on one core says
how many workers a given step rate needs. The collator's JPEG decoding and resizing is the expected bottleneck;
precomputed `ssl_features` remove the boundary-frame decode but make rows heavier to read.

    python benchmarks/unihand_streaming_speed.py                      # builds two fixture repos in a temp dir
    python benchmarks/unihand_streaming_speed.py --repo DIR            # also time an existing repo (no SSL column)

The fixture repos use `tests/fixtures/unihand_factory.py` rows: noisy `--image-size` JPEG frames (decode cost
like rendered / real frames), procedural motion, 1-10 s clips, 30 % of wild clips pseudo-labelled; the SSL repo
adds random float16 features of `--ssl-shape` (201 x 384 = DINOv3 ViT-S/16 at 224 px: CLS + 4 registers + 196
patches). Each line times `--samples` samples after `--warmup` (the shuffle buffer fill is not counted), pinned
to one core with torch / pyarrow single-threaded.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import datasets
import pyarrow as pa
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from dataset_scripts.builder import build_unihand  # noqa: E402
from dataset_scripts.card import collect_stats  # noqa: E402
from dataset_scripts.collator import UniHandCollator  # noqa: E402
from dataset_scripts.streaming import UniHandStream  # noqa: E402
from tests.fixtures.unihand_factory import FixtureSource  # noqa: E402

logger = logging.getLogger("unihand_streaming_speed")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, help="an existing repo to time as well")
    parser.add_argument("--work-dir", type=Path, help="where to build the fixture repos (default: a temp dir)")
    parser.add_argument("--num-clips", type=int, default=600, help="fixture clips per repo (default: %(default)s)")
    parser.add_argument("--image-size", type=int, default=256, help="stored frame side (default: %(default)s)")
    parser.add_argument(
        "--ssl-shape", default="201x384", help="P x D of the precomputed features (default: %(default)s)"
    )
    parser.add_argument("--collate-size", type=int, default=224, help="collator output side (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=16, help="collator batch (default: %(default)s)")
    parser.add_argument("--buffer", type=int, default=256, help="shuffle buffer per component (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=800, help="timed samples per line (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=64, help="untimed samples first (default: %(default)s)")
    parser.add_argument("--core", type=int, default=0, help="CPU core to pin to (default: %(default)s)")
    return parser.parse_args()


def pin_to_one_core(core: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)


def build_fixture_repos(work: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    ssl_shape = tuple(int(v) for v in args.ssl_shape.split("x"))
    repos = []
    for name, shape in (("plain", None), ("ssl", ssl_shape)):
        path = work / name
        if not (path / "README.md").exists():
            common = {"image_size": args.image_size, "noise": 12.0, "max_seconds": 10.0, "ssl_feature_shape": shape}
            sources = [
                FixtureSource(num_clips=args.num_clips // 2, seed=1, domain="lab", **common),
                FixtureSource(num_clips=args.num_clips - args.num_clips // 2, seed=2, domain="wild", **common),
            ]
            logger.warning("building %s fixture repo (%d clips) in %s", name, args.num_clips, path)
            build_unihand(path, sources, shard_bytes="256MB", preview=False, progress=True)
        repos.append(path)
    return repos[0], repos[1]


def timed(samples: Iterable, count: int, warmup: int, per_item: int = 1) -> float:
    """Items per second over `count` samples after `warmup` (both counted in samples, not batches)."""
    iterator = iter(samples)
    for _ in range(max(0, warmup // per_item)):
        next(iterator)
    started = time.perf_counter()
    done = 0
    for _ in itertools.islice(iterator, max(1, count // per_item)):
        done += per_item
    return done / (time.perf_counter() - started)


def batched(rows: Iterable[dict], size: int, collate: Callable) -> Iterable[dict]:
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, size)):
        yield collate(batch)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    datasets.disable_progress_bars()
    args = parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="unihand_bench_"))
    plain, ssl = build_fixture_repos(work, args)
    pin_to_one_core(args.core)

    weights = {"lab": 0.7, "wild": 0.3}
    size = args.collate_size

    def stream(repo: Path, **options) -> UniHandStream:
        return UniHandStream(repo, domain_weights=weights, shuffle_buffer_size=args.buffer, seed=0, **options)

    no_frames = [c for c in stream(ssl).features if c != "boundary_frames"]
    cases: list[tuple[str, str, Callable[[], Iterable], int]] = [
        ("UniHandStream rows (all columns)", "plain", lambda: stream(plain), 1),
        (
            f"+ collator, first frame only -> {size}px",
            "plain",
            lambda: batched(stream(plain), args.batch_size, UniHandCollator(size, boundary="none")),
            args.batch_size,
        ),
        (
            f"+ collator, first + boundary frames -> {size}px",
            "plain",
            lambda: batched(stream(plain), args.batch_size, UniHandCollator(size, boundary="images")),
            args.batch_size,
        ),
        ("UniHandStream rows (all columns)", "ssl", lambda: stream(ssl), 1),
        ("UniHandStream rows (no boundary_frames)", "ssl", lambda: stream(ssl, columns=no_frames), 1),
        (
            f"+ collator, first frame + ssl_features -> {size}px",
            "ssl",
            lambda: batched(stream(ssl, columns=no_frames), args.batch_size, UniHandCollator(size, boundary="ssl")),
            args.batch_size,
        ),
        (
            "datasets streaming, load_dataset(dir, 'all')",
            "plain",
            lambda: datasets.load_dataset(str(plain), "all", split="train", streaming=True),
            1,
        ),
        (
            "datasets streaming .with_format('numpy')",
            "plain",
            lambda: datasets.load_dataset(str(plain), "all", split="train", streaming=True).with_format("numpy"),
            1,
        ),
    ]
    if args.repo is not None:
        cases.append(("UniHandStream rows (all columns)", str(args.repo), lambda: stream(args.repo), 1))
        cases.append(
            (
                f"+ collator, first + boundary frames -> {size}px",
                str(args.repo),
                lambda: batched(stream(args.repo), args.batch_size, UniHandCollator(size, boundary="images")),
                args.batch_size,
            )
        )

    header = f"{'path':<48} {'repo':<6} {'samples/s':>10} {'ms/sample':>10}"
    lines = [
        f"# UniHand-Mix streaming speed, {datetime.date.today().isoformat()}, {platform.node()} "
        f"({platform.processor() or platform.machine()}), 1 of {os.cpu_count()} cores pinned, load average "
        f"{os.getloadavg()[0]:.1f}; stored frames {args.image_size} px JPEG, batch {args.batch_size}, shuffle buffer "
        f"{args.buffer}/component, lab:wild 0.7:0.3, {args.samples} timed samples after {args.warmup}",
        header,
        "-" * len(header),
    ]
    for name, repo_name, make, per_item in cases:
        rate = timed(make(), args.samples, args.warmup, per_item)
        lines.append(f"{name:<48} {Path(repo_name).name[:6]:<6} {rate:>10.1f} {1000 / rate:>10.2f}")
        logger.warning(lines[-1])
    lines.append("")
    lines.append(f"{'repo':<6} {'rows':>6} {'shards':>6} {'MB':>8} {'KB/row':>8} {'rows per 256 MB shard':>22}")
    for label, repo in (("plain", plain), ("ssl", ssl)):
        stats = collect_stats(repo)
        total = sum(s.bytes for s in stats.shards)
        per_row = total / max(stats.total_rows, 1)
        lines.append(
            f"{label:<6} {stats.total_rows:>6} {len(stats.shards):>6} {total / 2**20:>8.1f} {per_row / 2**10:>8.1f} "
            f"{256 * 2**20 / per_row:>22.0f}"
        )
    stats = collect_stats(plain)
    lines.append(f"# mean clip {stats.total_hours * 3600 / max(stats.total_rows, 1):.1f} s; work dir {work}")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
