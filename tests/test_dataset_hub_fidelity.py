"""What a Hub user sees of the datasets this project writes, read with plain `datasets` / pyarrow and nothing of
this repository: UniHand-Mix shards that split across ranks with both domains on every rank, a card with split
sizes and a complete licence, and shards whose own metadata keeps unlabelled motion None without the card."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.fixtures.unihand_factory import FixtureSource, cached_repo


@pytest.fixture(autouse=True)
def _no_parquet_shutdown_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """datasets 5.2 sleeps 5 s at the end of every multi-shard parquet stream (see test_unihand_builder)."""
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_repo(
        tmp_path_factory, "tiny", [FixtureSource(num_clips=40, seed=3)], shard_bytes="150KB", row_group_rows=4
    )


# ------------------------------------------------------------------------------------------------ shard metadata


def test_a_shard_read_without_the_card_keeps_unlabelled_motion_none(tiny_repo: Path, tmp_path: Path) -> None:
    """The shards' own `huggingface` metadata declares what the card declares, so reading one shard alone (plain
    pyarrow schema, `Dataset.from_parquet`, streaming `load_dataset("parquet")`) gives None for unlabelled motion,
    not NaN (the `Array3D` the shards used to declare)."""
    shard = next(
        path
        for path in sorted(tiny_repo.glob("data/wild/train-*.parquet"))
        if not all(pq.read_table(path, columns=["labelled"]).column("labelled").to_pylist())
    )
    features = datasets.Features.from_arrow_schema(pq.read_schema(shard))
    assert not isinstance(features["motion"], datasets.Array3D)

    loaded = datasets.Dataset.from_parquet(str(shard), cache_dir=str(tmp_path / "cache"))
    streamed = datasets.load_dataset("parquet", data_files=str(shard), split="train", streaming=True)
    for rows in (list(loaded), list(streamed)):
        unlabelled = [row for row in rows if not row["labelled"]]
        labelled = [row for row in rows if row["labelled"]]
        assert unlabelled, "the fixture shard must hold an unlabelled clip"
        assert all(row["motion"] is None for row in unlabelled)
        for row in labelled:
            motion = np.asarray(row["motion"], dtype=np.float32)
            assert motion.shape == (row["num_frames"], 2, 162) and np.isfinite(motion).all()
    as_numpy = loaded.with_format("numpy")
    labelled_index = next(i for i, flag in enumerate(loaded["labelled"]) if flag)
    assert as_numpy[labelled_index]["motion"].shape[1:] == (2, 162)
