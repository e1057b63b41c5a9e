"""Checks on what a Space visitor sends, with messages a visitor can act on.

Why a module of its own: every check here guards the CPU-only Space against inputs that would stall the one
worker (a 200 MB video, a 20000 x 20000 PNG, a 10-minute clip) or crash deep inside the model with an error
nobody outside this project can read. Each check raises `InputError`, whose message names the field, what was
expected and what to do; `app.py` shows it as a `gr.Error`. Nothing here imports Gradio, so it is unit-tested
without a browser.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

#: Still images: the frame itself is the first frame.
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
#: Animations and videos: only the first frame is used. GIFs count as videos (they can be long).
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".mov", ".webm", ".mkv", ".m4v", ".avi", ".gif")
MAX_UPLOAD_MB = 25
MIN_SIDE_PX = 64
MAX_SIDE_PX = 4096
MAX_VIDEO_SECONDS = 30.0
MAX_INSTRUCTION_CHARS = 300
MAX_CHUNKS = 8
MAX_DECODING_STEPS = 64
MAX_ENSEMBLE = 8
HAND_CHOICES: dict[str, tuple[str, ...]] = {"right": ("right",), "left": ("left",), "both": ("left", "right")}


class InputError(ValueError):
    """A visitor's input that the Space refuses; the message is shown to the visitor as it is."""


@dataclass(frozen=True)
class FirstFrame:
    """The frame the model sees (RGB uint8, H x W x 3) and where it came from."""

    image: np.ndarray
    kind: str  # "image" or "video"
    source_size: tuple[int, int]  # (width, height) as displayed, before any resizing
    duration_s: float | None = None


def upload_kind(path: str | Path) -> str:
    """Return "image" or "video" from the file name; refuse other types and oversized files before decoding."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"upload: {file.name or path!s} was not received; upload the file again.")
    suffix = file.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        kind = "image"
    elif suffix in VIDEO_SUFFIXES:
        kind = "video"
    else:
        raise InputError(
            f"upload: {file.name} has type {suffix or '(none)'!r}; upload an image ({', '.join(IMAGE_SUFFIXES)}) "
            f"or a short video ({', '.join(VIDEO_SUFFIXES)})."
        )
    size_mb = file.stat().st_size / 2**20
    if size_mb > MAX_UPLOAD_MB:
        raise InputError(
            f"upload: {file.name} is {size_mb:.1f} MB, more than the {MAX_UPLOAD_MB} MB this Space accepts; "
            "upload a smaller file (only the first frame is used, so a short trimmed clip or a photo is enough)."
        )
    return kind


def check_resolution(width: int, height: int, name: str) -> None:
    """Refuse frames too small to show a hand or so large that decoding them would stall the CPU Space."""
    if min(width, height) < MIN_SIDE_PX:
        raise InputError(
            f"upload: {name} is {width}x{height} pixels; the shorter side must be at least {MIN_SIDE_PX} px. "
            "Upload a larger image."
        )
    if max(width, height) > MAX_SIDE_PX:
        raise InputError(
            f"upload: {name} is {width}x{height} pixels; the longer side must be at most {MAX_SIDE_PX} px. "
            "Downscale it first (the model reads the frame at a few hundred pixels anyway)."
        )


def _read_image(path: Path) -> FirstFrame:
    try:
        with Image.open(path) as pil:
            width, height = pil.size
            check_resolution(width, height, path.name)  # before decoding: PIL reads only the header so far
            rgb = ImageOps.exif_transpose(pil).convert("RGB")
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise InputError(
            f"upload: {path.name} could not be read as an image ({error}); upload a JPEG or PNG file."
        ) from error
    return FirstFrame(np.asarray(rgb, dtype=np.uint8), "image", rgb.size)


def _read_video(path: Path) -> FirstFrame:
    # PyAV through the project's ingest code: it applies display rotation tags (phone videos), as training did.
    from dataset_scripts.video.decode import VideoDecodeError, iter_frames, probe_video

    try:
        info = probe_video(path)
    except VideoDecodeError as error:
        raise InputError(
            f"upload: {path.name} could not be decoded as a video ({error}); upload an MP4 (H.264) or a GIF."
        ) from error
    check_resolution(info.width, info.height, path.name)
    duration = float(info.duration_s)
    if not math.isfinite(duration) or duration > MAX_VIDEO_SECONDS:
        raise InputError(
            f"upload: {path.name} lasts {duration:.1f} s; videos may last at most {MAX_VIDEO_SECONDS:.0f} s. "
            "Trim it (only the first frame is used) or upload a photo of the first frame."
        )
    if info.num_frames < 1:
        raise InputError(f"upload: {path.name} has no video frames; upload another file.")
    try:
        frame = next(iter_frames(info, [0]), None)
    except VideoDecodeError as error:
        raise InputError(
            f"upload: the first frame of {path.name} could not be decoded ({error}); upload another file."
        ) from error
    if frame is None:
        raise InputError(f"upload: the first frame of {path.name} could not be decoded; upload another file.")
    return FirstFrame(frame.image, "video", (info.width, info.height), duration)


def read_first_frame(path: str | Path) -> FirstFrame:
    """Validate an uploaded file and return its first frame (images: the image, EXIF orientation applied)."""
    kind = upload_kind(path)
    file = Path(path)
    frame = _read_image(file) if kind == "image" else _read_video(file)
    logger.info("upload %s: %s %dx%d", file.name, frame.kind, *frame.source_size)
    return frame


def check_instruction(text: str | None) -> str:
    """The instruction, stripped; refuses empty and overlong text."""
    cleaned = " ".join((text or "").split())
    if not cleaned:
        raise InputError("instruction: type what the hand should do, e.g. 'pick up the red cup'.")
    if len(cleaned) > MAX_INSTRUCTION_CHARS:
        raise InputError(
            f"instruction: {len(cleaned)} characters; keep it under {MAX_INSTRUCTION_CHARS} (one short sentence)."
        )
    return cleaned


def check_hands(choice: str | None) -> tuple[str, ...]:
    """The UI's hand choice -> the `hands` argument of `generate_motion`."""
    if choice not in HAND_CHOICES:
        raise InputError(f"hands: choose one of {', '.join(HAND_CHOICES)}, got {choice!r}.")
    return HAND_CHOICES[choice]


def check_num_chunks(value: float | int | None) -> int:
    """Chunks of 15 frames (1 s each at 15 fps); bounded so that one request cannot hold the CPU for minutes."""
    if value is None or not float(value).is_integer() or not 1 <= int(value) <= MAX_CHUNKS:
        raise InputError(f"number of chunks: choose a whole number from 1 to {MAX_CHUNKS}, got {value!r}.")
    return int(value)


def check_decoding(steps: float | int | None, ensemble: float | int | None) -> tuple[int, int]:
    """Masked-decoding passes per chunk and ensemble size; bounded because the API accepts any number and cost
    grows with their product."""
    checked = []
    for name, value, top in (("decoding passes", steps, MAX_DECODING_STEPS), ("ensemble", ensemble, MAX_ENSEMBLE)):
        if value is None or not float(value).is_integer() or not 1 <= int(value) <= top:
            raise InputError(f"{name}: choose a whole number from 1 to {top}, got {value!r}.")
        checked.append(int(value))
    return checked[0], checked[1]
