"""Real-video ingest speed: decoding, hand tracking and labelling per clip, on the shared real hand clips.

Why: the ingest's cost is decode (HEVC phone video is the slow case), the tracker (MediaPipe on the CPU) and the
D162 fits; this shows which dominates per clip so that builds can be sized. It runs the real ``video`` source
(the same code a build runs) and reads its per-video timings, then times a decode-only pass of the same frames.

    python benchmarks/video_ingest_speed.py                      # ../shared/data/hands, MediaPipe
    python benchmarks/video_ingest_speed.py --tracker none       # decode + store only

Columns: ``decode fps`` = frames decoded, resized to the tracking size and converted to RGB per second (a
separate pass, nothing else running); ``ingest decode fps`` = the same inside the ingest, plus the JPEG encoding
of every stored frame; ``tracker fps`` = distinct frames tracked per second; ``label s`` = clip cutting, lifting
and D162 fitting; ``rows`` = rows written (pseudo-labelled / unlabelled). Frames are distinct source frames (a
10 fps GIF slowed to 0.5x shows each frame 3 times in its clip, but it is decoded and tracked once).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import sys
import time
from pathlib import Path

from dataset_scripts.sources.video import VideoSource
from dataset_scripts.video.decode import iter_frames, probe_video
from dataset_scripts.video.resample import plan_resample

logger = logging.getLogger("video_ingest_speed")
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "hands"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="folder of videos (default: %(default)s)")
    parser.add_argument("--tracker", default="mediapipe", help="registered tracker name (default: %(default)s)")
    parser.add_argument("--track_max_side", type=int, default=960, help="tracking frame size (default: %(default)s)")
    parser.add_argument("--image_max_side", type=int, default=512, help="stored frame size (default: %(default)s)")
    parser.add_argument("--max_video_seconds", type=float, default=None, help="cap footage per video (default: all)")
    parser.add_argument("--domain", default="wild", choices=("wild", "lab"), help="wild = 0.5x slow-down (default)")
    return parser.parse_args()


def decode_only_fps(path: Path, playback_speed: float, max_side: int, max_seconds: float | None) -> float:
    """Frames per second of decoding the ingest's distinct frames, resized and converted, nothing else."""
    info = probe_video(path)
    end = info.duration_s if max_seconds is None else min(info.duration_s, max_seconds)
    unique = plan_resample(info.timestamps, end, playback_speed=playback_speed).unique_indices()
    started = time.perf_counter()
    count = sum(1 for _ in iter_frames(info, unique, max_side=max_side))
    return count / max(time.perf_counter() - started, 1e-9)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = parse_args()
    if not args.root.exists():
        raise SystemExit(f"--root {args.root} does not exist; pass a folder of videos.")
    source = VideoSource(
        args.root,
        tracker=args.tracker,
        domain=args.domain,
        track_max_side=args.track_max_side,
        image_max_side=args.image_max_side,
        max_video_seconds=args.max_video_seconds,
    )
    started = time.perf_counter()
    rows = sum(1 for _ in source.iter_rows())
    total_s = time.perf_counter() - started

    header = (
        f"{'clip':<44} {'frames':>6} {'decode fps':>10} {'ingest decode fps':>17} {'tracker fps':>11} "
        f"{'label s':>7} {'rows (pseudo/unlab.)':>20}"
    )
    lines = [
        f"# Video ingest speed, {datetime.date.today().isoformat()}, {platform.node()} "
        f"({platform.processor() or platform.machine()}), {os.cpu_count()} CPU cores, load average "
        f"{os.getloadavg()[0]:.1f}, tracker {args.tracker}, tracking side {args.track_max_side} px, stored side "
        f"{args.image_max_side} px, domain {args.domain}",
        header,
        "-" * len(header),
    ]
    frames = decode_s = track_s = label_s = 0.0
    for video in source.report.videos:
        if video.decoded_frames == 0:
            lines.append(f"{video.file_name:<44} {'-':>6}  skipped: {video.status}")
            continue
        pure = decode_only_fps(
            args.root / video.file_name, video.playback_speed, args.track_max_side, args.max_video_seconds
        )
        labelled = sum(r["labelled"] for r in video.rows)
        frames += video.decoded_frames
        decode_s, track_s, label_s = decode_s + video.decode_s, track_s + video.track_s, label_s + video.label_s
        lines.append(
            f"{video.file_name:<44} {video.decoded_frames:>6} {pure:>10.1f} "
            f"{video.decoded_frames / video.decode_s:>17.1f} {video.decoded_frames / max(video.track_s, 1e-9):>11.1f} "
            f"{video.label_s:>7.2f} {f'{len(video.rows)} ({labelled}/{len(video.rows) - labelled})':>20}"
        )
    lines.append("-" * len(header))
    lines.append(
        f"{'all':<44} {int(frames):>6} {'':>10} {frames / max(decode_s, 1e-9):>17.1f} "
        f"{frames / max(track_s, 1e-9):>11.1f} {label_s:>7.2f} {rows:>20}"
    )
    lines.append(f"# wall time {total_s:.1f} s; skipped/dropped: {dict(sorted(source.report.counts.items()))}")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
