"""Decode videos and GIFs into RGB frames in display orientation, with exact presentation timestamps.

Why PyAV (``av``, FFmpeg's libraries in a PyPI wheel): one decoder for every container we meet (mp4/H.264,
QuickTime .mov/HEVC 10-bit, GIF, webm, mkv), per-frame presentation timestamps (GIFs have per-frame delays,
phones record variable frame rates), the display-matrix rotation phones write instead of rotating pixels, and
swscale resizing while converting to RGB, so 1080p HEVC never reaches numpy at full size unless asked for.

Rotation: phones store landscape pixels plus a display matrix. PyAV reports it per frame as
``VideoFrame.rotation``, the angle in degrees by which the frame must be turned **counterclockwise** for
display (``-90`` on our iPhone .mov files: turn 90 degrees clockwise, 1920x1080 stored -> 1080x1920 shown).
We apply it with ``np.rot90(image, k=rotation // 90)`` (positive ``k`` is counterclockwise), so every frame
leaving this module is what a video player shows, which is what a hand tracker and a person labelling it see.

Timestamps come from demuxing packets (no decoding, milliseconds even for long files), so a resampling plan can
be made before any pixel is decoded and only the frames it needs are converted to RGB.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "DecodedFrame",
    "VideoDecodeError",
    "VideoInfo",
    "iter_frames",
    "probe_video",
    "scaled_size",
]

#: Files the ingest decodes as videos (case-insensitive suffixes); GIFs are animations, so videos.
VIDEO_SUFFIXES: frozenset[str] = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif"})
#: Still images: not clips (a clip needs >= 15 frames); the ingest skips and counts them.
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

_PYAV_INSTALL = "pip install 'av>=18.1,<19'"


class VideoDecodeError(RuntimeError):
    """A file that cannot be decoded; the message names the file and what to do about it."""


def _import_av() -> ModuleType:
    try:
        import av
    except ImportError as error:  # pragma: no cover - av is a project dependency
        raise ImportError(f"Video ingest needs PyAV (FFmpeg bindings): {_PYAV_INSTALL}") from error
    return av


@dataclass(frozen=True)
class VideoInfo:
    """What the ingest needs to know about a video before decoding it.

    ``width``/``height`` are the displayed size (after rotation); ``coded_width``/``coded_height`` the stored
    pixels. ``timestamps`` are the presentation times of every frame in display order, seconds, relative to the
    first frame (so they start at 0). ``duration_s`` is where the last frame stops being shown: its timestamp
    plus its own duration, which for GIFs is the sum of the frame delays.
    """

    path: Path
    codec: str
    width: int
    height: int
    coded_width: int
    coded_height: int
    rotation: int
    average_fps: float
    timestamps: np.ndarray
    duration_s: float

    @property
    def num_frames(self) -> int:
        return len(self.timestamps)


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded frame: its index in display order, its timestamp (s, from 0) and RGB pixels (H, W, 3)."""

    index: int
    time_s: float
    image: np.ndarray


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) shrunk so that the longer side is at most ``max_side`` (never enlarged), aspect kept."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    if max_side < 16:
        raise ValueError(f"max_side must be >= 16 pixels (or None for full size), got {max_side}.")
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _normalise_rotation(rotation: float) -> int:
    """Snap to a multiple of 90 in (-180, 180]; display matrices off that grid (rare) are rounded with a warning."""
    snapped = int(round(rotation / 90.0)) * 90
    if abs(snapped - rotation) > 1.0:
        logger.warning("Display rotation %.1f degrees is not a multiple of 90; using %d.", rotation, snapped)
    snapped %= 360
    return snapped - 360 if snapped > 180 else snapped


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Read a video's size, rotation, frame rate and per-frame timestamps; decodes only the first frame.

    Raises :class:`VideoDecodeError` (naming the file) when the file is not a decodable video.
    """
    av = _import_av()
    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{path}: no video stream; only videos and GIFs can be ingested.")
            stream = container.streams.video[0]
            time_base = float(stream.time_base) if stream.time_base else None
            average_fps = float(stream.average_rate or stream.guessed_rate or 0.0)
            packets = [
                (packet.pts, packet.duration)
                for packet in container.demux(stream)
                if packet.size > 0 and packet.pts is not None
            ]
            container.seek(0)
            first = next(container.decode(stream), None)
            if first is None:
                raise VideoDecodeError(f"{path}: the video stream holds no decodable frame.")
            rotation = _normalise_rotation(float(first.rotation))
            coded_width, coded_height = first.width, first.height
            codec = stream.codec_context.name
    except VideoDecodeError:
        raise
    except (av.FFmpegError, OSError) as error:
        raise VideoDecodeError(
            f"{path}: cannot be decoded by FFmpeg ({error}); re-encode it (e.g. to H.264 mp4)."
        ) from error

    if packets and time_base:
        packets.sort()
        pts = np.array([p for p, _ in packets], dtype=np.float64) * time_base
        last_duration = (packets[-1][1] or 0) * time_base
    elif average_fps > 0:  # raw streams without timestamps: assume a constant rate
        pts = np.arange(max(len(packets), 1), dtype=np.float64) / average_fps
        last_duration = 0.0
    else:
        raise VideoDecodeError(f"{path}: no frame timestamps and no frame rate; re-mux it with timestamps.")
    timestamps = pts - pts[0]
    if last_duration <= 0:
        gaps = np.diff(timestamps)
        last_duration = float(np.median(gaps)) if len(gaps) else (1.0 / average_fps if average_fps > 0 else 0.0)
    if average_fps <= 0 and len(timestamps) > 1:
        average_fps = (len(timestamps) - 1) / float(timestamps[-1])
    width, height = (coded_height, coded_width) if rotation in (90, -90) else (coded_width, coded_height)
    info = VideoInfo(
        path=path,
        codec=codec,
        width=width,
        height=height,
        coded_width=coded_width,
        coded_height=coded_height,
        rotation=rotation,
        average_fps=average_fps,
        timestamps=timestamps,
        duration_s=float(timestamps[-1] + last_duration),
    )
    logger.debug(
        "%s: %s %dx%d (rotation %d), %.3f fps, %d frames, %.3f s.",
        path.name,
        codec,
        width,
        height,
        rotation,
        average_fps,
        info.num_frames,
        info.duration_s,
    )
    return info


def iter_frames(
    video: str | os.PathLike[str] | VideoInfo,
    indices: Iterable[int] | None = None,
    *,
    max_side: int | None = None,
) -> Iterator[DecodedFrame]:
    """Decode frames in display order and yield those at ``indices`` (all when None) as RGB uint8 arrays.

    Frames are resized by swscale (area filter) so that the displayed longer side is at most ``max_side``,
    then rotated to display orientation. Frames not asked for are decoded (codecs need them) but never
    converted; decoding stops after the last index asked for. Arrays are C-contiguous (MediaPipe needs that).
    """
    av = _import_av()
    info = video if isinstance(video, VideoInfo) else probe_video(video)
    wanted = None if indices is None else sorted(set(int(i) for i in indices))
    if wanted is not None and not wanted:
        return
    if wanted is not None and (wanted[0] < 0 or wanted[-1] >= info.num_frames):
        raise IndexError(
            f"{info.path}: frame indices must be in [0, {info.num_frames}), got {wanted[0]}..{wanted[-1]}."
        )
    wanted_set = None if wanted is None else set(wanted)
    last_wanted = info.num_frames - 1 if wanted is None else wanted[-1]
    out_width, out_height = scaled_size(info.width, info.height, max_side)
    turned = info.rotation in (90, -90)
    coded_out = (out_height, out_width) if turned else (out_width, out_height)
    k = info.rotation // 90
    index = -1
    try:
        with av.open(str(info.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                index += 1
                if wanted_set is None or index in wanted_set:
                    image = frame.to_ndarray(
                        width=coded_out[0], height=coded_out[1], format="rgb24", interpolation="AREA"
                    )
                    if k:
                        image = np.ascontiguousarray(np.rot90(image, k=k))
                    time_s = float(info.timestamps[index]) if index < info.num_frames else float("nan")
                    yield DecodedFrame(index=index, time_s=time_s, image=image)
                if index >= last_wanted:
                    break
    except av.FFmpegError as error:
        raise VideoDecodeError(f"{info.path}: decoding failed at frame {index + 1} ({error}).") from error
    if index < last_wanted:
        logger.warning(
            "%s: decoded %d frames, the container promised %d; the missing ones are skipped.",
            info.path.name,
            index + 1,
            info.num_frames,
        )
