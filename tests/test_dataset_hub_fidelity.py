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


# ------------------------------------------------------------------------------------------------ ranks


@pytest.fixture(scope="module")
def quickstart_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built with the builder's defaults, as the quickstart builds its data: far below one 256 MB shard."""
    sources = [
        FixtureSource(num_clips=64, seed=21, split="train", wild_labelled_fraction=0.5),
        FixtureSource(num_clips=6, seed=22, domain="lab", split="test_lab"),
        FixtureSource(num_clips=6, seed=23, domain="wild", split="test_wild"),
    ]
    return cached_repo(tmp_path_factory, "quickstart_size", sources, preview=False)


def _domains_per_rank(dataset: datasets.Dataset | datasets.IterableDataset, world_size: int) -> list[set[str]]:
    from datasets.distributed import split_dataset_by_node

    parts = [split_dataset_by_node(dataset, rank=rank, world_size=world_size) for rank in range(world_size)]
    return [{row["domain"] for row in part.select_columns(["id", "domain"])} for part in parts]


def test_every_rank_of_split_dataset_by_node_sees_both_domains(quickstart_repo: Path, tmp_path: Path) -> None:
    from datasets.distributed import split_dataset_by_node

    streamed = datasets.load_dataset(str(quickstart_repo), "all", split="train", streaming=True)
    loaded = datasets.load_dataset(str(quickstart_repo), "all", split="train", cache_dir=str(tmp_path / "cache"))
    for world_size in (2, 4, 8):
        assert _domains_per_rank(streamed, world_size) == [{"lab", "wild"}] * world_size, ("streaming", world_size)
        assert _domains_per_rank(loaded, world_size) == [{"lab", "wild"}] * world_size, ("map-style", world_size)
    assert streamed.num_shards % 8 == 0, "shard count divisible by 2, 4 and 8 ranks: shards, not rows, are split"

    # Four ranks: disjoint, complete; and two DataLoader workers of a rank split its shards with both domains too.
    parts = [
        [row["id"] for row in split_dataset_by_node(streamed, rank=rank, world_size=4).select_columns(["id"])]
        for rank in range(4)
    ]
    assert sum(len(part) for part in parts) == len(set().union(*parts)) == len(loaded)
    rank_half = split_dataset_by_node(streamed, rank=1, world_size=2).select_columns(["domain"])
    for worker in range(2):
        worker_rows = split_dataset_by_node(rank_half, rank=worker, world_size=2)
        assert {row["domain"] for row in worker_rows} == {"lab", "wild"}


def test_lanes_roll_over_together_and_keep_ranks_mixed(tmp_path: Path) -> None:
    """Past the target size all eight shards of a domain roll over together, so the count stays a multiple of
    eight and the names consecutive; the interleaved order still gives every rank both domains."""
    from dataset_scripts.builder import build_unihand
    from dataset_scripts.card import check_repo, collect_stats

    source = FixtureSource(num_clips=96, seed=24, split="train")
    build_unihand(tmp_path, [source], shard_bytes="200KB", row_group_rows=2, preview=False, progress=False)
    shards = {domain: [s for s in collect_stats(tmp_path).shards if s.domain == domain] for domain in ("lab", "wild")}
    assert len(shards["lab"]) >= 16, "lab clips (exact labels, large) must fill more than one generation"
    for domain, records in shards.items():
        assert len(records) % 8 == 0, (domain, len(records))
        assert [s.path for s in records] == [f"data/{domain}/train-{i:05d}.parquet" for i in range(len(records))]
        assert all(shard.bytes < 1.1 * 200 * 2**10 or shard.row_groups == 1 for shard in records)
    wild_rows = [shard.rows for shard in shards["wild"]]
    assert max(wild_rows) - min(wild_rows) <= 1, "rows are dealt round-robin: equal shards"
    assert check_repo(tmp_path) == []
    streamed = datasets.load_dataset(str(tmp_path), "all", split="train", streaming=True)
    loaded = datasets.load_dataset(str(tmp_path), "all", split="train", cache_dir=str(tmp_path / "cache"))
    for world_size in (2, 4, 8):
        assert _domains_per_rank(streamed, world_size) == [{"lab", "wild"}] * world_size
        assert _domains_per_rank(loaded, world_size) == [{"lab", "wild"}] * world_size


# ------------------------------------------------------------------------------------------------ card


def test_card_declares_split_sizes_and_a_complete_licence(quickstart_repo: Path, tmp_path: Path) -> None:
    from dataset_scripts.builder import build_unihand
    from dataset_scripts.card import check_repo, read_card_yaml

    front = read_card_yaml(quickstart_repo)
    infos = {info["config_name"]: info for info in front["dataset_info"]}
    expected = {"lab": {}, "wild": {}, "all": {}}
    for path in quickstart_repo.glob("data/*/*.parquet"):
        domain, split = path.parent.name, path.name.rsplit("-", 1)[0]
        rows = pq.ParquetFile(path).metadata.num_rows
        for config in (domain, "all"):
            expected[config][split] = expected[config].get(split, 0) + rows
    for config, splits in expected.items():
        assert {s["name"]: s["num_examples"] for s in infos[config]["splits"]} == splits, config
        assert infos[config]["download_size"] > 0 and infos[config]["dataset_size"] > 0
    assert front["license"] == "apache-2.0", "procedural clips only: the code's licence"

    third_party = tmp_path / "third_party"
    sources = [
        FixtureSource(num_clips=8, seed=25, split="train"),
        FixtureSource(num_clips=4, seed=26, domain="wild", split="train", source_name="h2o"),
    ]
    build_unihand(third_party, sources, preview=False, progress=False)
    front = read_card_yaml(third_party)
    assert front["license"] == "other" and front["license_name"]
    assert (third_party / front["license_link"]).is_file()
    assert "`h2o`" in (third_party / front["license_link"]).read_text()
    assert check_repo(third_party) == []
    # Non-streaming loads check the rows they read against the declared split sizes.
    loaded = datasets.load_dataset(str(third_party), "wild", split="train", cache_dir=str(tmp_path / "cache"))
    assert len(loaded) == sum(1 for row in loaded if row["domain"] == "wild") > 4
