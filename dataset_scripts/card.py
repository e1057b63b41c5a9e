"""The dataset card (README.md) of a UniHand-Mix repo, its statistics, its checks and its preview image.

Why the card carries the configs: `load_dataset(dir, "all", streaming=True)` needs no loading script when the
README's YAML front matter lists `configs:` with `data_files` per split (the Hub's "manual configuration"). The
single-domain configs are globs over the builder's shard names (`data/{domain}/{split}-*.parquet`); `all`'s train
split, which mixes domains, lists its shards in an order that `split_dataset_by_node` splits with both domains on
every rank (`interleaved_train_files`). `check_repo` verifies every pattern matches files, every shard is
reachable and the licence fields are complete. The card also declares each config's split sizes, which a
non-streaming `load_dataset` checks the rows it read against. Statistics are read from the shards themselves (a
handful of small columns), so `info` and the card describe what is on disk, also after a build that stopped at a
bad row.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.parquet as pq
import yaml
from huggingface_hub import DatasetCardData
from PIL import Image, ImageDraw, ImageFont

from dataset_scripts.images import decode_image
from dataset_scripts.repo_layout import (
    BUILD_INFO_FILE,
    CARD_FILE,
    DEFAULT_SHARDS_PER_SPLIT,
    DOMAINS,
    LICENSE_FILE,
    PREVIEW_FILE,
    SPLITS,
    ShardRecord,
    read_build_info,
    shard_domain_split,
    shard_files,
    shard_glob,
    shard_index,
)
from dataset_scripts.schema import COLUMN_DOCS, OPTIONAL_COLUMN_DOCS, boundary_frame_indices
from dataset_scripts.streaming import read_features, table_to_rows
from modeling_jala.hand_jala import JOINTS_XYZ, hand_skeleton_edges

logger = logging.getLogger(__name__)

CONFIG_DOMAINS: dict[str, tuple[str, ...]] = {"lab": ("lab",), "wild": ("wild",), "all": DOMAINS}
LICENSE_NAME = "unihand-mix-per-source"
#: Sources whose clips this project's code generates (Apache-2.0, like the code); any other source is third-party.
PROCEDURAL_SOURCES = ("synthetic", "fixture")
#: Columns that are null in some rows (unlabelled clips have no motion).
NULLABLE_ARRAY_COLUMNS = ("motion",)
_STAT_COLUMNS = ["source", "domain", "task_type", "labelled", "label_source", "num_frames", "fps"]
_HAND_COLOURS = ((255, 140, 0), (0, 170, 255))  # left, right


# ------------------------------------------------------------------------------------------------------------
# Statistics
# ------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class RepoStats:
    """Row and frame counts keyed by (domain, split, source, task_type, label_source, labelled), and the shards."""

    repo: Path
    shards: list[ShardRecord]
    rows: Counter
    seconds: Counter
    columns: list[str]
    #: Uncompressed parquet bytes per shard path (about the Arrow size `datasets` reports as `num_bytes`).
    uncompressed_bytes: dict[str, int] = dataclasses.field(default_factory=dict)

    KEYS = ("domain", "split", "source", "task_type", "label_source", "labelled")

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def total_hours(self) -> float:
        return sum(self.seconds.values()) / 3600.0

    @property
    def labelled_fraction(self) -> float:
        labelled = sum(count for key, count in self.rows.items() if key[-1])
        return labelled / self.total_rows if self.total_rows else 0.0

    def summary(self, by: Sequence[str], where: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Rows, hours and labelled fraction grouped by `by` (names from KEYS), optionally filtered."""
        where = where or {}
        groups: dict[tuple, list[float]] = {}
        for key, count in self.rows.items():
            record = dict(zip(self.KEYS, key, strict=True))
            if any(
                record[name] not in (value if isinstance(value, tuple) else (value,)) for name, value in where.items()
            ):
                continue
            group = groups.setdefault(tuple(record[name] for name in by), [0, 0.0, 0])
            group[0] += count
            group[1] += self.seconds[key] / 3600.0
            group[2] += count if record["labelled"] else 0
        return [
            {
                **dict(zip(by, key, strict=True)),
                "rows": rows,
                "hours": hours,
                "labelled_fraction": labelled / rows if rows else 0.0,
            }
            for key, (rows, hours, labelled) in sorted(groups.items())
        ]

    def config_table(self) -> list[dict[str, Any]]:
        """One line per (config, split) as `load_dataset(dir, config, split=...)` would see them."""
        lines = []
        for config, domains in CONFIG_DOMAINS.items():
            for split in SPLITS:
                part = self.summary((), where={"domain": domains, "split": split})
                shards = [s for s in self.shards if s.domain in domains and s.split == split]
                if part and part[0]["rows"]:
                    lines.append(
                        {
                            "config": config,
                            "split": split,
                            **part[0],
                            "shards": len(shards),
                            "bytes": _sum_bytes(shards),
                        }
                    )
        return lines


def _sum_bytes(shards: Iterable[ShardRecord]) -> int:
    return sum(shard.bytes for shard in shards)


def collect_stats(repo_dir: str | os.PathLike) -> RepoStats:
    """Read the small columns of every shard (no images) and count."""
    repo = Path(repo_dir)
    rows: Counter = Counter()
    seconds: Counter = Counter()
    shards: list[ShardRecord] = []
    columns: list[str] = []
    uncompressed: dict[str, int] = {}
    for path in shard_files(repo):
        domain, split = shard_domain_split(path)
        parquet = pq.ParquetFile(path)
        columns = columns or parquet.schema_arrow.names
        shards.append(
            ShardRecord(
                path.relative_to(repo).as_posix(),
                domain,
                split,
                parquet.metadata.num_rows,
                path.stat().st_size,
                parquet.metadata.num_row_groups,
            )
        )
        uncompressed[shards[-1].path] = sum(
            parquet.metadata.row_group(group).total_byte_size for group in range(parquet.metadata.num_row_groups)
        )
        table = parquet.read(columns=_STAT_COLUMNS).to_pydict()
        for source, row_domain, task, labelled, label_source, frames, fps in zip(
            *(table[name] for name in _STAT_COLUMNS), strict=True
        ):
            key = (row_domain, split, source, task, label_source, bool(labelled))
            rows[key] += 1
            seconds[key] += frames / fps
    return RepoStats(repo, shards, rows, seconds, columns, uncompressed)


# ------------------------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    return str(value)


def format_table(records: Sequence[dict[str, Any]], columns: Sequence[str], markdown: bool = False) -> str:
    """Records as an aligned text table (or a markdown table)."""
    cells = [[_cell(record.get(column, "")) for column in columns] for record in records]
    numeric = [all(isinstance(r.get(c), int | float) for r in records) for c in columns]
    if markdown:
        lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])
    widths = [
        max(len(column), *(len(row[i]) for row in cells)) if cells else len(column) for i, column in enumerate(columns)
    ]
    align = [str.rjust if is_number else str.ljust for is_number in numeric]
    lines = ["  ".join(a(column, width) for column, width, a in zip(columns, widths, align, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(a(cell, width) for cell, width, a in zip(row, widths, align, strict=True)) for row in cells]
    return "\n".join(lines)


def stats_tables(stats: RepoStats, markdown: bool = False) -> dict[str, str]:
    """The tables `info` prints and the card shows, by title."""
    for_display = []
    for line in stats.config_table():
        for_display.append({**line, "MB": line["bytes"] / 2**20, "labelled %": 100 * line["labelled_fraction"]})
    by_source = [
        {**line, "labelled %": 100 * line["labelled_fraction"]}
        for line in stats.summary(("source", "domain", "split"))
    ]
    by_task = stats.summary(("task_type", "domain"))
    by_label = stats.summary(("label_source", "labelled"))
    sizes = np.array([shard.bytes for shard in stats.shards] or [0]) / 2**20
    shard_rows = np.array([shard.rows for shard in stats.shards] or [0])
    shards = [
        {
            "shards": len(stats.shards),
            "total MB": float(sizes.sum()),
            "min MB": float(sizes.min()),
            "median MB": float(np.median(sizes)),
            "max MB": float(sizes.max()),
            "rows/shard (median)": int(np.median(shard_rows)),
            "row groups": sum(shard.row_groups for shard in stats.shards),
        }
    ]
    return {
        "Configs and splits": format_table(
            for_display, ("config", "split", "rows", "hours", "labelled %", "shards", "MB"), markdown
        ),
        "Sources": format_table(by_source, ("source", "domain", "split", "rows", "hours", "labelled %"), markdown),
        "Task types": format_table(by_task, ("task_type", "domain", "rows", "hours"), markdown),
        "Labels": format_table(by_label, ("label_source", "labelled", "rows", "hours"), markdown),
        "Shards": format_table(shards, list(shards[0]), markdown),
    }


# ------------------------------------------------------------------------------------------------------------
# Card
# ------------------------------------------------------------------------------------------------------------


def interleaved_train_files(shards: Sequence[ShardRecord], bundles: int = DEFAULT_SHARDS_PER_SPLIT) -> list[str]:
    """The shards of a split holding several domains, in an order that `split_dataset_by_node` splits with every
    domain on every rank.

    Why: a glob lists `data/lab/...` before `data/wild/...`. A map-style dataset is split into contiguous row
    ranges (rank 0 would get only lab clips) and a streaming one hands out shards round-robin. So each domain's
    shards are cut into `bundles` runs of equal row counts (the builder deals rows over that many parallel shards,
    so one run per generation), bundle b takes run b of every domain, and the bundles are concatenated: each of
    `bundles` contiguous row ranges holds every domain in its share. Inside a bundle the domains' shards are
    rotated so that across bundles every domain sits at every position modulo `bundles`, which is what
    round-robin over 2, 4 or 8 ranks (x DataLoader workers) picks from. A shuffled stream permutes shards first
    and loses this; `UniHandStream` / `hf_streaming_mixture` split per domain instead.
    """
    by_domain: dict[str, list[ShardRecord]] = {}
    for shard in sorted(shards, key=lambda record: (record.domain, shard_index(record.path))):
        by_domain.setdefault(shard.domain, []).append(shard)
    # bundle -> (position of the shard's middle row in its domain, domain, path)
    contents: list[list[tuple[float, str, str]]] = [[] for _ in range(bundles)]
    for domain, domain_shards in sorted(by_domain.items()):
        total = sum(shard.rows for shard in domain_shards) or 1
        before = 0
        for shard in domain_shards:
            middle = (before + shard.rows / 2) / total
            contents[min(bundles - 1, int(middle * bundles))].append((middle, domain, shard.path))
            before += shard.rows
    order: list[tuple[str, str]] = []  # (domain, path)
    covered: set[tuple[str, int]] = set()  # (domain, position modulo bundles) already taken
    for content in contents:
        base = [(domain, path) for _, domain, path in sorted(content)]
        rotations = [base[shift:] + base[:shift] for shift in range(len(base))]
        slots = [{(domain, (len(order) + i) % bundles) for i, (domain, _) in enumerate(r)} for r in rotations]
        best = max(range(len(rotations)), key=lambda shift: (len(slots[shift] - covered), -shift), default=None)
        if best is not None:
            order += rotations[best]
            covered |= slots[best]
    return [path for _, path in order]


def card_configs(stats: RepoStats, bundles: int = DEFAULT_SHARDS_PER_SPLIT) -> list[dict[str, Any]]:
    """YAML `configs:` entries for the (config, split) pairs that have shards; `all` is the default.

    Single-domain splits are globs; a split holding several domains (`all/train`) lists its shards in
    `interleaved_train_files` order, so that it splits across ranks with every domain on each."""
    configs = []
    for config, domains in CONFIG_DOMAINS.items():
        data_files = []
        for split in SPLITS:
            shards = [s for s in stats.shards if s.domain in domains and s.split == split]
            if not shards:
                continue
            if len({shard.domain for shard in shards}) > 1:
                data_files.append({"split": split, "path": interleaved_train_files(shards, bundles)})
            else:
                data_files.append({"split": split, "path": shard_glob(shards[0].domain, split)})
        if data_files:
            entry: dict[str, Any] = {"config_name": config, "data_files": data_files}
            if config == "all":
                entry["default"] = True
            configs.append(entry)
    return configs


def data_file_paths(data_file: dict[str, Any]) -> list[str]:
    """The path patterns of a card `data_files` entry (one glob, or a list of files)."""
    path = data_file["path"]
    return list(path) if isinstance(path, list) else [path]


def card_license(stats: RepoStats) -> dict[str, str]:
    """The licence fields of the card: Apache-2.0 when every clip is procedural (this project's code made it),
    else `other` with the `license_name` / `license_link` the Hub requires for it, pointing at LICENSE.md."""
    sources = {key[2] for key in stats.rows}
    if sources and sources <= set(PROCEDURAL_SOURCES):
        return {"license": "apache-2.0"}
    return {"license": "other", "license_name": LICENSE_NAME, "license_link": LICENSE_FILE}


def render_license(stats: RepoStats) -> str:
    """LICENSE.md for a build with third-party or unknown sources: the terms that apply, source by source."""
    lines = [
        "# UniHand-Mix build: licence terms by source",
        "",
        "This repository mixes clips from several sources; each clip keeps the terms of its `source` column:",
        "",
    ]
    for source in sorted({key[2] for key in stats.rows}):
        if source in PROCEDURAL_SOURCES:
            terms = (
                "generated by the JALA open implementation's code and released with it under Apache-2.0 (labels "
                "come from this project's open MANO-like skeleton; no MANO model files are used)."
            )
        elif source == "video":
            terms = (
                "frames of third-party footage: each clip keeps the licence of its source video (see the source "
                "list of the ingested folder, e.g. its SOURCES.md); the pseudo-labels are derived data."
            )
        else:
            terms = (
                "converted from an external dataset: that dataset's own licence applies (most public hand "
                "datasets are for research only). Check it before redistributing this build."
            )
        lines.append(f"- `{source}`: {terms}")
    lines += [
        "",
        "Redistribute a build only if every source it contains allows it; filter rows by `source` to drop the "
        "ones that do not.",
        "",
    ]
    return "\n".join(lines)


def card_features(features: datasets.Features) -> datasets.Features:
    """The features the card declares: the shards' own, with nullable arrays as nested lists.

    Why: datasets 5.2 decodes a null row of a dynamic-first-dimension `Array3D` as `nan` when streaming and
    crashes (`'float' object has no attribute 'tolist'`) when reading batches of a loaded dataset, so an unlabelled
    clip's `motion` would not come back as None. Nested lists have the same arrow storage (no cast, no copy) and
    keep nulls; `with_format("numpy")` still returns (T, 2, 162) float32 arrays. Shards written now already carry
    nested lists in their own metadata (`schema.unihand_features`); shards of older builds carry `Array3D`, which
    this maps, so their card agrees with the new one.
    """
    declared = {}
    for name, feature in features.items():
        if name in NULLABLE_ARRAY_COLUMNS and isinstance(feature, datasets.Array3D) and feature.shape[0] is None:
            feature = datasets.List(datasets.List(datasets.List(datasets.Value(feature.dtype))))
        declared[name] = feature
    return datasets.Features(declared)


def _split_infos(stats: RepoStats, domains: Sequence[str]) -> tuple[datasets.SplitDict, int, int]:
    """Split sizes of a config (what non-streaming `load_dataset` checks the rows it read against), its download
    size (parquet bytes) and dataset size (uncompressed bytes)."""
    splits = datasets.SplitDict()
    download = dataset_size = 0
    for split in SPLITS:
        shards = [shard for shard in stats.shards if shard.domain in domains and shard.split == split]
        if not shards:
            continue
        num_bytes = sum(stats.uncompressed_bytes.get(shard.path, shard.bytes) for shard in shards)
        splits.add(datasets.SplitInfo(name=split, num_bytes=num_bytes, num_examples=sum(s.rows for s in shards)))
        download += _sum_bytes(shards)
        dataset_size += num_bytes
    return splits, download, dataset_size


def _front_matter(stats: RepoStats, features: datasets.Features | None, bundles: int) -> str:
    configs = card_configs(stats, bundles)
    size = stats.total_rows
    size_category = "n<1K" if size < 1e3 else "1K<n<10K" if size < 1e4 else "10K<n<100K" if size < 1e5 else "100K<n<1M"
    card_data = DatasetCardData(
        pretty_name="UniHand-Mix (JALA open implementation)",
        **card_license(stats),
        task_categories=["robotics"],
        tags=["hand-motion", "mano", "egocentric", "vision-language-action", "jala"],
        size_categories=[size_category],
        configs=configs,
    )
    if features is not None:
        features = card_features(features)
        infos = {}
        for entry in configs:
            splits, download, dataset_size = _split_infos(stats, CONFIG_DOMAINS[entry["config_name"]])
            infos[entry["config_name"]] = datasets.DatasetInfo(
                features=features,
                config_name=entry["config_name"],
                splits=splits,
                download_size=download,
                dataset_size=dataset_size,
            )
        datasets.info.DatasetInfosDict(infos).to_dataset_card_data(card_data)
    return card_data.to_yaml()


def _column_table(columns: Sequence[str]) -> str:
    docs = {**COLUMN_DOCS, **OPTIONAL_COLUMN_DOCS}
    lines = ["| column | meaning |", "|---|---|"]
    for name in columns:
        lines.append(f"| `{name}` | {docs.get(name, '(not in the schema docs)').replace('|', '/')} |")
    return "\n".join(lines)


def render_card(repo_dir: str | os.PathLike, stats: RepoStats | None = None) -> str:
    """The README.md text for a repo as it is on disk."""
    repo = Path(repo_dir)
    stats = stats or collect_stats(repo)
    info = read_build_info(repo)
    features = read_features(repo / stats.shards[0].path) if stats.shards else None
    tables = stats_tables(stats, markdown=True)
    encoder, tokenizer = info.get("ssl_encoder"), info.get("motion_tokenizer")
    rejected = info.get("rejected", {})
    sources = sorted({key[2] for key in stats.rows})
    bundles = int(info.get("shards_per_split") or DEFAULT_SHARDS_PER_SPLIT)
    lines = [
        "---",
        _front_matter(stats, features, bundles).rstrip(),
        "---",
        "",
        "# UniHand-Mix (mini)",
        "",
        "Clips of one or two human hands with an instruction, the first frame, the boundary frames of every 15-frame "
        "chunk and, where labelled, MANO-D162 hand motion at 15 fps: the pretraining data of JALA "
        "([arXiv 2602.21736](https://arxiv.org/abs/2602.21736)), rebuilt openly by `python -m dataset_scripts build`. "
        "*Lab* clips carry exact labels; *wild* clips mostly carry none, some carry confident pseudo-labels.",
        "",
    ]
    if (repo / PREVIEW_FILE).exists():
        lines += [
            f"![lab vs wild preview]({PREVIEW_FILE})",
            "",
            "Lab (top) and wild (bottom) clips: boundary frames with the 21-joint skeleton of labelled clips "
            "projected through `camera_intrinsics` (left hand orange, right hand blue).",
            "",
        ]
    lines += [
        "## Load",
        "",
        "```python",
        "from datasets import load_dataset",
        f'ds = load_dataset("{repo.name}", "all", split="train", streaming=True)  # or "lab" / "wild"',
        "",
        "# training: weighted lab/wild mixture, shuffle buffer, exact resume, per-rank split",
        "from dataset_scripts.streaming import UniHandStream",
        "from dataset_scripts.collator import UniHandCollator",
        f'stream = UniHandStream("{repo.name}", split="train", domain_weights={{"lab": 0.7, "wild": 0.3}})',
        "```",
        "",
        "Shards: `data/{domain}/{split}-{index:05d}.parquet`. Configs: `lab` (splits train, test_lab), `wild` "
        "(train, test_wild), `all` (default, every split). `test_wild` holds wild scenes never seen in training, "
        "with exact labels, for Lab/Wild MPJPE as in the paper's Table 1.",
        "",
        f"Every domain and split is dealt row by row into {bundles} parallel shards of equal row counts (rolling "
        f"over {bundles} at a time), and `all`'s train split lists its shards interleaved (not lab-then-wild), so "
        "`datasets.distributed.split_dataset_by_node` gives each of 2, 4 or 8 ranks (and DataLoader workers) "
        "clips of both domains, streaming or not. Shuffle a stream after splitting it, or use "
        "`hf_streaming_mixture` / `UniHandStream`, which split each domain separately.",
        "",
        "## Contents",
        "",
        f"{stats.total_rows} clips, {stats.total_hours:.2f} hours, {100 * stats.labelled_fraction:.1f} % labelled, "
        f"sources: {', '.join(sources) or 'none'}.",
        "",
    ]
    for title, table in tables.items():
        lines += [f"### {title}", "", table, ""]
    if rejected.get("count"):
        by_field = ", ".join(f"{field}: {count}" for field, count in rejected.get("by_field", {}).items())
        lines += [
            f"{rejected['count']} source rows were rejected by validation ({by_field}); ids in `{BUILD_INFO_FILE}`.",
            "",
        ]
    if info and not info.get("completed", True):
        lines += [
            "**This build stopped early** (see `unihand_build.json`); the shards above are complete and valid, the "
            "rest of the sources was not written.",
            "",
        ]
    lines += [
        "## Columns",
        "",
        _column_table(stats.columns or list(COLUMN_DOCS)),
        "",
        "Conventions: camera frame (OpenCV: +x right, +y down, +z forward), metres, hand order (left, right), "
        "15 fps. A clip of T frames has N = ceil(T / 15) chunks and N + 1 boundary frames at t = 0, 15, ..., 15 N "
        "(the last clamped to T - 1). MANO-D162 per frame and hand: [0:90] 15 finger joints x rot6d, [90:96] wrist "
        "rot6d, [96:99] wrist translation, [99:162] 21 joints x xyz (MediaPipe order).",
        "",
        "`motion` is declared as nested float32 lists rather than `Array3D`, here and in every shard's own "
        "parquet metadata: datasets 5.2 turns a null `Array3D` row (an unlabelled clip) into NaN or fails on it, "
        "nested lists keep it None, also when a shard is read on its own without this card. "
        '`.with_format("numpy")` returns (T, 2, 162) float32 arrays.',
        "",
        "## Precomputed columns",
        "",
    ]
    if encoder:
        lines.append(
            f"- `ssl_features`: {encoder.get('model_class')} (`{encoder.get('name_or_path')}`, model_type "
            f"`{encoder.get('model_type')}`), image size {encoder.get('image_size')}, tokens "
            f"`{encoder.get('token_selection')}`, pool grid {encoder.get('pool_grid')}, shape per frame "
            f"{tuple(encoder.get('feature_shape', ()))}, float16. The encoder is frozen; features of a different "
            "encoder are not interchangeable."
        )
    else:
        lines.append("- `ssl_features`: not precomputed in this build (the LAP encodes boundary frames itself).")
    if tokenizer:
        per_chunk = tokenizer.get("tokens_per_chunk")
        halves = f" ({per_chunk // 2} wrist + {per_chunk // 2} finger)" if isinstance(per_chunk, int) else ""
        lines.append(
            f"- `motion_tokens`: JalaMotionTokenizer `{tokenizer.get('tokenizer')}`, codebook "
            f"{tokenizer.get('codebook_size')}, {per_chunk} tokens per chunk{halves}, -100 where a chunk or hand is "
            "missing."
        )
    else:
        lines.append("- `motion_tokens`: not precomputed in this build.")
    lines += [
        "",
        "## Build",
        "",
        f"Built {info.get('created', '(unknown date)')} in {info.get('seconds', '?')} s; target shard size "
        f"{info.get('shard_bytes_target', 0) / 2**20:.0f} MB.",
        "",
    ]
    if info.get("command"):
        lines += ["```bash", info["command"], "```", ""]
    lines += [
        "## Licence notes",
        "",
        "- Procedural clips (`synthetic`, `fixture`): generated by this project's code, released with it "
        "(Apache-2.0). The hand is this project's open MANO-like skeleton; no MANO model files are used or "
        "redistributed, so MANO's licence does not apply to the labels.",
        "- Real-video clips (`video`): frames of third-party footage keep the licence of their source (see the "
        "source list, e.g. `SOURCES.md` of the ingested folder); pseudo-labels are derived data. Check those terms "
        "before redistributing a build that contains them.",
        "- Converted lab datasets: their own licences apply (most public hand datasets are research-only).",
        "",
        "## Citation",
        "",
        "```bibtex",
        "@article{jala2026,",
        "  title   = {JALA: Joint-Aligned Latent Action pretraining from human hand videos},",
        "  journal = {arXiv preprint arXiv:2602.21736},",
        "  year    = {2026}",
        "}",
        "```",
        "",
    ]
    return "\n".join(lines)


def write_card(repo_dir: str | os.PathLike) -> Path:
    """Write README.md for the repo as it is on disk (and LICENSE.md where the card links to it); returns its
    path."""
    repo = Path(repo_dir)
    stats = collect_stats(repo)
    if card_license(stats).get("license_link") == LICENSE_FILE:
        (repo / LICENSE_FILE).write_text(render_license(stats))
    path = repo / CARD_FILE
    path.write_text(render_card(repo, stats))
    return path


def read_card_yaml(repo_dir: str | os.PathLike) -> dict[str, Any]:
    """The YAML front matter of README.md as a dict; raises ValueError naming what is wrong."""
    text = (Path(repo_dir) / CARD_FILE).read_text()
    if not text.startswith("---\n") or "\n---\n" not in text[4:]:
        raise ValueError("README.md has no YAML front matter between '---' lines; rewrite it with write_card().")
    return yaml.safe_load(text[4 : text.index("\n---\n", 4)])


def check_repo(repo_dir: str | os.PathLike) -> list[str]:
    """Problems that would stop `load_dataset(dir, config)` or hide shards from it; empty when the repo is sound."""
    repo = Path(repo_dir)
    problems: list[str] = []
    if not (repo / CARD_FILE).exists():
        return ["README.md is missing; run `python -m dataset_scripts info DIR --write-card`."]
    try:
        front = read_card_yaml(repo)
    except (ValueError, yaml.YAMLError) as error:
        return [f"README.md front matter: {error}"]
    configs = {entry.get("config_name"): entry for entry in front.get("configs", [])}
    shards = {path.relative_to(repo).as_posix() for path in shard_files(repo)}
    if shards and "all" not in configs:
        problems.append("configs: no `all` config; every shard must be reachable through it.")
    reached: set[str] = set()
    if front.get("license") == "other" and not (front.get("license_name") and front.get("license_link")):
        problems.append("license: other needs license_name and license_link; rewrite the card with write_card().")
    link = front.get("license_link")
    if link and "://" not in link and not (repo / link).exists():
        problems.append(f"license_link {link} is not in the repo; rewrite the card with write_card().")
    for name, entry in configs.items():
        for data_file in entry.get("data_files", []):
            matched = set()
            for pattern in data_file_paths(data_file):
                found = {p.relative_to(repo).as_posix() for p in repo.glob(pattern)}
                if not found:
                    problems.append(f"config {name!r} split {data_file['split']!r}: {pattern} matches no file.")
                matched |= found
            if data_file["split"] not in SPLITS:
                problems.append(f"config {name!r}: split {data_file['split']!r} is not one of {SPLITS}.")
            if name == "all":
                reached |= matched
    for missing in sorted(shards - reached):
        problems.append(f"{missing} is not reached by config 'all'; rewrite the card with write_card().")
    reference = None
    for path in sorted(shards):
        features = read_features(repo / path)
        if reference is None:
            reference = features
        elif features != reference:
            problems.append(f"{path}: features differ from the first shard's; rebuild with one schema.")
    return problems


# ------------------------------------------------------------------------------------------------------------
# Preview
# ------------------------------------------------------------------------------------------------------------

_PREVIEW_COLUMNS = [
    "id",
    "domain",
    "instruction",
    "task_type",
    "labelled",
    "label_source",
    "num_frames",
    "hands_present",
    "boundary_frames",
    "camera_intrinsics",
    "motion",
]


def _preview_rows(repo: Path, domain: str, count: int) -> list[dict[str, Any]]:
    """Up to `count` rows of a domain, dealt round-robin over (source, labelled) so that every source and both
    labelled and unlabelled clips show; only the `source` / `labelled` columns are scanned, then the picked row
    groups are read."""
    files = sorted(shard_files(repo, domain), key=lambda p: (not p.name.startswith("train"), p))
    candidates: dict[tuple[str, bool], list[tuple[Path, int, int]]] = {}
    for path in files:
        parquet = pq.ParquetFile(path)
        keys = parquet.read(columns=["source", "labelled"]).to_pydict()
        starts = np.cumsum(
            [0] + [parquet.metadata.row_group(g).num_rows for g in range(parquet.metadata.num_row_groups)]
        )
        for index, key in enumerate(zip(keys["source"], keys["labelled"], strict=True)):
            found = candidates.setdefault(key, [])
            if len(found) < count:
                group = int(np.searchsorted(starts, index, side="right") - 1)
                found.append((path, group, index - int(starts[group])))
    ordered = sorted(candidates, key=lambda key: (key[0], not key[1]))
    picked: list[tuple[Path, int, int]] = []
    for position in range(count):
        picked += [candidates[key][position] for key in ordered if position < len(candidates[key])]
    picked = picked[:count]
    rows: dict[tuple[Path, int, int], dict[str, Any]] = {}
    for path, group in dict.fromkeys((path, group) for path, group, _ in picked):
        table = pq.ParquetFile(path).read_row_group(group, columns=_PREVIEW_COLUMNS)
        for offset, row in enumerate(table_to_rows(table, read_features(path))):
            rows[(path, group, offset)] = row
    return [rows[address] for address in picked]


def _draw_skeleton(
    draw: ImageDraw.ImageDraw, row: dict[str, Any], frame: int, scale: tuple[float, float], offset: tuple[int, int]
) -> None:
    fx, fy, cx, cy = row["camera_intrinsics"]
    motion = np.asarray(row["motion"])
    for hand, present in enumerate(row["hands_present"]):
        if not present:
            continue
        joints = motion[frame, hand, JOINTS_XYZ].reshape(21, 3)
        z = np.clip(joints[:, 2], 1e-3, None)
        u = ((fx * joints[:, 0] / z + cx + 0.5) * scale[0] - 0.5) + offset[0]
        v = ((fy * joints[:, 1] / z + cy + 0.5) * scale[1] - 0.5) + offset[1]
        colour = _HAND_COLOURS[hand]
        for parent, child in hand_skeleton_edges():
            draw.line((u[parent], v[parent], u[child], v[child]), fill=colour, width=2)
        for x, y in zip(u, v, strict=True):
            draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=(255, 255, 255))


def render_preview(
    repo_dir: str | os.PathLike,
    output: str | os.PathLike,
    clips_per_domain: int = 3,
    frames_per_clip: int = 5,
    thumb: int = 144,
) -> Path:
    """Contact sheet: for lab then wild, a line per clip of evenly spaced boundary frames; labelled clips get the
    21-joint skeleton projected through `camera_intrinsics`, unlabelled ones none. Returns the PNG path."""
    repo, output = Path(repo_dir), Path(output)
    sections = [(domain, _preview_rows(repo, domain, clips_per_domain)) for domain in DOMAINS]
    sections = [(domain, rows) for domain, rows in sections if rows]
    if not sections:
        raise ValueError(f"{repo} has no rows to preview; build it first.")
    font = ImageFont.load_default()
    pad, caption, title = 6, 14, 20
    width = pad + frames_per_clip * (thumb + pad)
    height = sum(title + len(rows) * (caption + thumb + pad) for _, rows in sections) + pad
    sheet = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    y = pad
    for domain, rows in sections:
        draw.text(
            (pad, y + 3),
            f"{domain} clips ({'exact labels' if domain == 'lab' else 'mostly unlabelled'})",
            fill=(0, 0, 0),
            font=font,
        )
        y += title
        for row in rows:
            label = row["label_source"] if row["labelled"] else "unlabelled"
            text = f"{row['id']}  [{row['task_type']}, {label}]  {row['instruction']}"
            draw.text((pad, y), text[: width // 6], fill=(40, 40, 40), font=font)
            y += caption
            indices = boundary_frame_indices(int(row["num_frames"]))
            picks = np.unique(np.linspace(0, len(indices) - 1, frames_per_clip).round().astype(int))
            for column, pick in enumerate(picks):
                image = decode_image(row["boundary_frames"][pick])
                # Fit into the square tile keeping the aspect ratio (real footage is rarely square).
                factor = min(thumb / image.width, thumb / image.height)
                size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
                offset = ((thumb - size[0]) // 2, (thumb - size[1]) // 2)
                tile = Image.new("RGB", (thumb, thumb), (30, 30, 30))
                tile.paste(image.resize(size, Image.BILINEAR), offset)
                if row["labelled"] and row["motion"] is not None:  # drawn on the tile: joints out of view are clipped
                    scale = (size[0] / image.width, size[1] / image.height)
                    _draw_skeleton(ImageDraw.Draw(tile), row, indices[pick], scale, offset)
                x = pad + column * (thumb + pad)
                sheet.paste(tile, (x, y))
                draw.text((x + 2, y + 2), f"t={indices[pick]}", fill=(255, 255, 255), font=font)
            y += thumb + pad
    output.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(output)
    logger.info("preview written to %s", output)
    return output
