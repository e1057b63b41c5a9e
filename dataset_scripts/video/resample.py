"""Source timestamps -> 15 fps clip frames, with the paper's 0.5x slow-down for wild footage; clip timelines.

How the slow-down is applied (the paper gives the factor, not the mechanics; this is our reading):

* A clip is a sequence of frames at ``FPS`` = 15 that the model treats as 1/15 s apart, and its motion labels
  are 15 fps too. ``playback_speed`` is how fast the footage plays inside the clip: 1.0 = real time (lab
  footage), 0.5 = half speed (wild footage, the paper's 0.5x slow-down), so each second of footage becomes
  ``1 / playback_speed`` = 2 seconds of clip.
* Clip frame ``k`` (clip time ``k / 15`` s) shows the footage at source time
  ``t_k = start + k * playback_speed / 15``; at 0.5 that is ``k / 30``: a 30 fps phone video gives every one
  of its frames exactly once, a 10 fps GIF gives each frame three times.
* The frame shown at ``t_k`` is the one a player displays then: the last frame whose presentation timestamp is
  ``<= t_k`` (sample-and-hold, no blending, so every clip frame is a real frame and its tracked keypoints
  belong to it). This follows variable frame rates and GIF delays exactly.
* Frames are sampled while ``t_k`` is before the end of the footage (the last frame's timestamp plus its
  duration), so a video of D seconds gives ``ceil(D * 15 / playback_speed)`` clip frames (621 for a 20.7 s
  video at 0.5, 311 at 1.0).

Why slow wild footage down: people in everyday video move their hands faster than the lab and robot motion the
model is meant to produce, so playing it at half speed brings its velocities closer to that distribution (the
hand moves half as far per clip frame). Motion labels of slowed clips are therefore slowed too; consumers that
need real-time velocities divide by ``playback_speed`` (the ``video`` source records it in each row's
``scene``).

Timeline helpers (pure functions on boolean masks) cut the 15 fps timeline into 1-10 s clips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from modeling_jala.layout_jala import FPS

__all__ = [
    "LAB_PLAYBACK_SPEED",
    "WILD_PLAYBACK_SPEED",
    "ResamplePlan",
    "close_gaps",
    "hold_indices",
    "plan_resample",
    "sample_times",
    "split_evenly",
    "true_runs",
]

#: The paper's 0.5x slow-down for in-the-wild footage.
WILD_PLAYBACK_SPEED = 0.5
#: Lab footage plays in real time.
LAB_PLAYBACK_SPEED = 1.0
# Timestamps are float seconds; a sample time that equals a frame's timestamp up to rounding must pick that frame.
_TIME_EPS = 1e-6


def _check_speed(playback_speed: float) -> None:
    if not playback_speed > 0 or not math.isfinite(playback_speed):
        raise ValueError(
            f"playback_speed must be a positive number (1.0 real time, 0.5 the paper's wild slow-down), "
            f"got {playback_speed}."
        )


def sample_times(start_s: float, end_s: float, *, fps: float = FPS, playback_speed: float = 1.0) -> np.ndarray:
    """Source times ``start + k * playback_speed / fps`` of the clip frames, for every one before ``end_s``."""
    _check_speed(playback_speed)
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}.")
    step = playback_speed / fps
    # Every k with start + k * step < end (a sample at exactly end_s would show a frame no longer on screen).
    count = max(0, math.ceil((end_s - start_s) / step - _TIME_EPS))
    return start_s + np.arange(count, dtype=np.float64) * step


def hold_indices(timestamps: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Index of the frame on screen at each time: the last with timestamp <= time (the first before it starts)."""
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if timestamps.ndim != 1 or len(timestamps) == 0:
        raise ValueError(f"timestamps must be a non-empty 1-D array, got shape {timestamps.shape}.")
    if np.any(np.diff(timestamps) < 0):
        raise ValueError("timestamps must be in display order (non-decreasing); sort them first.")
    indices = np.searchsorted(timestamps, np.asarray(times, dtype=np.float64) + _TIME_EPS, side="right") - 1
    return np.clip(indices, 0, len(timestamps) - 1)


@dataclass(frozen=True)
class ResamplePlan:
    """Which source frame each 15 fps clip frame shows.

    ``source_indices[k]`` / ``source_times[k]``: source frame index / source time shown by clip frame ``k``.
    """

    source_indices: np.ndarray
    source_times: np.ndarray
    fps: float
    playback_speed: float

    @property
    def num_frames(self) -> int:
        return len(self.source_indices)

    def unique_indices(self) -> np.ndarray:
        """Sorted distinct source frames the plan uses: the only ones that need converting and tracking."""
        return np.unique(self.source_indices)


def plan_resample(
    timestamps: np.ndarray, end_s: float, *, fps: float = FPS, playback_speed: float = 1.0
) -> ResamplePlan:
    """Plan the clip frames of footage whose frames start at ``timestamps`` and which ends at ``end_s``."""
    timestamps = np.asarray(timestamps, dtype=np.float64)
    times = sample_times(float(timestamps[0]), end_s, fps=fps, playback_speed=playback_speed)
    return ResamplePlan(
        source_indices=hold_indices(timestamps, times),
        source_times=times,
        fps=fps,
        playback_speed=playback_speed,
    )


def true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True as half-open (start, stop) pairs, in order."""
    mask = np.asarray(mask, dtype=bool)
    padded = np.concatenate(([False], mask, [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def close_gaps(mask: np.ndarray, max_gap: int) -> np.ndarray:
    """Fill runs of False of length <= ``max_gap`` that lie between two True frames (leading/trailing stay)."""
    mask = np.asarray(mask, dtype=bool)
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0 frames, got {max_gap}.")
    closed = mask.copy()
    for start, stop in true_runs(~mask):
        if start > 0 and stop < len(mask) and stop - start <= max_gap:
            closed[start:stop] = True
    return closed


def split_evenly(start: int, stop: int, *, min_len: int, max_len: int) -> list[tuple[int, int]]:
    """Cut [start, stop) into the fewest pieces of at most ``max_len`` frames, as equal as possible.

    Equal pieces (not max_len pieces plus a remainder) so that no clip is a stub: 621 frames with max 150 give
    five clips of 124-125 frames. Returns [] when the span is shorter than ``min_len``.
    """
    if not 0 < min_len <= max_len:
        raise ValueError(f"need 0 < min_len <= max_len, got min_len={min_len}, max_len={max_len}.")
    length = stop - start
    if length < min_len:
        return []
    pieces = math.ceil(length / max_len)
    bounds = [start + (length * i) // pieces for i in range(pieces + 1)]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
