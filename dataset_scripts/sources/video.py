"""The ``video`` source: a folder of real videos -> UniHand-Mix rows (1-10 s clips at 15 fps, pseudo-labels).

Pipeline per video (each step in its own module under :mod:`dataset_scripts.video`):

1. **Decode** (PyAV) with the display rotation applied; images (jpg/png/...) are not clips and are skipped and
   counted; sidecar files (``.txt``, ``.jsonl``, ``.json``, ``.md``) are read or ignored.
2. **Resample** to 15 fps, wild footage slowed down 0.5x (each second of footage -> 2 s of clip; see
   :mod:`dataset_scripts.video.resample` for the exact sampling), lab footage at 1.0.
3. **Track** every distinct sampled frame once (default MediaPipe, offline; ``tracker="none"`` for no tracking).
4. **Cut clips**: frames with any hand, short gaps (<= ``max_gap_seconds`` of clip time) closed, runs shorter
   than ``min_clip_seconds`` widened to it with context, runs longer than ``max_clip_seconds`` split into equal
   parts. A clip is kept when a hand is seen in at least ``min_presence`` of its frames; a video without any
   hand gives no clip. With ``tracker="none"`` presence is unknown: the whole video is cut into clips, all kept.
5. **Pseudo-label** each hand seen in at least ``min_hand_fraction`` of a clip's frames: tracker keypoints ->
   camera frame (intrinsics from the metadata, else a 60 degree FOV across the longer side; translation by a PnP
   fit) -> gaps up to ``max_gap_seconds`` interpolated -> D162 via ``HandSkeleton.fit_keypoints``. A hand's
   confidence is its mean tracker score over the frames where it was found times its detection rate in the
   clip; a row's is the lowest of its hands'. Rows at or above ``min_confidence`` (the paper's 0.65) are
   written as ``label_source="pseudo"``, ``labelled=True``; the rest, and rows with a longer gap or a fit
   residual above ``max_fit_residual_mm``, unlabelled (``motion=None``, ``label_source="none"``,
   ``label_confidence=0``, reason and measured confidence in ``scene``).

Instructions, per video: ``<video stem>.txt`` beside it, else the ``instruction`` of its line in
``metadata.jsonl`` / ``instructions.jsonl`` in the folder (JSON lines with ``file_name`` relative to the folder,
as in Hugging Face's folder datasets), else a templated one. Task types: unlabelled -> ``video_only``; labelled
with an instruction -> ``motion_generation``; labelled without -> ``motion_continuation`` (templated "continue
the motion" instruction; ``motion_generation`` for one-chunk clips). A metadata line may also set per video:
``task_type`` (labelled rows only), ``domain``, ``playback_speed``, ``split``, ``mirrored`` (the footage is a
selfie-mirrored recording: frames are flipped back before tracking and storing), ``camera_intrinsics``
(fx, fy, cx, cy in pixels of the displayed full-size frames), ``fov_deg`` and ``hands_present`` ([left, right],
used when the tracker cannot tell).

Stored frames are JPEGs with the longer side at most ``image_max_side`` pixels; ``camera_intrinsics`` in each row
are those of the stored frames, and ``motion`` is in that camera's frame (metres). The ``scene`` column holds
JSON provenance: file, source time span, playback speed, tracker, per-hand confidence and detection rate, fit
residual, reprojection error and, for unlabelled rows, why.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from dataset_scripts.images import encode_image
from dataset_scripts.repo_layout import DOMAINS, SPLITS
from dataset_scripts.schema import TASK_TYPES, boundary_frame_indices, num_chunks
from dataset_scripts.sources.base import ClipSource, register_source, renumber_counted_id
from dataset_scripts.video.decode import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    VideoDecodeError,
    iter_frames,
    probe_video,
    scaled_size,
)
from dataset_scripts.video.lifting import DEFAULT_FOV_DEG, Intrinsics, fit_d162, interpolate_gaps, lift_to_camera
from dataset_scripts.video.resample import (
    LAB_PLAYBACK_SPEED,
    WILD_PLAYBACK_SPEED,
    ResamplePlan,
    close_gaps,
    plan_resample,
    split_evenly,
    true_runs,
)
from dataset_scripts.video.trackers import HandDetection, HandTracker, get_tracker
from modeling_jala.hand_jala import D162_DIM, HandSkeleton
from modeling_jala.layout_jala import FPS, HANDS

logger = logging.getLogger(__name__)

__all__ = ["IngestReport", "VideoSource", "VideoSummary"]

#: The paper keeps wild pseudo-labels at confidence >= 0.65.
PAPER_MIN_CONFIDENCE = 0.65
METADATA_FILES = ("metadata.jsonl", "instructions.jsonl")
SIDECAR_SUFFIXES = frozenset({".txt", ".jsonl", ".json", ".md"})
_METADATA_KEYS = frozenset(
    {
        "file_name",
        "instruction",
        "task_type",
        "domain",
        "playback_speed",
        "split",
        "mirrored",
        "camera_intrinsics",
        "fov_deg",
        "hands_present",
    }
)

VIDEO_ONLY_TEMPLATES = (
    "Watch the hands in this video.",
    "A person moves their hands.",
    "Observe how the hands move.",
    "Hands at work in an everyday scene.",
    "Follow the motion of the hands.",
)
CONTINUATION_TEMPLATES = (
    "Continue the hand motion.",
    "Keep the hand moving the way it started.",
    "Predict how the hand motion goes on.",
    "Carry on with the current hand movement.",
)
GENERATION_TEMPLATES = (
    "Move the hand as shown.",
    "Perform the hand motion of this scene.",
    "Make the hand movement that fits this scene.",
)
DESCRIPTION_TEMPLATES = (
    "Describe the hand motion.",
    "What are the hands doing?",
    "Say how the hand moves.",
)
_TEMPLATES = {
    "video_only": VIDEO_ONLY_TEMPLATES,
    "motion_continuation": CONTINUATION_TEMPLATES,
    "motion_generation": GENERATION_TEMPLATES,
    "motion_description": DESCRIPTION_TEMPLATES,
}


def _as_bool(value: Any, name: str) -> bool:
    """Options may arrive as strings from the CLI (``mirrored=true``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
        return False
    if isinstance(value, int | float):
        return bool(value)
    raise ValueError(f"option {name!r} must be a boolean (true/false), got {value!r}.")


@dataclass
class VideoSummary:
    """What one video gave, and how long each stage took (for ``benchmarks/video_ingest_speed.py``)."""

    file_name: str
    status: str = "ok"
    reason: str = ""
    playback_speed: float = 0.0
    source_frames: int = 0
    clip_frames: int = 0
    decoded_frames: int = 0
    decode_s: float = 0.0
    track_s: float = 0.0
    label_s: float = 0.0
    frames_with_hand: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class IngestReport:
    """Counts of everything skipped, dropped or written, with reasons; filled while ``iter_rows`` runs."""

    counts: Counter = field(default_factory=Counter)
    videos: list[VideoSummary] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "videos": [vars(v) for v in self.videos]}


@dataclass
class _VideoMeta:
    instruction: str | None = None
    task_type: str | None = None
    domain: str | None = None
    playback_speed: float | None = None
    split: str | None = None
    mirrored: bool | None = None
    camera_intrinsics: tuple[float, float, float, float] | None = None
    fov_deg: float | None = None
    hands_present: tuple[bool, bool] | None = None


@dataclass
class _Track:
    """Per clip frame and hand slot (left, right): detection flag, score, pixels, camera-frame keypoints."""

    detected: np.ndarray  # (K, 2) bool
    score: np.ndarray  # (K, 2), NaN where not detected
    keypoints: np.ndarray  # (K, 2, 21, 3) camera frame, NaN where not detected
    reprojection_px: np.ndarray  # (K, 2), NaN where not detected


@register_source("video")
class VideoSource(ClipSource):
    """Real videos in a folder -> 1-10 s clips at 15 fps with hand-presence filtering and pseudo-labels.

    Options (all keyword; strings from the CLI are converted):
        root: folder of videos (searched recursively) or one video file.
        tracker: ``mediapipe`` (default; optional install, see dataset_scripts/requirements-hand-tracking.txt),
            ``none`` (no tracking: every clip kept, unlabelled), another registered name, or a tracker object.
        tracker_options: keyword options for the tracker (a dict, or JSON: ``{"static_image_mode": true}``).
        domain: ``wild`` (default) or ``lab``.
        playback_speed: footage speed inside clips; default 0.5 for wild (the paper's slow-down), 1.0 for lab.
        split: split of every row (default ``train``); metadata may set one per video.
        min_presence: fraction of a clip's frames with a hand needed to keep the clip (default 0.5).
        min_hand_fraction: fraction of a clip's frames in which a hand must be found to count as present (0.3).
        max_gap_seconds: longest run of frames (clip time) without a hand that is bridged / interpolated (0.5).
        min_confidence: pseudo-labels below this are written unlabelled (0.65, the paper's threshold).
        max_fit_residual_mm: rows whose mean D162 fit residual exceeds this are written unlabelled (15).
        fov_deg: assumed field of view across the longer image side when intrinsics are unknown (60).
        track_max_side: longer side of the frames given to the tracker, pixels (960).
        image_max_side: longer side of the stored JPEG frames, pixels (512).
        min_clip_seconds / max_clip_seconds: clip length bounds in clip time (1 / 10).
        max_video_seconds: use at most this many seconds of footage per video (default: all).
        mirrored: the footage is selfie-mirrored; frames are flipped back first (default false).
        fit_iterations: Adam iterations of the D162 fit (100).
        seed: picks the templated instructions (0).
        progress: tqdm bars per video (true).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        tracker: str | HandTracker = "mediapipe",
        tracker_options: Mapping[str, Any] | None = None,
        domain: str = "wild",
        playback_speed: float | None = None,
        split: str = "train",
        min_presence: float = 0.5,
        min_hand_fraction: float = 0.3,
        max_gap_seconds: float = 0.5,
        min_confidence: float = PAPER_MIN_CONFIDENCE,
        max_fit_residual_mm: float = 15.0,
        fov_deg: float = DEFAULT_FOV_DEG,
        track_max_side: int = 960,
        image_max_side: int = 512,
        min_clip_seconds: float = 1.0,
        max_clip_seconds: float = 10.0,
        max_video_seconds: float | None = None,
        mirrored: bool = False,
        fit_iterations: int = 100,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"video source: root {str(self.root)!r} does not exist; pass a folder of videos.")
        if isinstance(tracker_options, str):  # from the CLI: a JSON object
            try:
                tracker_options = json.loads(tracker_options) if tracker_options.strip() else None
            except json.JSONDecodeError as error:
                example = '{"static_image_mode": true}'
                raise ValueError(
                    f"video source: tracker_options must be a JSON object like {example} ({error})."
                ) from None
        self.tracker: HandTracker = (
            get_tracker(tracker, **dict(tracker_options or {})) if isinstance(tracker, str) else tracker
        )
        if domain not in DOMAINS:
            raise ValueError(f"video source: domain must be one of {DOMAINS}, got {domain!r}.")
        if split not in SPLITS:
            raise ValueError(f"video source: split must be one of {SPLITS}, got {split!r}.")
        self.domain, self.split = domain, split
        self.playback_speed = None if playback_speed in (None, "") else float(playback_speed)
        if self.playback_speed is not None and not self.playback_speed > 0:
            raise ValueError(f"video source: playback_speed must be > 0 (0.5 = half speed), got {playback_speed}.")
        self.min_presence = float(min_presence)
        self.min_hand_fraction = float(min_hand_fraction)
        for name in ("min_presence", "min_hand_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"video source: {name} must be a fraction in [0, 1], got {getattr(self, name)}.")
        self.max_gap_frames = round(float(max_gap_seconds) * FPS)
        self.min_confidence = float(min_confidence)
        self.max_fit_residual_mm = float(max_fit_residual_mm)
        self.fov_deg = float(fov_deg)
        self.track_max_side = int(track_max_side)
        self.image_max_side = int(image_max_side)
        self.min_frames = math.ceil(float(min_clip_seconds) * FPS - 1e-9)
        self.max_frames = math.floor(float(max_clip_seconds) * FPS + 1e-9)
        if not 15 <= self.min_frames <= self.max_frames <= 150:
            raise ValueError(
                f"video source: need 1 <= min_clip_seconds <= max_clip_seconds <= 10 (the schema's clip range), got "
                f"{min_clip_seconds} and {max_clip_seconds}."
            )
        self.max_video_seconds = None if max_video_seconds in (None, "") else float(max_video_seconds)
        self.mirrored = _as_bool(mirrored, "mirrored")
        self.fit_iterations = int(fit_iterations)
        self.seed = int(seed)
        self.progress = _as_bool(progress, "progress")
        self.skeleton = HandSkeleton()
        self.report = IngestReport()
        self._next_index = 0

    # -- discovery -----------------------------------------------------------------------------------------------

    def _files(self) -> list[Path]:
        if self.root.is_file():
            return [self.root]
        return sorted(p for p in self.root.rglob("*") if p.is_file() and not p.name.startswith("."))

    def _load_metadata(self) -> dict[str, _VideoMeta]:
        """``file_name`` -> per-video options from metadata.jsonl / instructions.jsonl (later files win)."""
        folder = self.root if self.root.is_dir() else self.root.parent
        table: dict[str, _VideoMeta] = {}
        for name in METADATA_FILES:
            path = folder / name
            if not path.is_file():
                continue
            for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                where = f"{path}:{line_number}"
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{where}: not valid JSON ({error}); write one JSON object per line.") from None
                if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
                    raise ValueError(
                        f'{where}: each line needs a "file_name" string (the video\'s path relative to the folder).'
                    )
                unknown = sorted(set(entry) - _METADATA_KEYS)
                if unknown:
                    logger.warning("%s: ignoring unknown keys %s; known: %s.", where, unknown, sorted(_METADATA_KEYS))
                table[entry["file_name"]] = self._parse_meta(entry, where, table.get(entry["file_name"]))
        return table

    @staticmethod
    def _parse_meta(entry: dict[str, Any], where: str, base: _VideoMeta | None) -> _VideoMeta:
        meta = base or _VideoMeta()
        if "instruction" in entry:
            if not isinstance(entry["instruction"], str) or not entry["instruction"].strip():
                raise ValueError(f'{where}: "instruction" must be a non-empty string.')
            meta.instruction = entry["instruction"].strip()
        if "task_type" in entry:
            if entry["task_type"] not in TASK_TYPES:
                raise ValueError(f'{where}: "task_type" must be one of {TASK_TYPES}, got {entry["task_type"]!r}.')
            meta.task_type = entry["task_type"]
        if "domain" in entry:
            if entry["domain"] not in DOMAINS:
                raise ValueError(f'{where}: "domain" must be one of {DOMAINS}, got {entry["domain"]!r}.')
            meta.domain = entry["domain"]
        if "split" in entry:
            if entry["split"] not in SPLITS:
                raise ValueError(f'{where}: "split" must be one of {SPLITS}, got {entry["split"]!r}.')
            meta.split = entry["split"]
        if "playback_speed" in entry:
            speed = float(entry["playback_speed"])
            if not speed > 0:
                raise ValueError(f'{where}: "playback_speed" must be > 0, got {speed}.')
            meta.playback_speed = speed
        if "mirrored" in entry:
            meta.mirrored = _as_bool(entry["mirrored"], f"{where}: mirrored")
        if "camera_intrinsics" in entry:
            values = entry["camera_intrinsics"]
            if not isinstance(values, list | tuple) or len(values) != 4:
                raise ValueError(f'{where}: "camera_intrinsics" must be [fx, fy, cx, cy] in pixels, got {values!r}.')
            meta.camera_intrinsics = tuple(float(v) for v in values)  # type: ignore[assignment]
            Intrinsics(*meta.camera_intrinsics)  # validates
        if "fov_deg" in entry:
            meta.fov_deg = float(entry["fov_deg"])
        if "hands_present" in entry:
            hands = entry["hands_present"]
            if not isinstance(hands, list | tuple) or len(hands) != 2 or not any(hands):
                raise ValueError(f'{where}: "hands_present" must be [left, right] booleans, one true; got {hands!r}.')
            meta.hands_present = (bool(hands[0]), bool(hands[1]))
        return meta

    # -- rows ----------------------------------------------------------------------------------------------------

    #: Decoding, tracking and fitting a video takes seconds to minutes: one video per pipeline task.
    default_units_per_task = 1

    def iter_rows(self) -> Iterator[dict[str, Any]]:
        """Rows of every video in file-name order; skipped files and dropped clips are counted in ``report``."""
        yield from self.iter_unit_rows(0, self.num_units())

    def num_units(self) -> int:
        """One unit per file under ``root`` (non-videos are skipped in place), for pipelines that split the
        source over tasks; ids count rows across the whole source, so those renumber them (``global_row_id``)."""
        return len(self._files())

    def global_row_id(self, row_id: str, rows_before: int) -> str:
        return renumber_counted_id(row_id, rows_before)

    def iter_unit_rows(self, start: int, stop: int) -> Iterator[dict[str, Any]]:
        """Rows of files ``start .. stop - 1`` (file-name order), ids counted from 0 in this range."""
        self.report = IngestReport()
        self._next_index = 0
        metadata = self._load_metadata()
        base = self.root if self.root.is_dir() else self.root.parent
        for path in self._files()[start:stop]:
            suffix = path.suffix.lower()
            key = path.relative_to(base).as_posix()
            if suffix in SIDECAR_SUFFIXES:
                continue
            if suffix in IMAGE_SUFFIXES:
                self.report.counts["skipped_image"] += 1
                logger.info(
                    "Skipping %s: a still image is not a clip (clips need >= %d frames).", key, self.min_frames
                )
                continue
            if suffix not in VIDEO_SUFFIXES:
                self.report.counts["skipped_unsupported"] += 1
                logger.info("Skipping %s: suffix %r is not a video (%s).", key, suffix, sorted(VIDEO_SUFFIXES))
                continue
            self.report.counts["videos"] += 1
            meta = dataclasses.replace(metadata.get(key, _VideoMeta()))
            sidecar = path.with_suffix(".txt")
            if sidecar.is_file() and sidecar.read_text(encoding="utf-8").strip():
                meta.instruction = sidecar.read_text(encoding="utf-8").strip()
            yield from self._ingest_video(path, key, meta)
        counts = self.report.counts
        logger.info(
            "video source: %d videos -> %d rows (%d pseudo-labelled, %d unlabelled); skipped/dropped: %s.",
            counts["videos"],
            counts["rows"],
            counts["rows_labelled"],
            counts["rows_unlabelled"],
            {k: v for k, v in sorted(counts.items()) if k.startswith(("skipped", "dropped"))},
        )

    def _ingest_video(self, path: Path, key: str, meta: _VideoMeta) -> Iterator[dict[str, Any]]:
        summary = VideoSummary(file_name=key)
        self.report.videos.append(summary)
        domain = meta.domain or self.domain
        speed = meta.playback_speed or self.playback_speed
        if speed is None:
            speed = WILD_PLAYBACK_SPEED if domain == "wild" else LAB_PLAYBACK_SPEED
        summary.playback_speed = speed
        try:
            info = probe_video(path)
        except VideoDecodeError as error:
            self._skip(summary, "skipped_undecodable", str(error))
            return
        end_s = info.duration_s if self.max_video_seconds is None else min(info.duration_s, self.max_video_seconds)
        plan = plan_resample(info.timestamps, end_s, playback_speed=speed)
        summary.source_frames, summary.clip_frames = info.num_frames, plan.num_frames
        if plan.num_frames < self.min_frames:
            self._skip(
                summary,
                "skipped_too_short",
                f"{end_s:.2f} s of footage at playback speed {speed} gives {plan.num_frames} clip frames, fewer than "
                f"{self.min_frames}.",
            )
            return

        mirrored = self.mirrored if meta.mirrored is None else meta.mirrored
        track_size = scaled_size(info.width, info.height, self.track_max_side)
        store_size = scaled_size(info.width, info.height, self.image_max_side)
        if meta.camera_intrinsics is not None:
            full = Intrinsics(*meta.camera_intrinsics)
            if mirrored:
                full = Intrinsics(full.fx, full.fy, info.width - full.cx, full.cy)
            intrinsics_assumed = False
        else:
            full = Intrinsics.from_fov(info.width, info.height, meta.fov_deg or self.fov_deg)
            intrinsics_assumed = True
        track_k = full.scaled(track_size[0] / info.width, track_size[1] / info.height)
        store_k = full.scaled(store_size[0] / info.width, store_size[1] / info.height)

        encoded: dict[int, dict[str, Any]] = {}
        order: list[int] = []
        decode_time = [0.0]

        def frames() -> Iterator[np.ndarray]:
            """Decode, remember the stored JPEG, hand the tracker its frame; time spent here is decode time."""
            unique = plan.unique_indices()
            stream = iter_frames(info, unique, max_side=self.track_max_side)
            bar = tqdm(total=len(unique), desc=key, unit="frame", disable=not self.progress, leave=False)
            while True:
                started = time.perf_counter()
                frame = next(stream, None)
                if frame is None:
                    break
                image = np.ascontiguousarray(frame.image[:, ::-1]) if mirrored else frame.image
                stored = image
                if (image.shape[1], image.shape[0]) != store_size:
                    stored = np.asarray(Image.fromarray(image).resize(store_size, Image.Resampling.BILINEAR))
                encoded[frame.index] = encode_image(stored)
                order.append(frame.index)
                decode_time[0] += time.perf_counter() - started
                bar.update()
                yield image
            bar.close()

        started = time.perf_counter()
        per_frame = self.tracker.track(frames())
        total = time.perf_counter() - started
        summary.decoded_frames = len(order)
        summary.decode_s, summary.track_s = decode_time[0], total - decode_time[0]
        if len(per_frame) != len(order):
            raise RuntimeError(
                f"tracker {self.tracker.name!r} returned {len(per_frame)} results for {len(order)} frames of {key}; "
                "HandTracker.track must return one list per frame."
            )
        plan = self._truncate_to_decoded(plan, set(order), key)
        if plan.num_frames < self.min_frames:
            self._skip(summary, "skipped_too_short", f"only {len(order)} frames could be decoded.")
            return

        started = time.perf_counter()
        detections = dict(zip(order, per_frame, strict=True))
        if self.tracker.detects_hands:
            track = self._assemble(plan, detections, track_k)
            summary.frames_with_hand = int(track.detected.any(axis=1).sum())
            clips = self._hand_clips(track.detected.any(axis=1), summary)
        else:
            track = None
            clips = split_evenly(0, plan.num_frames, min_len=self.min_frames, max_len=self.max_frames)
        context = {
            "key": key,
            "info": info,
            "plan": plan,
            "meta": meta,
            "domain": domain,
            "mirrored": mirrored,
            "encoded": encoded,
            "store_k": store_k,
            "intrinsics_assumed": intrinsics_assumed,
        }
        summary.label_s = time.perf_counter() - started
        for clip_number, (start, stop) in enumerate(clips):
            started = time.perf_counter()  # time spent while suspended at `yield` is the consumer's, not ours
            row = self._row(context, track, start, stop, clip_number)
            summary.label_s += time.perf_counter() - started
            if row is None:
                continue
            summary.rows.append(
                {
                    "id": row["id"],
                    "num_frames": row["num_frames"],
                    "labelled": row["labelled"],
                    "label_confidence": row["label_confidence"],
                    "hands_present": row["hands_present"],
                    "scene": json.loads(row["scene"]),
                }
            )
            yield row

    def _skip(self, summary: VideoSummary, reason: str, detail: str) -> None:
        summary.status, summary.reason = reason, detail
        self.report.counts[reason] += 1
        logger.info("Skipping %s: %s", summary.file_name, detail)

    @staticmethod
    def _truncate_to_decoded(plan: ResamplePlan, decoded: set[int], key: str) -> ResamplePlan:
        """Cut the plan before the first frame the decoder did not deliver (truncated files)."""
        ok = np.fromiter((i in decoded for i in plan.source_indices), dtype=bool, count=plan.num_frames)
        if ok.all():
            return plan
        keep = int(np.argmin(ok))
        logger.warning("%s: the decoder stopped early; using the first %d clip frames.", key, keep)
        return ResamplePlan(plan.source_indices[:keep], plan.source_times[:keep], plan.fps, plan.playback_speed)

    def _assemble(
        self, plan: ResamplePlan, detections: Mapping[int, list[HandDetection]], intrinsics: Intrinsics
    ) -> _Track:
        """Detections per clip frame into (left, right) slots, then all of them lifted to the camera at once.

        Two detections with the same handedness in one frame (MediaPipe sometimes calls both hands "left"): the
        higher score keeps the slot, the other is dropped, because fitting it with the wrong hand's skeleton
        would give a wrong label.
        """
        frames = plan.num_frames
        detected = np.zeros((frames, 2), dtype=bool)
        score = np.full((frames, 2), np.nan)
        pixels = np.zeros((frames, 2, 21, 2))
        world = np.zeros((frames, 2, 21, 3))
        for k, source_index in enumerate(plan.source_indices):
            for detection in detections[int(source_index)]:
                slot = HANDS.index(detection.handedness)
                if detected[k, slot] and detection.score <= score[k, slot]:
                    continue
                detected[k, slot] = True
                score[k, slot] = detection.score
                pixels[k, slot] = detection.image_landmarks
                world[k, slot] = detection.world_landmarks
        keypoints = np.full((frames, 2, 21, 3), np.nan)
        reprojection = np.full((frames, 2), np.nan)
        if detected.any():
            lifted = lift_to_camera(world[detected], pixels[detected], intrinsics)
            keypoints[detected] = lifted.keypoints
            reprojection[detected] = lifted.reprojection_px
        return _Track(detected=detected, score=score, keypoints=keypoints, reprojection_px=reprojection)

    def _hand_clips(self, present: np.ndarray, summary: VideoSummary) -> list[tuple[int, int]]:
        """Clip spans around the frames with a hand: gaps closed, short runs widened, long runs split evenly."""
        if not present.any():
            self._skip(summary, "dropped_no_hand", "the tracker found no hand in any sampled frame.")
            return []
        closed = close_gaps(present, self.max_gap_frames)
        spans: list[list[int]] = []
        for start, stop in true_runs(closed):
            if stop - start < self.min_frames:  # widen with context on both sides, within the video
                missing = self.min_frames - (stop - start)
                start = max(0, start - missing // 2)
                stop = min(len(present), start + self.min_frames)
                start = max(0, stop - self.min_frames)
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], stop)
            else:
                spans.append([start, stop])
        clips = []
        for start, stop in spans:
            clips += split_evenly(start, stop, min_len=self.min_frames, max_len=self.max_frames)
        if not clips:
            self._skip(summary, "dropped_too_short", f"the video has fewer than {self.min_frames} clip frames.")
        return clips

    def _row(
        self, ctx: dict[str, Any], track: _Track | None, start: int, stop: int, clip_number: int
    ) -> dict[str, Any] | None:
        """One clip -> one row (or None when the clip is dropped for too little hand presence)."""
        key, plan, meta = ctx["key"], ctx["plan"], ctx["meta"]
        num_frames = stop - start
        scene: dict[str, Any] = {
            "video": key,
            "start_s": round(float(plan.source_times[start]), 4),
            "end_s": round(float(plan.source_times[stop - 1]) + plan.playback_speed / plan.fps, 4),
            "playback_speed": plan.playback_speed,
            "tracker": self.tracker.name,
            "mirrored": ctx["mirrored"],
            "intrinsics_assumed": ctx["intrinsics_assumed"],
            "source_size": [ctx["info"].width, ctx["info"].height],
        }
        if ctx["intrinsics_assumed"]:
            scene["fov_deg"] = meta.fov_deg or self.fov_deg
        motion: np.ndarray | None = None
        confidence = 0.0
        reason: str | None = None
        if track is None:
            hands_present = meta.hands_present or (True, True)
            scene["hands_present_known"] = meta.hands_present is not None
            reason = "no tracker"
        else:
            detected = track.detected[start:stop]
            presence = float(detected.any(axis=1).mean())
            scene["presence_rate"] = round(presence, 4)
            if presence < self.min_presence:
                self.report.counts["dropped_low_presence"] += 1
                logger.info(
                    "%s: dropping clip frames %d-%d: a hand in %.0f%% of frames < min_presence %.0f%%.",
                    key,
                    start,
                    stop,
                    100 * presence,
                    100 * self.min_presence,
                )
                return None
            rates = detected.mean(axis=0)
            hands = rates >= self.min_hand_fraction
            if not hands.any():
                hands[int(np.argmax(rates))] = True
            hands_present = (bool(hands[0]), bool(hands[1]))
            hand_conf = {}
            for slot, name in enumerate(HANDS):
                if detected[:, slot].any():
                    mean_score = float(np.nanmean(track.score[start:stop, slot]))
                    hand_conf[name] = mean_score * float(rates[slot])
            confidence = min(hand_conf.get(name, 0.0) for slot, name in enumerate(HANDS) if hands[slot])
            scene["hand_confidence"] = {k: round(v, 4) for k, v in hand_conf.items()}
            scene["hand_detection_rate"] = {name: round(float(rates[s]), 4) for s, name in enumerate(HANDS)}
            scene["confidence"] = round(confidence, 4)
            if confidence < self.min_confidence:
                reason = f"confidence {confidence:.3f} < {self.min_confidence}"
            else:
                motion, reason = self._label(track, start, stop, hands, scene)
        labelled = motion is not None
        if reason is not None:
            scene["unlabelled_reason"] = reason
        self.report.counts["rows"] += 1
        self.report.counts["rows_labelled" if labelled else "rows_unlabelled"] += 1
        instruction, task_type = self._instruction(meta, labelled, num_frames, f"{key}#{clip_number}")
        encoded, indices = ctx["encoded"], plan.source_indices[start:stop]
        split = meta.split or self.split
        row_id = f"video-{ctx['domain']}-{split}-{self._next_index:06d}"
        self._next_index += 1
        return {
            "id": row_id,
            "source": "video",
            "domain": ctx["domain"],
            "instruction": instruction,
            "task_type": task_type,
            "fps": FPS,
            "num_frames": num_frames,
            "hands_present": list(hands_present),
            "labelled": labelled,
            "label_source": "pseudo" if labelled else "none",
            "label_confidence": round(confidence, 6) if labelled else 0.0,
            "first_frame": encoded[int(indices[0])],
            "boundary_frames": [encoded[int(indices[i])] for i in boundary_frame_indices(num_frames)],
            "camera_intrinsics": [float(v) for v in ctx["store_k"].as_tuple()],
            "motion": motion,
            "scene": json.dumps(scene, sort_keys=True),
            "split": split,
        }

    def _label(
        self, track: _Track, start: int, stop: int, hands: np.ndarray, scene: dict[str, Any]
    ) -> tuple[np.ndarray | None, str | None]:
        """D162 (T, 2, 162) for the present hands, or None and the reason it cannot be trusted."""
        motion = np.zeros((stop - start, 2, D162_DIM), dtype=np.float32)
        residuals, reprojection = {}, {}
        for slot, name in enumerate(HANDS):
            if not hands[slot]:
                continue
            valid = track.detected[start:stop, slot]
            keypoints, filled = interpolate_gaps(track.keypoints[start:stop, slot], valid, self.max_gap_frames)
            if not filled.all():
                gap = max(b - a for a, b in true_runs(~filled))
                return None, f"{name} hand missing for {gap} frames > max gap {self.max_gap_frames}"
            fit = fit_d162(keypoints, name, skeleton=self.skeleton, iterations=self.fit_iterations)
            residuals[name] = float(fit.residual_mm.mean())
            reprojection[name] = float(np.nanmean(track.reprojection_px[start:stop, slot]))
            motion[:, slot] = fit.motion.numpy().astype(np.float32)
        scene["fit_residual_mm"] = {k: round(v, 3) for k, v in residuals.items()}
        scene["reprojection_px"] = {k: round(v, 3) for k, v in reprojection.items()}
        worst = max(residuals.values())
        if worst > self.max_fit_residual_mm:
            return None, f"fit residual {worst:.1f} mm > {self.max_fit_residual_mm} mm"
        return motion, None

    def _instruction(self, meta: _VideoMeta, labelled: bool, num_frames: int, salt: str) -> tuple[str, str]:
        """(instruction, task_type): the video's own text when it has one, else a template (see module doc).

        Unlabelled rows are always ``video_only``: the other task types train on motion tokens.
        """
        if not labelled:
            task_type = "video_only"
        elif meta.task_type is not None:
            task_type = meta.task_type
        elif meta.instruction:
            task_type = "motion_generation"
        elif num_chunks(num_frames) >= 2:  # continuation needs a chunk to continue from
            task_type = "motion_continuation"
        else:
            task_type = "motion_generation"
        if meta.instruction:
            return meta.instruction, task_type
        return random.Random(f"{self.seed}:{salt}").choice(_TEMPLATES[task_type]), task_type
