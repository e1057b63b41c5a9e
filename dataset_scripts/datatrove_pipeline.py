"""The UniHand-Mix builder as a datatrove pipeline: the same repo, built by many tasks on one machine or a cluster.

Why: `dataset_scripts.builder` runs every source in one process (plus the synthetic source's own render workers),
and the paper's corpus is millions of clips. datatrove (https://github.com/huggingface/datatrove) runs a pipeline
as numbered tasks (rank 0 .. world_size - 1) on a local process pool, a Slurm job array or a Ray cluster, and
writes an empty marker `completions/{rank:05d}` into its `logging_dir` when a task finishes; a rerun of the same
pipeline skips every marked task. So a stopped build resumes without redoing finished work.

Three stages, chained with datatrove's `depends` (each has its own logging_dir under the work folder):

1. `StageRowsStep`, one task per slice of input: a range of clips of a splittable source (`ClipSource.num_units`;
   clip i of the synthetic source depends only on (seed, domain, split, i), docs/design.md §4), or a whole source
   otherwise. It makes the rows, validates them with the builder's `RowValidator`, runs the optional hooks, and
   stages them per (domain, split) as parquet already encoded with the build's features. This is where the time
   goes (rendering, decoding, tracking, encoders), and it parallelises over tasks.
2. `MergeShardsStep`, one task per (domain, split): reads the staged rows in source order, drops ids an earlier
   task already wrote (the builder's duplicate rule, across tasks), and deals them into the builder's
   `_ShardWriter`, so shard names, row counts, row groups and rollover are the builder's. Staged rows are copied
   as arrow, not decoded and encoded again.
3. `FinishRepoStep`, one task: the build record (`unihand_build.json`, with a `pipeline` section), the card and
   the preview, with the builder's own functions.

The result equals `python -m dataset_scripts build` on the same sources: same rows per split (ids and contents),
same shard files, same card configs and split sizes (tests/test_datatrove_pipeline.py). Differences: with
`on_error="raise"` a bad row fails its task and no repo is written until the source is fixed and the command is
rerun (the builder writes the rows before the bad one); a build whose sources disagree on optional columns
(`ssl_features` / `motion_tokens` on some rows only) is refused at the merge instead of having rows rejected.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from dataset_scripts.builder import (
    DEFAULT_ROW_GROUP_BYTES,
    DEFAULT_ROW_GROUP_ROWS,
    MAX_LISTED_REJECTS,
    BuildReport,
    MotionTokenHook,
    RowValidator,
    SslFeatureHook,
    _encode_rows,
    _jsonable,
    _row_nbytes,
    _ShardWriter,
    duplicate_id_error,
    parse_size,
    prepare_output,
    write_build_info,
    write_card_and_preview,
)
from dataset_scripts.repo_layout import (
    DEFAULT_SHARD_BYTES,
    DEFAULT_SHARDS_PER_SPLIT,
    SPLIT_DOMAINS,
    SPLITS,
    ShardRecord,
    partial_shard_glob,
    read_build_info,
    shard_glob,
)
from dataset_scripts.schema import RowValidationError, unihand_features
from dataset_scripts.sources.base import ClipSource

try:
    from datatrove.pipeline.base import PipelineStep

    DATATROVE_IMPORT_ERROR: str | None = None
except ImportError as _error:  # an optional extra: the builder works without it
    PipelineStep = object  # type: ignore[assignment,misc]
    DATATROVE_IMPORT_ERROR = f"{type(_error).__name__}: {_error}"

logger = logging.getLogger(__name__)

ExecutorKind = Literal["local", "slurm", "ray"]
#: Clips (or other units) per stage-1 task by default: small enough to balance 2-16 local workers on a few
#: hundred clips and to lose little work when a task is stopped, large enough that task start-up (imports, a GL
#: context, ~1-2 s) stays a few percent of a task of ~200 ms clips.
DEFAULT_UNITS_PER_TASK = 32
#: The (domain, split) pairs a build can hold, in the merge stage's rank order.
SHARD_KEYS: tuple[tuple[str, str], ...] = tuple((domain, split) for split in SPLITS for domain in SPLIT_DOMAINS[split])
PLAN_FILE = "plan.json"
STAGING_DIR = "staging"
MERGED_DIR = "merged"
STAGE_NAMES = ("1_stage_rows", "2_merge_shards", "3_finish_repo")
#: Columns staged beside the schema columns: the builder's size estimate (row groups and rollover depend on it)
#: and the row's position in its task (rejects are listed in source order, as the builder lists them).
NBYTES_COLUMN, POSITION_COLUMN = "__nbytes", "__position"
STAGED_BATCH_ROWS = 64


def require_datatrove() -> None:
    """Fail with the install line when the optional extra is missing."""
    if DATATROVE_IMPORT_ERROR is not None:
        raise ImportError(
            "the datatrove pipeline needs datatrove (the `scale` extra): pip install 'datatrove>=0.10.1' "
            f"({DATATROVE_IMPORT_ERROR}). `python -m dataset_scripts build` builds the same repo without it."
        )


# ------------------------------------------------------------------------------------------------------------
# Plan: which task does what
# ------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TaskSlice:
    """The input of one stage-1 task: units `start .. stop - 1` of a source, or the whole source (stop None)."""

    source_index: int
    start: int = 0
    stop: int | None = None

    def describe(self, sources: Sequence[ClipSource]) -> str:
        name = getattr(sources[self.source_index], "name", "source")
        span = "all" if self.stop is None else f"units {self.start}-{self.stop - 1}"
        return f"source {self.source_index} ({name}) {span}"


def plan_tasks(sources: Sequence[ClipSource], units_per_task: int | None = None) -> list[TaskSlice]:
    """Slices in source order (the builder's row order): ranges of `units_per_task` units of splittable sources
    (default: the source's `default_units_per_task`, e.g. 1 video, else 32 clips), one task for a source that is
    not splittable (`num_units()` None)."""
    if units_per_task is not None and units_per_task < 1:
        raise ValueError(f"units_per_task must be >= 1, got {units_per_task}.")
    tasks: list[TaskSlice] = []
    for index, source in enumerate(sources):
        units = source.num_units()
        if units is None:
            tasks.append(TaskSlice(index))
            continue
        size = units_per_task or getattr(source, "default_units_per_task", None) or DEFAULT_UNITS_PER_TASK
        tasks += [TaskSlice(index, start, min(start + size, units)) for start in range(0, units, size)]
    return tasks


def _global_id_makers(
    sources: Sequence[ClipSource], tasks: Sequence[TaskSlice], metas: Sequence[Mapping[str, Any]]
) -> list[Any]:
    """rank -> function giving the id `iter_rows` would have given a row of that task: sources whose ids count
    rows (the video source) number each range from 0, so the rows yielded by earlier ranges are added."""
    rows_before: Counter = Counter()
    makers = []
    for task, meta in zip(tasks, metas, strict=True):
        source, offset = sources[task.source_index], rows_before[task.source_index]
        makers.append(lambda row_id, source=source, offset=offset: source.global_row_id(row_id, offset))
        rows_before[task.source_index] += meta["rows_yielded"]
    return makers


@dataclasses.dataclass(frozen=True)
class PipelineSettings:
    """Everything a task needs besides its sources; picklable, so it travels to Slurm / Ray workers.

    Hooks travel as their constructor options (`SslFeatureHook(**ssl_encoder)`), not as loaded models: every task
    that needs one loads it once."""

    output_dir: str
    work_dir: str
    shard_bytes: int = DEFAULT_SHARD_BYTES
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS
    row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES
    shards_per_split: int = DEFAULT_SHARDS_PER_SPLIT
    on_error: Literal["raise", "skip"] = "raise"
    ssl_encoder: Mapping[str, Any] | None = None
    motion_tokenizer: Mapping[str, Any] | None = None
    hook_batch_rows: int = 16
    preview: bool = True
    progress: bool = True
    keep_staging: bool = False
    command: str | None = None

    @property
    def staging(self) -> Path:
        return Path(self.work_dir) / STAGING_DIR

    def builder_settings(self) -> dict[str, Any]:
        """The layout keys of the build record, as the builder writes them."""
        return {
            "shard_bytes_target": self.shard_bytes,
            "row_group_rows": self.row_group_rows,
            "shards_per_split": self.shards_per_split,
            "on_error": self.on_error,
        }


def _fingerprint(sources: Sequence[ClipSource], settings: PipelineSettings, tasks: Sequence[TaskSlice]) -> str:
    """What must not change between a run and its resumption (memory addresses in reprs are dropped)."""
    payload = {
        "sources": [[getattr(s, "name", type(s).__name__), _jsonable(vars(s))] for s in sources],
        "settings": {
            key: _jsonable(value)
            for key, value in dataclasses.asdict(settings).items()
            if key not in ("progress", "command", "preview", "keep_staging")
        },
        "tasks": [dataclasses.astuple(task) for task in tasks],
    }
    payload["sources"] = [
        [name, {k: v for k, v in options.items() if k != "progress"}] for name, options in payload["sources"]
    ]
    return re.sub(r" at 0x[0-9a-f]+", "", json.dumps(payload, sort_keys=True))


def _atomic_write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.incomplete")
    temp.write_text(json.dumps(payload, indent=1) + "\n")
    os.replace(temp, path)


# ------------------------------------------------------------------------------------------------------------
# Stage 1: make, validate and stage rows
# ------------------------------------------------------------------------------------------------------------


def _make_hooks(settings: PipelineSettings) -> tuple[SslFeatureHook | None, MotionTokenHook | None]:
    ssl_hook = SslFeatureHook(**settings.ssl_encoder) if settings.ssl_encoder else None
    token_hook = MotionTokenHook(**settings.motion_tokenizer) if settings.motion_tokenizer else None
    return ssl_hook, token_hook


class _StagedWriter:
    """One task's validated rows per (domain, split), encoded with the build's features, in source order."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.buffers: dict[tuple[str, str], list[tuple[dict[str, Any], int, int]]] = {}
        self.writers: dict[tuple[str, str], pq.ParquetWriter] = {}
        self.counts: Counter = Counter()

    def add(self, row: dict[str, Any], split: str, position: int, features: Any) -> None:
        key = (row["domain"], split)
        buffer = self.buffers.setdefault(key, [])
        buffer.append((row, _row_nbytes(row), position))
        self.counts[key] += 1
        if len(buffer) >= STAGED_BATCH_ROWS:
            self._write(key, features)

    def _write(self, key: tuple[str, str], features: Any) -> None:
        buffer, self.buffers[key] = self.buffers.get(key, []), []
        if not buffer:
            return
        table = _encode_rows([row for row, _, _ in buffer], features)
        table = table.append_column(NBYTES_COLUMN, pa.array([nbytes for _, nbytes, _ in buffer], pa.int64()))
        table = table.append_column(POSITION_COLUMN, pa.array([position for _, _, position in buffer], pa.int64()))
        if key not in self.writers:
            self.writers[key] = pq.ParquetWriter(self._path(key, temporary=True), table.schema, compression="zstd")
        self.writers[key].write_table(table)

    def _path(self, key: tuple[str, str], temporary: bool = False) -> Path:
        name = f"{key[0]}-{key[1]}.parquet"
        return self.folder / (f".{name}.incomplete" if temporary else name)

    def close(self, features: Any) -> None:
        for key in list(self.buffers):
            self._write(key, features)
        for key, writer in self.writers.items():
            writer.close()
            os.replace(self._path(key, temporary=True), self._path(key))


class StageRowsStep(PipelineStep):
    """Stage 1, rank r: the rows of `tasks[r]`, validated (builder rules), hooked, staged under `staging/{r}/`.

    A rerun of a task that was stopped starts its staging folder afresh; a finished task is never rerun (its
    datatrove completion marker), so its staged rows are written exactly once."""

    name = "stage rows"
    type = "UniHand-Mix"

    def __init__(self, sources: Sequence[ClipSource], tasks: Sequence[TaskSlice], settings: PipelineSettings) -> None:
        require_datatrove()
        super().__init__()
        self.sources, self.tasks, self.settings = list(sources), list(tasks), settings

    def run(self, data: Any = None, rank: int = 0, world_size: int = 1) -> Iterator[Any]:
        yield from data or ()
        settings, task = self.settings, self.tasks[rank]
        source = self.sources[task.source_index]
        start_time = time.perf_counter()
        folder = settings.staging / f"{rank:05d}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        ssl_hook, token_hook = _make_hooks(settings)
        batch_rows = settings.hook_batch_rows if (ssl_hook or token_hook) else 1
        rows = source.iter_rows() if task.stop is None else source.iter_unit_rows(task.start, task.stop)
        estimate = source.estimated_rows() if task.stop is None else task.stop - task.start
        staged = _StagedWriter(folder)
        validator: RowValidator | None = None
        rejected: list[dict[str, Any]] = []
        pending: list[tuple[dict[str, Any], str, int]] = []
        yielded = 0

        def reject(error: RowValidationError, position: int) -> None:
            if settings.on_error == "raise":
                logger.error("%s (task %d: %s). Fix the source and rerun; finished tasks are kept.", error, rank, task)
                raise error
            rejected.append({"position": position, "id": error.row_id, "field": error.field, "error": str(error)})
            self.stat_update("rejected")

        def flush() -> None:
            nonlocal pending
            batch, pending = pending, []
            if not batch:
                return
            if ssl_hook is not None:
                ssl_hook([row for row, _, _ in batch])
            if token_hook is not None:
                token_hook([row for row, _, _ in batch])
            for row, split, position in batch:
                if validator is not None and validator.hooked:
                    try:
                        validator.check_hooked(row)
                    except RowValidationError as error:
                        reject(error, position)
                        continue
                staged.add(row, split, position, validator.features if validator else None)
                self.stat_update("rows_staged")

        bar = tqdm(
            rows,
            total=estimate,
            desc=f"task {rank} {getattr(source, 'name', 'source')}",
            unit="clip",
            disable=not settings.progress,
            file=sys.stderr,
        )
        with self.track_time("task"):
            for row in bar:
                position, yielded = yielded, yielded + 1
                if validator is None:
                    validator = RowValidator.for_first_row(row, ssl_hook, token_hook)
                try:
                    split = validator.validate(row)
                except RowValidationError as error:
                    reject(error, position)
                    continue
                pending.append((row, split, position))
                if len(pending) >= batch_rows:
                    flush()
            flush()
            staged.close(validator.features if validator else None)
        meta = {
            "rank": rank,
            "task": dataclasses.asdict(task),
            "rows_yielded": yielded,
            "staged": {f"{domain}/{split}": count for (domain, split), count in sorted(staged.counts.items())},
            "optional_columns": None
            if validator is None
            else {"ssl_shape": validator.ssl_shape, "tokens_per_chunk": validator.tokens_per_chunk},
            "rejected": rejected,
            "ssl_encoder": ssl_hook.describe() if ssl_hook else None,
            "motion_tokenizer": token_hook.describe() if token_hook else None,
            "seconds": round(time.perf_counter() - start_time, 3),
        }
        _atomic_write_json(settings.staging / f"{rank:05d}.json", meta)


def _read_task_metas(settings: PipelineSettings, num_tasks: int) -> list[dict[str, Any]]:
    metas = []
    for rank in range(num_tasks):
        path = settings.staging / f"{rank:05d}.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: stage-1 task {rank} has not finished; rerun the build.")
        metas.append(json.loads(path.read_text()))
    return metas


def _build_optional_columns(metas: Sequence[Mapping[str, Any]]) -> tuple[tuple[int, int] | None, int | None]:
    """The optional columns of the build: those of its first row (the builder's rule), which every task must
    share; a task whose first row differs would have its rows judged differently than by the builder."""
    seen = [(meta["rank"], meta["optional_columns"]) for meta in metas if meta["optional_columns"] is not None]
    if not seen:
        return None, None
    first_rank, first = seen[0]
    for rank, columns in seen[1:]:
        if columns != first:
            raise ValueError(
                f"stage-1 task {rank} starts with optional columns {columns}, task {first_rank} with {first}: the "
                "sources disagree on ssl_features / motion_tokens. Make every source attach the same columns (or "
                "none), or build with `python -m dataset_scripts build`, which rejects the rows that differ."
            )
    shape = first["ssl_shape"]
    return (tuple(shape) if shape is not None else None), first["tokens_per_chunk"]  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------------------
# Stage 2: merge staged rows into the builder's shards
# ------------------------------------------------------------------------------------------------------------


def _staged_path(settings: PipelineSettings, rank: int, key: tuple[str, str]) -> Path:
    return settings.staging / f"{rank:05d}" / f"{key[0]}-{key[1]}.parquet"


def _duplicates_across_tasks(settings: PipelineSettings, global_ids: Sequence[Any]) -> dict[int, set[str]]:
    """rank -> (global) ids an earlier task already staged. A task's own ids are unique (its validator checked),
    so the first occurrence in source order is kept, as in the builder; only the small id columns are read."""
    seen: set[str] = set()
    duplicates: dict[int, set[str]] = {}
    for rank, global_id in enumerate(global_ids):
        ids: set[str] = set()
        for key in SHARD_KEYS:
            path = _staged_path(settings, rank, key)
            if path.exists():
                ids.update(map(global_id, pq.read_table(path, columns=["id"]).column("id").to_pylist()))
        if repeated := ids & seen:
            duplicates[rank] = repeated
        seen |= ids
    return duplicates


class MergeShardsStep(PipelineStep):
    """Stage 2, rank k: the staged rows of `SHARD_KEYS[k]` from every task, in source order, into the builder's
    `_ShardWriter` (same lanes, row groups and rollover, hence the same shard files)."""

    name = "merge shards"
    type = "UniHand-Mix"

    def __init__(self, sources: Sequence[ClipSource], tasks: Sequence[TaskSlice], settings: PipelineSettings) -> None:
        require_datatrove()
        super().__init__()
        self.sources, self.tasks, self.settings = list(sources), list(tasks), settings
        self.num_tasks = len(self.tasks)

    def run(self, data: Any = None, rank: int = 0, world_size: int = 1) -> Iterator[Any]:
        yield from data or ()
        settings, key = self.settings, SHARD_KEYS[rank]
        domain, split = key
        output = Path(settings.output_dir)
        # A merge stopped half-way left shards of this key; they are rewritten from the staged rows.
        for stale in [*output.glob(shard_glob(domain, split)), *output.glob(partial_shard_glob(domain, split))]:
            stale.unlink()
        metas = _read_task_metas(settings, self.num_tasks)
        ssl_shape, tokens_per_chunk = _build_optional_columns(metas)
        features = unihand_features(ssl_shape, tokens_per_chunk)
        global_ids = _global_id_makers(self.sources, self.tasks, metas)
        duplicates = _duplicates_across_tasks(settings, global_ids)
        writer = _ShardWriter(
            output,
            domain,
            split,
            features,
            settings.shard_bytes,
            settings.row_group_rows,
            settings.row_group_bytes,
            settings.shards_per_split,
        )
        rows, rejected = 0, []
        paths = [(r, _staged_path(settings, r, key)) for r in range(self.num_tasks)]
        paths = [(r, path) for r, path in paths if path.exists()]
        total = sum(pq.ParquetFile(path).metadata.num_rows for _, path in paths)
        with (
            self.track_time("task"),
            tqdm(total=total, desc=f"merge {domain}/{split}", unit="clip", disable=not settings.progress) as bar,
        ):
            for task_rank, path in paths:
                repeated = duplicates.get(task_rank, set())
                for batch in pq.ParquetFile(path).iter_batches(batch_size=STAGED_BATCH_ROWS):
                    table = pa.Table.from_batches([batch])
                    ids = list(map(global_ids[task_rank], table.column("id").to_pylist()))
                    nbytes = table.column(NBYTES_COLUMN).to_pylist()
                    positions = table.column(POSITION_COLUMN).to_pylist()
                    table = table.drop_columns([NBYTES_COLUMN, POSITION_COLUMN])
                    id_column = pa.array(ids, table.schema.field("id").type)
                    table = table.set_column(table.schema.get_field_index("id"), "id", id_column)
                    for index, row_id in enumerate(ids):
                        if row_id in repeated:
                            error = duplicate_id_error(row_id)
                            if settings.on_error == "raise":
                                raise error
                            rejected.append(
                                {
                                    "rank": task_rank,
                                    "position": positions[index],
                                    "id": row_id,
                                    "field": "id",
                                    "error": str(error),
                                }
                            )
                            continue
                        writer.add(table.slice(index, 1), nbytes[index])
                        rows += 1
                    bar.update(len(ids))
            writer.close()
        self.stat_update("rows_written", value=rows)
        _atomic_write_json(
            Path(settings.work_dir) / MERGED_DIR / f"{domain}-{split}.json",
            {"rows": rows, "shards": [dataclasses.asdict(shard) for shard in writer.shards], "rejected": rejected},
        )


# ------------------------------------------------------------------------------------------------------------
# Stage 3: build record, card, preview
# ------------------------------------------------------------------------------------------------------------


class FinishRepoStep(PipelineStep):
    """Stage 3 (one task): the builder's build record, card and preview for what the merge wrote."""

    name = "finish repo"
    type = "UniHand-Mix"

    def __init__(
        self, sources: Sequence[ClipSource], tasks: Sequence[TaskSlice], settings: PipelineSettings, executor: str
    ) -> None:
        require_datatrove()
        super().__init__()
        self.sources, self.tasks, self.settings, self.executor = list(sources), list(tasks), settings, executor

    def run(self, data: Any = None, rank: int = 0, world_size: int = 1) -> Iterator[Any]:
        yield from data or ()
        settings = self.settings
        output, work = Path(settings.output_dir), Path(settings.work_dir)
        metas = _read_task_metas(settings, len(self.tasks))
        ssl_shape, tokens_per_chunk = _build_optional_columns(metas)
        report = BuildReport(output)
        rejects: list[tuple[int, int, dict[str, str]]] = []
        global_ids = _global_id_makers(self.sources, self.tasks, metas)
        for meta in metas:
            for item in meta["rejected"]:
                row_id = global_ids[meta["rank"]](item["id"])
                error = item["error"].replace(repr(item["id"]), repr(row_id), 1)
                rejects.append((meta["rank"], item["position"], item | {"id": row_id, "error": error}))
        for key in SHARD_KEYS:
            path = work / MERGED_DIR / f"{key[0]}-{key[1]}.json"
            merged = json.loads(path.read_text())
            if merged["rows"]:
                report.rows_written[key] = merged["rows"]
            report.shards += [ShardRecord(**shard) for shard in merged["shards"]]
            rejects += [(item["rank"], item["position"], item) for item in merged["rejected"]]
        rejects.sort(key=lambda entry: entry[:2])  # source order, as the builder lists them
        for _, _, item in rejects:
            report.rejected[item["field"]] += 1
        report.rejected_rows = [
            {"id": item["id"], "field": item["field"], "error": item["error"]} for _, _, item in rejects
        ][:MAX_LISTED_REJECTS]
        plan = json.loads((work / PLAN_FILE).read_text())
        report.seconds = time.time() - plan["started"]
        report.completed = True
        described = next((meta for meta in metas if meta["ssl_encoder"] or meta["motion_tokenizer"]), {})
        write_build_info(
            output,
            report,
            command=settings.command,
            sources=self.sources,
            settings=settings.builder_settings(),
            features=unihand_features(ssl_shape, tokens_per_chunk)
            if any(meta["optional_columns"] is not None for meta in metas)
            else None,
            ssl_encoder=described.get("ssl_encoder"),
            motion_tokenizer=described.get("motion_tokenizer"),
            extra={
                "pipeline": {
                    "engine": "datatrove",
                    "executor": self.executor,
                    "tasks": len(self.tasks),
                    "work_dir": str(work),
                    "task_seconds": round(sum(meta["seconds"] for meta in metas), 2),
                }
            },
        )
        write_card_and_preview(output, settings.preview and report.total_rows > 0)
        if not settings.keep_staging:  # staged rows are in the shards now; the metadata stays for the record
            for folder in settings.staging.glob("[0-9]*"):
                if folder.is_dir():
                    shutil.rmtree(folder)
        logger.info("%s: %d rows in %d shards", output, report.total_rows, len(report.shards))


# ------------------------------------------------------------------------------------------------------------
# Executors
# ------------------------------------------------------------------------------------------------------------


def make_executor(
    kind: ExecutorKind,
    pipeline: list[Any],
    tasks: int,
    logging_dir: Path,
    workers: int,
    depends: Any = None,
    **options: Any,
) -> Any:
    """One datatrove executor of `kind` for a stage.

    local: `LocalPipelineExecutor(workers=...)`, a process pool on this machine. slurm: a job array submitted with
    sbatch (options: partition, time, cpus_per_task, mem_per_cpu_gb, venv_path, job_name, sbatch_args, ...; the
    logging_dir and the output must be on a filesystem every node sees). ray: `RayPipelineExecutor` on the cluster
    `ray.init()` connected to (options: cpus_per_task, mem_per_cpu_gb, ...). `options` go to the constructor."""
    require_datatrove()
    if kind == "local":
        from datatrove.executor import LocalPipelineExecutor

        return LocalPipelineExecutor(
            pipeline, tasks=tasks, workers=max(1, min(workers, tasks)), logging_dir=str(logging_dir), depends=depends
        )
    if kind == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        options = {"time": "04:00:00", "partition": "cpu", "cpus_per_task": 1, "mem_per_cpu_gb": 4, **options}
        return SlurmPipelineExecutor(
            pipeline, tasks=tasks, workers=workers, logging_dir=str(logging_dir), depends=depends, **options
        )
    if kind == "ray":
        from datatrove.executor import RayPipelineExecutor

        return RayPipelineExecutor(
            pipeline, tasks=tasks, workers=workers, logging_dir=str(logging_dir), depends=depends, **options
        )
    raise ValueError(f"executor must be local, slurm or ray, got {kind!r}.")


def default_work_dir(output_dir: str | os.PathLike) -> Path:
    """Logs, completion markers and staged rows live beside the repo, never inside it (it is uploaded as is)."""
    output = Path(output_dir)
    return output.with_name(f"{output.name}.datatrove")


def prepare_pipeline(
    output_dir: str | os.PathLike,
    sources: Sequence[ClipSource],
    *,
    executor: ExecutorKind = "local",
    workers: int = 2,
    units_per_task: int | None = None,
    work_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    shard_bytes: int | str = DEFAULT_SHARD_BYTES,
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    row_group_bytes: int | str = DEFAULT_ROW_GROUP_BYTES,
    shards_per_split: int = DEFAULT_SHARDS_PER_SPLIT,
    on_error: Literal["raise", "skip"] = "raise",
    ssl_encoder: Mapping[str, Any] | None = None,
    motion_tokenizer: Mapping[str, Any] | None = None,
    hook_batch_rows: int = 16,
    preview: bool = True,
    progress: bool = True,
    keep_staging: bool = False,
    command: str | None = None,
    executor_options: Mapping[str, Any] | None = None,
) -> Any:
    """The three chained executors that build the repo the builder would build from `sources`; returns the last
    one (`.run()` runs or submits all three; `.depends` is the one before). `build_with_datatrove` runs it.

    Rerunning the same call resumes: tasks with a completion marker under `work_dir` are skipped. A different
    call on the same `work_dir` (other sources, options or slicing) is refused unless `overwrite=True`, which
    removes the previous repo and work folder first. `ssl_encoder` / `motion_tokenizer` are the keyword options of
    `SslFeatureHook` / `MotionTokenHook` (e.g. `{"encoder_dir": "dinov3-s"}`)."""
    require_datatrove()
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}.")
    if not isinstance(shards_per_split, int) or shards_per_split < 1:
        raise ValueError(f"shards_per_split must be a positive integer, got {shards_per_split!r}.")
    output = Path(output_dir).resolve()
    work = Path(work_dir).resolve() if work_dir is not None else default_work_dir(output)
    sources = list(sources)
    if not sources:
        raise ValueError("no sources to build.")
    tasks = plan_tasks(sources, units_per_task) or [TaskSlice(0, 0, 0)]  # empty sources: one task staging nothing
    settings = PipelineSettings(
        output_dir=str(output),
        work_dir=str(work),
        shard_bytes=parse_size(shard_bytes),
        row_group_rows=row_group_rows,
        row_group_bytes=parse_size(row_group_bytes),
        shards_per_split=shards_per_split,
        on_error=on_error,
        ssl_encoder=dict(ssl_encoder) if ssl_encoder else None,
        motion_tokenizer=dict(motion_tokenizer) if motion_tokenizer else None,
        hook_batch_rows=hook_batch_rows,
        preview=preview,
        progress=progress,
        keep_staging=keep_staging,
        command=command,
    )
    fingerprint = _fingerprint(sources, settings, tasks)
    plan_path = work / PLAN_FILE
    if overwrite:
        shutil.rmtree(work, ignore_errors=True)
        prepare_output(output, overwrite=True)
    previous = json.loads(plan_path.read_text()) if plan_path.exists() else None
    if previous is not None and previous["fingerprint"] != fingerprint:
        raise FileExistsError(
            f"{work} holds a different build (other sources, options or task slicing); rerun that command to resume "
            "it, pass overwrite=True (CLI: --overwrite) to start this one over, or choose another --output."
        )
    if previous is None:
        prepare_output(output, overwrite=False)
        _atomic_write_json(
            plan_path,
            {
                "fingerprint": fingerprint,
                "started": time.time(),
                "tasks": [task.describe(sources) for task in tasks],
            },
        )
    else:
        logger.info("resuming the build in %s (finished tasks are skipped)", work)
    options = dict(executor_options or {})
    stage = make_executor(
        executor, [StageRowsStep(sources, tasks, settings)], len(tasks), work / STAGE_NAMES[0], workers, **options
    )
    merge = make_executor(
        executor,
        [MergeShardsStep(sources, tasks, settings)],
        len(SHARD_KEYS),
        work / STAGE_NAMES[1],
        # Locally the merge is a copy (0.5 s for 200 clips at 224 px) and a fresh process pool costs ~2 s of
        # start-up (measured on a 2-core machine), so it runs in this process; on a cluster, in parallel.
        1 if executor == "local" else workers,
        depends=stage,
        **options,
    )
    finish = make_executor(
        executor,
        [FinishRepoStep(sources, tasks, settings, executor)],
        1,
        work / STAGE_NAMES[2],
        1,
        depends=merge,
        **options,
    )
    return finish


def build_with_datatrove(
    output_dir: str | os.PathLike, sources: Sequence[ClipSource], **options: Any
) -> dict[str, Any]:
    """Build the repo the builder would build from `sources`, as a datatrove pipeline (options: those of
    `prepare_pipeline`); returns the build record (empty for Slurm, whose jobs run after this returns)."""
    prepare_pipeline(output_dir, sources, **options).run()
    kind = options.get("executor", "local")
    return read_build_info(Path(output_dir).resolve()) if kind != "slurm" else {}


def completed_tasks(work_dir: str | os.PathLike, stage: int = 0) -> list[int]:
    """Ranks of a stage (0: stage rows, 1: merge, 2: finish) that datatrove marked complete in `work_dir`."""
    folder = Path(work_dir) / STAGE_NAMES[stage] / "completions"
    return sorted(int(path.name) for path in folder.glob("[0-9]*")) if folder.is_dir() else []
