"""LeRobot v3.0 reading and writing: a fixture laid out as LeRobot writes it, the project's writer round trip, and
the action-chunk view post-training trains on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from robot_data.lerobot_v3 import ActionChunkDataset, LeRobotV3Dataset, LeRobotV3Writer
from tests.fixtures.lerobot_factory import (
    FPS,
    LENGTHS,
    TASKS,
    expected_arrays,
    frame_brightness,
    write_lerobot_fixture,
)

VIDEO_KEY = "observation.images.top"


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lerobot_fixture(tmp_path_factory.mktemp("lerobot") / "fixture")


def test_reader_metadata_and_columns(fixture_root: Path) -> None:
    dataset = LeRobotV3Dataset(fixture_root)
    assert (dataset.fps, dataset.num_episodes, dataset.num_frames) == (FPS, 3, sum(LENGTHS))
    assert dataset.tasks == {0: TASKS[0], 1: TASKS[1]}
    assert dataset.video_keys == [VIDEO_KEY]
    assert [dataset.episode_range(e) for e in range(3)] == [(0, 12), (12, 19), (19, 28)]
    expected = expected_arrays()
    # variable-length list column and fixed-size list column both come back as (N, D) arrays
    np.testing.assert_array_equal(dataset.columns["observation.state"], expected["observation.state"])
    np.testing.assert_array_equal(dataset.columns["action"], expected["action"])
    assert dataset.task_of(15) == TASKS[1]
    np.testing.assert_allclose(dataset.stats["action"]["mean"], expected["action"].mean(0), rtol=1e-6)


def test_reader_cuts_concatenated_videos_into_episodes(fixture_root: Path) -> None:
    dataset = LeRobotV3Dataset(fixture_root)
    frames = dataset.load_videos(VIDEO_KEY)
    assert [len(clip) for clip in frames] == list(LENGTHS)
    for index in range(dataset.num_frames):
        level = float(dataset.image(VIDEO_KEY, index).mean())
        assert abs(level - frame_brightness(index)) < 3, (index, level)  # exactly this frame, not a neighbour


def test_reader_decodes_images_embedded_in_the_rows(fixture_root: Path) -> None:
    dataset = LeRobotV3Dataset(fixture_root)
    assert dataset.video_keys == [VIDEO_KEY]  # an `image` feature is not a video
    for index in (0, 13, 27):
        image = dataset.image("observation.images.wrist", index)
        assert image.shape == (8, 8, 3) and (image == frame_brightness(index)).all()  # PNG: exact
    chunks = ActionChunkDataset(dataset, chunk_size=3, image_keys=["observation.images.wrist"])
    assert (chunks[20]["images"][0] == frame_brightness(20)).all()
    with pytest.raises(KeyError, match="not image or video features"):
        ActionChunkDataset(dataset, image_keys=["action"])


def test_reader_rejects_metadata_that_disagrees_with_the_video(fixture_root: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(fixture_root, broken)
    path = broken / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    rows = pq.read_table(path).to_pylist()
    rows[1]["videos/observation.images.top/to_timestamp"] -= 2 / FPS  # episode 1 loses two frames
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(ValueError, match=r"episode 1 of 'observation.images.top': 5 frames"):
        LeRobotV3Dataset(broken).load_videos(VIDEO_KEY)
    info = json.loads((broken / "meta" / "info.json").read_text())
    info["codebase_version"] = "v2.1"
    (broken / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="reads v3"):
        LeRobotV3Dataset(broken)


def test_action_chunks_pad_past_the_episode_end(fixture_root: Path) -> None:
    chunks = ActionChunkDataset(LeRobotV3Dataset(fixture_root), chunk_size=5, image_keys=[VIDEO_KEY])
    assert len(chunks) == sum(LENGTHS)
    actions = expected_arrays()["action"]
    sample = chunks[16]  # episode 1 (frames 12..18): steps 16, 17, 18, then two pads
    np.testing.assert_array_equal(sample["actions"][:3], actions[16:19])
    np.testing.assert_array_equal(sample["actions"][3:], actions[[18, 18]])
    assert sample["action_is_pad"].tolist() == [False, False, False, True, True]
    assert sample["instruction"] == TASKS[1]
    assert abs(float(sample["images"][0].mean()) - frame_brightness(16)) < 3
    np.testing.assert_array_equal(sample["state"], expected_arrays()["observation.state"][16])
    subset = ActionChunkDataset(LeRobotV3Dataset(fixture_root), chunk_size=5, image_keys=[VIDEO_KEY], episodes=[2])
    assert len(subset) == LENGTHS[2] and not subset[0]["action_is_pad"].any()


@pytest.mark.parametrize("encoding", ["lerobot", "h264", "lossless"])
def test_writer_round_trip(tmp_path: Path, encoding: str) -> None:
    rng = np.random.default_rng(0)
    features = {
        "observation.image": {"dtype": "video", "shape": [32, 48, 3], "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": [4], "names": None},
        "action": {"dtype": "float32", "shape": [2], "names": None},
    }
    episodes = []
    for length in (6, 9):
        images = np.zeros((length, 32, 48, 3), dtype=np.uint8)
        for frame in range(length):
            images[frame] = 20 + 20 * frame
        episodes.append(
            {
                "observation.image": images,
                "observation.state": rng.normal(size=(length, 4)).astype(np.float32),
                "action": rng.normal(size=(length, 2)).astype(np.float32),
            }
        )
    root = tmp_path / "written"
    with LeRobotV3Writer(root, fps=15, features=features, video_encoding=encoding) as writer:
        writer.add_episode(episodes[0], task="a")
        writer.add_episode(episodes[1], task="b")
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_frames"] == 15 and info["splits"] == {"train": "0:2"}
    assert {"timestamp", "frame_index", "episode_index", "index", "task_index"} <= set(info["features"])
    dataset = LeRobotV3Dataset(root)
    frames = dataset.load_videos("observation.image")
    for episode, clip in zip(episodes, frames, strict=True):
        assert clip.shape == episode["observation.image"].shape
        assert np.abs(clip.astype(int) - episode["observation.image"]).mean() < 3
    both = np.concatenate([episode["action"] for episode in episodes])
    np.testing.assert_array_equal(dataset.columns["action"], both)
    np.testing.assert_allclose(dataset.stats["action"]["mean"], both.mean(0), rtol=1e-5)
    np.testing.assert_allclose(dataset.stats["action"]["std"], both.std(0), rtol=1e-5)
    np.testing.assert_allclose(dataset.stats["action"]["max"], both.max(0))
    assert dataset.stats["action"]["count"].tolist() == [15]
    assert np.asarray(dataset.stats["observation.image"]["mean"]).shape == (3, 1, 1)
    assert dataset.columns["timestamp"][6:8].tolist() == pytest.approx([0.0, 1 / 15])
    assert dataset.tasks == {0: "a", 1: "b"} and dataset.task_of(7) == "b"
    assert list(dataset.columns["index"]) == list(range(15))


# ------------------------------------------------------------------------------------------------ Hub fidelity

WRIST_KEY = "observation.images.wrist"
HUB_FEATURES = {
    VIDEO_KEY: {"dtype": "video", "shape": [32, 32, 3], "names": ["height", "width", "channels"]},
    WRIST_KEY: {"dtype": "image", "shape": [8, 8, 3], "names": ["height", "width", "channels"]},
    "observation.state": {"dtype": "float32", "shape": [3], "names": None},
    "action": {"dtype": "float32", "shape": [2], "names": None},
}


def _hub_episode(length: int, offset: int, seed: int) -> dict[str, np.ndarray]:
    """Frames whose images encode their global index (`frame_brightness`), so a test can tell them apart."""
    rng = np.random.default_rng(seed)
    levels = np.array([frame_brightness(offset + frame) for frame in range(length)], dtype=np.uint8)
    return {
        VIDEO_KEY: np.broadcast_to(levels[:, None, None, None], (length, 32, 32, 3)).copy(),
        WRIST_KEY: np.broadcast_to(levels[:, None, None, None], (length, 8, 8, 3)).copy(),
        "observation.state": rng.normal(size=(length, 3)).astype(np.float32),
        "action": rng.normal(size=(length, 2)).astype(np.float32),
    }


def _write_hub_dataset(root: Path) -> list[dict[str, np.ndarray]]:
    episodes = [_hub_episode(6, 0, 1), _hub_episode(5, 6, 2)]
    with LeRobotV3Writer(root, fps=FPS, features=HUB_FEATURES, video_encoding="h264", robot_type="fixture") as writer:
        writer.add_episode(episodes[0], task=TASKS[0])
        writer.add_episode(episodes[1], task=TASKS[1])
    return episodes


def test_written_folder_has_lerobots_card_and_loads_with_load_dataset(tmp_path: Path) -> None:
    import datasets
    import yaml

    root = tmp_path / "written"
    episodes = _write_hub_dataset(root)
    text = (root / "README.md").read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    assert "LeRobot" in front["tags"] and front["license"] == "apache-2.0"
    assert front["configs"] == [{"config_name": "default", "data_files": "data/*/*.parquet"}]
    info_block = text.split("```json\n")[1].split("\n```")[0]
    assert json.loads(info_block) == json.loads((root / "meta" / "info.json").read_text())

    frames = datasets.load_dataset(str(root), split="train", cache_dir=str(tmp_path / "cache"))
    assert len(frames) == 11 and VIDEO_KEY not in frames.column_names
    both = {key: np.concatenate([episode[key] for episode in episodes]) for key in ("observation.state", "action")}
    np.testing.assert_array_equal(np.asarray(frames["observation.state"], np.float32), both["observation.state"])
    np.testing.assert_array_equal(np.asarray(frames["action"], np.float32), both["action"])
    assert frames["index"] == list(range(11)) and frames["task_index"] == [0] * 6 + [1] * 5
    for index in (0, 7, 10):
        image = frames[index][WRIST_KEY]  # decoded by the `Image()` feature in the parquet metadata
        assert (np.asarray(image) == frame_brightness(index)).all()


def test_image_features_round_trip_through_the_writer_and_reader(tmp_path: Path) -> None:
    root = tmp_path / "written"
    _write_hub_dataset(root)
    dataset = LeRobotV3Dataset(root)
    for index in range(dataset.num_frames):
        image = dataset.image(WRIST_KEY, index)
        assert image.shape == (8, 8, 3) and (image == frame_brightness(index)).all(), index  # PNG: lossless
    stats = pq.read_table(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()[0]
    assert np.asarray(stats[f"stats/{WRIST_KEY}/mean"]).shape == (3, 1, 1)
    with pytest.raises(ValueError, match="image feature 'bad'.*shape"):
        LeRobotV3Writer(tmp_path / "bad", fps=FPS, features={"bad": {"dtype": "image", "shape": [8, 8]}})


def _lerobot_stats(values: np.ndarray, is_image: bool = False) -> dict[str, list]:
    """Episode statistics with the types lerobot gives them before `pa.Table.from_pydict` (compute_stats.py):
    min / max in the data's dtype, float64 moments and quantiles, int64 count, images per channel (3, 1, 1)."""
    count = len(values)
    if is_image:  # (N, H, W, 3) uint8 -> channels first, reduced over (0, 2, 3), scaled to [0, 1]
        channels = values.transpose(0, 3, 1, 2)
        reduced = {
            "min": channels.min((0, 2, 3)) / 255.0,
            "max": channels.max((0, 2, 3)) / 255.0,
            "mean": channels.mean((0, 2, 3)) / 255.0,
            "std": channels.std((0, 2, 3)) / 255.0,
        }
        stats = {key: value.reshape(3, 1, 1) for key, value in reduced.items()}
        quantiles = {q: stats["mean"] for q in ("q01", "q10", "q50", "q90", "q99")}
    else:
        flat = values.reshape(count, -1)
        stats = {"min": flat.min(0), "max": flat.max(0), "mean": flat.mean(0), "std": flat.std(0)}
        quantiles = {f"q{q:02d}": np.quantile(flat, q / 100, axis=0) for q in (1, 10, 50, 90, 99)}
    stats["count"] = np.array([count])  # lerobot's order: min, max, mean, std, count, then the quantiles
    return {key: value.tolist() for key, value in {**stats, **quantiles}.items()}


def _append_episode_as_lerobot_does(root: Path) -> dict[str, np.ndarray]:
    """What `LeRobotDataset.resume()` + `save_episode()` leave on disk for one more episode: a new data file (the
    `datasets` features in its schema), a new mp4, a new episodes file with lerobot's types, updated info.json."""
    import datasets
    import pyarrow as pa

    from tests.fixtures.lerobot_factory import _write_video

    info = json.loads((root / "meta" / "info.json").read_text())
    start, length, episode_index = info["total_frames"], 4, info["total_episodes"]
    episode = _hub_episode(length, start, 3)
    frame_index = np.arange(length)
    timestamps = frame_index / FPS  # float64 in lerobot's buffer, float32 in the frame table
    columns = {
        WRIST_KEY: list(episode[WRIST_KEY]),
        "observation.state": episode["observation.state"],
        "action": episode["action"],
        "timestamp": timestamps,
        "frame_index": frame_index,
        "episode_index": np.full(length, episode_index),
        "index": start + frame_index,
        "task_index": np.zeros(length, dtype=np.int64),
    }
    features = datasets.Features(
        {
            WRIST_KEY: datasets.Image(),
            "observation.state": datasets.List(datasets.Value("float32"), length=3),
            "action": datasets.List(datasets.Value("float32"), length=2),
            "timestamp": datasets.Value("float32"),
            **{name: datasets.Value("int64") for name in ("frame_index", "episode_index", "index", "task_index")},
        }
    )
    table = datasets.Dataset.from_dict(columns, features=features).data.table
    pq.write_table(table, root / "data" / "chunk-000" / "file-001.parquet", compression="snappy")
    _write_video(
        root / "videos" / VIDEO_KEY / "chunk-000" / "file-001.mp4", [int(v) for v in episode[VIDEO_KEY][:, 0, 0, 0]]
    )

    record: dict = {
        "episode_index": episode_index,
        "tasks": [TASKS[0]],
        "length": length,
        "data/chunk_index": 0,
        "data/file_index": 1,
        "dataset_from_index": start,
        "dataset_to_index": start + length,
        f"videos/{VIDEO_KEY}/chunk_index": 0,
        f"videos/{VIDEO_KEY}/file_index": 1,
        f"videos/{VIDEO_KEY}/from_timestamp": 0.0,
        f"videos/{VIDEO_KEY}/to_timestamp": length / FPS,
    }
    buffers = {**{key: episode[key] for key in HUB_FEATURES}, **{k: np.asarray(v) for k, v in columns.items()}}
    buffers["timestamp"] = timestamps
    for key in (*HUB_FEATURES, "timestamp", "frame_index", "episode_index", "index", "task_index"):
        is_image = HUB_FEATURES.get(key, {}).get("dtype") in ("image", "video")
        for stat, value in _lerobot_stats(np.asarray(buffers[key]), is_image).items():
            record[f"stats/{key}/{stat}"] = value
    record["meta/episodes/chunk_index"] = 0
    record["meta/episodes/file_index"] = 1
    pq.write_table(
        pa.Table.from_pydict({key: [value] for key, value in record.items()}),
        root / "meta" / "episodes" / "chunk-000" / "file-001.parquet",
    )
    info.update(total_episodes=episode_index + 1, total_frames=start + length)
    info["splits"] = {"train": f"0:{episode_index + 1}"}
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    return episode


def test_a_folder_written_here_and_appended_by_lerobot_reads_back(tmp_path: Path) -> None:
    import datasets

    root = tmp_path / "written"
    episodes = _write_hub_dataset(root)
    episodes.append(_append_episode_as_lerobot_does(root))
    dataset = LeRobotV3Dataset(root)  # each file on its own: schemas may differ
    assert (dataset.num_episodes, dataset.num_frames) == (3, 15)
    expected = {key: np.concatenate([e[key] for e in episodes]) for key in ("observation.state", "action")}
    np.testing.assert_array_equal(dataset.columns["observation.state"], expected["observation.state"])
    np.testing.assert_array_equal(dataset.columns["action"], expected["action"])
    assert [len(clip) for clip in dataset.load_videos(VIDEO_KEY)] == [6, 5, 4]
    for index in (0, 10, 11, 14):
        assert (dataset.image(WRIST_KEY, index) == frame_brightness(index)).all()
        assert abs(float(dataset.image(VIDEO_KEY, index).mean()) - frame_brightness(index)) < 3

    ours, theirs = (root / "meta" / "episodes" / "chunk-000" / f"file-00{i}.parquet" for i in (0, 1))
    assert pq.read_schema(ours).remove_metadata() == pq.read_schema(theirs).remove_metadata(), "LeRobot's types"

    # lerobot reads the episodes files as one `datasets` table: every file must cast to the first one's features.
    episode_files = sorted(str(path) for path in (root / "meta" / "episodes").glob("*/*.parquet"))
    table = datasets.Dataset.from_parquet(episode_files, cache_dir=str(tmp_path / "cache"))
    assert table["episode_index"] == [0, 1, 2] and table[f"stats/{WRIST_KEY}/count"][2] == [4]
    data_files = sorted(str(path) for path in (root / "data").glob("*/*.parquet"))
    frames = datasets.Dataset.from_parquet(data_files, cache_dir=str(tmp_path / "cache"))
    assert frames["index"] == list(range(15)) and (np.asarray(frames[14][WRIST_KEY]) == frame_brightness(14)).all()

    chunk = ActionChunkDataset(dataset, chunk_size=3, image_keys=[WRIST_KEY])[13]
    assert chunk["action_is_pad"].tolist() == [False, False, True]  # frames 13, 14, then past the end (15)


def test_publish_uploads_the_folder_and_tags_it_v3(tmp_path: Path) -> None:
    from robot_data.lerobot_v3 import publish_to_hub

    root = tmp_path / "written"
    _write_hub_dataset(root)

    class RecordingApi:
        def __init__(self) -> None:
            self.calls: list[tuple[str, tuple, dict]] = []

        def __getattr__(self, name: str):
            return lambda *args, **kwargs: self.calls.append((name, args, kwargs))

    api = RecordingApi()
    assert publish_to_hub(root, "someone/fixture", api=api) == "someone/fixture"
    names = [name for name, _, _ in api.calls]
    assert names == ["create_repo", "upload_folder", "delete_tag", "create_tag"]
    upload = api.calls[1][2]
    assert upload["folder_path"] == str(root) and upload["repo_type"] == "dataset"
    tag = api.calls[3]
    assert tag[1] == ("someone/fixture",) and tag[2]["tag"] == "v3.0" and tag[2]["repo_type"] == "dataset"
