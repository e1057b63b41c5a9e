"""Weighted, shuffled, distributed, exactly resumable streaming of UniHand-Mix repos for training.

Why this is not just `datasets.interleave_datasets(...).shuffle(...)`: measured on datasets 5.2, an
`IterableDataset`'s `state_dict()` resumes `interleave_datasets(probabilities=...)` exactly (it saves the mixing
generator and each parquet shard's row offset), but `.shuffle(buffer_size=...)` saves no buffer content: after
`load_state_dict` the buffer is refilled from the resume point and its generator restarts from the seed, so the
resumed run repeats and skips rows (6 duplicates in 300 samples in our check). Pretraining runs for days and is
preempted; a resume that silently changes the data order breaks reproducibility and skews the lab/wild mixture.
`UniHandStream` is therefore a small deterministic mixture of its own:

* **Components**: one per (repo, domain, source) present in the split. Sampling weights are per domain (the
  lab/wild ratio) and per source within a domain; without weights, shares follow row counts.
* **Reads**: pyarrow row groups (the builder keeps them <= 128 rows), only the columns asked for; images stay
  encoded (the collator decodes and resizes them, cheaply, with JPEG draft mode).
* **Shuffling**: each epoch permutes shard order and row-group order (seeded by seed, component, epoch), then a
  per-component shuffle buffer picks rows at random. The buffer holds *addresses* (epoch, row group, row), so the
  state is a few KB whatever the rows weigh, and resuming re-reads exactly the buffered rows.
* **Mixing**: a seeded generator draws the component of every sample.
* **Distributed**: `rank` / `world_size` (from `torch.distributed` when initialised) split each component's row
  groups round-robin, or its rows when it has fewer row groups than ranks, like `split_dataset_by_node` does
  with shards / examples. DataLoader workers split further the same way.
* **Resume**: `state_dict()` after k samples, then `load_state_dict()` on a fresh stream built with the same
  arguments, yields exactly the samples k, k+1, ... of the uninterrupted run. Exact with `num_workers=0`; with
  workers, each worker has its own state, which only a stateful loader (torchdata's `StatefulDataLoader`) saves.

With `accelerate` (and `transformers.Trainer`, which calls it): do not hand a DataLoader over this stream to
`accelerator.prepare`. For a torch `IterableDataset` it either dispatches rank 0's batches to every process (the
other ranks' parts would never be read) or wraps it in `IterableDatasetShard`, which keeps every n-th batch of an
already split stream. Keep the loader unprepared and move batches to the device yourself, or build the stream with
`rank=0, world_size=1` and accept that accelerate then reads everything on every process.

`hf_streaming_mixture` builds the plain-`datasets` equivalent (interleave + shuffle + `split_dataset_by_node`) for
code that wants a `datasets.IterableDataset`, with the resume caveat above.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from dataset_scripts.repo_layout import DATA_DIR, SPLIT_DOMAINS, SPLITS, shard_files

logger = logging.getLogger(__name__)

STATE_VERSION = 1
#: Keys the stream adds to every row (the collator uses `__index__` to seed per-sample crops).
META_KEYS = ("__index__", "__component__", "__epoch__")


# ------------------------------------------------------------------------------------------------------------
# Arrow -> rows
# ------------------------------------------------------------------------------------------------------------


def read_features(path: str | os.PathLike) -> datasets.Features:
    """The `datasets` features embedded in a shard's parquet schema."""
    return datasets.Features.from_arrow_schema(pq.read_schema(path))


def _array_column(array: pa.Array, inner_shape: tuple[int, ...]) -> list[np.ndarray | None]:
    """An Array2D/3D column with a dynamic first dimension -> one numpy array (or None) per row.

    `datasets` stores these as nested lists; walking the offsets directly is ~100x faster than `to_pylist()`.
    """
    storage = array.storage if isinstance(array, pa.ExtensionArray) else array
    offsets = storage.offsets.to_numpy()
    values = storage.values
    for _ in inner_shape:
        offsets = values.offsets.to_numpy()[offsets]
        values = values.values
    # One copy per row group: rows become writable (torch.from_numpy, default_collate) and stay views of it.
    leaves = values.to_numpy(zero_copy_only=False).copy()
    valid = storage.is_valid().to_numpy(zero_copy_only=False)
    return [
        leaves[start:end].reshape(-1, *inner_shape) if ok else None
        for start, end, ok in zip(offsets[:-1], offsets[1:], valid, strict=True)
    ]


def _regular_inner_shape(array: pa.Array, rank: int) -> tuple[int, ...] | None:
    """The inner shape of a column of `rank`-deep nested numeric lists whose inner lists all have one length per
    level (e.g. `motion`: every frame is (2, 162)), or None when they do not (then it is read as Python lists)."""
    offsets = array.offsets.to_numpy()
    values, shape = array.values, []
    for _ in range(rank - 1):
        if not pa.types.is_list(values.type):
            return None
        used = values.offsets.to_numpy()[offsets[0] : offsets[-1] + 1]
        lengths = np.unique(np.diff(used))
        if len(lengths) != 1:
            return None
        shape.append(int(lengths[0]))
        offsets, values = used, values.values
    return tuple(shape)


def _list_rank(feature: Any) -> int:
    """How many `datasets.List` levels wrap a numeric `Value` (0 for anything else)."""
    rank = 0
    while isinstance(feature, datasets.List):
        feature, rank = feature.feature, rank + 1
    numeric = isinstance(feature, datasets.Value) and feature.dtype not in ("string", "large_string", "binary")
    return rank if numeric else 0


def table_to_rows(table: pa.Table, features: datasets.Features | None = None) -> list[dict[str, Any]]:
    """Rows of a UniHand-Mix table as dicts: arrays as numpy, images as `{"bytes", "path"}` (still encoded).

    Array columns come back as numpy whether the shard declares them as `Array3D` (builds before nested-list
    metadata) or as nested lists (`motion` now); a null row stays None."""
    features = features or datasets.Features.from_arrow_schema(table.schema)
    columns: dict[str, list[Any]] = {}
    for name in table.column_names:
        chunked = table.column(name)
        array = chunked.combine_chunks() if chunked.num_chunks != 1 else chunked.chunk(0)
        feature = features.get(name)
        rank = _list_rank(feature)
        inner_shape = _regular_inner_shape(array, rank) if rank >= 2 and len(array) else None
        if isinstance(feature, datasets.Array2D | datasets.Array3D | datasets.Array4D | datasets.Array5D):
            columns[name] = _array_column(array, tuple(feature.shape[1:]))
        elif inner_shape is not None:
            columns[name] = _array_column(array, inner_shape)
        else:
            columns[name] = array.to_pylist()
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]


# ------------------------------------------------------------------------------------------------------------
# Components
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Unit:
    """The rows of one row group that belong to one component."""

    file: int
    row_group: int
    rows: tuple[int, ...]


@dataclass
class StreamComponent:
    """Rows of one (repo, domain, source) in one split; `probability` is its share of the mixture."""

    repo: str
    domain: str
    source: str
    files: list[str]
    units: list[_Unit]
    num_rows: int
    probability: float = 0.0
    features: datasets.Features | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{Path(self.repo).name}/{self.domain}/{self.source}"


def _scan_components(repo: str, split: str, domains: Sequence[str]) -> list[StreamComponent]:
    """Find a repo's shards for `split` and group their rows by source (reads only the `source` column)."""
    components: dict[tuple[str, str], StreamComponent] = {}
    for domain in domains:
        files = [str(path) for path in shard_files(repo, domain, split)]
        for file_index, path in enumerate(files):
            parquet = pq.ParquetFile(path)
            sources = pq.read_table(path, columns=["source"]).column("source").to_numpy(zero_copy_only=False)
            start = 0
            for group in range(parquet.metadata.num_row_groups):
                size = parquet.metadata.row_group(group).num_rows
                group_sources = sources[start : start + size]
                for source in sorted(set(group_sources)):
                    key = (domain, str(source))
                    if key not in components:
                        components[key] = StreamComponent(
                            repo, domain, str(source), files, [], 0, features=read_features(path)
                        )
                    rows = tuple(int(i) for i in np.flatnonzero(group_sources == source))
                    components[key].units.append(_Unit(file_index, group, rows))
                    components[key].num_rows += len(rows)
                start += size
    return list(components.values())


def _node_units(units: Sequence[_Unit], node: int, num_nodes: int) -> list[_Unit]:
    """This node's part: row groups round-robin, or rows round-robin when there are fewer groups than nodes."""
    if num_nodes == 1:
        return list(units)
    if len(units) >= num_nodes:
        return list(units[node::num_nodes])
    kept, ordinal = [], 0
    for unit in units:
        rows = tuple(row for offset, row in enumerate(unit.rows) if (ordinal + offset) % num_nodes == node)
        ordinal += len(unit.rows)
        if rows:
            kept.append(_Unit(unit.file, unit.row_group, rows))
    return kept


def _mixture_probabilities(
    components: Sequence[StreamComponent],
    domain_weights: Mapping[str, float] | None,
    source_weights: Mapping[str, float] | None,
) -> list[float]:
    """Domain share from `domain_weights` (else row counts); inside a domain, source share from `source_weights`
    (else row counts); a source spread over several repos is split between them by row counts."""
    domains = sorted({c.domain for c in components})
    rows_by_domain = {d: sum(c.num_rows for c in components if c.domain == d) for d in domains}
    if domain_weights is None:
        domain_share = {d: rows_by_domain[d] for d in domains}
    else:
        missing = [d for d in domains if d not in domain_weights]
        if missing:
            raise ValueError(f"domain_weights has no weight for {missing}; give one per domain in the split.")
        unknown = [d for d in domain_weights if d not in domains and domain_weights[d] > 0]
        if unknown:
            raise ValueError(f"domain_weights names {unknown}, absent from the split (present: {domains}).")
        domain_share = {d: float(domain_weights[d]) for d in domains}
    total = sum(domain_share.values())
    if total <= 0 or any(w < 0 for w in domain_share.values()):
        raise ValueError(f"domain weights must be >= 0 with a positive sum, got {domain_share}.")
    probabilities = []
    for component in components:
        in_domain = [c for c in components if c.domain == component.domain]
        if source_weights is None:
            share = component.num_rows / rows_by_domain[component.domain]
        else:
            sources = sorted({c.source for c in in_domain})
            missing = [s for s in sources if s not in source_weights]
            if missing:
                raise ValueError(
                    f"source_weights has no weight for {missing} (domain {component.domain}); give one per source."
                )
            source_total = sum(float(source_weights[s]) for s in sources)
            same_source_rows = sum(c.num_rows for c in in_domain if c.source == component.source)
            share = float(source_weights[component.source]) / source_total * component.num_rows / same_source_rows
        probabilities.append(domain_share[component.domain] / total * share)
    return probabilities


# ------------------------------------------------------------------------------------------------------------
# Per-component reader
# ------------------------------------------------------------------------------------------------------------


class _ParquetCache:
    """A few open parquet files (opening parses the footer; row groups are read many times per file)."""

    def __init__(self, capacity: int = 32) -> None:
        self.capacity = capacity
        self._files: OrderedDict[str, pq.ParquetFile] = OrderedDict()

    def read(self, path: str, row_group: int, columns: Sequence[str] | None) -> pa.Table:
        parquet = self._files.pop(path, None) or pq.ParquetFile(path)
        self._files[path] = parquet
        while len(self._files) > self.capacity:
            self._files.popitem(last=False)
        return parquet.read_row_group(row_group, columns=list(columns) if columns else None, use_threads=False)


class _ComponentReader:
    """One component's infinite (or single-pass) shuffled row stream; all of its position lives in `state`."""

    def __init__(
        self,
        component: StreamComponent,
        units: list[_Unit],
        index: int,
        stream: UniHandStream,
        state: dict[str, Any] | None,
    ) -> None:
        self.component, self.units, self.index, self.stream = component, units, index, stream
        total_rows = sum(len(unit.rows) for unit in units)
        self.buffer_size = max(1, min(stream.shuffle_buffer_size, total_rows))
        self.rng = np.random.Generator(np.random.PCG64([stream.seed, index, 7]))
        self.epoch, self.cursor, self.row, self.done = 0, 0, 0, total_rows == 0
        self.buffer: list[tuple[int, int, int]] = []  # (epoch, unit, row position) addresses
        self._rows: dict[tuple[int, int, int], dict[str, Any]] = {}
        self._order_epoch, self._order = -1, []
        self._unit_rows: tuple[int, int, list[dict[str, Any]]] | None = None  # (epoch, unit, rows)
        if state is not None:
            self.epoch, self.cursor, self.row, self.done = state["epoch"], state["cursor"], state["row"], state["done"]
            self.rng.bit_generator.state = state["rng"]
            self.buffer = [tuple(address) for address in state["buffer"]]  # type: ignore[misc]
            self._materialize(self.buffer)

    def state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "cursor": self.cursor,
            "row": self.row,
            "done": self.done,
            "rng": copy.deepcopy(self.rng.bit_generator.state),
            "buffer": [list(address) for address in self.buffer],
        }

    def _epoch_order(self, epoch: int) -> list[int]:
        """Unit indices for an epoch: shards permuted, then row groups permuted inside each shard."""
        if self._order_epoch != epoch:
            by_file: dict[int, list[int]] = {}
            for position, unit in enumerate(self.units):
                by_file.setdefault(unit.file, []).append(position)
            files = sorted(by_file)
            if self.stream.shuffle:
                rng = np.random.default_rng([self.stream.seed, self.index, epoch, 11])
                files = [files[i] for i in rng.permutation(len(files))]
                by_file = {f: [units[i] for i in rng.permutation(len(units))] for f, units in by_file.items()}
            self._order_epoch, self._order = epoch, [u for f in files for u in by_file[f]]
        return self._order

    def _read_unit(self, unit_index: int) -> list[dict[str, Any]]:
        unit = self.units[unit_index]
        table = self.stream._parquet.read(self.component.files[unit.file], unit.row_group, self.stream._columns)
        if len(unit.rows) != table.num_rows:
            table = table.take(pa.array(unit.rows))
        return table_to_rows(table, self.component.features)

    def _materialize(self, addresses: Sequence[tuple[int, int, int]]) -> None:
        """Re-read the rows of restored buffer addresses, one row-group read per unit."""
        by_unit: dict[int, list[tuple[int, int, int]]] = {}
        for address in addresses:
            by_unit.setdefault(address[1], []).append(address)
        for unit_index, unit_addresses in by_unit.items():
            rows = self._read_unit(unit_index)
            for address in unit_addresses:
                self._rows[address] = rows[address[2]]

    def _next_address(self) -> tuple[int, int, int] | None:
        while True:
            order = self._epoch_order(self.epoch)
            if self.cursor >= len(order):
                if not self.stream.infinite:
                    self.done = True
                    return None
                self.epoch, self.cursor, self.row = self.epoch + 1, 0, 0
                continue
            unit_index = order[self.cursor]
            if self.row < len(self.units[unit_index].rows):
                address = (self.epoch, unit_index, self.row)
                if self._unit_rows is None or self._unit_rows[:2] != (self.epoch, unit_index):
                    self._unit_rows = (self.epoch, unit_index, self._read_unit(unit_index))
                self._rows[address] = self._unit_rows[2][self.row]
                self.row += 1
                return address
            self.cursor, self.row = self.cursor + 1, 0

    def next(self) -> tuple[dict[str, Any], int] | None:
        """The next shuffled row and its epoch, or None once a single-pass stream is exhausted."""
        while len(self.buffer) < self.buffer_size and not self.done:
            address = self._next_address()
            if address is None:
                break
            self.buffer.append(address)
        if not self.buffer:
            return None
        pick = int(self.rng.integers(len(self.buffer)))
        address = self.buffer[pick]
        self.buffer[pick] = self.buffer[-1]
        self.buffer.pop()
        return self._rows.pop(address), address[0]

    @property
    def exhausted(self) -> bool:
        return self.done and not self.buffer


# ------------------------------------------------------------------------------------------------------------
# The stream
# ------------------------------------------------------------------------------------------------------------


def _distributed_defaults(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return rank, world_size
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class UniHandStream(torch.utils.data.IterableDataset):
    """A weighted mixture of UniHand-Mix repos, shuffled, split per rank, exactly resumable.

    Args:
        repos: one or more repo directories written by `dataset_scripts.builder`.
        split: `train`, `test_lab` or `test_wild`.
        domain_weights: e.g. `{"lab": 0.7, "wild": 0.3}`; None weights domains by row count.
        source_weights: e.g. `{"synthetic": 1.0, "video": 1.0}`, the share of each source inside its domain;
            None weights sources by row count.
        domains: restrict to these domains (default: all in the split).
        shuffle_buffer_size: rows per component buffer (1 = no row shuffling). Memory is about this many rows
            per component, plus one row group.
        shuffle: also permute shards and row groups every epoch.
        infinite: cycle every component forever (training); False = one pass over every row, components dropped
            as they run out (evaluation).
        columns: columns to read (default all); e.g. leave out `boundary_frames` when training on `ssl_features`.
        rank / world_size: this process's part of the data; default from `torch.distributed` or RANK/WORLD_SIZE.
        seed: seeds shard order, buffers and mixing.

    Yields rows as dicts (arrays as numpy, images still encoded) plus `__index__` (the sample's position in this
    node's stream), `__component__` and `__epoch__`.
    """

    def __init__(
        self,
        repos: str | os.PathLike | Sequence[str | os.PathLike],
        split: str = "train",
        domain_weights: Mapping[str, float] | None = None,
        source_weights: Mapping[str, float] | None = None,
        domains: Sequence[str] | None = None,
        shuffle_buffer_size: int = 1000,
        shuffle: bool = True,
        infinite: bool = True,
        columns: Sequence[str] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
        repo_list = [repos] if isinstance(repos, str | os.PathLike) else list(repos)
        if not repo_list:
            raise ValueError("give at least one repo directory.")
        self.repos = [str(Path(repo)) for repo in repo_list]
        self.split, self.seed = split, seed
        self.shuffle_buffer_size, self.shuffle, self.infinite = shuffle_buffer_size, shuffle, infinite
        self.rank, self.world_size = _distributed_defaults(rank, world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must be in [0, world_size={self.world_size}), got {self.rank}.")
        wanted = list(domains) if domains is not None else list(SPLIT_DOMAINS[split])
        self.components: list[StreamComponent] = []
        for repo in self.repos:
            if not Path(repo, DATA_DIR).is_dir():
                raise FileNotFoundError(
                    f"{repo} has no {DATA_DIR}/ folder; build it with `python -m dataset_scripts build`."
                )
            self.components.extend(_scan_components(repo, split, wanted))
        if not self.components:
            raise ValueError(f"no {split} shards for domains {wanted} in {self.repos}.")
        probabilities = _mixture_probabilities(self.components, domain_weights, source_weights)
        for component, probability in zip(self.components, probabilities, strict=True):
            component.probability = probability
        self._check_features(columns)
        self._columns = list(columns) if columns is not None else None
        self._parquet = _ParquetCache()
        self._start_state: dict[str, Any] | None = None
        self._live: _Iteration | None = None
        logger.info(
            "UniHandStream %s rank %d/%d: %s",
            split,
            self.rank,
            self.world_size,
            ", ".join(f"{c.name} {c.num_rows} rows p={c.probability:.3f}" for c in self.components),
        )

    def _check_features(self, columns: Sequence[str] | None) -> None:
        reference = self.components[0]
        for component in self.components[1:]:
            mine, theirs = set(reference.features), set(component.features)
            if columns is not None:
                mine, theirs = mine & set(columns), theirs & set(columns)
            if mine != theirs:
                raise ValueError(
                    f"{component.name} has columns {sorted(theirs ^ mine)} that {reference.name} lacks (or the other "
                    "way round); pass columns=[...] common to all repos."
                )
        missing = [name for name in columns or () if name not in reference.features]
        if missing:
            raise ValueError(f"columns {missing} are not in the dataset; available: {sorted(reference.features)}.")

    @functools.cached_property
    def features(self) -> datasets.Features:
        features = self.components[0].features
        return datasets.Features({k: v for k, v in features.items() if self._columns is None or k in self._columns})

    @property
    def probabilities(self) -> dict[str, float]:
        return {component.name: component.probability for component in self.components}

    def _node(self) -> tuple[int, int, int, int]:
        """(rank, world_size, worker, num_workers): ranks split the data first, a rank's workers split its part."""
        info = torch.utils.data.get_worker_info()
        worker, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        return self.rank, self.world_size, worker, num_workers

    def _fingerprint(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "seed": self.seed,
            "shuffle_buffer_size": self.shuffle_buffer_size,
            "shuffle": self.shuffle,
            "infinite": self.infinite,
            "node": list(self._node()),
            "components": [[c.name, c.num_rows, round(c.probability, 9)] for c in self.components],
        }

    def __iter__(self) -> Iterator[dict[str, Any]]:
        iteration = _Iteration(self, self._start_state)
        self._live = iteration
        return iteration.rows()

    def state_dict(self) -> dict[str, Any]:
        """Position after the last sample yielded (or the loaded / initial state before iterating)."""
        if self._live is not None:
            return self._live.state()
        if self._start_state is not None:
            return copy.deepcopy(self._start_state)
        return _Iteration(self, None).state()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """The next `iter()` continues from `state`, which must come from a stream built with the same arguments."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"state version {state.get('version')} is not {STATE_VERSION}; it is from another release."
            )
        expected = self._fingerprint()
        for key, value in expected.items():
            if state["fingerprint"].get(key) != value:
                raise ValueError(
                    f"cannot resume: the state was saved with {key}={state['fingerprint'].get(key)!r}, this stream "
                    f"has {value!r}. Build the stream with the same repos, split, weights, seed and world size."
                )
        self._start_state = copy.deepcopy(dict(state))
        self._live = None


class _Iteration:
    """One pass of `iter(stream)`: the component readers and the mixing generator."""

    def __init__(self, stream: UniHandStream, state: Mapping[str, Any] | None) -> None:
        self.stream = stream
        self.fingerprint = stream._fingerprint()
        rank, world_size, worker, num_workers = stream._node()
        self.mix_rng = np.random.Generator(np.random.PCG64([stream.seed, 3]))
        self.samples = 0
        component_states: Sequence[Any] = [None] * len(stream.components)
        if state is not None:
            self.mix_rng.bit_generator.state = state["mix_rng"]
            self.samples = state["samples"]
            component_states = state["components"]
        self.readers = [
            _ComponentReader(
                component,
                _node_units(_node_units(component.units, rank, world_size), worker, num_workers),
                index,
                stream,
                sub_state,
            )
            for index, (component, sub_state) in enumerate(zip(stream.components, component_states, strict=True))
        ]
        self.probabilities = np.array([component.probability for component in stream.components])

    def state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "fingerprint": self.fingerprint,
            "samples": self.samples,
            "mix_rng": copy.deepcopy(self.mix_rng.bit_generator.state),
            "components": [reader.state() for reader in self.readers],
        }

    def rows(self) -> Iterator[dict[str, Any]]:
        while True:
            active = np.array([not reader.exhausted for reader in self.readers]) & (self.probabilities > 0)
            if not active.any():
                return
            weights = np.where(active, self.probabilities, 0.0)
            cumulative = np.cumsum(weights / weights.sum())
            choice = min(int(np.searchsorted(cumulative, self.mix_rng.random(), side="right")), len(weights) - 1)
            result = self.readers[choice].next()
            if result is None:
                continue
            row, epoch = result
            row["__index__"] = self.samples
            row["__component__"] = self.stream.components[choice].name
            row["__epoch__"] = epoch
            self.samples += 1
            yield row


# ------------------------------------------------------------------------------------------------------------
# The plain-datasets path
# ------------------------------------------------------------------------------------------------------------


def hf_streaming_mixture(
    repos: str | os.PathLike | Sequence[str | os.PathLike],
    split: str = "train",
    domain_weights: Mapping[str, float] | None = None,
    shuffle_buffer_size: int = 1000,
    seed: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
) -> datasets.IterableDataset:
    """`load_dataset(repo, domain, streaming=True)` per repo and domain -> `interleave_datasets(probabilities)`
    -> `.shuffle(buffer_size)` -> `datasets.distributed.split_dataset_by_node`.

    For tools that want a `datasets.IterableDataset`. Its `state_dict()` does not save the shuffle buffer (see
    the module docstring): use `UniHandStream` where resume must be exact. Without `domain_weights` domains are
    weighted by row counts. Per-source weights are not offered here (they need a filter per source).
    """
    from datasets.distributed import split_dataset_by_node

    rank, world_size = _distributed_defaults(rank, world_size)
    repo_list = [repos] if isinstance(repos, str | os.PathLike) else list(repos)
    parts, counts, names = [], [], []
    for repo in repo_list:
        for domain in SPLIT_DOMAINS[split]:
            files = shard_files(repo, domain, split)
            if not files:
                continue
            parts.append(datasets.load_dataset(str(repo), domain, split=split, streaming=True))
            counts.append(sum(pq.ParquetFile(f).metadata.num_rows for f in files))
            names.append(domain)
    if not parts:
        raise ValueError(f"no {split} shards in {repo_list}.")
    if domain_weights is None:
        probabilities = [c / sum(counts) for c in counts]
    else:
        domain_rows = {d: sum(c for c, n in zip(counts, names, strict=True) if n == d) for d in set(names)}
        raw = [domain_weights[n] * c / domain_rows[n] for c, n in zip(counts, names, strict=True)]
        probabilities = [w / sum(raw) for w in raw]
    mixed = (
        parts[0]
        if len(parts) == 1
        else datasets.interleave_datasets(
            parts, probabilities=probabilities, seed=seed, stopping_strategy="all_exhausted"
        )
    )
    if shuffle_buffer_size > 1:
        mixed = mixed.shuffle(seed=seed, buffer_size=shuffle_buffer_size)
    return split_dataset_by_node(mixed, rank=rank, world_size=world_size)
