"""Token statistics of the training motion, for initialising a new JALA model's output heads at the code prior.

`JalaForMotionPretraining.init_token_priors` sets each codebook head's bias to the log frequency of its codes; this
module reads the training split's labelled motion and tokenizes it with the model's frozen motion tokenizer.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from tqdm.auto import tqdm

from dataset_scripts.collator import UniHandCollator
from dataset_scripts.streaming import UniHandStream

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
    stream = UniHandStream(repos, split="train", infinite=False, shuffle=False, rank=0, world_size=1, columns=None)
    collator = UniHandCollator(image_size=(32, 32), max_chunks=max_chunks, boundary="none")
    rows, chunks = [], []

    def flush() -> None:
        if not rows:
            return
        batch = collator(rows)
        encoding = tokenizer.encode(batch["motion"], lengths=batch["frame_lengths"], hand_mask=batch["hands_present"])
        chunks.append(encoding.ids[encoding.chunk_mask])
        rows.clear()

    seen = 0
    for row in tqdm(stream, desc="token prior", unit="clip", leave=False):
        if not (row["labelled"] and row["motion"] is not None):
            continue
        rows.append(row)
        seen += 1
        if len(rows) == batch_size:
            flush()
        if seen >= max_clips:
            break
    flush()
    if not chunks:
        raise ValueError(
            f"{[str(repo) for repo in repos]} has no labelled training clips to estimate a code prior from."
        )
    logger.info("code prior from %d labelled clips", seen)
    return torch.cat(chunks)
