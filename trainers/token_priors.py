"""Token statistics of the training motion, for initialising a new JALA model's output heads at the code prior.

`JalaForMotionPretraining.init_token_priors` sets each codebook head's bias to the log frequency of its codes; this
module reads the training split's labelled motion and tokenizes it with the model's frozen motion tokenizer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from dataset_scripts.collator import UniHandCollator
from trainers.motion_baselines import labelled_rows

logger = logging.getLogger(__name__)


@torch.no_grad()
def training_token_ids(
    tokenizer: torch.nn.Module,
    repos: list[str | Path],
    max_clips: int = 2000,
    max_chunks: int = 4,
    batch_size: int = 32,
) -> torch.Tensor:
    """(M, K) token ids of up to `max_clips` labelled training clips (all their chunks and hands present).

    Reads the whole split on every rank (no per-rank sharding), so every process computes the same prior.
    """
    rows = labelled_rows(repos, "train", max_clips)
    if not rows:
        raise ValueError(
            f"{[str(repo) for repo in repos]} has no labelled training clips to estimate a code prior from."
        )
    chunks = [
        encoding.ids[encoding.chunk_mask] for encoding in encoded_batches(tokenizer, rows, max_chunks, batch_size)
    ]
    logger.info("code prior from %d labelled clips", len(rows))
    return torch.cat(chunks)


@torch.no_grad()
def encoded_batches(
    tokenizer: torch.nn.Module, rows: list[dict[str, Any]], max_chunks: int = 4, batch_size: int = 32
) -> Iterator[Any]:
    """The frozen tokenizer's encodings (ids (B, 2, N, K), chunk_mask (B, 2, N)) of labelled `rows`, a batch at a
    time, padded and chunked by the dataset collator (no frames decoded)."""
    collator = UniHandCollator(image_size=(32, 32), max_chunks=max_chunks, boundary="none")
    for start in tqdm(range(0, len(rows), batch_size), desc="tokenizing motion", unit="batch", leave=False):
        batch = collator(rows[start : start + batch_size])
        yield tokenizer.encode(batch["motion"], lengths=batch["frame_lengths"], hand_mask=batch["hands_present"])
