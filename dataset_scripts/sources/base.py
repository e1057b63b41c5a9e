"""The source plugin interface: anything that yields UniHand-Mix rows.

A source is a class with a `name`, built from keyword options, whose `iter_rows()` yields dicts holding every
column of `dataset_scripts.schema.COLUMN_DOCS` plus a `split` key (one of `repo_layout.SPLITS`) that tells the builder
which shard the row goes to. Sources never write files; the builder validates and writes.

Register a source with `@register_source("name")`. Packages outside this repository register theirs through the
entry-point group `jala.unihand_sources` (`[project.entry-points."jala.unihand_sources"] my_format =
"my_pkg.module:MySource"`), and `python -m dataset_scripts build --source my_format:key=value,...` finds them.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, ClassVar

ENTRY_POINT_GROUP = "jala.unihand_sources"
_REGISTRY: dict[str, type[ClipSource]] = {}


class ClipSource(abc.ABC):
    """Yields rows; subclasses document their options in the class docstring (shown by `build --help`)."""

    name: ClassVar[str]
    #: Units per pipeline task when the command does not say (None: the pipeline's default, 32 clips).
    default_units_per_task: ClassVar[int | None] = None

    @abc.abstractmethod
    def iter_rows(self) -> Iterator[dict[str, Any]]:
        """Rows with every schema column plus `split`; deterministic for the options given."""

    def estimated_rows(self) -> int | None:
        """Number of rows `iter_rows` will yield, when known (for progress bars)."""
        return None

    def num_units(self) -> int | None:
        """Independent pieces of input (clips of a procedural source, ...) that `iter_unit_rows` produces
        separately, so that a pipeline can split the source over tasks (`dataset_scripts.datatrove_pipeline`).
        None (the default): the source runs as one task, e.g. when its row ids count rows across its whole input."""
        return None

    def iter_unit_rows(self, start: int, stop: int) -> Iterator[dict[str, Any]]:
        """Rows of units `start .. stop - 1`. Contract: over consecutive ranges covering `0 .. num_units()`, the
        concatenated rows equal `iter_rows()` (same ids, contents and order), whichever process runs each range."""
        raise NotImplementedError(f"source {self.name!r} is not splittable (num_units() is None).")

    def global_row_id(self, row_id: str, rows_before: int) -> str:
        """The id `iter_rows` gives a row that `iter_unit_rows` gave `row_id`, when `rows_before` rows of this
        source come before its range. Ids that do not count rows (the default) are the same either way."""
        return row_id


def renumber_counted_id(row_id: str, rows_before: int) -> str:
    """`prefix-000007` -> `prefix-{7 + rows_before:06d}`: `global_row_id` of sources whose ids end in a count of
    the rows they yielded before (video, lab converters)."""
    prefix, _, number = row_id.rpartition("-")
    return f"{prefix}-{int(number) + rows_before:06d}"


def register_source(name: str) -> Callable[[type[ClipSource]], type[ClipSource]]:
    def decorate(cls: type[ClipSource]) -> type[ClipSource]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"source name {name!r} is already registered by {_REGISTRY[name].__qualname__}.")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def available_sources() -> dict[str, type[ClipSource]]:
    """Built-in sources plus those other packages registered through entry points."""
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in _REGISTRY:
            _REGISTRY[entry.name] = entry.load()
    return dict(_REGISTRY)


def get_source(name: str) -> type[ClipSource]:
    sources = available_sources()
    if name not in sources:
        raise KeyError(f"unknown source {name!r}; available: {sorted(sources)}.")
    return sources[name]
