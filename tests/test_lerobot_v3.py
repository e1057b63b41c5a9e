"""LeRobot v3.0 reading and writing: a fixture laid out as LeRobot writes it, the project's writer round trip, and
the action-chunk view post-training trains on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dataset_scripts.lerobot_v3 import ActionChunkDataset, LeRobotV3Dataset, LeRobotV3Writer
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
    chunks = ActionChunkDataset(dataset, chunk_size=3, image_key="observation.images.wrist")
    assert (chunks[20]["image"] == frame_brightness(20)).all()
    with pytest.raises(KeyError, match="not an image or video feature"):
        ActionChunkDataset(dataset, image_key="action")


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
    chunks = ActionChunkDataset(LeRobotV3Dataset(fixture_root), chunk_size=5, image_key=VIDEO_KEY)
    assert len(chunks) == sum(LENGTHS)
    actions = expected_arrays()["action"]
    sample = chunks[16]  # episode 1 (frames 12..18): steps 16, 17, 18, then two pads
    np.testing.assert_array_equal(sample["actions"][:3], actions[16:19])
    np.testing.assert_array_equal(sample["actions"][3:], actions[[18, 18]])
    assert sample["action_is_pad"].tolist() == [False, False, False, True, True]
    assert sample["instruction"] == TASKS[1]
    assert abs(float(sample["image"].mean()) - frame_brightness(16)) < 3
    np.testing.assert_array_equal(sample["state"], expected_arrays()["observation.state"][16])
    subset = ActionChunkDataset(LeRobotV3Dataset(fixture_root), chunk_size=5, image_key=VIDEO_KEY, episodes=[2])
    assert len(subset) == LENGTHS[2] and not subset[0]["action_is_pad"].any()


@pytest.mark.parametrize("codec", ["libsvtav1", "libx264"])
def test_writer_round_trip(tmp_path: Path, codec: str) -> None:
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
    with LeRobotV3Writer(root, fps=15, features=features, codec=codec) as writer:
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
