"""The collator contract between UniHand-Mix rows and the JALA model: rows in, one padded batch dict out.

Rows come from `UniHandStream` (arrays as numpy, images still encoded) or from `load_dataset` (PIL images, nested
lists); both work. Images are decoded here, not in the reader, because decoding is the expensive part and JPEG
draft mode lets a 1/2, 1/4 or 1/8 size decode feed a small target size at a fraction of the cost.

Batch contract (B clips, N = chunks after cropping, N_max = max N in the batch, T_max = max frames after cropping,
H x W = `image_size`, P x D = SSL feature tokens x width):

==================  ===============  ======================  ==================================================
key                 dtype            shape                   meaning
==================  ===============  ======================  ==================================================
ids                 list[str]        B                       row ids
sources             list[str]        B                       source of each row (`synthetic`, `video`, ...)
domains             list[str]        B                       `lab` or `wild`
instructions        list[str]        B                       instruction text x
task_types          list[str]        B                       one of schema.TASK_TYPES
describe            bool             (B,)                    the row is a motion-description sample (its
                                                             instruction is the target text): rows flagged with
                                                             DESCRIBE_KEY by the pretraining mixture
label_sources       list[str]        B                       `exact`, `pseudo` or `none`
first_frames        uint8            (B, H, W, 3)            v_1 of the (cropped) clip: the only frame the VLM sees
boundary_frames     uint8            (B, N_max + 1, H, W, 3) frames at t = 0, 15, ..., zeros past boundary_mask;
                                                             present when `boundary="images"` (or "auto" and no
                                                             ssl_features in the rows)
ssl_features        float16          (B, N_max + 1, P, D)    precomputed frozen-encoder features of the boundary
                                                             frames, zeros past boundary_mask; present when the rows
                                                             carry them and `boundary` is "auto" or "ssl"
boundary_mask       bool             (B, N_max + 1)          boundary frame exists (N + 1 per clip)
chunk_mask          bool             (B, N_max)              chunk exists; chunk k = boundary frames (k, k + 1)
num_chunks          int64            (B,)                    N per clip
chunk_start         int64            (B,)                    first chunk of the crop within the stored clip
frame_lengths       int64            (B,)                    valid frames of `motion` per clip (<= 15 N)
motion              float32          (B, 2, T_max, 162)      MANO-D162 (left, right); zeros for unlabelled clips,
                                                             absent hands and frames past frame_lengths
hands_present       bool             (B, 2)                  hands acting in the clip (left, right)
labelled            bool             (B,)                    motion is a trainable label (gates L_MCP)
label_confidence    float32          (B,)                    1 exact, tracker confidence for pseudo, 0 none
camera_intrinsics   float32          (B, 4)                  (fx, fy, cx, cy) of the *resized* frames
motion_tokens       int64            (B, 2, N_max, K)        tokenizer ids per hand and chunk, -100 where missing;
                                                             present when the rows carry them (K = the build's
                                                             tokens per chunk, read from the rows: 128 for the
                                                             paper's tokenizer)
==================  ===============  ======================  ==================================================

Cropping: with `max_chunks`, a clip with more chunks keeps a window of `max_chunks` chunks: motion frames
[15 s, 15 (s + n)), boundary frames s .. s + n, token chunks s .. s + n - 1, and the crop's first frame (boundary
frame s) as `first_frames`. `crop="leading"` keeps s = 0 (the instruction describes the whole clip, so this is the
safe default); `crop="random"` draws s from a generator seeded by (seed, row id, the stream's `__index__`), so a
resumed run crops exactly as the uninterrupted one would.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from dataset_scripts.images import decode_image, open_image
from dataset_scripts.schema import num_chunks
from modeling_jala.hand_jala import D162_DIM
from modeling_jala.layout_jala import (
    CHUNK_FRAMES,
    CLIP_MOTION_AXES,
    CLIP_TOKEN_AXES,
    IGNORE_TOKEN_ID,
    ROW_MOTION_AXES,
    ROW_TOKEN_AXES,
    reorder_axes,
)

#: Row key set by the pretraining mixture (`trainers.pretrain_collator.DescriptionMixture`) on the rows it draws as
#: motion-description samples; rows without it are ordinary samples.
DESCRIBE_KEY = "__describe__"


def kept_chunk_count(num_frames: int, max_chunks: int | None) -> int:
    """How many chunks the collator keeps of a clip of `num_frames` frames: all of them, up to `max_chunks` (a crop
    window starts at most `max_chunks` chunks before the clip's end, so it never holds fewer)."""
    total = num_chunks(num_frames)
    return total if max_chunks is None else min(total, max_chunks)


def load_frame(
    image: Any, size: tuple[int, int], mode: Literal["stretch", "center_crop"] = "stretch"
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Decode and resize to (H, W) = size; returns uint8 (H, W, 3) and the affine map (sx, sy, ox, oy) that takes
    a pixel coordinate u of the stored frame to sx * (u + 0.5) - 0.5 - ox in the output (pixel centres at
    integers, as OpenCV). A JPEG is decoded at the smallest 1/2^k scale still >= the target (`decode_image`'s
    draft mode)."""
    pil = open_image(image)
    height, width = size
    source_w, source_h = pil.size
    if mode == "stretch":
        sx, sy, ox, oy = width / source_w, height / source_h, 0.0, 0.0
        box = (0.0, 0.0, float(source_w), float(source_h))
    elif mode == "center_crop":
        scale = max(width / source_w, height / source_h)
        crop_w, crop_h = width / scale, height / scale
        left, top = (source_w - crop_w) / 2, (source_h - crop_h) / 2
        sx = sy = scale
        ox, oy = left * scale, top * scale
        box = (left, top, left + crop_w, top + crop_h)
    else:
        raise ValueError(f"resize mode must be 'stretch' or 'center_crop', got {mode!r}.")
    # The size the whole stored frame must still cover so that the box resizes to (width, height).
    needed = (
        max(1, round(width * source_w / (box[2] - box[0]))),
        max(1, round(height * source_h / (box[3] - box[1]))),
    )
    pil = decode_image(pil, draft_size=needed)
    draft_scale = pil.size[0] / source_w, pil.size[1] / source_h
    box = (box[0] * draft_scale[0], box[1] * draft_scale[1], box[2] * draft_scale[0], box[3] * draft_scale[1])
    if pil.size != (width, height) or box != (0.0, 0.0, float(pil.size[0]), float(pil.size[1])):
        pil = pil.resize((width, height), Image.BILINEAR, box=box)
    return np.array(pil, dtype=np.uint8), (sx, sy, ox, oy)


@dataclass
class UniHandCollator:
    """Rows -> the batch dict documented in this module's docstring (the contract the JALA model consumes).

    Args:
        image_size: output frame size, an int for square frames or (H, W).
        resize_mode: `stretch` (aspect changes, nothing lost) or `center_crop` (aspect kept, borders lost).
        max_chunks: keep at most this many chunks per clip (None keeps all, up to 10 for 10 s clips).
        crop: `leading` or `random` window when a clip has more than `max_chunks` chunks.
        boundary: `auto` (ssl_features when the rows carry them, else decoded images), `images`, `ssl`, `both` or
            `none` (first frames only; cheapest).
        seed: seeds random crops.
    """

    image_size: int | tuple[int, int] = 224
    resize_mode: Literal["stretch", "center_crop"] = "stretch"
    max_chunks: int | None = None
    crop: Literal["leading", "random"] = "leading"
    boundary: Literal["auto", "images", "ssl", "both", "none"] = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.crop not in ("leading", "random"):
            raise ValueError(f"crop must be 'leading' or 'random', got {self.crop!r}.")
        if self.boundary not in ("auto", "images", "ssl", "both", "none"):
            raise ValueError(f"boundary must be auto, images, ssl, both or none, got {self.boundary!r}.")
        if self.max_chunks is not None and self.max_chunks < 1:
            raise ValueError(f"max_chunks must be >= 1 or None, got {self.max_chunks}.")
        size = self.image_size
        self._size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))

    def _crop_start(self, row: Mapping[str, Any], chunks: int) -> int:
        if self.max_chunks is None or chunks <= self.max_chunks or self.crop == "leading":
            return 0
        key = [self.seed, zlib.crc32(str(row["id"]).encode())]
        if "__index__" in row:
            key.append(int(row["__index__"]))
        return int(np.random.default_rng(key).integers(0, chunks - self.max_chunks + 1))

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not rows:
            raise ValueError("cannot collate an empty batch.")
        has_ssl = all(row.get("ssl_features") is not None for row in rows)
        want_ssl = self.boundary in ("ssl", "both") or (self.boundary == "auto" and has_ssl)
        want_images = self.boundary in ("images", "both") or (self.boundary == "auto" and not has_ssl)
        if want_ssl and not has_ssl:
            raise ValueError("boundary='ssl' but some rows have no ssl_features; build with --ssl-encoder.")
        has_tokens = all(row.get("motion_tokens") is not None for row in rows)
        if (want_images or (self.max_chunks is not None and self.crop == "random")) and any(
            "boundary_frames" not in row for row in rows
        ):
            raise ValueError(
                "rows have no boundary_frames column, needed for boundary='images' and for random crops (v_1 of a "
                "crop is a boundary frame); read that column (UniHandStream columns=...) or use crop='leading'."
            )
        batch_size = len(rows)
        height, width = self._size

        total_chunks = [num_chunks(int(row["num_frames"])) for row in rows]
        starts = [self._crop_start(row, n) for row, n in zip(rows, total_chunks, strict=True)]
        kept = [kept_chunk_count(int(row["num_frames"]), self.max_chunks) for row in rows]
        lengths = [
            min(int(row["num_frames"]), CHUNK_FRAMES * (s + n)) - CHUNK_FRAMES * s
            for row, s, n in zip(rows, starts, kept, strict=True)
        ]
        n_max, t_max = max(kept), max(lengths)

        first_frames = np.zeros((batch_size, height, width, 3), np.uint8)
        intrinsics = np.zeros((batch_size, 4), np.float32)
        boundary_mask = np.zeros((batch_size, n_max + 1), bool)
        chunk_mask = np.zeros((batch_size, n_max), bool)
        motion = np.zeros((batch_size, 2, t_max, D162_DIM), np.float32)
        boundary_frames = np.zeros((batch_size, n_max + 1, height, width, 3), np.uint8) if want_images else None
        ssl = None
        if want_ssl:
            p, d = np.asarray(rows[0]["ssl_features"]).shape[1:]
            ssl = np.zeros((batch_size, n_max + 1, p, d), np.float16)
        tokens = None
        if has_tokens:
            tokens_per_chunk = np.shape(rows[0]["motion_tokens"])[-1]
            tokens = np.full((batch_size, 2, n_max, tokens_per_chunk), IGNORE_TOKEN_ID, np.int64)

        for b, (row, start, n, length) in enumerate(zip(rows, starts, kept, lengths, strict=True)):
            boundary_mask[b, : n + 1] = True
            chunk_mask[b, :n] = True
            first_source = row["first_frame"] if start == 0 else row["boundary_frames"][start]
            first_frames[b], (sx, sy, ox, oy) = load_frame(first_source, self._size, self.resize_mode)
            fx, fy, cx, cy = (float(v) for v in row["camera_intrinsics"])
            intrinsics[b] = (fx * sx, fy * sy, (cx + 0.5) * sx - 0.5 - ox, (cy + 0.5) * sy - 0.5 - oy)
            if boundary_frames is not None:
                frames = row["boundary_frames"]
                for k in range(n + 1):
                    boundary_frames[b, k] = load_frame(frames[start + k], self._size, self.resize_mode)[0]
            if ssl is not None:
                ssl[b, : n + 1] = np.asarray(row["ssl_features"])[start : start + n + 1]
            if row.get("motion") is not None and row["labelled"]:
                clip = np.asarray(row["motion"], dtype=np.float32)
                first = CHUNK_FRAMES * start
                motion[b, :, :length] = reorder_axes(clip[first : first + length], ROW_MOTION_AXES, CLIP_MOTION_AXES)
            if tokens is not None:
                row_tokens = np.asarray(row["motion_tokens"])[start : start + n]
                tokens[b, :, :n] = reorder_axes(row_tokens, ROW_TOKEN_AXES, CLIP_TOKEN_AXES)

        batch: dict[str, Any] = {
            "ids": [str(row["id"]) for row in rows],
            "sources": [str(row["source"]) for row in rows],
            "domains": [str(row["domain"]) for row in rows],
            "instructions": [str(row["instruction"]) for row in rows],
            "task_types": [str(row["task_type"]) for row in rows],
            "describe": torch.tensor([bool(row.get(DESCRIBE_KEY, False)) for row in rows], dtype=torch.bool),
            "label_sources": [str(row["label_source"]) for row in rows],
            "first_frames": torch.from_numpy(first_frames),
            "boundary_mask": torch.from_numpy(boundary_mask),
            "chunk_mask": torch.from_numpy(chunk_mask),
            "num_chunks": torch.tensor(kept, dtype=torch.long),
            "chunk_start": torch.tensor(starts, dtype=torch.long),
            "frame_lengths": torch.tensor(lengths, dtype=torch.long),
            "motion": torch.from_numpy(motion),
            "hands_present": torch.tensor([list(row["hands_present"]) for row in rows], dtype=torch.bool),
            "labelled": torch.tensor([bool(row["labelled"]) for row in rows], dtype=torch.bool),
            "label_confidence": torch.tensor([float(row["label_confidence"]) for row in rows], dtype=torch.float32),
            "camera_intrinsics": torch.from_numpy(intrinsics),
        }
        if boundary_frames is not None:
            batch["boundary_frames"] = torch.from_numpy(boundary_frames)
        if ssl is not None:
            batch["ssl_features"] = torch.from_numpy(ssl)
        if tokens is not None:
            batch["motion_tokens"] = torch.from_numpy(tokens)
        return batch
