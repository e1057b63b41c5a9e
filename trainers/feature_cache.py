"""Frozen per-frame features of a robot dataset, computed once and reused by every post-training step.

What post-training never changes need not be recomputed every step: the SSL encoder's features of the primary
camera (always frozen) and, when the VLM's vision tower is frozen (a released VLM, the paper's setting), the vision
tower's output of every camera — the input of the trainable projector, captured with a forward pre-hook on it, so
any InternVL / LLaVA-style `get_image_features` works unchanged. Features are stored as safetensors under a key
that fingerprints everything they depend on: the dataset's files (paths, sizes, modification times, and the bytes
of its metadata), the frozen modules' weights, the preprocessing and the cameras. A changed dataset or encoder
gives a new key, so a stale cache is never read (docs/design.md §1.11).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

SSL_FEATURES = "ssl_features"
IMAGE_FEATURES = "image_features"


def default_cache_dir() -> Path:
    """`$HF_HOME/jala/feature_cache` (the Hugging Face cache's home, ~/.cache/huggingface by default)."""
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"
    return Path(home) / "jala" / "feature_cache"


def dataset_fingerprint(root: str | Path) -> str:
    """sha256 over the dataset's files: metadata by content, data and videos by (path, size, mtime)."""
    root = Path(root)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        digest.update(relative.encode())
        if relative.startswith("meta/"):
            digest.update(path.read_bytes())
        else:
            stat = path.stat()
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def module_fingerprint(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class FrozenFeatureCache:
    """Per-frame frozen features of an `ActionChunkDataset` (rows = the dataset's global frame indices).

    Args:
        model: the action model (`JalaForActionPrediction`); its SSL encoder, and its vision tower when that is
            frozen (`model.vision_tower_is_trainable` False), are run once over every frame.
        processor: the model's `JalaProcessor` (its preprocessing is part of the key).
        chunks: the post-training view of the dataset (cameras in `chunks.image_keys` order).
        cache_dir: where the safetensors files live (default: `default_cache_dir()`).
        batch_size: frames per encoder call while building.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        chunks: Any,
        cache_dir: str | Path | None = None,
        batch_size: int = 64,
    ) -> None:
        self.image_keys = list(chunks.image_keys)
        self.with_image_features = not model.vision_tower_is_trainable
        self.key = self.cache_key(model, processor, chunks)
        self.path = Path(cache_dir or default_cache_dir()) / f"{self.key}.safetensors"
        if self.path.exists():
            self.tensors = load_file(self.path)
            logger.info("read frozen features from %s", self.path)
        else:
            self.tensors = self._build(model, processor, chunks, batch_size)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_suffix(f".{os.getpid()}.partial")  # concurrent builders never share one
            save_file(self.tensors, partial, metadata={"image_keys": json.dumps(self.image_keys)})
            partial.replace(self.path)  # never leaves a half-written file under the final name
            logger.info("wrote frozen features to %s", self.path)

    def cache_key(self, model: Any, processor: Any, chunks: Any) -> str:
        parts = {
            "dataset": dataset_fingerprint(chunks.dataset.root),
            "image_keys": self.image_keys,
            "ssl_encoder": module_fingerprint(model.model.ssl_encoder),
            "ssl_token_selection": model.config.ssl_token_selection,
            "ssl_pool_grid": model.config.ssl_pool_grid,
            "ssl_image_processor": processor.ssl_image_processor.to_dict(),
            "image_features": self.with_image_features,
        }
        if self.with_image_features:
            parts["vision_tower"] = module_fingerprint(model.model.vlm.vision_tower)
            parts["image_processor"] = processor.image_processor.to_dict()
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]

    @torch.no_grad()
    def _build(self, model: Any, processor: Any, chunks: Any, batch_size: int) -> dict[str, Tensor]:
        dataset = chunks.dataset
        device = model.device
        ssl, image = [], []
        for start in tqdm(range(0, dataset.num_frames, batch_size), desc="frozen features", unit="batch"):
            indices = range(start, min(start + batch_size, dataset.num_frames))
            frames = torch.from_numpy(
                np.stack([[dataset.image(key, index) for key in self.image_keys] for index in indices])
            ).to(device)
            inputs = processor(images=frames, text=[""] * len(indices))
            ssl.append(model.model.ssl_features(inputs["ssl_pixel_values"].to(model.dtype)).cpu())
            if self.with_image_features:
                image.append(projector_inputs(model, inputs["pixel_values"].to(model.dtype)).cpu())
        tensors = {SSL_FEATURES: torch.cat(ssl).contiguous()}
        if self.with_image_features:
            # (frames * cameras, tokens, D) -> (frames, cameras, tokens, D)
            features = torch.cat(image)
            tensors[IMAGE_FEATURES] = features.view(dataset.num_frames, len(self.image_keys), *features.shape[1:])
        return tensors

    def batch_features(self, indices: Tensor | np.ndarray | list[int]) -> dict[str, Tensor]:
        """The cached inputs of the frames `indices` (global frame indices): `ssl_features` (B, P, D) and, for a frozen
        vision tower, `image_features` (B * cameras, tokens, D) in the processor's sample-major camera order."""
        index = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        out = {SSL_FEATURES: self.tensors[SSL_FEATURES][index]}
        if IMAGE_FEATURES in self.tensors:
            out[IMAGE_FEATURES] = self.tensors[IMAGE_FEATURES][index].flatten(0, 1)
        return out


def projector_inputs(model: Any, pixel_values: Tensor) -> Tensor:
    """What the VLM's `get_image_features` feeds its multi-modal projector (the frozen vision tower's part of the
    image embedding), captured with a forward pre-hook so the VLM's own feature selection and pixel shuffle run."""
    captured: list[Tensor] = []

    def keep_input(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        captured.append(args[0].detach())

    handle = model.model.vlm.multi_modal_projector.register_forward_pre_hook(keep_input)
    try:
        model.model.image_embeddings(pixel_values)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise RuntimeError(f"the projector ran {len(captured)} times for one image batch; cannot cache its input.")
    return captured[0]


__all__ = [
    "FrozenFeatureCache",
    "dataset_fingerprint",
    "default_cache_dir",
    "module_fingerprint",
    "projector_inputs",
]
