"""Sources -> a UniHand-Mix dataset repo: validated rows in parquet shards that `load_dataset(dir)` reads as is.

Layout written (a Hub dataset repo; no loading script; the names and path functions are those of
`dataset_scripts.repo_layout`):

    DIR/README.md                                dataset card, YAML `configs:` lab / wild / all (dataset_scripts.card)
    DIR/unihand_build.json                       what was built and how: sources, encoder, tokenizer, rejects
    DIR/data/{domain}/{split}-{index:05d}.parquet

Why it is shaped like this:

* Every row passes `schema.validate_row` before it is written, so a shard never holds a row the trainer would
  crash on hours later; a bad row is rejected with its id and field named. `on_error="raise"` stops at the first
  bad row, `"skip"` logs it, counts it and goes on. Either way, whatever was written stays valid: shards are
  written under a hidden temporary name and renamed once their parquet footer is on disk, the rows of the open
  shard before the bad row are flushed, and the card is written for what exists.
* Shards are split by domain and split so that the card's configs are plain globs (`data/lab/train-*`) and a
  lab-only or wild-only run never opens the other domain's files. Each (domain, split) is dealt row by row into
  `shards_per_split` (8) parallel shards, so even a small build splits across ranks and DataLoader workers with
  both domains on each (the card lists `all/train` in an order that keeps that for `split_dataset_by_node`, see
  `card.interleaved_train_files`). They roll over at a target size (~256 MB by default: large enough for few
  files at the paper's scale, small enough for streaming), row groups are small (<= 128 rows / 64 MB per split)
  because they are the unit of streaming reads and shuffling.
* The `datasets` features are embedded in each file's parquet schema metadata, so `load_dataset` decodes images
  and arrays with no other information.
* Optional hooks add columns that would otherwise be recomputed every epoch: `ssl_features` from a frozen SSL
  vision encoder (the LAP's input) and `motion_tokens` from a trained motion tokenizer.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import inspect
import json
import logging
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from tqdm.auto import tqdm

from dataset_scripts.images import decode_image
from dataset_scripts.repo_layout import (
    BUILD_INFO_FILE,
    DATA_DIR,
    DEFAULT_SHARD_BYTES,
    DEFAULT_SHARDS_PER_SPLIT,
    PREVIEW_FILE,
    REPO_FILES,
    SPLIT_DOMAINS,
    SPLITS,
    ShardRecord,
    partial_shard_path,
    shard_path,
)
from dataset_scripts.schema import (
    COLUMN_DOCS,
    RowValidationError,
    check_motion_tokens,
    num_chunks,
    unihand_features,
    validate_row,
)
from dataset_scripts.sources.base import ClipSource
from modeling_jala.hand_jala import D162_DIM
from modeling_jala.layout_jala import (
    CLIP_MOTION_AXES,
    CLIP_TOKEN_AXES,
    IGNORE_TOKEN_ID,
    ROW_MOTION_AXES,
    ROW_TOKEN_AXES,
    reorder_axes,
)
from modeling_jala.ssl_features_jala import (
    TOKEN_SELECTIONS,
    encode_ssl_frames,
    ssl_image_processor,
    ssl_image_settings,
)

logger = logging.getLogger(__name__)

DEFAULT_ROW_GROUP_ROWS = 128
DEFAULT_ROW_GROUP_BYTES = 64 * 2**20
FOOTER_ALLOWANCE = 32 * 2**10
#: Columns with parquet min/max statistics (cheap filters such as `labelled` or `source` in pyarrow / DuckDB).
STATISTICS_COLUMNS = (
    "id",
    "source",
    "domain",
    "task_type",
    "fps",
    "num_frames",
    "labelled",
    "label_source",
    "label_confidence",
)
#: Columns with repeating values, worth dictionary pages; every other column is written PLAIN.
DICTIONARY_COLUMNS = ("source", "domain", "task_type", "label_source", "instruction")
MOTION_LEAF = "motion.list.element.list.element.list.element"
#: Rejected rows listed by id in the build info (the count is always exact).
MAX_LISTED_REJECTS = 200


def parse_size(text: str | int) -> int:
    """'256MB', '200KB', '1.5GB' or a byte count -> bytes (powers of 1024)."""
    if isinstance(text, int):
        return text
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    try:
        if value and value[-1] in units:
            return int(float(value[:-1]) * units[value[-1]])
        return int(float(value))
    except ValueError:
        raise ValueError(f"cannot read size {text!r}; write e.g. 256MB, 200KB or a byte count.") from None


def _row_nbytes(row: Mapping[str, Any]) -> int:
    """Approximate encoded size of a row (image bytes + arrays), for row-group and shard sizing."""
    total = len(row["first_frame"].get("bytes") or b"") if isinstance(row["first_frame"], dict) else 0
    for frame in row["boundary_frames"]:
        total += len(frame.get("bytes") or b"") if isinstance(frame, dict) else 0
    for name in ("motion", "ssl_features", "motion_tokens"):
        value = row.get(name)
        if value is not None:
            total += np.asarray(value).nbytes
    return total + 512


def _jsonable(value: Any) -> Any:
    """Best-effort JSON view of source options for the build record."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return repr(value)[:200]


# ------------------------------------------------------------------------------------------------------------
# Post-processing hooks
# ------------------------------------------------------------------------------------------------------------


class SslFeatureHook:
    """Precompute frozen SSL-encoder features of every boundary frame (the LAP's input), stored as float16.

    Why: the paper's LAP reads features of a frozen encoder (DINOv3 / V-JEPA2) for each chunk's boundary frames.
    Running the encoder once at build time instead of every epoch takes it out of the training step entirely.

    Args:
        encoder_dir: a folder `transformers.AutoModel.from_pretrained` loads offline, holding an image encoder that
            takes `pixel_values` (e.g. `DINOv3ViTModel`). An `AutoImageProcessor` saved in the same folder is
            used when present; otherwise frames are resized to `config.image_size` and ImageNet-normalised.
        token_selection: `patches` (default) keeps the patch grid only, exactly what `JalaModel.ssl_features`
            computes on the fly; `all` keeps the prefix tokens (CLS, registers) before the patches, `cls` only the
            first token.
        pool_grid: average-pool the patch tokens to a `pool_grid x pool_grid` grid (smaller rows, coarser
            features), as `JalaConfig.ssl_pool_grid` does for the model; None keeps every patch.

    Token selection and pooling are `modeling_jala.ssl_features_jala.encode_ssl_frames`, the function the model
    itself calls, so precomputed and on-the-fly features cannot differ.
        batch_size: frames per encoder forward pass.
    """

    def __init__(
        self,
        encoder_dir: str | os.PathLike,
        token_selection: Literal["all", "patches", "cls"] = "patches",
        pool_grid: int | None = None,
        batch_size: int = 32,
        device: str = "cpu",
    ) -> None:
        from transformers import AutoImageProcessor, AutoModel

        if token_selection not in TOKEN_SELECTIONS:
            raise ValueError(f"token_selection must be one of {TOKEN_SELECTIONS}, got {token_selection!r}.")
        self.encoder_dir = str(encoder_dir)
        self.model = AutoModel.from_pretrained(self.encoder_dir).to(device).eval()
        if "pixel_values" not in inspect.signature(self.model.forward).parameters:
            raise ValueError(
                f"{type(self.model).__name__} does not take `pixel_values`; only image encoders (e.g. DINOv3ViTModel) "
                "are supported for precomputed features. Video encoders (V-JEPA2) need a per-clip path not built yet."
            )
        self.token_selection, self.pool_grid, self.batch_size, self.device = (
            token_selection,
            pool_grid,
            batch_size,
            device,
        )
        config = self.model.config
        self.image_size = int(getattr(config, "image_size", 224))
        self.patch_size = int(getattr(config, "patch_size", 16))
        try:
            self.processor = AutoImageProcessor.from_pretrained(self.encoder_dir)
        except (OSError, ValueError, ImportError) as error:
            # DINOv3's processor needs torchvision; its saved settings are plain JSON, so honour them without it,
            # with the same torchvision-free processor the JALA processor builds from them.
            settings = ssl_image_settings(self.encoder_dir)
            self.image_size = settings["image_size"]
            self.processor = ssl_image_processor(**settings)
            logger.warning(
                "image processor of %s not usable (%s); resizing frames to %d px, normalising with mean %s, std %s.",
                self.encoder_dir,
                type(error).__name__,
                self.image_size,
                settings["image_mean"],
                settings["image_std"],
            )
        blank = Image.new("RGB", (self.image_size, self.image_size))
        self.feature_shape: tuple[int, int] = tuple(self._encode([blank]).shape[1:])  # type: ignore[assignment]

    def describe(self) -> dict[str, Any]:
        """What the card and build record say about the encoder."""
        return {
            "encoder": self.encoder_dir,
            "model_class": type(self.model).__name__,
            "model_type": self.model.config.model_type,
            "name_or_path": getattr(self.model.config, "_name_or_path", self.encoder_dir),
            "image_size": self.image_size,
            "preprocessing": type(self.processor).__name__,
            "token_selection": self.token_selection,
            "pool_grid": self.pool_grid,
            "feature_shape": list(self.feature_shape),
            "dtype": "float16",
        }

    def _pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.processor(images=list(images), return_tensors="pt")["pixel_values"]

    @torch.no_grad()
    def _encode(self, images: Sequence[Image.Image]) -> torch.Tensor:
        pixels = self._pixel_values(images).to(self.device, dtype=self.model.dtype)
        return encode_ssl_frames(self.model, pixels, self.token_selection, self.pool_grid)

    def __call__(self, rows: Sequence[dict[str, Any]]) -> None:
        """Set `ssl_features` (N + 1, P, D) float16 on every row."""
        frames, owners = [], []
        for index, row in enumerate(rows):
            for frame in row["boundary_frames"]:
                frames.append(decode_image(frame))
                owners.append(index)
        outputs = [
            self._encode(frames[start : start + self.batch_size]).float().cpu()
            for start in range(0, len(frames), self.batch_size)
        ]
        features = torch.cat(outputs).numpy().astype(np.float16)
        owners_array = np.asarray(owners)
        for index, row in enumerate(rows):
            row["ssl_features"] = features[owners_array == index]


class MotionTokenHook:
    """Pre-tokenize labelled motion with a trained `JalaMotionTokenizer`: `motion_tokens` (N, 2, K) int16, K the
    tokenizer config's `tokens_per_chunk` (128 for the paper's tokenizer), which the build's schema takes.

    Why: masked chunk prediction trains on token ids; tokenizing at build time makes the tokenizer a data
    dependency recorded in the card instead of a model loaded in every training process. Unlabelled rows (and
    absent hands, and chunks past a clip's end) get -100, the ignore index.
    """

    def __init__(self, tokenizer_dir: str | os.PathLike, batch_size: int = 16, device: str = "cpu") -> None:
        from modeling_jala.motion_tokenizer_jala import JalaMotionTokenizer

        self.tokenizer_dir = str(tokenizer_dir)
        self.model = JalaMotionTokenizer.from_pretrained(self.tokenizer_dir).to(device).eval()
        config = self.model.config
        #: Token ids per chunk and hand: the K of the build's `motion_tokens` (N, 2, K) column.
        self.tokens_per_chunk = int(config.tokens_per_chunk)
        # Token ids are stored as int16, so codebooks must fit it.
        if config.codebook_size > np.iinfo(np.int16).max:
            raise ValueError(f"codebook_size {config.codebook_size} does not fit the int16 motion_tokens column.")
        self.batch_size, self.device = batch_size, device

    def describe(self) -> dict[str, Any]:
        config = self.model.config
        return {
            "tokenizer": self.tokenizer_dir,
            "codebook_size": config.codebook_size,
            "tokens_per_chunk": self.tokens_per_chunk,
            "chunk_frames": config.chunk_frames,
        }

    def __call__(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            row["motion_tokens"] = np.full(
                (num_chunks(int(row["num_frames"])), 2, self.tokens_per_chunk), IGNORE_TOKEN_ID, dtype=np.int16
            )
        labelled = [row for row in rows if row["motion"] is not None]
        for start in range(0, len(labelled), self.batch_size):
            batch = labelled[start : start + self.batch_size]
            lengths = [int(row["num_frames"]) for row in batch]
            motion = torch.zeros(len(batch), 2, max(lengths), D162_DIM)
            for index, row in enumerate(batch):
                row_motion = torch.from_numpy(np.asarray(row["motion"], np.float32))
                motion[index, :, : lengths[index]] = reorder_axes(row_motion, ROW_MOTION_AXES, CLIP_MOTION_AXES)
            hand_mask = torch.tensor([list(row["hands_present"]) for row in batch], dtype=torch.bool)
            ids = self.model.encode(motion.to(self.device), lengths=lengths, hand_mask=hand_mask.to(self.device)).ids
            ids = ids.cpu().numpy()  # (B, 2, N_max, K)
            for index, row in enumerate(batch):
                chunks = row["motion_tokens"].shape[0]
                clip_ids = ids[index, :, :chunks]
                row["motion_tokens"] = reorder_axes(clip_ids, CLIP_TOKEN_AXES, ROW_TOKEN_AXES).astype(np.int16)


def _check_hook_columns(
    row: Mapping[str, Any], ssl_shape: tuple[int, int] | None, tokens_per_chunk: int | None
) -> None:
    """Validate the optional columns a hook (or a source) attached; validate_row covers the required ones."""
    row_id = str(row["id"])
    chunks = num_chunks(int(row["num_frames"]))
    if ssl_shape is not None:
        features = row.get("ssl_features")
        if features is None or np.asarray(features).shape != (chunks + 1, *ssl_shape):
            got = None if features is None else np.asarray(features).shape
            raise RowValidationError(row_id, "ssl_features", f"shape {got}, expected ({chunks + 1}, *{ssl_shape}).")
        if not np.isfinite(np.asarray(features, dtype=np.float32)).all():
            raise RowValidationError(
                row_id, "ssl_features", "non-finite values (float16 overflow?); check the encoder output scale."
            )
    elif row.get("ssl_features") is not None:
        raise RowValidationError(row_id, "ssl_features", "present, but the build's first row had none.")
    if tokens_per_chunk is not None:
        check_motion_tokens(row_id, row.get("motion_tokens"), chunks, tokens_per_chunk)
    elif row.get("motion_tokens") is not None:
        raise RowValidationError(row_id, "motion_tokens", "present, but the build's first row had none.")


# ------------------------------------------------------------------------------------------------------------
# Row validation
# ------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class RowValidator:
    """The checks every row passes before a shard holds it, against the optional columns the build settled on.

    Why a class of its own: the builder and the datatrove pipeline (`dataset_scripts.datatrove_pipeline`, one
    validator per task) must accept and reject exactly the same rows, so both call this one. `ids` holds the ids
    seen so far; a pipeline task sees only its own, the pipeline's merge step checks ids across tasks.
    """

    ssl_shape: tuple[int, int] | None
    #: K of the build's `motion_tokens` (N, 2, K) column; None when the build has no such column.
    tokens_per_chunk: int | None
    ssl_hooked: bool = False
    token_hooked: bool = False
    ids: set[str] = dataclasses.field(default_factory=set)

    @classmethod
    def for_first_row(
        cls, first_row: Mapping[str, Any], ssl_hook: SslFeatureHook | None, token_hook: MotionTokenHook | None
    ) -> RowValidator:
        """Optional columns come from the hooks, or from what the build's first row carries (sources may add
        them); the first row fixes them even if it is rejected itself."""
        if ssl_hook is not None:
            ssl_shape: tuple[int, int] | None = tuple(ssl_hook.feature_shape)  # type: ignore[assignment]
        elif first_row.get("ssl_features") is not None:
            ssl_shape = tuple(np.asarray(first_row["ssl_features"]).shape[1:])  # type: ignore[assignment]
        else:
            ssl_shape = None
        if token_hook is not None:
            tokens_per_chunk: int | None = int(token_hook.describe()["tokens_per_chunk"])
        elif first_row.get("motion_tokens") is not None:
            tokens_per_chunk = int(np.asarray(first_row["motion_tokens"]).shape[-1])
        else:
            tokens_per_chunk = None
        return cls(ssl_shape, tokens_per_chunk, ssl_hook is not None, token_hook is not None)

    @functools.cached_property
    def features(self) -> datasets.Features:
        return unihand_features(self.ssl_shape, self.tokens_per_chunk)

    @property
    def hooked(self) -> bool:
        return self.ssl_hooked or self.token_hooked

    def validate(self, row: dict[str, Any]) -> str:
        """Validate one source row in place (pops `split`); returns the split."""
        row_id = str(row.get("id", "<no id>"))
        split = row.pop("split", None)
        if split not in SPLITS:
            raise RowValidationError(row_id, "split", f"{split!r} is not one of {SPLITS}; sources must set it.")
        passthrough_ssl = self.ssl_shape if not self.ssl_hooked else None
        validate_row(row, passthrough_ssl)
        if row["domain"] not in SPLIT_DOMAINS[split]:
            raise RowValidationError(
                row_id, "split", f"a {row['domain']} row cannot go to {split}; {split} holds {SPLIT_DOMAINS[split]}."
            )
        extra = set(row) - set(COLUMN_DOCS) - {"ssl_features", "motion_tokens"}
        if extra:
            raise RowValidationError(row_id, sorted(extra)[0], "not a schema column; drop it or add it to the schema.")
        if row_id in self.ids:
            raise duplicate_id_error(row_id)
        self.ids.add(row_id)
        if not self.hooked:
            _check_hook_columns(row, self.ssl_shape, self.tokens_per_chunk)
        return split

    def check_hooked(self, row: Mapping[str, Any]) -> None:
        """After the hooks ran: the columns they attached have the build's shapes."""
        _check_hook_columns(row, self.ssl_shape, self.tokens_per_chunk)


def duplicate_id_error(row_id: str) -> RowValidationError:
    """The error a repeated id raises, wherever it is found (the builder, a pipeline task or its merge)."""
    return RowValidationError(row_id, "id", "duplicate id; ids must be unique across the whole build.")


# ------------------------------------------------------------------------------------------------------------
# Shard writing
# ------------------------------------------------------------------------------------------------------------


def _encode_rows(rows: Sequence[Mapping[str, Any]], features: datasets.Features) -> pa.Table:
    """Rows -> an arrow table with exactly `features.arrow_schema` (the shards' own metadata).

    Nested-list array columns (`motion`) are encoded through their `Array3D` twin, which turns numpy arrays into
    arrow ~2x faster than nested lists do; the storage is identical, so the result is only relabelled."""
    encoding = datasets.Features(
        {
            name: datasets.Array3D(shape=(None, 2, D162_DIM), dtype="float32") if name == "motion" else feature
            for name, feature in features.items()
        }
    )
    table = datasets.Dataset.from_list(list(rows), features=encoding).data.table
    # `from_list` keeps the first row's key order; the writer's schema is the features' order.
    columns = [table.column(name) for name in features]
    columns = [
        pa.chunked_array([chunk.storage for chunk in column.chunks], type=column.type.storage_type)
        if isinstance(column.type, pa.ExtensionType) and name == "motion"
        else column
        for name, column in zip(features, columns, strict=True)
    ]
    return pa.Table.from_arrays(columns, schema=features.arrow_schema)


@dataclasses.dataclass
class _Lane:
    """One of the parallel shards of a (domain, split): its pending row group and its open file."""

    pending: list[dict[str, Any] | pa.Table] = dataclasses.field(default_factory=list)
    pending_bytes: int = 0
    file: BinaryIO | None = None
    writer: pq.ParquetWriter | None = None
    temp_path: Path | None = None
    rows: int = 0
    groups: int = 0


class _ShardWriter:
    """Rows of one (domain, split) dealt round-robin over `lanes` parallel parquet shards, each valid on its own
    once closed.

    Why lanes: a shard is the unit `datasets.distributed.split_dataset_by_node` and DataLoader workers hand out, so
    a split written as one file (any build under the target size, e.g. the quickstart) gives all of a domain to
    one rank. Dealing rows over `lanes` files keeps every domain in `lanes` shards of equal row counts from the
    first row on; the lanes roll over together (a generation) when one would pass `shard_bytes`, so the count
    stays a multiple of `lanes`. Final indices are given at close, in lane order, so names stay consecutive.
    """

    def __init__(
        self,
        root: Path,
        domain: str,
        split: str,
        features: datasets.Features,
        shard_bytes: int,
        row_group_rows: int,
        row_group_bytes: int,
        lanes: int = 1,
    ) -> None:
        self.root, self.domain, self.split, self.features = root, domain, split, features
        self.shard_bytes, self.row_group_rows = shard_bytes, row_group_rows
        # `row_group_bytes` is the memory budget of the (domain, split): every lane buffers its own row group.
        self.row_group_bytes = max(1, min(row_group_bytes // lanes, shard_bytes // 4))
        self.lanes = [_Lane() for _ in range(lanes)]
        self.dealt = 0
        self.generation = 0
        self.index = 0
        self.shards: list[ShardRecord] = []

    def add(self, row: dict[str, Any] | pa.Table, nbytes: int) -> None:
        """Deal one row to the next lane: a row dict, or a one-row table already encoded with `features` (rows
        staged by `dataset_scripts.datatrove_pipeline`, so they are not decoded and encoded again)."""
        lane = self.lanes[self.dealt % len(self.lanes)]
        self.dealt += 1
        lane.pending.append(row)
        lane.pending_bytes += nbytes
        if len(lane.pending) >= self.row_group_rows or lane.pending_bytes >= self.row_group_bytes:
            self._flush_lane(lane)

    def _flush_lane(self, lane: _Lane) -> None:
        """Write a lane's pending rows as one row group; roll the generation over first if they would overflow
        its file (the other lanes' pending rows then go to the next generation's files)."""
        if not lane.pending:
            return
        projected = lane.pending_bytes * 1.1 + FOOTER_ALLOWANCE  # parquet levels and footer add ~5-15 %
        if lane.file is not None and lane.file.tell() + projected > self.shard_bytes:
            self.close_generation()
        if lane.file is None:
            position = self.lanes.index(lane)
            lane.temp_path = self.root / partial_shard_path(self.domain, self.split, self.generation, position)
            lane.temp_path.parent.mkdir(parents=True, exist_ok=True)
            lane.file = open(lane.temp_path, "wb")  # noqa: SIM115 - closed in close_generation
            # Measured on 1 MB rows (see benchmarks/unihand_streaming_speed.py): dictionary pages on the float and
            # image columns made reads 4x slower, byte-stream-split float32 motion reads ~2x faster and compresses
            # better; min/max statistics of JPEG bytes and motion lists are useless and cost ~15 % of the file.
            # (float16 ssl_features stay PLAIN: byte-stream-split on float16 needs Arrow >= 16 to read.)
            lane.writer = pq.ParquetWriter(
                lane.file,
                self.features.arrow_schema,
                compression="zstd",
                use_dictionary=[name for name in DICTIONARY_COLUMNS if name in self.features],
                write_statistics=[name for name in STATISTICS_COLUMNS if name in self.features],
                column_encoding={MOTION_LEAF: "BYTE_STREAM_SPLIT"},
            )
        assert lane.writer is not None
        lane.writer.write_table(self._pending_table(lane.pending), row_group_size=len(lane.pending))
        lane.rows += len(lane.pending)
        lane.groups += 1
        lane.pending, lane.pending_bytes = [], 0

    def _pending_table(self, pending: Sequence[dict[str, Any] | pa.Table]) -> pa.Table:
        if not isinstance(pending[0], pa.Table):
            return _encode_rows(pending, self.features)  # type: ignore[arg-type]
        table = pa.concat_tables(pending).combine_chunks()  # type: ignore[arg-type]
        return pa.Table.from_arrays(table.columns, schema=self.features.arrow_schema)

    def close_generation(self) -> None:
        """Close every lane's open file under its final, consecutive shard name."""
        for lane in self.lanes:
            if lane.writer is None or lane.file is None or lane.temp_path is None:
                continue
            lane.writer.close()
            lane.file.close()
            final = self.root / shard_path(self.domain, self.split, self.index)
            os.replace(lane.temp_path, final)
            record = ShardRecord(
                final.relative_to(self.root).as_posix(),
                self.domain,
                self.split,
                lane.rows,
                final.stat().st_size,
                lane.groups,
            )
            self.shards.append(record)
            logger.debug("wrote %s (%d rows, %.1f MB)", record.path, record.rows, record.bytes / 2**20)
            lane.writer, lane.file, lane.temp_path, lane.rows, lane.groups = None, None, None, 0, 0
            self.index += 1
        self.generation += 1

    def close(self) -> None:
        """Write every lane's last rows and close. If any of them would overflow its file, the generation rolls
        over first, so the last rows of all lanes land in one new generation rather than splitting it."""
        for lane in self.lanes:
            projected = lane.pending_bytes * 1.1 + FOOTER_ALLOWANCE
            if lane.pending and lane.file is not None and lane.file.tell() + projected > self.shard_bytes:
                self.close_generation()
                break
        for lane in self.lanes:
            self._flush_lane(lane)
        self.close_generation()


# ------------------------------------------------------------------------------------------------------------
# Builder
# ------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class BuildReport:
    """What a build wrote and rejected."""

    output_dir: Path
    rows_written: Counter = dataclasses.field(default_factory=Counter)  # (domain, split) -> rows
    rejected: Counter = dataclasses.field(default_factory=Counter)  # field -> rows
    rejected_rows: list[dict[str, str]] = dataclasses.field(default_factory=list)
    shards: list[ShardRecord] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    completed: bool = False

    @property
    def total_rows(self) -> int:
        return sum(self.rows_written.values())


class UniHandBuilder:
    """Validates rows from sources and writes the repo (shards, build record, card, optional preview).

    Args:
        output_dir: repo directory; must not hold a previous build unless `overwrite=True`.
        shard_bytes: target shard size (a shard is closed before a row group would push it past this).
        on_error: `raise` stops at the first invalid row (after saving everything written before it); `skip`
            logs and counts invalid rows and goes on.
        ssl_hook / token_hook: optional `SslFeatureHook` / `MotionTokenHook` adding precomputed columns.
        hook_batch_rows: rows per hook call (encoders are faster on batches).
        row_group_rows / row_group_bytes: row-group limits; a row group is the unit of streaming reads.
            `row_group_bytes` is shared by a (domain, split)'s parallel shards (each buffers a row group).
        shards_per_split: parallel shards every (domain, split) is dealt into, row by row (see `_ShardWriter`);
            a domain's shard count is a multiple of it. 8 lets `split_dataset_by_node` and DataLoader workers give
            every one of 2, 4 or 8 ranks (x workers) shards of both domains; 1 writes one shard until it is full.
        preview: render `preview.png` (lab vs wild contact sheet) and link it from the card.
        progress: show a tqdm bar per source.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        *,
        shard_bytes: int | str = DEFAULT_SHARD_BYTES,
        on_error: Literal["raise", "skip"] = "raise",
        ssl_hook: SslFeatureHook | None = None,
        token_hook: MotionTokenHook | None = None,
        hook_batch_rows: int = 16,
        row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
        row_group_bytes: int | str = DEFAULT_ROW_GROUP_BYTES,
        shards_per_split: int = DEFAULT_SHARDS_PER_SPLIT,
        overwrite: bool = False,
        preview: bool = True,
        progress: bool = True,
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}.")
        self.output_dir = Path(output_dir)
        self.shard_bytes = parse_size(shard_bytes)
        self.row_group_bytes = parse_size(row_group_bytes)
        self.row_group_rows = row_group_rows
        if not isinstance(shards_per_split, int) or shards_per_split < 1:
            raise ValueError(f"shards_per_split must be a positive integer, got {shards_per_split!r}.")
        self.shards_per_split = shards_per_split
        self.on_error, self.ssl_hook, self.token_hook = on_error, ssl_hook, token_hook
        self.hook_batch_rows = hook_batch_rows if (ssl_hook or token_hook) else 1
        self.overwrite, self.preview, self.progress = overwrite, preview, progress

    # -------------------------------------------------------------- setup
    def _prepare_output(self) -> None:
        prepare_output(self.output_dir, self.overwrite)

    def _resolve_schema(self, first_row: Mapping[str, Any]) -> None:
        """Fix the optional columns from the hooks, or from what the first row carries (sources may add them)."""
        self._validator = RowValidator.for_first_row(first_row, self.ssl_hook, self.token_hook)
        self._ssl_shape, self._tokens_per_chunk = self._validator.ssl_shape, self._validator.tokens_per_chunk
        self.features = self._validator.features

    # -------------------------------------------------------------- rows
    def _validate(self, row: dict[str, Any]) -> str:
        """Validate one source row in place (pops `split`); returns the split."""
        return self._validator.validate(row)

    def _reject(self, error: RowValidationError) -> None:
        self.report.rejected[error.field] += 1
        if len(self.report.rejected_rows) < MAX_LISTED_REJECTS:
            self.report.rejected_rows.append({"id": error.row_id, "field": error.field, "error": str(error)})
        logger.warning("skipped %s", error)

    def _flush_pending(self) -> None:
        """Run the hooks on validated rows and hand them to the shard writers, in source order."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        rows = [row for row, _ in pending]
        if self.ssl_hook is not None:
            self.ssl_hook(rows)
        if self.token_hook is not None:
            self.token_hook(rows)
        for row, split in pending:
            if self.ssl_hook is not None or self.token_hook is not None:
                try:
                    _check_hook_columns(row, self._ssl_shape, self._tokens_per_chunk)
                except RowValidationError as error:
                    if self.on_error == "raise":
                        raise
                    self._reject(error)
                    continue
            key = (row["domain"], split)
            if key not in self._writers:
                self._writers[key] = _ShardWriter(
                    self.output_dir,
                    row["domain"],
                    split,
                    self.features,
                    self.shard_bytes,
                    self.row_group_rows,
                    self.row_group_bytes,
                    self.shards_per_split,
                )
            self._writers[key].add(row, _row_nbytes(row))
            self.report.rows_written[key] += 1

    # -------------------------------------------------------------- main loop
    def build(self, sources: Iterable[ClipSource], command: str | None = None) -> BuildReport:
        """Write every row of every source; returns the report. Raises the first RowValidationError when
        `on_error="raise"`, after closing the shards written so far and writing the card for them."""
        sources = list(sources)
        self._prepare_output()
        self.report = BuildReport(self.output_dir)
        self._writers: dict[tuple[str, str], _ShardWriter] = {}
        self._pending: list[tuple[dict[str, Any], str]] = []
        self._ssl_shape, self._tokens_per_chunk = None, None
        self.features: datasets.Features | None = None
        start = time.perf_counter()
        hook_failed = False
        try:
            for source in sources:
                bar = tqdm(
                    source.iter_rows(),
                    total=source.estimated_rows(),
                    desc=f"build {source.name}",
                    unit="clip",
                    disable=not self.progress,
                    file=sys.stderr,
                )
                for row in bar:
                    if self.features is None:
                        self._resolve_schema(row)
                    try:
                        split = self._validate(row)
                    except RowValidationError as error:
                        if self.on_error == "raise":
                            logger.error(
                                "%s. The rows before it are saved in %s; fix the source, or build with "
                                "on_error='skip' (CLI: --on-error skip) to leave such rows out.",
                                error,
                                self.output_dir,
                            )
                            raise
                        self._reject(error)
                        bar.set_postfix(rejected=sum(self.report.rejected.values()))
                        continue
                    self._pending.append((row, split))
                    if len(self._pending) >= self.hook_batch_rows:
                        hook_failed = True
                        self._flush_pending()
                        hook_failed = False
            hook_failed = True
            self._flush_pending()
            hook_failed = False
            self.report.completed = True
        finally:
            self._finish(drop_pending=hook_failed, command=command, sources=sources, start=start)
        return self.report

    def _finish(self, drop_pending: bool, command: str | None, sources: Sequence[ClipSource], start: float) -> None:
        """Close every shard (valid parquet), write the build record and the card, whatever happened."""
        try:
            if not drop_pending:
                self._flush_pending()
        except Exception:  # a hook failing on the last rows must not lose the shards already written
            logger.exception("could not write the last %d validated rows", len(self._pending))
        if self._pending:
            logger.error("dropped %d validated rows that did not reach a shard", len(self._pending))
        for writer in self._writers.values():
            writer.close()
            self.report.shards.extend(writer.shards)
        self.report.seconds = time.perf_counter() - start
        self._write_build_info(command, sources)
        write_card_and_preview(self.output_dir, self.preview and bool(self.report.total_rows))
        rejected = sum(self.report.rejected.values())
        logger.info(
            "%s: %d rows in %d shards, %d rejected, %.1f s",
            self.output_dir,
            self.report.total_rows,
            len(self.report.shards),
            rejected,
            self.report.seconds,
        )

    def _write_build_info(self, command: str | None, sources: Sequence[ClipSource]) -> None:
        write_build_info(
            self.output_dir,
            self.report,
            command=command,
            sources=sources,
            settings=self.settings(),
            features=self.features,
            ssl_encoder=self.ssl_hook.describe() if self.ssl_hook else None,
            motion_tokenizer=self.token_hook.describe() if self.token_hook else None,
        )

    def settings(self) -> dict[str, Any]:
        """The layout settings the build record keeps (shared with the datatrove pipeline's record)."""
        return {
            "shard_bytes_target": self.shard_bytes,
            "row_group_rows": self.row_group_rows,
            "shards_per_split": self.shards_per_split,
            "on_error": self.on_error,
        }


# ------------------------------------------------------------------------------------------------------------
# Repo-level steps shared with the datatrove pipeline (one home each)
# ------------------------------------------------------------------------------------------------------------


def prepare_output(output_dir: Path, overwrite: bool) -> None:
    """Refuse to mix two builds in one folder; with `overwrite`, remove the previous build's shards and files."""
    existing = list((output_dir / DATA_DIR).glob("**/*.parquet"))
    if existing and not overwrite:
        raise FileExistsError(
            f"{output_dir} already holds {len(existing)} shards; pass overwrite=True (CLI: --overwrite) to "
            "replace them, or choose another --output."
        )
    if existing:
        shutil.rmtree(output_dir / DATA_DIR)
        for name in REPO_FILES:
            (output_dir / name).unlink(missing_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)


def write_build_info(
    output_dir: Path,
    report: BuildReport,
    *,
    command: str | None,
    sources: Sequence[ClipSource],
    settings: Mapping[str, Any],
    features: datasets.Features | None,
    ssl_encoder: dict[str, Any] | None,
    motion_tokenizer: dict[str, Any] | None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write `unihand_build.json`: what was built, how, and what was rejected (the card reads it)."""
    info = {
        "format_version": 1,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "completed": report.completed,
        "command": command,
        "sources": [
            {"name": getattr(source, "name", type(source).__name__), "options": _jsonable(vars(source))}
            for source in sources
        ],
        **settings,
        "features": features.to_dict() if features is not None else None,
        "ssl_encoder": ssl_encoder,
        "motion_tokenizer": motion_tokenizer,
        "rows_written": report.total_rows,
        "rejected": {
            "count": sum(report.rejected.values()),
            "by_field": dict(report.rejected),
            "rows": report.rejected_rows,
        },
        "seconds": round(report.seconds, 2),
        **(extra or {}),
        "versions": {
            "python": sys.version.split()[0],
            "datasets": datasets.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
    }
    (output_dir / BUILD_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")


def write_card_and_preview(output_dir: Path, preview: bool) -> None:
    """Render `preview.png` (when asked) and write the card for the shards on disk; never raises, so a card
    problem cannot lose the shards already written."""
    try:
        from dataset_scripts import card

        if preview:
            card.render_preview(output_dir, output_dir / PREVIEW_FILE)
        card.write_card(output_dir)
    except Exception:
        logger.exception("could not write the dataset card for %s; run `python -m dataset_scripts info`", output_dir)


def build_unihand(
    output_dir: str | os.PathLike, sources: Iterable[ClipSource], command: str | None = None, **options: Any
) -> BuildReport:
    """One-call build: `build_unihand(dir, [source, ...], shard_bytes="64MB", on_error="skip")`."""
    return UniHandBuilder(output_dir, **options).build(sources, command=command)
