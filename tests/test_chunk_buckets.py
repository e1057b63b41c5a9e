"""Length bucketing (`ChunkCountBuckets`, `--group_by_chunks`): every batch-sized run of rows shares one kept-chunk
count, no row is lost or repeated, and the padding it saves is measured on known counts."""

from __future__ import annotations

import numpy as np
import pytest

from dataset_scripts.schema import CHUNK_FRAMES
from trainers.chunk_buckets import ChunkCountBuckets, kept_chunks, padded_chunk_share


def _rows(chunk_counts: list[int]) -> list[dict]:
    # A clip of n chunks ends inside its n-th chunk (a partial last chunk still counts).
    return [{"id": f"clip{index}", "num_frames": CHUNK_FRAMES * n - 3} for index, n in enumerate(chunk_counts)]


class _RankedRows(list):
    rank, world_size = 1, 2


def test_batch_sized_runs_share_one_count_and_no_row_is_lost() -> None:
    counts = np.random.default_rng(0).integers(1, 11, size=203).tolist()
    rows = _RankedRows(_rows(counts))
    buckets = ChunkCountBuckets(rows, batch_size=8, max_chunks=4)
    out = list(buckets)
    assert sorted(row["id"] for row in out) == sorted(row["id"] for row in rows)  # delayed, never dropped
    emitted = [kept_chunks(row, 4) for row in out]
    kept = [min(count, 4) for count in counts]
    remainder = sum(kept.count(count) % 8 for count in set(kept))  # what is left in partly filled buckets
    full = emitted[: len(emitted) - remainder]
    assert len(full) % 8 == 0 and len(full) > 150
    assert all(len(set(full[start : start + 8])) == 1 for start in range(0, len(full), 8))
    assert emitted[len(full) :] == sorted(emitted[len(full) :])  # the remainder, shortest first
    assert (buckets.rank, buckets.world_size) == (1, 2)  # the Trainer's rank-aware loader still recognises it
    # Counts above max_chunks are cropped to it, so they share the max_chunks bucket.
    assert kept_chunks(_rows([9])[0], 4) == 4 and kept_chunks(_rows([9])[0], None) == 9


def test_each_bucket_leaves_as_soon_as_it_is_full() -> None:
    counts = [1, 4, 4, 2, 4, 1, 4, 2, 1, 2, 2, 1]  # four clips each of 1, 2 and 4 chunks
    out = [kept_chunks(row, 4) for row in ChunkCountBuckets(_rows(counts), batch_size=4, max_chunks=4)]
    assert out == [4, 4, 4, 4, 2, 2, 2, 2, 1, 1, 1, 1]


def test_padded_share_on_known_counts_and_bucketing_removes_it() -> None:
    rows = _rows([1, 4, 1, 4])
    # Batches of 2 in stream order: [1, 4] twice, each padded to 2 x 4 slots -> 10 chunks in 16 slots.
    assert padded_chunk_share(rows, batch_size=2, max_chunks=4) == pytest.approx(1 - 10 / 16)
    bucketed = list(ChunkCountBuckets(rows, batch_size=2, max_chunks=4))
    assert padded_chunk_share(bucketed, batch_size=2, max_chunks=4) == 0.0


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        ChunkCountBuckets([], batch_size=0, max_chunks=4)
