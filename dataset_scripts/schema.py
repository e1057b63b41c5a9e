"""UniHand-Mix row schema: one row is one clip of one or two hands.

Every source (procedural world, real video, converters of public lab datasets) yields plain dicts with these
columns; `validate_row` checks one before it is written, so a bad row is rejected with its id and field named and
never reaches a shard. The dataset card documents the same columns from `COLUMN_DOCS`.

Conventions: camera frame (OpenCV: +x right, +y down, +z forward), metres, hand order (left, right), 15 fps.
A clip of T frames has N = ceil(T / 15) chunks and N + 1 boundary frames at t = 0, 15, ..., 15 N (the last one
clamped to T - 1): chunk k spans boundary frames k and k + 1, the (v_t, v_{t+15}) pair the LAP reads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import datasets
import numpy as np
from PIL import Image

from dataset_scripts.images import decode_image
from dataset_scripts.repo_layout import DOMAINS
from modeling_jala.hand_jala import D162_DIM
from modeling_jala.layout_jala import CHUNK_FRAMES, FPS, IGNORE_TOKEN_ID

#: The paper's four task types (UniHand-Mix, §4).
TASK_TYPES = ("motion_generation", "motion_continuation", "motion_description", "video_only")
LABEL_SOURCES = ("exact", "pseudo", "none")
MIN_SECONDS, MAX_SECONDS = 1.0, 10.0

COLUMN_DOCS: dict[str, str] = {
    "id": "Unique clip id, `<source>-<domain>-<split>-<index>`.",
    "source": "Where the clip comes from: `synthetic` (procedural hand world), `video` (real-video ingest) or a "
    "converter name.",
    "domain": "`lab` (controlled capture, exact labels) or `wild` (in-the-wild look, mostly unlabelled).",
    "instruction": "Natural-language instruction or description for the clip.",
    "task_type": f"One of {', '.join(TASK_TYPES)}.",
    "fps": "Frames per second of `motion` and of the boundary-frame indices (15).",
    "num_frames": "Frames T in the clip (1-10 s at 15 fps).",
    "hands_present": "Which hands act in the clip, (left, right).",
    "labelled": "True when `motion` holds a label the model may train on (exact or confident pseudo-label).",
    "label_source": f"One of {', '.join(LABEL_SOURCES)}.",
    "label_confidence": "1.0 for exact labels, the tracker's confidence for pseudo-labels, 0.0 without a label.",
    "first_frame": "The clip's first frame v_1 (JPEG), the only frame the VLM sees.",
    "boundary_frames": "Frames at t = 0, 15, ..., 15 N (last clamped to T - 1), N = ceil(T / 15): chunk k is "
    "(boundary_frames[k], boundary_frames[k + 1]).",
    "camera_intrinsics": "(fx, fy, cx, cy) in pixels of the stored frames; `motion` is in this camera's frame.",
    "motion": f"(T, 2, {D162_DIM}) MANO-D162 per frame for (left, right), float32, metres; null when unlabelled; an "
    "absent hand's slot is zeros.",
    "scene": "JSON with the scene description (objects, camera, lighting) where the source knows it, else `{}`.",
}

#: Optional columns, present in every row of a build or in none.
OPTIONAL_COLUMN_DOCS: dict[str, str] = {
    "ssl_features": "(N + 1, P, D) float16 features of the boundary frames from the frozen SSL encoder named in "
    "the card (DINOv3 / V-JEPA2), precomputed so the LAP needs no encoder at train time.",
    "motion_tokens": "(N, 2, K) int16 motion-tokenizer ids per chunk and hand (-100 where no chunk / hand); K is the "
    "tokenizer's tokens per chunk (128 for the paper's), recorded in the card.",
}


def nullable_array(dtype: str, rank: int) -> datasets.List:
    """`rank` nested lists of `dtype`: how a column with null rows is declared (see `unihand_features`)."""
    feature: Any = datasets.Value(dtype)
    for _ in range(rank):
        feature = datasets.List(feature)
    return feature


def unihand_features(
    ssl_feature_shape: tuple[int, int] | None = None, motion_tokens_per_chunk: int | None = None
) -> datasets.Features:
    """`datasets.Features` of a build; optional columns are part of the schema only when the build has them.

    `ssl_feature_shape`: (P, D) of the build's `ssl_features`; `motion_tokens_per_chunk`: K of its `motion_tokens`
    (the motion tokenizer's `tokens_per_chunk`). None leaves the column out.

    `motion` is null in unlabelled rows, so it is declared as nested float32 lists, not `Array3D`: datasets 5.2
    reads a null `Array3D` row as NaN (streaming) or fails on it (batches), nested lists keep it None. The arrow
    storage is the same either way. These are the features the shards carry in their own metadata and the card
    declares, so a shard read alone (plain pyarrow / `datasets`, no card) gives the same rows as the repo.
    """
    features = {
        "id": datasets.Value("string"),
        "source": datasets.Value("string"),
        "domain": datasets.Value("string"),
        "instruction": datasets.Value("string"),
        "task_type": datasets.Value("string"),
        "fps": datasets.Value("float32"),
        "num_frames": datasets.Value("int32"),
        "hands_present": datasets.Sequence(datasets.Value("bool"), length=2),
        "labelled": datasets.Value("bool"),
        "label_source": datasets.Value("string"),
        "label_confidence": datasets.Value("float32"),
        "first_frame": datasets.Image(),
        "boundary_frames": datasets.Sequence(datasets.Image()),
        "camera_intrinsics": datasets.Sequence(datasets.Value("float32"), length=4),
        "motion": nullable_array("float32", 3),  # (T, 2, D162_DIM), null when unlabelled
        "scene": datasets.Value("string"),
    }
    if ssl_feature_shape is not None:
        features["ssl_features"] = datasets.Array3D(shape=(None, *ssl_feature_shape), dtype="float16")
    if motion_tokens_per_chunk is not None:
        if isinstance(motion_tokens_per_chunk, bool) or int(motion_tokens_per_chunk) < 1:
            raise ValueError(f"motion_tokens_per_chunk must be a positive int, got {motion_tokens_per_chunk!r}.")
        features["motion_tokens"] = datasets.Array3D(shape=(None, 2, int(motion_tokens_per_chunk)), dtype="int16")
    return datasets.Features(features)


def num_chunks(num_frames: int) -> int:
    return math.ceil(num_frames / CHUNK_FRAMES)


def boundary_frame_indices(num_frames: int) -> list[int]:
    """Frame index of every chunk boundary: 0, 15, ..., 15 N, the last clamped to the final frame."""
    return [min(CHUNK_FRAMES * k, num_frames - 1) for k in range(num_chunks(num_frames) + 1)]


class RowValidationError(ValueError):
    """A row that must not be written; the message names the row id and the field."""

    def __init__(self, row_id: str, field: str, problem: str) -> None:
        self.row_id, self.field = row_id, field
        super().__init__(f"row {row_id!r}, field {field!r}: {problem}")


def _decode_check(row_id: str, field: str, image: Any) -> tuple[int, int]:
    """Open an encoded image fully (not just its header) and return its (width, height)."""
    if isinstance(image, dict):
        data = image.get("bytes")
        if not data:
            raise RowValidationError(row_id, field, "image dict has no bytes; encode frames with encode_image().")
        try:
            return decode_image(image).size
        except Exception as error:  # PIL raises many types for corrupt data
            raise RowValidationError(
                row_id, field, f"image bytes do not decode ({error}); re-encode the frame."
            ) from None
    if isinstance(image, Image.Image):
        return image.size
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3:
        return image.shape[1], image.shape[0]
    raise RowValidationError(
        row_id, field, f"expected an encoded image dict, PIL image or HxWx3 array, got {type(image)}."
    )


def check_motion_tokens(row_id: str, tokens: Any, chunks: int, tokens_per_chunk: int) -> None:
    """A row's `motion_tokens` for a build storing `tokens_per_chunk` ids per chunk and hand: (chunks, 2, K)
    integer ids >= 0, or -100 where a chunk or hand is missing."""
    if tokens is None or np.asarray(tokens).shape != (chunks, 2, tokens_per_chunk):
        got = None if tokens is None else np.asarray(tokens).shape
        raise RowValidationError(row_id, "motion_tokens", f"shape {got}, expected ({chunks}, 2, {tokens_per_chunk}).")
    tokens = np.asarray(tokens)
    if not np.issubdtype(tokens.dtype, np.integer) or tokens.min() < IGNORE_TOKEN_ID:
        raise RowValidationError(
            row_id, "motion_tokens", f"must be integer ids >= 0, or {IGNORE_TOKEN_ID} where missing."
        )


def validate_row(
    row: Mapping[str, Any],
    ssl_feature_shape: tuple[int, int] | None = None,
    motion_tokens_per_chunk: int | None = None,
) -> None:
    """Raise RowValidationError naming the row and field for anything a shard must not contain.

    `ssl_feature_shape` / `motion_tokens_per_chunk`: the optional columns of the build (see `unihand_features`),
    which every row must then carry with these shapes; None checks neither."""
    row_id = str(row.get("id", "<no id>"))
    required = set(COLUMN_DOCS)
    missing = sorted(required - set(row))
    if missing:
        raise RowValidationError(row_id, missing[0], f"missing; every row needs {sorted(required)}.")
    for name, allowed in (("domain", DOMAINS), ("task_type", TASK_TYPES), ("label_source", LABEL_SOURCES)):
        if row[name] not in allowed:
            raise RowValidationError(row_id, name, f"{row[name]!r} is not one of {allowed}.")
    if not isinstance(row["instruction"], str) or not row["instruction"].strip():
        raise RowValidationError(row_id, "instruction", "must be a non-empty string.")
    num_frames = int(row["num_frames"])
    if not MIN_SECONDS * FPS <= num_frames <= MAX_SECONDS * FPS:
        raise RowValidationError(
            row_id, "num_frames", f"{num_frames} frames is outside 1-10 s at 15 fps ({int(FPS)}-{int(10 * FPS)})."
        )
    if float(row["fps"]) != FPS:
        raise RowValidationError(row_id, "fps", f"{row['fps']} fps; resample clips to {FPS} fps before writing.")
    hands = list(row["hands_present"])
    if len(hands) != 2 or not any(hands):
        raise RowValidationError(
            row_id, "hands_present", f"needs two flags (left, right), at least one set; got {hands}."
        )
    confidence = float(row["label_confidence"])
    if not 0.0 <= confidence <= 1.0:
        raise RowValidationError(row_id, "label_confidence", f"{confidence} is outside [0, 1].")

    motion = row["motion"]
    if row["labelled"] and motion is None:
        raise RowValidationError(
            row_id, "motion", "labelled rows need motion; set labelled=False to write it unlabelled."
        )
    if row["labelled"] and row["label_source"] == "none":
        raise RowValidationError(row_id, "label_source", "labelled rows need label_source 'exact' or 'pseudo'.")
    if motion is not None:
        motion = np.asarray(motion)
        if motion.shape != (num_frames, 2, D162_DIM):
            raise RowValidationError(
                row_id, "motion", f"shape {motion.shape}, expected (num_frames={num_frames}, 2, {D162_DIM})."
            )
        bad = ~np.isfinite(motion)
        if bad.any():
            frame, hand, dim = np.argwhere(bad)[0]
            raise RowValidationError(
                row_id,
                "motion",
                f"{int(bad.sum())} non-finite values, first at frame {frame}, hand {hand}, dim {dim}.",
            )

    width, height = _decode_check(row_id, "first_frame", row["first_frame"])
    frames = list(row["boundary_frames"])
    expected = num_chunks(num_frames) + 1
    if len(frames) != expected:
        raise RowValidationError(
            row_id, "boundary_frames", f"{len(frames)} frames, expected N + 1 = {expected} for {num_frames} frames."
        )
    for index, frame in enumerate(frames):
        if _decode_check(row_id, f"boundary_frames[{index}]", frame) != (width, height):
            raise RowValidationError(row_id, f"boundary_frames[{index}]", "size differs from first_frame.")
    intrinsics = list(row["camera_intrinsics"])
    if len(intrinsics) != 4 or not all(np.isfinite(intrinsics)) or min(intrinsics[:2]) <= 0:
        raise RowValidationError(
            row_id, "camera_intrinsics", f"need finite (fx, fy, cx, cy), fx, fy > 0; got {intrinsics}."
        )

    if ssl_feature_shape is not None:
        features = row.get("ssl_features")
        if features is None:
            raise RowValidationError(row_id, "ssl_features", "this build stores SSL features; every row needs them.")
        features = np.asarray(features)
        if features.shape != (expected, *ssl_feature_shape):
            raise RowValidationError(
                row_id,
                "ssl_features",
                f"shape {features.shape}, expected ({expected}, {ssl_feature_shape[0]}, {ssl_feature_shape[1]}).",
            )
        if not np.isfinite(features).all():
            raise RowValidationError(row_id, "ssl_features", "non-finite values.")
    if motion_tokens_per_chunk is not None:
        check_motion_tokens(row_id, row.get("motion_tokens"), expected - 1, motion_tokens_per_chunk)
