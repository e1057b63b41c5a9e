"""Frames of UniHand-Mix rows: how they are stored (`encode_image`) and the one way they are decoded
(`decode_image`).

Rows carry a frame in one of the forms `datasets.Image` gives or takes: the storage dict `{"bytes", "path"}`
(shards read with pyarrow / `UniHandStream`, rows from sources), a PIL image (`load_dataset` rows) or an H x W x 3
uint8 array. Every reader (the collator, the card's preview, the SSL-feature hook, row validation, the SSL probe)
decodes through `decode_image`, so the same stored frame gives the same pixels everywhere.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image


def encode_image(image: np.ndarray | Image.Image, quality: int = 90) -> dict[str, Any]:
    """An RGB frame as the `datasets.Image` storage dict (JPEG bytes): 10x smaller than PNG, fine for training."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    buffer = io.BytesIO()
    pil.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return {"bytes": buffer.getvalue(), "path": None}


def open_image(image: Any) -> Image.Image:
    """A stored frame as a PIL image, not decoded yet where it is encoded (opening reads only the header, so the
    stored size is known before `decode_image` picks a draft scale)."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, dict):
        return Image.open(io.BytesIO(image["bytes"])) if image.get("bytes") else Image.open(image["path"])
    if isinstance(image, np.ndarray | list | tuple) or hasattr(image, "__array__"):
        return Image.fromarray(np.asarray(image).astype(np.uint8))
    raise TypeError(f"cannot read an image from {type(image)}; expected a {{'bytes'}} dict, PIL image or array.")


def decode_image(image: Any, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """A stored frame (`{"bytes", "path"}` dict, PIL image or H x W x 3 array) decoded as an RGB PIL image.

    `draft_size` (width, height): the size the decoded image must still cover, for a reader that shrinks it
    anyway. A JPEG not decoded yet is then decoded at the smallest 1/2, 1/4 or 1/8 scale that is >= it (JPEG
    draft mode: DCT-domain downscaling, a fraction of the full decode's cost); other forms decode at full size.
    None decodes at full size. Pass an image from `open_image` to learn the stored size first.
    """
    pil = open_image(image)
    if draft_size is not None and pil.format == "JPEG":
        pil.draft("RGB", draft_size)
    return pil.convert("RGB")


__all__ = ["decode_image", "encode_image", "open_image"]
