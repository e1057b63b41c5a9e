"""The file layout of a UniHand-Mix repo (a Hub dataset repo, no loading script), written once.

    DIR/README.md                                   dataset card, YAML `configs:` lab / wild / all (`card`)
    DIR/LICENSE.md                                  per-source terms, when a source is not this project's own
    DIR/preview.png                                 lab vs wild contact sheet linked from the card
    DIR/unihand_build.json                          build record: sources, encoder, tokenizer, rejects (`builder`)
    DIR/data/{domain}/{split}-{index:05d}.parquet   the shards

The builder and the datatrove pipeline write these names, the card globs them in its configs and counts them,
the stream lists them, the CLI reads the build record: every one of them imports the names and path functions
from here. Splits and domains are part of the layout too: a test split holds the domain it is named after,
`train` holds both. This module imports nothing from the rest of the package, so anything may import it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

DOMAINS: tuple[str, ...] = ("lab", "wild")
SPLITS: tuple[str, ...] = ("train", "test_lab", "test_wild")
#: The domains each split holds: a test split the domain it is named after, `train` both.
SPLIT_DOMAINS: dict[str, tuple[str, ...]] = {"train": DOMAINS, "test_lab": ("lab",), "test_wild": ("wild",)}

DATA_DIR = "data"
CARD_FILE = "README.md"
LICENSE_FILE = "LICENSE.md"
PREVIEW_FILE = "preview.png"
BUILD_INFO_FILE = "unihand_build.json"
#: Every file of a build besides the shards (a rebuild with `overwrite` removes them with the shards).
REPO_FILES = (CARD_FILE, BUILD_INFO_FILE, PREVIEW_FILE, LICENSE_FILE)

#: Target shard size (a shard is closed before a row group would push it past this).
DEFAULT_SHARD_BYTES = 256 * 2**20
#: Parallel shards per (domain, split): divisible by 2, 4 and 8 ranks (or ranks x DataLoader workers).
DEFAULT_SHARDS_PER_SPLIT = 8


def shard_path(domain: str, split: str, index: int) -> str:
    """Repo-relative path of a shard; the card's configs glob these names."""
    return f"{DATA_DIR}/{domain}/{split}-{index:05d}.parquet"


def shard_glob(domain: str | None = None, split: str | None = None) -> str:
    """Repo-relative glob of the shards of a (domain, split); None for either matches all of them."""
    return f"{DATA_DIR}/{domain or '*'}/" + (f"{split}-*.parquet" if split else "*.parquet")


def shard_files(repo_dir: str | os.PathLike, domain: str | None = None, split: str | None = None) -> list[Path]:
    """The shards of a repo on disk (optionally of one domain and / or split), sorted by path."""
    return sorted(Path(repo_dir).glob(shard_glob(domain, split)))


def shard_domain_split(path: str | os.PathLike) -> tuple[str, str]:
    """(domain, split) of a shard path written by `shard_path` (repo-relative or not)."""
    path = Path(path)
    return path.parent.name, path.name.rsplit("-", 1)[0]


def shard_index(path: str | os.PathLike) -> int:
    """The index of a shard path written by `shard_path` (its place among the shards of its domain and split)."""
    return int(Path(path).name.rsplit("-", 1)[1].split(".")[0])


def partial_shard_path(domain: str, split: str, generation: int, position: int) -> str:
    """Repo-relative path a shard is written under until its parquet footer is on disk (hidden: no config glob
    matches it), then renamed to its `shard_path`."""
    return f"{DATA_DIR}/{domain}/.{split}-{generation:05d}-{position:03d}.parquet.incomplete"


def partial_shard_glob(domain: str, split: str) -> str:
    """Repo-relative glob of the partial shards of a (domain, split) that a stopped build left behind."""
    return f"{DATA_DIR}/{domain}/.{split}-*"


@dataclasses.dataclass
class ShardRecord:
    """One shard on disk: its repo-relative path, (domain, split), rows, bytes and row groups."""

    path: str
    domain: str
    split: str
    rows: int
    bytes: int
    row_groups: int


def read_build_info(repo_dir: str | os.PathLike) -> dict[str, Any]:
    """The build record, or {} for repos written by other tools."""
    path = Path(repo_dir) / BUILD_INFO_FILE
    return json.loads(path.read_text()) if path.exists() else {}


__all__ = [
    "BUILD_INFO_FILE",
    "CARD_FILE",
    "DATA_DIR",
    "DEFAULT_SHARDS_PER_SPLIT",
    "DEFAULT_SHARD_BYTES",
    "DOMAINS",
    "LICENSE_FILE",
    "PREVIEW_FILE",
    "REPO_FILES",
    "SPLITS",
    "SPLIT_DOMAINS",
    "ShardRecord",
    "partial_shard_glob",
    "partial_shard_path",
    "read_build_info",
    "shard_domain_split",
    "shard_files",
    "shard_glob",
    "shard_index",
    "shard_path",
]
