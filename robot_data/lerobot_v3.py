"""LeRobot v3.0 datasets on a local disk: a writer, a reader, and the action-chunk view post-training trains on.

The `lerobot` package pins torch below what this project runs (lerobot 0.4.4 writes v3.0 on Python 3.11 but
wants torch < 2.11), so this module reads and writes the format itself, following LeRobot's `datasets/utils.py`,
`dataset_metadata.py` and `dataset_writer.py` (codebase v3.0), down to the parquet types:

    README.md                          LeRobot's dataset card: YAML `configs` (data/*/*.parquet), `tags: [LeRobot]`,
                                       licence, and meta/info.json in a code block; `load_dataset(dir)` reads frames
    meta/info.json                     codebase_version "v3.0", fps, features, path templates, totals, splits
    meta/stats.json                    {feature: {min, max, mean, std, count, q01, q10, q50, q90, q99}}
    meta/tasks.parquet                 index "task" (the instruction), column task_index
    meta/episodes/chunk-000/file-000.parquet
                                       one row per episode: episode_index, tasks, length, data/chunk_index,
                                       data/file_index, dataset_from_index, dataset_to_index,
                                       videos/<key>/{chunk_index, file_index, from_timestamp, to_timestamp},
                                       meta/episodes/{chunk_index, file_index}, stats/<feature>/<stat>
    data/chunk-000/file-000.parquet    one row per frame: the non-video features + timestamp, frame_index,
                                       episode_index, index, task_index; many episodes per file; `image`
                                       features as PNG {bytes, path}; the `datasets` features in the schema
    videos/<key>/chunk-000/file-000.mp4
                                       many episodes concatenated per file; an episode is the frames with
                                       presentation time in [from_timestamp, to_timestamp)

Files roll over at `data_files_size_in_mb` / `video_files_size_in_mb`, and chunk directories hold at most
`chunks_size` files, as in LeRobot. Episode statistics have LeRobot's types, so that lerobot can append episodes to
a folder written here and read it again (it concatenates the episodes files, which must then agree column by
column): image / video statistics per channel in [0, 1] as (3, 1, 1) nested lists, `count` int64, `min` / `max` in
the feature's dtype, the others float64. The reader takes each parquet file on its own, so files that lerobot
appended with other (compatible) types read back too.
Videos are encoded with PyAV through a named `VideoEncoding`: `"lerobot"` is LeRobot's default (AV1 through
libsvtav1, yuv420p, GOP 2, CRF 30: small files, but 4:2:0 chroma and CRF 30 blur few-pixel details such as Meta-
World's goal markers), `"lossless"` is H.264 RGB at CRF 0 (libx264rgb: decoded frames equal the written ones, 5.6x
larger files for 128 px Meta-World frames). `codec_round_trip` passes frames through an encoding, so an evaluation
can see what a policy trained on encoded frames saw (docs/design.md §1.11, frame parity).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from modeling_jala.layout_jala import LEROBOT_ACTION_KEY, LEROBOT_IMAGE_KEY, LEROBOT_STATE_KEY

logger = logging.getLogger(__name__)

__all__ = [
    "CODEBASE_VERSION",
    "VIDEO_ENCODINGS",
    "VideoEncoding",
    "codec_round_trip",
    "ActionChunkDataset",
    "LeRobotV3Dataset",
    "LeRobotV3Writer",
    "compute_feature_stats",
    "hf_features",
    "resolve_video_encoding",
    "publish_to_hub",
    "write_dataset_card",
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
CARD_PATH = "README.md"
#: The dtypes a feature may have besides numpy's: camera frames stored in mp4 files or as PNG in the rows, text.
MEDIA_DTYPES = ("video", "image")


def hf_features(features: dict[str, dict[str, Any]]) -> datasets.Features:
    """The `datasets` features of the frame table, as LeRobot declares them: videos live in mp4 files (no column),
    images are `Image()` (PNG {bytes, path}), shape-[1] features are scalars, 1-D features fixed-size lists, 2-D
    to 5-D features `Array2D` .. `Array5D`. Written into the data parquet schema, so `load_dataset` and lerobot
    decode the columns the same way."""
    declared: dict[str, Any] = {}
    arrays = {2: datasets.Array2D, 3: datasets.Array3D, 4: datasets.Array4D, 5: datasets.Array5D}
    for key, spec in features.items():
        shape = tuple(spec["shape"])
        if spec["dtype"] == "video":
            continue
        if spec["dtype"] == "image":
            declared[key] = datasets.Image()
        elif shape == (1,):
            declared[key] = datasets.Value(spec["dtype"])
        elif len(shape) == 1:
            declared[key] = datasets.List(datasets.Value(spec["dtype"]), length=shape[0])
        elif len(shape) in arrays:
            declared[key] = arrays[len(shape)](shape=shape, dtype=spec["dtype"])
        else:
            raise ValueError(f"feature {key!r}: shape {list(shape)} has {len(shape)} dimensions; LeRobot takes 1-5.")
    return datasets.Features(declared)


def _next_file(chunk_index: int, file_index: int, chunks_size: int) -> tuple[int, int]:
    """LeRobot's `update_chunk_file_indices`: a new file, and a new chunk directory every `chunks_size` files."""
    return (chunk_index + 1, 0) if file_index == chunks_size - 1 else (chunk_index, file_index + 1)


def compute_feature_stats(values: np.ndarray, is_image: bool = False) -> dict[str, np.ndarray]:
    """LeRobot's per-feature statistics of (N, ...) values; images (N, H, W, 3) uint8 -> per channel in [0, 1].

    Types as LeRobot's: `count` int64 of shape (1,); numeric `min` / `max` keep the values' dtype (int64 columns
    give int64); everything else float64; image statistics (3, 1, 1)."""
    count = len(values)  # frames (LeRobot counts sampled images, not pixels)
    if is_image:
        pixels = values.reshape(-1, 3)
        minimum, maximum = pixels.min(0) / 255.0, pixels.max(0) / 255.0
        as_float = pixels.astype(np.float32) / 255.0
        reshape: tuple[int, ...] = (3, 1, 1)
    else:
        flat = values.reshape(count, -1)
        minimum, maximum = flat.min(0), flat.max(0)
        as_float = flat.astype(np.float64)
        reshape = (flat.shape[1],)
    stats = {
        "min": minimum,
        "max": maximum,
        "mean": as_float.mean(0, dtype=np.float64),
        "std": as_float.std(0, dtype=np.float64),
        "count": np.array([count], dtype=np.int64),
    }
    for quantile in QUANTILES:
        stats[f"q{round(quantile * 100):02d}"] = np.quantile(as_float, quantile, axis=0).astype(np.float64)
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


@dataclass(frozen=True)
class VideoEncoding:
    """How camera frames become mp4 video: an FFmpeg encoder, its pixel format and rate control.

    `codec_name` is what LeRobot's info.json records (`video.codec`), the decoder-side name of the stream.
    """

    encoder: str
    codec_name: str
    pix_fmt: str = "yuv420p"
    crf: int = 30
    gop: int = 2

    def options(self) -> dict[str, str]:
        return {"crf": str(self.crf), "g": str(self.gop)}


#: The encodings by name (`--video_encoding` of the dataset writers). "lerobot" is LeRobot's default.
VIDEO_ENCODINGS = {
    "lerobot": VideoEncoding("libsvtav1", "av1"),
    "lossless": VideoEncoding("libx264rgb", "h264", pix_fmt="rgb24", crf=0),
    "h264": VideoEncoding("libx264", "h264"),
}


def resolve_video_encoding(encoding: str | VideoEncoding) -> VideoEncoding:
    if isinstance(encoding, VideoEncoding):
        return encoding
    if encoding not in VIDEO_ENCODINGS:
        raise ValueError(f"unknown video encoding {encoding!r}; choose one of {sorted(VIDEO_ENCODINGS)}.")
    return VIDEO_ENCODINGS[encoding]


class _VideoStream:
    """One camera's open mp4 file: episodes are appended with continuous presentation timestamps."""

    def __init__(self, path: Path, fps: int, height: int, width: int, encoding: VideoEncoding) -> None:
        import av

        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration at info level otherwise
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.container = av.open(str(path), mode="w")
        self.stream = self.container.add_stream(encoding.encoder, rate=fps)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = encoding.pix_fmt
        self.stream.codec_context.time_base = Fraction(1, fps)
        self.stream.options = encoding.options()
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
            `image` features are stored as PNG in the data parquet (LeRobot's `Image()` column), from (T, H, W, 3)
            uint8 frames; `string` features as text.
        robot_type: free text stored in info.json.
        video_encoding: a `VIDEO_ENCODINGS` name or a `VideoEncoding` (default "lerobot": libsvtav1, CRF 30,
            GOP 2 for fast seeking; "lossless" keeps every pixel).
        license / tags: for the dataset card (README.md); `tags` are added to LeRobot's own `LeRobot` tag.

    Use as a context manager, or call `finalize()`; without it the metadata is not written.
    """

    def __init__(
        self,
        root: str | Path,
        fps: int,
        features: dict[str, dict[str, Any]],
        robot_type: str | None = None,
        video_encoding: str | VideoEncoding = "lerobot",
        chunks_size: int = DEFAULT_CHUNK_SIZE,
        data_files_size_in_mb: float = DEFAULT_DATA_FILE_SIZE_IN_MB,
        video_files_size_in_mb: float = DEFAULT_VIDEO_FILE_SIZE_IN_MB,
        license: str | None = "apache-2.0",
        tags: Sequence[str] = (),
    ) -> None:
        self.root = Path(root)
        if (self.root / INFO_PATH).exists():
            raise FileExistsError(f"{self.root} already holds a LeRobot dataset; write to a new folder.")
        reserved = set(features) & set(DEFAULT_FEATURES)
        if reserved:
            raise ValueError(f"features {sorted(reserved)} are added by the writer; remove them from `features`.")
        for key, spec in features.items():
            if spec.get("dtype") in MEDIA_DTYPES and (len(spec["shape"]) != 3 or spec["shape"][2] != 3):
                raise ValueError(
                    f"{spec['dtype']} feature {key!r} must have shape [height, width, 3], got {spec['shape']}."
                )
            if spec.get("dtype") not in (*MEDIA_DTYPES, "string"):
                try:
                    np.dtype(spec["dtype"])
                except (KeyError, TypeError):
                    raise ValueError(
                        f"feature {key!r} has dtype {spec.get('dtype')!r}; use a numpy dtype, 'string', 'image' or "
                        "'video'."
                    ) from None
        self.fps = fps
        self.features = {key: dict(spec) for key, spec in features.items()}
        self.hf_features = hf_features({**self.features, **DEFAULT_FEATURES})
        self.license, self.tags = license, list(tags)
        self.robot_type = robot_type
        self.video_encoding = resolve_video_encoding(video_encoding)
        self.chunks_size = chunks_size
        self.data_files_size_in_mb = data_files_size_in_mb
        self.video_files_size_in_mb = video_files_size_in_mb
        self.video_keys = [key for key, spec in features.items() if spec["dtype"] == "video"]
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
        """Append one episode: `frames[key]` is (T, *shape) for every feature (image / video: (T, H, W, 3) uint8,
        string: T texts)."""
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
        frame_index = np.arange(length, dtype=np.int64)
        values: dict[str, Any] = {}
        for key, spec in self.features.items():
            if spec["dtype"] in MEDIA_DTYPES:
                values[key] = self._camera_frames(key, frames[key], length)
            elif spec["dtype"] == "string":
                values[key] = [str(text) for text in frames[key]]
            else:
                values[key] = np.asarray(frames[key], dtype=spec["dtype"]).reshape(length, *spec["shape"])
        values["timestamp"] = (frame_index / self.fps).astype(np.float32)
        values["frame_index"] = frame_index
        values["episode_index"] = np.full(length, episode_index, dtype=np.int64)
        values["index"] = self.total_frames + frame_index
        values["task_index"] = np.full(length, task_index, dtype=np.int64)
        columns = {key: list(values[key]) if self._is_image(key) else values[key] for key in self.hf_features}
        table = datasets.Dataset.from_dict(columns, features=self.hf_features).data.table
        record: dict[str, Any] = {
            "episode_index": episode_index,
            "tasks": [task],
            "length": length,
            **self._write_data(table),
            "dataset_from_index": self.total_frames,
            "dataset_to_index": self.total_frames + length,
        }
        # Statistics in LeRobot's order (the features, then the default columns); none for text.
        stats: dict[str, dict[str, np.ndarray]] = {}
        for key, spec in {**self.features, **DEFAULT_FEATURES}.items():
            if spec["dtype"] == "string":
                continue
            if spec["dtype"] in MEDIA_DTYPES:
                if spec["dtype"] == "video":
                    record.update(self._write_video(key, values[key]))
                sample = values[key][np.linspace(0, length - 1, min(length, IMAGE_STATS_FRAMES)).astype(int)]
                stats[key] = compute_feature_stats(sample, is_image=True)
            else:
                stats[key] = compute_feature_stats(np.asarray(values[key]).reshape(length, -1))
        record["meta/episodes/chunk_index"] = 0
        record["meta/episodes/file_index"] = 0
        self.episodes.append(record)
        self.episode_stats.append(stats)
        self.total_frames += length
        return episode_index

    def _is_image(self, key: str) -> bool:
        return self.features.get(key, {}).get("dtype") == "image"

    def _camera_frames(self, key: str, frames: Any, length: int) -> np.ndarray:
        """(T, H, W, 3) uint8 frames of an image or video feature, checked against its declared shape."""
        spec = self.features[key]
        array = np.asarray(frames)
        expected = tuple(spec["shape"])
        if array.dtype != np.uint8 or array.shape != (length, *expected):
            raise ValueError(
                f"{spec['dtype']} feature {key!r} needs ({length}, {expected}) uint8 frames, got {array.shape} "
                f"{array.dtype}."
            )
        return array

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
            self._data_writer = pq.ParquetWriter(path, self.hf_features.arrow_schema, compression="snappy")
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
            stream = _VideoStream(path, self.fps, height, width, self.video_encoding)
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
                    "video.codec": self.video_encoding.codec_name,
                    "video.pix_fmt": self.video_encoding.pix_fmt,
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
            # LeRobot's column order and types: the statistics go before meta/episodes/*, each as the nested list
            # of its array (`tolist()`: (3, 1, 1) for images, int64 `count`, `min` / `max` in the feature dtype).
            row = {key: value for key, value in record.items() if not key.startswith("meta/episodes/")}
            for feature, values in episode_stats.items():
                for stat, value in values.items():
                    row[f"stats/{feature}/{stat}"] = np.asarray(value).tolist()
            row.update({key: value for key, value in record.items() if key.startswith("meta/episodes/")})
            rows.append(row)
        path = self.root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), path)
        write_dataset_card(self.root, license=self.license, tags=self.tags)
        logger.info(
            "wrote LeRobot %s dataset %s: %d episodes, %d frames, %d tasks",
            CODEBASE_VERSION,
            self.root,
            len(self.episodes),
            self.total_frames,
            len(self.tasks),
        )
        return self.root


# ---------------------------------------------------------------------------------------------------------------
# Dataset card and publishing
# ---------------------------------------------------------------------------------------------------------------


def write_dataset_card(root: str | Path, license: str | None = "apache-2.0", tags: Sequence[str] = ()) -> Path:
    """Write LeRobot's dataset card (README.md) for a dataset folder; returns its path.

    Why: `datasets.load_dataset(dir or repo)` needs the card's `configs` to find the frame files (without it, it
    tries every file and fails), and the Hub lists LeRobot datasets by the `LeRobot` tag and shows meta/info.json
    from the card, as lerobot's own `push_to_hub` writes it.
    """
    from huggingface_hub import DatasetCardData

    root = Path(root)
    info = json.loads((root / INFO_PATH).read_text())
    card_data = DatasetCardData(
        license=license,
        tags=["LeRobot", *[tag for tag in tags if tag != "LeRobot"]],
        task_categories=["robotics"],
        configs=[{"config_name": "default", "data_files": "data/*/*.parquet"}],
    )
    video_keys = [key for key, spec in info["features"].items() if spec["dtype"] == "video"]
    lines = [
        "---",
        card_data.to_yaml().rstrip(),
        "---",
        "",
        f"# {root.name}",
        "",
        f"A robot dataset in [LeRobot](https://github.com/huggingface/lerobot)'s {info['codebase_version']} format: "
        f"{info['total_episodes']} episodes, {info['total_frames']} frames at {info['fps']} fps, "
        f"{info['total_tasks']} tasks, robot `{info.get('robot_type')}`. Written by the JALA open implementation "
        "(`robot_data/lerobot_v3.py`), file for file as lerobot writes it.",
        "",
        "## Load",
        "",
        "```python",
        "from lerobot.datasets.lerobot_dataset import LeRobotDataset",
        'dataset = LeRobotDataset("<user>/<repo>")  # reads the `v3.0` tag of the Hub repo',
        "",
        "from datasets import load_dataset",
        'frames = load_dataset("<user>/<repo>", split="train")  # the frame table (videos stay in videos/)',
        "```",
        "",
        f"Video features ({', '.join(f'`{key}`' for key in video_keys) or 'none'}) are mp4 files under `videos/`, "
        "cut into episodes by `videos/<key>/from_timestamp` / `to_timestamp` in `meta/episodes/`.",
        "",
        "## Dataset structure",
        "",
        "[meta/info.json](meta/info.json):",
        "",
        "```json",
        json.dumps(info, indent=4),
        "```",
        "",
    ]
    path = root / CARD_PATH
    path.write_text("\n".join(lines))
    return path


def publish_to_hub(
    root: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    branch: str | None = None,
    token: str | None = None,
    api: Any = None,
) -> str:
    """Upload a dataset folder to the Hub as lerobot does, and tag the upload `v3.0`; returns the repo id.

    Why the tag: `LeRobotDataset(repo_id)` reads the revision named after its codebase version, so a repo
    without a `v3.0` tag does not load. Re-publishing moves the tag to the new upload. `api` defaults to
    `huggingface_hub.HfApi(token=token)`.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RevisionNotFoundError

    root = Path(root)
    if not (root / INFO_PATH).exists():
        raise FileNotFoundError(f"{root / INFO_PATH} not found: {root} is not a LeRobot dataset folder.")
    if not (root / CARD_PATH).exists():
        info = json.loads((root / INFO_PATH).read_text())
        write_dataset_card(root, tags=[info["robot_type"]] if info.get("robot_type") else ())
    api = api if api is not None else HfApi(token=token)
    api.create_repo(repo_id=repo_id, repo_type="dataset", private=private, exist_ok=True)
    if branch:
        api.create_branch(repo_id=repo_id, branch=branch, repo_type="dataset", exist_ok=True)
    api.upload_folder(
        repo_id=repo_id, folder_path=str(root), repo_type="dataset", revision=branch, ignore_patterns=["images/"]
    )
    with contextlib.suppress(RevisionNotFoundError):
        api.delete_tag(repo_id, tag=CODEBASE_VERSION, repo_type="dataset")
    api.create_tag(repo_id, tag=CODEBASE_VERSION, revision=branch, repo_type="dataset")
    return repo_id


# ---------------------------------------------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------------------------------------------


def _column_to_numpy(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A parquet column as numpy: scalars (N,); fixed-size or equal-length lists, nested to any depth, and
    `datasets` ArrayND columns (N, *shape); images ({bytes, path}) and ragged lists as object arrays."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if isinstance(array, pa.ExtensionArray):
        array = array.storage
    if pa.types.is_struct(array.type):  # e.g. embedded images {bytes, path}
        return np.asarray(array.to_pylist(), dtype=object)
    shape, values = [len(array)], array
    while (
        pa.types.is_fixed_size_list(values.type)
        or pa.types.is_list(values.type)
        or pa.types.is_large_list(values.type)
    ):
        lengths = np.diff(values.offsets.to_numpy()) if not pa.types.is_fixed_size_list(values.type) else None
        size = values.type.list_size if lengths is None else (int(lengths[0]) if len(lengths) else 0)
        if values.null_count or (lengths is not None and (lengths != size).any()):
            return np.asarray(array.to_pylist(), dtype=object)
        shape.append(size)
        values = values.flatten()
    return values.to_numpy(zero_copy_only=False).reshape(shape)


def _concat_columns(name: str, parts: Sequence[np.ndarray], paths: Sequence[Path]) -> np.ndarray:
    """One column from several files; files lerobot appended may store it with another (compatible) type."""
    shapes = {part.shape[1:] for part in parts}
    if len(shapes) > 1:
        described = ", ".join(f"{path.name}: {part.shape[1:]}" for path, part in zip(paths, parts, strict=True))
        raise ValueError(f"column {name!r} has different shapes per frame across data files ({described}).")
    if any(part.dtype == object for part in parts):
        return np.concatenate([part.astype(object) for part in parts])
    return np.concatenate(parts)


def codec_round_trip(frames: np.ndarray, encoding: str | VideoEncoding, fps: int = 30) -> np.ndarray:
    """(T, H, W, 3) uint8 frames after encoding into an in-memory mp4 and decoding again.

    What a policy trained on a video dataset saw, for frames rendered at evaluation. A single frame is encoded on
    its own (an intra frame); within a dataset every `gop`-th frame is one and the others are predicted, so a
    round trip per frame is close to, not identical with, the dataset's pixels.
    """
    import io

    import av

    encoding = resolve_video_encoding(encoding)
    frames = np.asarray(frames, dtype=np.uint8)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream(encoding.encoder, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = encoding.pix_fmt
        stream.options = encoding.options()
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
        container.mux(stream.encode(None))
    buffer.seek(0)
    with av.open(buffer) as container:
        decoded = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    if decoded.shape != frames.shape:
        raise RuntimeError(
            f"codec round trip through {encoding.encoder} returned {decoded.shape}, not {frames.shape}."
        )
    return decoded


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
        # Each file on its own: an episodes file lerobot appended has its own schema (column order, stats types),
        # which one concatenated table would reject ("Schema at index 1 was different").
        episodes: list[dict[str, Any]] = []
        for path in episode_files:
            table = pq.read_table(path)
            episodes += table.select([n for n in table.column_names if not n.startswith("stats/")]).to_pylist()
        self.episodes: list[dict[str, Any]] = sorted(episodes, key=lambda row: row["episode_index"])
        data_files = sorted((self.root / "data").glob("chunk-*/file-*.parquet"))
        if not data_files:
            raise FileNotFoundError(f"no frame data under {self.root / 'data'}.")
        per_file: list[dict[str, np.ndarray]] = []
        for path in data_files:
            table = pq.read_table(path)
            per_file.append({name: _column_to_numpy(table[name]) for name in table.column_names})
        names = list(per_file[0])
        for path, columns in zip(data_files, per_file, strict=True):
            if set(columns) != set(names):
                raise ValueError(
                    f"{path} has columns {sorted(columns)} but {data_files[0].name} has {sorted(names)}; every data "
                    "file of a dataset holds the same features."
                )
        self.columns: dict[str, np.ndarray] = {
            name: _concat_columns(name, [columns[name] for columns in per_file], data_files) for name in names
        }
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
                raise KeyError(
                    f"image feature {key!r} is declared in meta/info.json but has no column in {self.root / 'data'}; "
                    "the writer that made this dataset dropped it (rewrite it with this module's writer)."
                )
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
    """Frames of a LeRobot dataset as post-training samples: camera images, instruction, state and the next actions.

    Sample t of an episode holds its global frame `index`, the images of `image_keys` (one per camera, in that
    order) and the state at t, and actions a_t .. a_{t + chunk_size - 1}; steps past the episode end repeat its
    last action and are flagged in `action_is_pad` (LeRobot's convention), so the loss can skip them. Videos are
    decoded into memory once (robot datasets for post-training are small; a 128 px frame is 48 KiB).
    """

    dataset: LeRobotV3Dataset
    chunk_size: int = 16
    image_keys: Sequence[str] = (LEROBOT_IMAGE_KEY,)
    state_key: str = LEROBOT_STATE_KEY
    action_key: str = LEROBOT_ACTION_KEY
    episodes: Sequence[int] | None = None

    def __post_init__(self) -> None:
        for key in (self.state_key, self.action_key):
            if key not in self.dataset.columns:
                raise KeyError(
                    f"{self.dataset.root} has no {key!r} column; features: {sorted(self.dataset.features)}."
                )
        if isinstance(self.image_keys, str) or not self.image_keys:
            raise ValueError(f"image_keys must be a non-empty list of image features, got {self.image_keys!r}.")
        cameras = [k for k, v in self.dataset.features.items() if v["dtype"] in ("image", "video")]
        missing = [key for key in self.image_keys if key not in cameras]
        if missing:
            raise KeyError(
                f"{missing} are not image or video features of {self.dataset.root}; its cameras: {cameras}. "
                "Pass --image_keys with names from that list."
            )
        for key in self.image_keys:
            if self.dataset.features[key]["dtype"] == "video":
                self.dataset.load_videos(key)
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
            "index": index,
            "images": [self.dataset.image(key, index) for key in self.image_keys],
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
            LEROBOT_STATE_KEY: self.dataset.stats[self.state_key],
            LEROBOT_ACTION_KEY: self.dataset.stats[self.action_key],
        }
