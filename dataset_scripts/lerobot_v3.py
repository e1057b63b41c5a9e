"""LeRobot v3.0 datasets on a local disk: a writer, a reader, and the action-chunk view post-training trains on.

The `lerobot` package needs Python >= 3.12, so this module reads and writes the format itself, following
LeRobot's `datasets/utils.py`, `dataset_metadata.py` and `dataset_writer.py` (codebase v3.0):

    meta/info.json                     codebase_version "v3.0", fps, features, path templates, totals, splits
    meta/stats.json                    {feature: {min, max, mean, std, count, q01, q10, q50, q90, q99}}
    meta/tasks.parquet                 index "task" (the instruction), column task_index
    meta/episodes/chunk-000/file-000.parquet
                                       one row per episode: episode_index, tasks, length, data/chunk_index,
                                       data/file_index, dataset_from_index, dataset_to_index,
                                       videos/<key>/{chunk_index, file_index, from_timestamp, to_timestamp},
                                       meta/episodes/{chunk_index, file_index}, stats/<feature>/<stat>
    data/chunk-000/file-000.parquet    one row per frame: the non-video features + timestamp, frame_index,
                                       episode_index, index, task_index; many episodes per file
    videos/<key>/chunk-000/file-000.mp4
                                       many episodes concatenated per file; an episode is the frames with
                                       presentation time in [from_timestamp, to_timestamp)

Files roll over at `data_files_size_in_mb` / `video_files_size_in_mb`, and chunk directories hold at most
`chunks_size` files, as in LeRobot. Image statistics are per channel, in [0, 1], shaped (3, 1, 1) like LeRobot's.
Videos are encoded with PyAV; the default is LeRobot's (AV1 through libsvtav1, yuv420p, GOP 2, CRF 30), and any
codec FFmpeg knows can be chosen (`libx264` / `h264`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

__all__ = [
    "CODEBASE_VERSION",
    "ActionChunkDataset",
    "LeRobotV3Dataset",
    "LeRobotV3Writer",
    "compute_feature_stats",
]

CODEBASE_VERSION = "v3.0"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
CHUNK_FILE_PATTERN = "chunk-{chunk_index:03d}/file-{file_index:03d}"
EPISODES_PATH = "meta/episodes/" + CHUNK_FILE_PATTERN + ".parquet"
DATA_PATH = "data/" + CHUNK_FILE_PATTERN + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE_PATTERN + ".mp4"
DEFAULT_CHUNK_SIZE = 1000
DEFAULT_DATA_FILE_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILE_SIZE_IN_MB = 200
#: Columns every LeRobot frame row has, besides the dataset's own features.
DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
#: Image statistics are estimated from at most this many frames per episode (LeRobot samples frames too).
IMAGE_STATS_FRAMES = 32


def _next_file(chunk_index: int, file_index: int, chunks_size: int) -> tuple[int, int]:
    """LeRobot's `update_chunk_file_indices`: a new file, and a new chunk directory every `chunks_size` files."""
    return (chunk_index + 1, 0) if file_index == chunks_size - 1 else (chunk_index, file_index + 1)


def compute_feature_stats(values: np.ndarray, is_image: bool = False) -> dict[str, np.ndarray]:
    """LeRobot's per-feature statistics of (N, ...) values; images (N, H, W, 3) uint8 -> per channel in [0, 1]."""
    count = len(values)  # frames (LeRobot counts sampled images, not pixels)
    if is_image:
        values = values.astype(np.float32).reshape(-1, 3) / 255.0
        reshape = (3, 1, 1)
    else:
        values = values.astype(np.float64).reshape(count, -1)
        reshape = (values.shape[1],)
    stats = {
        "min": values.min(0),
        "max": values.max(0),
        "mean": values.mean(0),
        "std": values.std(0),
        "count": np.array([count]),
    }
    for quantile in QUANTILES:
        stats[f"q{round(quantile * 100):02d}"] = np.quantile(values, quantile, axis=0)
    return {key: (value if key == "count" else value.reshape(reshape)) for key, value in stats.items()}


def _aggregate_stats(per_episode: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Count-weighted mean / pooled std / global min-max over episodes (LeRobot's `aggregate_stats`); quantiles
    are count-weighted means of the episodes' quantiles, as LeRobot does."""
    counts = np.array([float(stats["count"][0]) for stats in per_episode])
    weights = counts / counts.sum()
    means = np.stack([stats["mean"] for stats in per_episode])
    shape = (-1,) + (1,) * (means.ndim - 1)
    mean = (means * weights.reshape(shape)).sum(0)
    variances = np.stack([stats["std"] ** 2 for stats in per_episode])
    variance = ((variances + (means - mean) ** 2) * weights.reshape(shape)).sum(0)
    result = {
        "min": np.min(np.stack([stats["min"] for stats in per_episode]), axis=0),
        "max": np.max(np.stack([stats["max"] for stats in per_episode]), axis=0),
        "mean": mean,
        "std": np.sqrt(variance),
        "count": np.array([int(counts.sum())]),
    }
    for key in per_episode[0]:
        if key.startswith("q"):
            result[key] = (np.stack([stats[key] for stats in per_episode]) * weights.reshape(shape)).sum(0)
    return result


def _jsonable(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, list]]:
    return {
        feature: {key: np.asarray(value).tolist() for key, value in values.items()}
        for feature, values in stats.items()
    }


# ---------------------------------------------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------------------------------------------


class _VideoStream:
    """One camera's open mp4 file: episodes are appended with continuous presentation timestamps."""

    def __init__(self, path: Path, fps: int, height: int, width: int, codec: str, options: dict[str, str]) -> None:
        import av

        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration at info level otherwise
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.container = av.open(str(path), mode="w")
        self.stream = self.container.add_stream(codec, rate=fps)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.time_base = Fraction(1, fps)
        self.stream.options = options
        self.frames = 0
        self.bytes = 0  # encoded so far (the file itself appears only once the encoder emits its first packet)

    def append(self, frames: np.ndarray) -> None:
        import av

        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = self.frames  # in 1 / fps: frame i of the file is shown at i / fps seconds
            packets = self.stream.encode(frame)
            self.bytes += sum(packet.size for packet in packets)
            self.container.mux(packets)
            self.frames += 1

    def close(self) -> None:
        self.container.mux(self.stream.encode(None))
        self.container.close()


class LeRobotV3Writer:
    """Write episodes into a LeRobot v3.0 dataset folder.

    Args:
        root: the dataset folder (created; must not already hold a dataset).
        fps: frames per second of every feature.
        features: LeRobot feature specs of the dataset's own features, e.g.
            `{"observation.state": {"dtype": "float32", "shape": [4], "names": [...]}, "observation.image":
            {"dtype": "video", "shape": [128, 128, 3], "names": ["height", "width", "channels"]}}`.
            The default per-frame columns (timestamp, frame_index, episode_index, index, task_index) are added.
        robot_type: free text stored in info.json.
        codec / crf / gop: video encoding (defaults: LeRobot's libsvtav1, CRF 30, GOP 2 for fast seeking).

    Use as a context manager, or call `finalize()`; without it the metadata is not written.
    """

    def __init__(
        self,
        root: str | Path,
        fps: int,
        features: dict[str, dict[str, Any]],
        robot_type: str | None = None,
        codec: str = "libsvtav1",
        crf: int = 30,
        gop: int = 2,
        chunks_size: int = DEFAULT_CHUNK_SIZE,
        data_files_size_in_mb: float = DEFAULT_DATA_FILE_SIZE_IN_MB,
        video_files_size_in_mb: float = DEFAULT_VIDEO_FILE_SIZE_IN_MB,
    ) -> None:
        self.root = Path(root)
        if (self.root / INFO_PATH).exists():
            raise FileExistsError(f"{self.root} already holds a LeRobot dataset; write to a new folder.")
        reserved = set(features) & set(DEFAULT_FEATURES)
        if reserved:
            raise ValueError(f"features {sorted(reserved)} are added by the writer; remove them from `features`.")
        for key, spec in features.items():
            if spec.get("dtype") == "video" and (len(spec["shape"]) != 3 or spec["shape"][2] != 3):
                raise ValueError(f"video feature {key!r} must have shape [height, width, 3], got {spec['shape']}.")
        self.fps = fps
        self.features = {key: dict(spec) for key, spec in features.items()}
        self.robot_type = robot_type
        self.codec = codec
        self.video_options = {"crf": str(crf), "g": str(gop)}
        self.chunks_size = chunks_size
        self.data_files_size_in_mb = data_files_size_in_mb
        self.video_files_size_in_mb = video_files_size_in_mb
        self.video_keys = [key for key, spec in features.items() if spec["dtype"] == "video"]
        self.numeric_keys = [
            key for key, spec in features.items() if spec["dtype"] not in ("video", "image", "string")
        ]
        self.tasks: dict[str, int] = {}
        self.episodes: list[dict[str, Any]] = []
        self.episode_stats: list[dict[str, dict[str, np.ndarray]]] = []
        self.total_frames = 0
        self._data_writer: pq.ParquetWriter | None = None
        self._data_file = (0, 0)
        self._data_bytes = 0
        self._videos: dict[str, _VideoStream] = {}
        self._video_files: dict[str, tuple[int, int]] = {key: (0, 0) for key in self.video_keys}
        self._finalized = False

    def __enter__(self) -> LeRobotV3Writer:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.finalize()
        else:
            self._close_files()

    # -- episodes -----------------------------------------------------------------------------------------------
    def add_episode(self, frames: dict[str, np.ndarray], task: str) -> int:
        """Append one episode: `frames[key]` is (T, *shape) for every feature (video: (T, H, W, 3) uint8)."""
        if self._finalized:
            raise RuntimeError("the dataset was finalized; open a new LeRobotV3Writer to add episodes.")
        missing = set(self.features) - set(frames)
        if missing:
            raise KeyError(f"episode is missing features {sorted(missing)}.")
        lengths = {key: len(frames[key]) for key in self.features}
        length = next(iter(lengths.values()))
        if len(set(lengths.values())) != 1 or length == 0:
            raise ValueError(f"every feature needs the same, non-zero number of frames; got {lengths}.")
        episode_index = len(self.episodes)
        task_index = self.tasks.setdefault(task, len(self.tasks))
        stats: dict[str, dict[str, np.ndarray]] = {}
        columns: dict[str, pa.Array] = {}
        for key in self.numeric_keys:
            spec = self.features[key]
            values = np.asarray(frames[key], dtype=spec["dtype"]).reshape(length, *spec["shape"])
            flat = values.reshape(length, -1)
            if flat.shape[1] == 1 and list(spec["shape"]) == [1]:
                columns[key] = pa.array(flat[:, 0])
            else:
                columns[key] = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])
            stats[key] = compute_feature_stats(values)
        frame_index = np.arange(length, dtype=np.int64)
        columns["timestamp"] = pa.array((frame_index / self.fps).astype(np.float32))
        columns["frame_index"] = pa.array(frame_index)
        columns["episode_index"] = pa.array(np.full(length, episode_index, dtype=np.int64))
        columns["index"] = pa.array(self.total_frames + frame_index)
        columns["task_index"] = pa.array(np.full(length, task_index, dtype=np.int64))
        for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
            stats[key] = compute_feature_stats(columns[key].to_numpy(zero_copy_only=False)[:, None])
        record: dict[str, Any] = {
            "episode_index": episode_index,
            "tasks": [task],
            "length": length,
            **self._write_data(pa.table(columns)),
            "dataset_from_index": self.total_frames,
            "dataset_to_index": self.total_frames + length,
        }
        for key in self.video_keys:
            video = np.asarray(frames[key])
            expected = tuple(self.features[key]["shape"])
            if video.dtype != np.uint8 or video.shape[1:] != expected:
                raise ValueError(
                    f"video feature {key!r} needs (T, {expected}) uint8 frames, got {video.shape} {video.dtype}."
                )
            record.update(self._write_video(key, video))
            sample = video[np.linspace(0, length - 1, min(length, IMAGE_STATS_FRAMES)).astype(int)]
            stats[key] = compute_feature_stats(sample, is_image=True)
        record["meta/episodes/chunk_index"] = 0
        record["meta/episodes/file_index"] = 0
        self.episodes.append(record)
        self.episode_stats.append(stats)
        self.total_frames += length
        return episode_index

    def _write_data(self, table: pa.Table) -> dict[str, int]:
        limit = self.data_files_size_in_mb * 1024 * 1024
        if self._data_writer is not None and self._data_bytes + table.nbytes > limit:
            self._data_writer.close()
            self._data_writer = None
            self._data_file = _next_file(*self._data_file, self.chunks_size)
            self._data_bytes = 0
        if self._data_writer is None:
            chunk_index, file_index = self._data_file
            path = self.root / DATA_PATH.format(chunk_index=chunk_index, file_index=file_index)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._data_writer = pq.ParquetWriter(path, table.schema, compression="snappy")
        self._data_writer.write_table(table)
        self._data_bytes += table.nbytes
        return {"data/chunk_index": self._data_file[0], "data/file_index": self._data_file[1]}

    def _write_video(self, key: str, frames: np.ndarray) -> dict[str, Any]:
        stream = self._videos.get(key)
        if stream is not None and stream.bytes > self.video_files_size_in_mb * 1024 * 1024:
            stream.close()
            self._video_files[key] = _next_file(*self._video_files[key], self.chunks_size)
            stream = None
        if stream is None:
            chunk_index, file_index = self._video_files[key]
            path = self.root / VIDEO_PATH.format(video_key=key, chunk_index=chunk_index, file_index=file_index)
            height, width = frames.shape[1:3]
            stream = _VideoStream(path, self.fps, height, width, self.codec, self.video_options)
            self._videos[key] = stream
        start = stream.frames / self.fps
        stream.append(frames)
        chunk_index, file_index = self._video_files[key]
        return {
            f"videos/{key}/chunk_index": chunk_index,
            f"videos/{key}/file_index": file_index,
            f"videos/{key}/from_timestamp": start,
            f"videos/{key}/to_timestamp": stream.frames / self.fps,
        }

    def _close_files(self) -> None:
        if self._data_writer is not None:
            self._data_writer.close()
            self._data_writer = None
        for stream in self._videos.values():
            stream.close()
        self._videos.clear()

    # -- metadata -----------------------------------------------------------------------------------------------
    def finalize(self) -> Path:
        """Close the files and write info.json, stats.json, tasks.parquet and the episodes table."""
        if self._finalized:
            return self.root
        if not self.episodes:
            raise ValueError("no episodes were added; a LeRobot dataset needs at least one.")
        self._close_files()
        self._finalized = True
        features = dict(self.features)
        for key in self.video_keys:
            height, width, channels = self.features[key]["shape"]
            features[key] = {
                **self.features[key],
                "info": {
                    "video.height": height,
                    "video.width": width,
                    "video.codec": self._codec_name(),
                    "video.pix_fmt": "yuv420p",
                    "video.is_depth_map": False,
                    "video.fps": self.fps,
                    "video.channels": channels,
                    "has_audio": False,
                },
            }
        features.update(DEFAULT_FEATURES)
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": len(self.episodes),
            "total_frames": self.total_frames,
            "total_tasks": len(self.tasks),
            "chunks_size": self.chunks_size,
            "data_files_size_in_mb": self.data_files_size_in_mb,
            "video_files_size_in_mb": self.video_files_size_in_mb,
            "fps": self.fps,
            "splits": {"train": f"0:{len(self.episodes)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if self.video_keys else None,
            "features": features,
        }
        meta = self.root / "meta"
        meta.mkdir(parents=True, exist_ok=True)
        (self.root / INFO_PATH).write_text(json.dumps(info, indent=4))
        keys = list(self.episode_stats[0])
        stats = {key: _aggregate_stats([episode[key] for episode in self.episode_stats]) for key in keys}
        (self.root / STATS_PATH).write_text(json.dumps(_jsonable(stats), indent=4))
        tasks = pd.DataFrame({"task_index": list(self.tasks.values())}, index=pd.Index(list(self.tasks), name="task"))
        tasks.to_parquet(self.root / TASKS_PATH)
        rows = []
        for record, episode_stats in zip(self.episodes, self.episode_stats, strict=True):
            row = dict(record)
            for feature, values in episode_stats.items():
                for stat, value in values.items():
                    row[f"stats/{feature}/{stat}"] = np.asarray(value, dtype=np.float64).flatten().tolist()
            rows.append(row)
        path = self.root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), path)
        logger.info(
            "wrote LeRobot %s dataset %s: %d episodes, %d frames, %d tasks",
            CODEBASE_VERSION,
            self.root,
            len(self.episodes),
            self.total_frames,
            len(self.tasks),
        )
        return self.root

    def _codec_name(self) -> str:
        return {"libsvtav1": "av1", "libaom-av1": "av1", "libx264": "h264", "libx265": "hevc"}.get(
            self.codec, self.codec
        )


# ---------------------------------------------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------------------------------------------


def _column_to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """A parquet column as numpy: fixed-size / variable lists of equal length -> (N, D)."""
    array = column.combine_chunks()
    if pa.types.is_fixed_size_list(array.type):
        return array.flatten().to_numpy(zero_copy_only=False).reshape(len(array), array.type.list_size)
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        lengths = np.diff(array.offsets.to_numpy())
        if len(lengths) and (lengths == lengths[0]).all() and array.null_count == 0:
            return array.flatten().to_numpy(zero_copy_only=False).reshape(len(array), int(lengths[0]))
        return np.asarray(array.to_pylist(), dtype=object)
    if pa.types.is_struct(array.type):  # e.g. embedded images {bytes, path}
        return np.asarray(array.to_pylist(), dtype=object)
    return array.to_numpy(zero_copy_only=False)


def decode_video_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All frames of an mp4 (N, H, W, 3) uint8 and their presentation times in seconds (N,)."""
    import av

    frames, times = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.pts * stream.time_base) if frame.pts is not None else np.nan)
    if not frames:
        raise ValueError(f"{path} holds no decodable video frames; re-encode it or check the codec.")
    return np.stack(frames), np.asarray(times)


class LeRobotV3Dataset:
    """A LeRobot v3.0 dataset folder: metadata, frame table and decoded video frames.

    Args:
        root: the dataset folder (with meta/info.json).
        load_videos: decode these video features into memory now (default: none; see `load_videos`).
    """

    def __init__(self, root: str | Path, load_videos: Iterable[str] = ()) -> None:
        self.root = Path(root)
        info_path = self.root / INFO_PATH
        if not info_path.exists():
            raise FileNotFoundError(
                f"{info_path} not found: {self.root} is not a LeRobot dataset folder (download it with "
                "`huggingface-cli download --repo-type dataset <repo> --local-dir <folder>`)."
            )
        self.info: dict[str, Any] = json.loads(info_path.read_text())
        version = str(self.info.get("codebase_version", ""))
        if not version.startswith("v3"):
            raise ValueError(
                f"{self.root} is a LeRobot {version or 'unknown-version'} dataset; this reader reads v3.x. Convert "
                "it with lerobot's `convert_dataset_v21_to_v30` script."
            )
        stats_path = self.root / STATS_PATH
        self.stats: dict[str, dict[str, np.ndarray]] = {}
        if stats_path.exists():
            raw = json.loads(stats_path.read_text())
            self.stats = {
                key: {stat: np.asarray(value) for stat, value in values.items()} for key, values in raw.items()
            }
        tasks = pd.read_parquet(self.root / TASKS_PATH)
        self.tasks: dict[int, str] = {
            int(index): str(task) for task, index in zip(tasks.index, tasks["task_index"], strict=True)
        }
        episode_files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not episode_files:
            raise FileNotFoundError(f"no episode metadata under {self.root / 'meta' / 'episodes'}.")
        episodes = pa.concat_tables([pq.read_table(path) for path in episode_files])
        keep = [name for name in episodes.column_names if not name.startswith("stats/")]
        self.episodes: list[dict[str, Any]] = sorted(
            episodes.select(keep).to_pylist(), key=lambda row: row["episode_index"]
        )
        data_files = sorted((self.root / "data").glob("chunk-*/file-*.parquet"))
        if not data_files:
            raise FileNotFoundError(f"no frame data under {self.root / 'data'}.")
        table = pa.concat_tables([pq.read_table(path) for path in data_files])
        self.columns: dict[str, np.ndarray] = {name: _column_to_numpy(table[name]) for name in table.column_names}
        order = np.argsort(self.columns["index"], kind="stable")
        self.columns = {name: values[order] for name, values in self.columns.items()}
        if len(self.columns["index"]) != self.info["total_frames"]:
            raise ValueError(
                f"{self.root}: info.json says total_frames={self.info['total_frames']} but the data files hold "
                f"{len(self.columns['index'])} rows; the dataset is incomplete."
            )
        self.frames: dict[str, list[np.ndarray]] = {}
        for key in load_videos:
            self.load_videos(key)

    # -- metadata -----------------------------------------------------------------------------------------------
    @property
    def fps(self) -> int:
        return int(self.info["fps"])

    @property
    def features(self) -> dict[str, dict[str, Any]]:
        return self.info["features"]

    @property
    def video_keys(self) -> list[str]:
        return [key for key, spec in self.features.items() if spec["dtype"] == "video"]

    @property
    def num_frames(self) -> int:
        return len(self.columns["index"])

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    def __len__(self) -> int:
        return self.num_frames

    def task_of(self, index: int) -> str:
        return self.tasks[int(self.columns["task_index"][index])]

    def episode_range(self, episode_index: int) -> tuple[int, int]:
        """Global frame indices [from, to) of an episode."""
        episode = self.episodes[episode_index]
        return int(episode["dataset_from_index"]), int(episode["dataset_to_index"])

    # -- videos -------------------------------------------------------------------------------------------------
    def video_path(self, key: str, episode_index: int) -> Path:
        episode = self.episodes[episode_index]
        return self.root / self.info["video_path"].format(
            video_key=key,
            chunk_index=int(episode[f"videos/{key}/chunk_index"]),
            file_index=int(episode[f"videos/{key}/file_index"]),
        )

    def load_videos(self, key: str) -> list[np.ndarray]:
        """Decode every episode of a video feature into memory: a list of (T, H, W, 3) uint8 per episode.

        Each mp4 is decoded once, front to back, and cut into episodes by their [from, to) timestamps; an
        episode whose frame count differs from its `length` is an error naming it.
        """
        if key in self.frames:
            return self.frames[key]
        if key not in self.video_keys:
            raise KeyError(f"{key!r} is not a video feature of {self.root}; video features: {self.video_keys}.")
        by_file: dict[Path, list[int]] = {}
        for episode_index in range(self.num_episodes):
            by_file.setdefault(self.video_path(key, episode_index), []).append(episode_index)
        frames: list[np.ndarray | None] = [None] * self.num_episodes
        tolerance = 0.5 / self.fps
        for path, episode_indices in by_file.items():
            decoded, times = decode_video_file(path)
            for episode_index in episode_indices:
                episode = self.episodes[episode_index]
                start = float(episode[f"videos/{key}/from_timestamp"])
                end = float(episode[f"videos/{key}/to_timestamp"])
                selected = (times >= start - tolerance) & (times < end - tolerance)
                clip = decoded[selected]
                if len(clip) != episode["length"]:
                    raise ValueError(
                        f"episode {episode_index} of {key!r}: {len(clip)} frames in [{start:.3f}, {end:.3f}) s of "
                        f"{path.name} but length={episode['length']}; the video and the metadata disagree."
                    )
                frames[episode_index] = clip
        self.frames[key] = frames  # type: ignore[assignment]
        return self.frames[key]

    def image(self, key: str, index: int) -> np.ndarray:
        """(H, W, 3) uint8 of an image feature at a global frame index: a video frame (the feature is decoded on
        first use), or an image embedded in the parquet rows (LeRobot's `image` dtype, PNG/JPEG bytes)."""
        if self.features.get(key, {}).get("dtype") == "image":
            import io

            from PIL import Image

            if key not in self.columns:
                raise KeyError(f"image feature {key!r} has no column in {self.root / 'data'}.")
            cell = self.columns[key][index]
            source = io.BytesIO(cell["bytes"]) if cell.get("bytes") else self.root / cell["path"]
            with Image.open(source) as image:
                return np.asarray(image.convert("RGB"))
        frames = self.load_videos(key)
        episode_index = int(self.columns["episode_index"][index])
        return frames[episode_index][int(self.columns["frame_index"][index])]


# ---------------------------------------------------------------------------------------------------------------
# Post-training view
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class ActionChunkDataset:
    """Frames of a LeRobot dataset as post-training samples: image, instruction, state and the next actions.

    Sample t of an episode holds the image and state at t and actions a_t .. a_{t + chunk_size - 1}; steps past
    the episode end repeat its last action and are flagged in `action_is_pad` (LeRobot's convention), so the loss
    can skip them. Videos are decoded into memory once (robot datasets for post-training are small; a 128 px
    frame is 48 KiB).
    """

    dataset: LeRobotV3Dataset
    chunk_size: int = 16
    image_key: str = "observation.image"
    state_key: str = "observation.state"
    action_key: str = "action"
    episodes: Sequence[int] | None = None

    def __post_init__(self) -> None:
        for key in (self.state_key, self.action_key):
            if key not in self.dataset.columns:
                raise KeyError(
                    f"{self.dataset.root} has no {key!r} column; features: {sorted(self.dataset.features)}."
                )
        image_type = self.dataset.features.get(self.image_key, {}).get("dtype")
        if image_type == "video":
            self.dataset.load_videos(self.image_key)
        elif image_type != "image":
            raise KeyError(
                f"{self.image_key!r} is not an image or video feature of {self.dataset.root}; image features: "
                f"{[k for k, v in self.dataset.features.items() if v['dtype'] in ('image', 'video')]}."
            )
        chosen = range(self.dataset.num_episodes) if self.episodes is None else self.episodes
        self.indices = np.concatenate([np.arange(*self.dataset.episode_range(e)) for e in chosen])
        self.states = self.dataset.columns[self.state_key].astype(np.float32).reshape(self.dataset.num_frames, -1)
        self.actions = self.dataset.columns[self.action_key].astype(np.float32).reshape(self.dataset.num_frames, -1)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> dict[str, Any]:
        index = int(self.indices[item])
        episode_index = int(self.dataset.columns["episode_index"][index])
        _, end = self.dataset.episode_range(episode_index)
        steps = index + np.arange(self.chunk_size)
        pad = steps >= end
        steps = np.minimum(steps, end - 1)
        return {
            "image": self.dataset.image(self.image_key, index),
            "instruction": self.dataset.task_of(index),
            "state": self.states[index],
            "actions": self.actions[steps],
            "action_is_pad": pad,
        }

    def normalization_stats(self) -> dict[str, dict[str, np.ndarray]]:
        """The dataset's stats.json entries for state and action (what the action model normalises with)."""
        missing = [key for key in (self.state_key, self.action_key) if key not in self.dataset.stats]
        if missing:
            raise KeyError(f"{self.dataset.root}/meta/stats.json has no entry for {missing}.")
        return {
            "observation.state": self.dataset.stats[self.state_key],
            "action": self.dataset.stats[self.action_key],
        }
