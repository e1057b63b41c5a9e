"""UniHandStream and the collator: mixture weights hold, ranks are disjoint, resume is exact, and batches follow the
documented contract."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from dataset_scripts.collator import UniHandCollator, load_frame
from dataset_scripts.streaming import UniHandStream, _node_units, _Unit, hf_streaming_mixture, table_to_rows
from tests.fixtures.unihand_factory import FixtureSource, cached_repo


@pytest.fixture(autouse=True)
def _no_parquet_shutdown_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """datasets 5.2 sleeps 5 s at the end of every multi-shard parquet stream (a guard for apache/arrow#45214,
    which its own reader code treats as fixed after pyarrow 24; we run 26). Tests iterate many short streams."""
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)


@pytest.fixture(scope="module")
def mix_repo(tmp_path_factory) -> Path:
    """Lab rows from one source, wild rows from two (`fixture`, `fixture_b`), small row groups, several shards."""
    sources = [
        FixtureSource(num_clips=40, seed=11, domain="lab", max_seconds=3.0),
        FixtureSource(num_clips=30, seed=12, domain="wild", max_seconds=3.0),
        FixtureSource(num_clips=16, seed=13, domain="wild", source_name="fixture_b", max_seconds=3.0),
    ]
    return cached_repo(tmp_path_factory, "mix", sources, shard_bytes="120KB", row_group_rows=4, preview=False)


@pytest.fixture(scope="module")
def ssl_repo(tmp_path_factory) -> Path:
    source = FixtureSource(num_clips=12, seed=21, ssl_feature_shape=(5, 8), min_seconds=2.0, max_seconds=8.0)
    return cached_repo(tmp_path_factory, "ssl", [source], preview=False)


def _ids(stream, count: int | None = None) -> list[str]:
    return [row["id"] for row in (stream if count is None else itertools.islice(stream, count))]


def _all_ids(repo: Path, split: str) -> set[str]:
    return {
        i
        for path in repo.glob(f"data/*/{split}-*.parquet")
        for i in pq.read_table(path, columns=["id"])["id"].to_pylist()
    }


# ------------------------------------------------------------------------------------------------ mixing


def test_lab_wild_ratio_and_source_weights_hold_over_2000_samples(mix_repo: Path) -> None:
    stream = UniHandStream(mix_repo, domain_weights={"lab": 0.7, "wild": 0.3}, shuffle_buffer_size=16, seed=1)
    rows = list(itertools.islice(stream, 2000))
    lab = np.mean([row["domain"] == "lab" for row in rows])
    assert abs(lab - 0.7) < 0.04, lab

    weighted = UniHandStream(
        mix_repo,
        domain_weights={"lab": 0.5, "wild": 0.5},
        source_weights={"fixture": 1.0, "fixture_b": 3.0},
        shuffle_buffer_size=16,
        seed=2,
    )
    sources = [(row["domain"], row["source"]) for row in itertools.islice(weighted, 2000)]
    share_b = sources.count(("wild", "fixture_b")) / len(sources)
    assert abs(share_b - 0.5 * 0.75) < 0.04, share_b
    assert weighted.probabilities[f"{mix_repo.name}/wild/fixture_b"] == pytest.approx(0.375)

    natural = UniHandStream(mix_repo, shuffle_buffer_size=1)
    train_rows = {d: sum(1 for i in _all_ids(mix_repo, "train") if f"-{d}-" in i) for d in ("lab", "wild")}
    expected_lab = train_rows["lab"] / sum(train_rows.values())
    assert sum(p for name, p in natural.probabilities.items() if "/lab/" in name) == pytest.approx(expected_lab)
    with pytest.raises(ValueError, match="no weight for"):
        UniHandStream(mix_repo, source_weights={"fixture": 1.0})


def test_shuffle_permutes_and_single_pass_covers_each_row_once(mix_repo: Path) -> None:
    every = _all_ids(mix_repo, "train")
    one_pass = _ids(UniHandStream(mix_repo, infinite=False, shuffle_buffer_size=8, seed=0))
    assert sorted(one_pass) == sorted(every)
    other_seed = _ids(UniHandStream(mix_repo, infinite=False, shuffle_buffer_size=8, seed=1))
    sequential = _ids(UniHandStream(mix_repo, infinite=False, shuffle_buffer_size=1, shuffle=False, seed=0))
    assert one_pass != other_seed and one_pass != sequential
    lab_sequential = [i for i in sequential if "-lab-" in i]
    lab_files = sorted(mix_repo.glob("data/lab/train-*.parquet"))
    stored = [i for path in lab_files for i in pq.read_table(path, columns=["id"])["id"].to_pylist()]
    assert lab_sequential == stored, "without shuffling, rows come in shard order"
    assert sorted(_ids(UniHandStream(mix_repo, split="test_wild", infinite=False))) == sorted(
        _all_ids(mix_repo, "test_wild")
    )


# ------------------------------------------------------------------------------------------------ ranks


def test_ranks_get_disjoint_rows_that_cover_the_split(mix_repo: Path) -> None:
    parts = [
        set(_ids(UniHandStream(mix_repo, infinite=False, shuffle_buffer_size=8, rank=rank, world_size=2)))
        for rank in range(2)
    ]
    assert parts[0] and parts[1] and not parts[0] & parts[1]
    assert parts[0] | parts[1] == _all_ids(mix_repo, "train")
    infinite = [set(_ids(UniHandStream(mix_repo, rank=r, world_size=2, shuffle_buffer_size=8), 600)) for r in range(2)]
    assert not infinite[0] & infinite[1], "ranks stay disjoint across epochs"

    # DataLoader workers split a rank's part further, the same way.
    loader = torch.utils.data.DataLoader(
        UniHandStream(mix_repo, infinite=False, shuffle_buffer_size=8, rank=1, world_size=2),
        batch_size=None,
        num_workers=2,
    )
    from_workers = [row["id"] for row in loader]
    assert len(from_workers) == len(set(from_workers)) and set(from_workers) == parts[1]

    # Fewer row groups than ranks: rows are dealt round-robin instead (like split_dataset_by_node's fallback).
    units = [_Unit(0, 0, (0, 1, 2, 3, 4))]
    dealt = [_node_units(units, node, 3) for node in range(3)]
    assert [u[0].rows for u in dealt] == [(0, 3), (1, 4), (2,)]


def test_hf_path_split_dataset_by_node_gives_disjoint_shards(mix_repo: Path) -> None:
    every = _all_ids(mix_repo, "test_lab")
    parts = [
        {
            row["id"]
            for row in hf_streaming_mixture(mix_repo, split="test_lab", shuffle_buffer_size=4, rank=r, world_size=2)
        }
        for r in range(2)
    ]
    assert parts[0] and parts[1] and not parts[0] & parts[1] and parts[0] | parts[1] == every
    mixed = hf_streaming_mixture(mix_repo, domain_weights={"lab": 0.7, "wild": 0.3}, rank=0, world_size=1)
    assert isinstance(mixed, datasets.IterableDataset)
    assert {row["domain"] for row in itertools.islice(mixed, 40)} == {"lab", "wild"}


# ------------------------------------------------------------------------------------------------ resume


def _stream(repo: Path, **overrides) -> UniHandStream:
    options = {"domain_weights": {"lab": 0.7, "wild": 0.3}, "shuffle_buffer_size": 12, "seed": 5}
    return UniHandStream(repo, **{**options, **overrides})


@pytest.mark.parametrize("stop", [0, 1, 137])
def test_resume_continues_the_uninterrupted_sequence(mix_repo: Path, stop: int) -> None:
    total = 500  # several epochs of every component: buffers span epoch boundaries
    uninterrupted = _ids(_stream(mix_repo), total)

    first = _stream(mix_repo)
    iterator = iter(first)
    head = [next(iterator)["id"] for _ in range(stop)]
    state = json.loads(json.dumps(first.state_dict()))  # checkpoints store it as JSON / torch.save
    assert state["samples"] == stop

    resumed = _stream(mix_repo)
    resumed.load_state_dict(state)
    assert head + _ids(resumed, total - stop) == uninterrupted

    with pytest.raises(ValueError, match="seed"):
        _stream(mix_repo, seed=6).load_state_dict(state)


def test_resume_through_a_dataloader_with_the_collator(mix_repo: Path) -> None:
    collator = UniHandCollator(image_size=24, max_chunks=2, crop="random", seed=3)
    loader = lambda stream: torch.utils.data.DataLoader(stream, batch_size=8, collate_fn=collator, num_workers=0)
    reference = [batch for batch in itertools.islice(loader(_stream(mix_repo)), 7)]

    stream = _stream(mix_repo)
    batches = iter(loader(stream))
    for _ in range(4):
        next(batches)
    state = stream.state_dict()
    resumed = _stream(mix_repo)
    resumed.load_state_dict(state)
    for expected, batch in zip(reference[4:], itertools.islice(loader(resumed), 3), strict=True):
        assert batch["ids"] == expected["ids"]
        assert torch.equal(batch["chunk_start"], expected["chunk_start"]), "random crops replay exactly"
        assert torch.equal(batch["motion"], expected["motion"])
        assert torch.equal(batch["first_frames"], expected["first_frames"])


# ------------------------------------------------------------------------------------------------ collator


def test_collator_contract_shapes_dtypes_masks_and_values(mix_repo: Path) -> None:
    rows = list(UniHandStream(mix_repo, infinite=False, shuffle_buffer_size=1, shuffle=False))[:12]
    assert any(not row["labelled"] for row in rows) and any(row["labelled"] for row in rows)
    batch = UniHandCollator(image_size=(20, 28))(rows)
    b = len(rows)
    chunks = [int(np.ceil(row["num_frames"] / 15)) for row in rows]
    n_max, t_max = max(chunks), max(row["num_frames"] for row in rows)
    expected = {
        "first_frames": ((b, 20, 28, 3), torch.uint8),
        "boundary_frames": ((b, n_max + 1, 20, 28, 3), torch.uint8),
        "boundary_mask": ((b, n_max + 1), torch.bool),
        "chunk_mask": ((b, n_max), torch.bool),
        "motion": ((b, 2, t_max, 162), torch.float32),
        "frame_lengths": ((b,), torch.long),
        "num_chunks": ((b,), torch.long),
        "chunk_start": ((b,), torch.long),
        "hands_present": ((b, 2), torch.bool),
        "labelled": ((b,), torch.bool),
        "label_confidence": ((b,), torch.float32),
        "camera_intrinsics": ((b, 4), torch.float32),
    }
    for key, (shape, dtype) in expected.items():
        assert tuple(batch[key].shape) == shape and batch[key].dtype == dtype, key
    assert "ssl_features" not in batch and "motion_tokens" not in batch
    assert batch["ids"] == [row["id"] for row in rows] and len(batch["instructions"]) == b
    for i, row in enumerate(rows):
        n = chunks[i]
        assert batch["chunk_mask"][i].tolist() == [True] * n + [False] * (n_max - n)
        assert batch["boundary_mask"][i].sum() == n + 1
        assert (batch["boundary_frames"][i, n + 1 :] == 0).all()
        assert batch["frame_lengths"][i] == row["num_frames"]
        if row["labelled"]:
            np.testing.assert_array_equal(
                batch["motion"][i, :, : row["num_frames"]].numpy(), row["motion"].transpose(1, 0, 2)
            )
        assert (batch["motion"][i, :, row["num_frames"] :] == 0).all()
        if not row["labelled"]:
            assert (batch["motion"][i] == 0).all()
        assert batch["labelled"][i] == row["labelled"] and batch["hands_present"][i].tolist() == row["hands_present"]
        first, _ = load_frame(row["first_frame"], (20, 28))
        assert torch.equal(batch["first_frames"][i], torch.from_numpy(first))
    fx, fy, cx, cy = rows[0]["camera_intrinsics"]
    size = 48  # the fixture's frames
    assert batch["camera_intrinsics"][0].tolist() == pytest.approx(
        [fx * 28 / size, fy * 20 / size, (cx + 0.5) * 28 / size - 0.5, (cy + 0.5) * 20 / size - 0.5]
    )


def test_collator_crops_consistently_and_reads_precomputed_features(ssl_repo: Path) -> None:
    rows = list(UniHandStream(ssl_repo, infinite=False, shuffle_buffer_size=1, shuffle=False))
    long_rows = [row for row in rows if row["num_frames"] > 45]
    assert long_rows, "the fixture must yield clips of more than three chunks"
    leading = UniHandCollator(image_size=16, max_chunks=2)(long_rows)
    assert (leading["chunk_start"] == 0).all() and leading["chunk_mask"].shape[1] == 2
    assert (leading["frame_lengths"] == 30).all()
    assert (
        leading["ssl_features"].shape == (len(long_rows), 3, 5, 8) and leading["ssl_features"].dtype == torch.float16
    )
    assert "boundary_frames" not in leading, "ssl_features replace boundary images by default"

    collator = UniHandCollator(image_size=16, max_chunks=2, crop="random", seed=0, boundary="both")
    batch = collator(long_rows)
    assert torch.equal(batch["chunk_start"], collator(long_rows)["chunk_start"]), "crops are seeded"
    starts = set()
    for seed in range(6):
        starts |= set(
            UniHandCollator(max_chunks=2, crop="random", seed=seed, boundary="none")(long_rows)["chunk_start"].tolist()
        )
    assert len(starts) > 1, "random crops move the window"
    without_frames = [{k: v for k, v in row.items() if k != "boundary_frames"} for row in long_rows]
    with pytest.raises(ValueError, match="boundary_frames"):
        UniHandCollator(max_chunks=2, crop="random")(without_frames)
    assert UniHandCollator(image_size=16, max_chunks=2)(without_frames)["ssl_features"].shape[1] == 3
    for i, row in enumerate(long_rows):
        s = int(batch["chunk_start"][i])
        np.testing.assert_array_equal(batch["ssl_features"][i].numpy(), np.asarray(row["ssl_features"])[s : s + 3])
        first, _ = load_frame(row["boundary_frames"][s], (16, 16))
        assert torch.equal(batch["first_frames"][i], torch.from_numpy(first)), "v_1 of a crop is its boundary frame"
        assert torch.equal(batch["boundary_frames"][i, 0], batch["first_frames"][i])
        if row["labelled"]:
            length = int(batch["frame_lengths"][i])
            np.testing.assert_array_equal(
                batch["motion"][i, :, :length].numpy(), row["motion"][15 * s : 15 * s + length].transpose(1, 0, 2)
            )


def test_collator_accepts_rows_from_load_dataset(mix_repo: Path, tmp_path: Path) -> None:
    stream_rows = {row["id"]: row for row in UniHandStream(mix_repo, split="test_wild", infinite=False)}
    loaded = datasets.load_dataset(str(mix_repo), "wild", split="test_wild", cache_dir=str(tmp_path))
    hf_rows = list(loaded)
    collator = UniHandCollator(image_size=32, resize_mode="center_crop")
    from_hf = collator(hf_rows)
    from_stream = collator([stream_rows[row["id"]] for row in hf_rows])
    for key in ("first_frames", "boundary_frames", "motion", "chunk_mask", "camera_intrinsics", "labelled"):
        assert torch.equal(from_hf[key], from_stream[key]), key


def test_table_to_rows_keeps_nulls_and_arrays(mix_repo: Path) -> None:
    path = sorted(mix_repo.glob("data/wild/train-*.parquet"))[0]
    table = pq.read_table(path)
    rows = table_to_rows(table)
    motion = table.column("motion").combine_chunks()  # nested lists (Array3D storage in older builds)
    storage = getattr(motion, "storage", motion).to_pylist()  # None for nulls
    for row, reference in zip(rows, storage, strict=True):
        assert (row["motion"] is None) == (not row["labelled"]) == (reference is None)
        if row["motion"] is not None:
            assert row["motion"].shape == (row["num_frames"], 2, 162) and row["motion"].dtype == np.float32
            np.testing.assert_array_equal(row["motion"], np.asarray(reference, np.float32))
    sliced = table_to_rows(pq.read_table(path).slice(1, 2))
    for a, b in zip(rows[1:3], sliced, strict=True):
        assert a["id"] == b["id"]
        assert (a["motion"] is None and b["motion"] is None) or np.array_equal(a["motion"], b["motion"])
