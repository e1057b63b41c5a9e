"""Length bucketing for pretraining: batches whose clips all keep the same number of chunks.

The collator pads every clip of a batch to the batch's largest chunk count, and each chunk is 2 x (K + 2) sequence
positions, so one long clip among short ones makes the whole batch pay for its chunks. `ChunkCountBuckets` reorders
a row stream so that every run of `batch_size` consecutive rows shares one kept-chunk count (the count the collator
keeps: all chunks up to `max_chunks`); the per-rank DataLoader cuts the stream at exactly those runs. Rows are
delayed, never dropped or repeated: each waits in its count's bucket until the bucket fills, and a finite stream
ends with the partly filled buckets. At most `batch_size` rows per distinct count are held.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from torch.utils.data import IterableDataset

from dataset_scripts.collator import kept_chunk_count


def kept_chunks(row: Mapping[str, Any], max_chunks: int | None) -> int:
    """The number of chunks the collator keeps of this row: all of them, up to `max_chunks`."""
    return kept_chunk_count(int(row["num_frames"]), max_chunks)


class ChunkCountBuckets(IterableDataset):
    """`rows` regrouped into runs of `batch_size` rows with one kept-chunk count (see the module docstring)."""

    def __init__(self, rows: Iterable[Mapping[str, Any]], batch_size: int, max_chunks: int | None) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.rows, self.batch_size, self.max_chunks = rows, batch_size, max_chunks
        # A stream that splits itself per rank stays recognisable to the Trainer's rank-aware loader.
        self.rank, self.world_size = getattr(rows, "rank", 0), getattr(rows, "world_size", 1)

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        buckets: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
        for row in self.rows:
            bucket = buckets[kept_chunks(row, self.max_chunks)]
            bucket.append(row)
            if len(bucket) == self.batch_size:
                yield from bucket
                bucket.clear()
        for count in sorted(buckets):  # a finite stream's remainder, shortest clips first
            yield from buckets[count]


def padded_chunk_share(rows: Iterable[Mapping[str, Any]], batch_size: int, max_chunks: int | None) -> float:
    """The share of chunk slots that are padding when `rows` are cut into consecutive batches of `batch_size` (each
    clip padded to its batch's largest kept-chunk count): what `ChunkCountBuckets` saves."""
    counts = [kept_chunks(row, max_chunks) for row in rows]
    batches = [counts[start : start + batch_size] for start in range(0, len(counts), batch_size)]
    slots = sum(len(batch) * max(batch) for batch in batches)
    return 1.0 - sum(counts) / slots if slots else 0.0
