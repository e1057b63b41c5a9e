"""The lab-converter plugin interface: public per-sequence datasets with exact hand labels -> UniHand-Mix rows.

Why a base class: lab datasets (H2O, ARCTIC, DexYCB, HOI4D, OakInk2, HOT3D, ...) differ in how they store
frames and labels, and in nothing else that matters here. Everything after reading, resampling to 15 fps,
cutting 1-10 s clips, fitting MANO-D162, encoding frames, choosing the split, is the same, so it lives here
once and every converter is only a reader. A converter yields ordinary source rows (it is a
:class:`~dataset_scripts.sources.base.ClipSource`), so the builder validates and writes them like any other.

What :meth:`LabConverter.iter_rows` does with every sequence, in sorted id order:

1. **Read** (subclass): :meth:`~LabConverter.discover_sequences` lists :class:`SequenceRef` s under ``root``;
   :meth:`~LabConverter.read_sequence` returns a :class:`LabSequence`: per source frame, both hands' 21
   keypoints (camera frame, metres, ``KEYPOINT_NAMES`` order) with a validity flag per hand, timestamps, an
   optional instruction per frame (the dataset's action label), the intrinsics and a frame loader.
2. **Resample** to 15 fps in real time (lab footage plays at 1.0, no slow-down) with
   :func:`dataset_scripts.video.resample.plan_resample`: clip frame ``k`` shows the source frame on screen at
   ``k / 15`` s (a 30 fps sequence gives every other frame), and its labels are that frame's labels.
3. **Fill short gaps**: a hand missing for at most ``max_gap_seconds`` is interpolated
   (:func:`dataset_scripts.video.lifting.interpolate_gaps`); longer gaps mean the hand is absent there.
4. **Cut** the 15 fps timeline into runs where the instruction and the set of present hands stay the same and
   at least one hand is present, so that every frame of a clip has an exact label for every hand the clip says
   is present. Runs shorter than ``min_clip_seconds`` are dropped (counted in :attr:`LabConverter.report`),
   longer than ``max_clip_seconds`` split into equal parts.
5. **Fit** each present hand with :meth:`modeling_jala.hand_jala.HandSkeleton.fit_keypoints` (handedness-aware,
   one bone scale per hand and clip, :func:`~dataset_scripts.video.lifting.fit_d162`); an absent hand's slot is
   zeros. The mean fit residual per hand goes into ``scene``; a clip whose worst hand exceeds
   ``max_fit_residual_mm`` is dropped with a warning (the keypoints do not look like a hand in
   ``KEYPOINT_NAMES`` order: a reader bug or a broken label, either way not an "exact" label).
6. **Row**: ``domain="lab"``, ``label_source="exact"``, ``labelled=True``, ``label_confidence=1.0``,
   ``task_type="motion_generation"``; the instruction is the sequence's text for those frames, else
   :data:`TEMPLATE_INSTRUCTION`. Only the first frame and the boundary frames are decoded and stored (JPEG,
   longer side at most ``image_max_side``), ``camera_intrinsics`` are those of the stored frames.
7. **Split** by a hash of the sequence's ``group`` (:func:`hash_split`): ``test_lab`` for a deterministic
   ``test_fraction`` of groups, ``train`` for the rest, so no sequence, and no other camera view of the same
   take, straddles train and test; the same group gets the same split in every build.

Writing a converter::

    from dataset_scripts.sources.lab_converter import LabConverter, LabSequence, SequenceRef, image_file_loader
    from dataset_scripts.sources.base import register_source

    @register_source("my_lab")
    class MyLabConverter(LabConverter):
        '''My Lab dataset (citation, URL of the format documentation). Options: root, plus LabConverter's.'''

        dataset_name = "My Lab"

        def discover_sequences(self) -> list[SequenceRef]:
            return [SequenceRef(id=p.name, path=p) for p in sorted(self.root.glob("seq_*"))]

        def read_sequence(self, ref: SequenceRef) -> LabSequence:
            frames = sorted((ref.path / "images").glob("*.jpg"))
            keypoints, valid = ...  # (F, 2, 21, 3) metres, (F, 2) bool, read from the labels
            return LabSequence(
                keypoints=keypoints,
                valid=valid,
                timestamps=np.arange(len(frames)) / 30.0,
                intrinsics=(fx, fy, cx, cy),
                load_frames=image_file_loader(frames),
            )

Frames stored in a video file rather than images: return a loader built on
:func:`dataset_scripts.video.decode.iter_frames`. Formats that give MANO parameters but no joints need the MANO
model (a licensed pickle we neither ship nor load): export the 21 joints first (``manopth`` order = ours).

Registering it: a built-in converter is imported in ``dataset_scripts/sources/__init__.py`` (that import runs
``@register_source``). A third-party package declares an entry point in the group
:data:`dataset_scripts.sources.base.ENTRY_POINT_GROUP` in its ``pyproject.toml``::

    [project.entry-points."jala.unihand_sources"]
    my_lab = "my_pkg.my_lab:MyLabConverter"

after which ``python -m dataset_scripts build --output DIR --source my_lab:root=/data/my_lab,test_fraction=0.1``
finds it (``--plugin my_pkg.my_lab`` does the same without installing). Options arrive from the CLI as text;
the base class converts its own, so a subclass may forward them with ``**options``.
"""

from __future__ import annotations

import abc
import hashlib
import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from dataset_scripts.images import encode_image
from dataset_scripts.repo_layout import SPLIT_DOMAINS, SPLITS
from dataset_scripts.schema import COLUMN_DOCS, boundary_frame_indices
from dataset_scripts.sources.base import ClipSource, renumber_counted_id
from dataset_scripts.video.decode import scaled_size
from dataset_scripts.video.lifting import Intrinsics, fit_d162, interpolate_gaps
from dataset_scripts.video.resample import LAB_PLAYBACK_SPEED, plan_resample, split_evenly
from modeling_jala.hand_jala import D162_DIM, NUM_JOINTS, HandSkeleton
from modeling_jala.layout_jala import FPS, HANDS

logger = logging.getLogger(__name__)

__all__ = [
    "TEMPLATE_INSTRUCTION",
    "LabConverter",
    "LabFormatError",
    "LabSequence",
    "SequenceRef",
    "hash_split",
    "image_file_loader",
]

#: Instruction of clips whose frames carry no action label.
TEMPLATE_INSTRUCTION = "Perform the hand motion in this scene."
#: Splits a lab row may go to (the builder keeps ``test_wild`` for wild rows).
LAB_SPLITS = tuple(split for split in SPLITS if "lab" in SPLIT_DOMAINS[split])

FrameLoader = Callable[[Sequence[int]], Mapping[int, np.ndarray]]


class LabFormatError(ValueError):
    """A dataset file that does not match its documented format; the message names the file and the fix."""


@dataclass(frozen=True)
class SequenceRef:
    """One sequence found under the root.

    ``id``: unique and stable (it is logged and stored in ``scene``); ``path``: where the reader finds it;
    ``group``: the unit that decides the split (default ``id``). Give every camera view of one take the same
    group, or the same motion lands in train and test.
    """

    id: str
    path: Path
    group: str | None = None

    @property
    def split_group(self) -> str:
        return self.group if self.group is not None else self.id


@dataclass
class LabSequence:
    """What a reader returns for one sequence (F source frames).

    ``keypoints`` (F, 2, 21, 3): (left, right) hands, ``KEYPOINT_NAMES`` (MediaPipe / manopth) order, camera
    frame (OpenCV: +x right, +y down, +z forward), metres; values where ``valid`` is False are ignored.
    ``valid`` (F, 2) bool: the dataset labels that hand in that frame.
    ``timestamps`` (F,): seconds, non-decreasing (any origin: clip times are measured from the first frame).
    ``intrinsics``: (fx, fy, cx, cy) in pixels of images of ``image_size`` (width, height); when the frames
    ``load_frames`` returns have another size the intrinsics are scaled to them. ``image_size`` None: the
    intrinsics are those of the loaded frames.
    ``load_frames``: source frame indices -> {index: RGB uint8 (H, W, 3)}; called once per sequence with only
    the frames that rows store.
    ``instructions`` (F,) or None: the instruction for each frame (from the dataset's action labels), None for
    frames without one (background); clips never span two instructions.
    ``end_s``: when the last frame stops being shown, same time base as ``timestamps`` (default: the last
    timestamp plus the median frame interval).
    ``scene``: provenance copied into the ``scene`` JSON of every row of the sequence.
    """

    keypoints: np.ndarray
    valid: np.ndarray
    timestamps: np.ndarray
    intrinsics: tuple[float, float, float, float]
    load_frames: FrameLoader
    image_size: tuple[int, int] | None = None
    instructions: Sequence[str | None] | None = None
    end_s: float | None = None
    scene: dict[str, Any] = field(default_factory=dict)

    def check(self, where: str) -> None:
        """Shapes and values a reader must deliver; the message names the sequence."""
        frames = len(self.timestamps)
        if frames == 0:
            raise LabFormatError(f"{where}: the sequence has no frames.")
        if self.keypoints.shape != (frames, 2, NUM_JOINTS, 3):
            raise LabFormatError(
                f"{where}: keypoints have shape {self.keypoints.shape}, expected ({frames}, 2, {NUM_JOINTS}, 3)."
            )
        if self.valid.shape != (frames, 2) or self.valid.dtype != bool:
            raise LabFormatError(f"{where}: valid must be a ({frames}, 2) bool array, got {self.valid.shape}.")
        if not np.isfinite(self.keypoints[self.valid]).all():
            raise LabFormatError(f"{where}: keypoints marked valid hold NaN/inf; mark those hands invalid.")
        if np.any(np.diff(self.timestamps) < 0):
            raise LabFormatError(f"{where}: timestamps must be non-decreasing (frames in display order).")
        if self.instructions is not None and len(self.instructions) != frames:
            raise LabFormatError(f"{where}: {len(self.instructions)} instructions for {frames} frames.")


def image_file_loader(paths: Sequence[Path]) -> FrameLoader:
    """A frame loader over one image file per source frame (PNG, JPEG, ...), decoded with PIL as RGB."""

    def load(indices: Sequence[int]) -> dict[int, np.ndarray]:
        frames = {}
        for index in indices:
            path = paths[int(index)]
            try:
                with Image.open(path) as image:
                    frames[int(index)] = np.asarray(image.convert("RGB"))
            except OSError as error:
                raise LabFormatError(f"{path}: cannot be read as an image ({error}); re-extract the frame.") from None
        return frames

    return load


def hash_split(group: str, test_fraction: float, salt: str = "") -> str:
    """``test_lab`` for a fixed ``test_fraction`` of groups, ``train`` for the others, by a hash of the name.

    SHA-256 (not Python's ``hash``, which is salted per process) so the answer is the same on every machine and
    in every build: adding sequences never moves an existing one to the other split. ``salt`` draws another
    partition.
    """
    digest = hashlib.sha256(f"{salt}\x00{group}".encode()).digest()
    return "test_lab" if int.from_bytes(digest[:8], "big") / 2.0**64 < test_fraction else "train"


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"option {name!r} must be true or false, got {value!r}.")


def _number(value: Any, name: str, kind: type = float, low: float | None = None) -> Any:
    """CLI options arrive as text; convert and range-check with an error that names the option."""
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"option {name!r} must be a {kind.__name__}, got {value!r}.") from None
    if (low is not None and number < low) or (isinstance(number, float) and not math.isfinite(number)):
        raise ValueError(f"option {name!r} must be a finite number >= {low}, got {value!r}.")
    return number


class LabConverter(ClipSource):
    """Base of lab-dataset converters (see the module docstring); subclasses implement the two readers.

    Options shared by every converter (keyword; CLI text is converted):
        root: the dataset folder.
        test_fraction: share of sequence groups that go to ``test_lab`` (0.1); the rest go to ``train``.
        split: put every row in this split instead (``train`` or ``test_lab``), e.g. for an official test set.
        split_salt: text mixed into the split hash to draw another partition ("").
        image_max_side: longer side of the stored JPEG frames, pixels (512).
        min_clip_seconds / max_clip_seconds: clip length bounds (1 / 10).
        max_gap_seconds: longest stretch without a hand's label that is interpolated (0.2).
        max_fit_residual_mm: clips whose D162 fit is worse than this (mean per hand, mm) are dropped (15).
        fit_iterations: Adam iterations of the D162 fit (100).
        progress: progress bar over sequences (true).
    """

    #: Human-readable dataset name, used in messages and the ``scene`` column.
    dataset_name: ClassVar[str] = "lab dataset"

    def __init__(
        self,
        root: str | Path,
        *,
        test_fraction: float = 0.1,
        split: str | None = None,
        split_salt: str = "",
        image_max_side: int = 512,
        min_clip_seconds: float = 1.0,
        max_clip_seconds: float = 10.0,
        max_gap_seconds: float = 0.2,
        max_fit_residual_mm: float = 15.0,
        fit_iterations: int = 100,
        progress: bool = True,
    ) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(
                f"{self.dataset_name} converter: root {str(self.root)!r} does not exist; pass the dataset folder."
            )
        self.test_fraction = _number(test_fraction, "test_fraction", float, 0.0)
        if self.test_fraction > 1.0:
            raise ValueError(f"option 'test_fraction' must be in [0, 1], got {test_fraction!r}.")
        if split in ("", "none", "None"):
            split = None
        if split is not None and split not in LAB_SPLITS:
            raise ValueError(f"option 'split' must be one of {LAB_SPLITS} (or unset for the hash), got {split!r}.")
        self.split = split
        self.split_salt = str(split_salt)
        self.image_max_side = _number(image_max_side, "image_max_side", int, 16)
        min_clip_seconds = _number(min_clip_seconds, "min_clip_seconds", float, 1.0 / FPS)
        max_clip_seconds = _number(max_clip_seconds, "max_clip_seconds", float, min_clip_seconds)
        self.min_frames = max(1, math.ceil(min_clip_seconds * FPS - 1e-6))
        self.max_frames = max(self.min_frames, math.floor(max_clip_seconds * FPS + 1e-6))
        self.max_gap_frames = int(round(_number(max_gap_seconds, "max_gap_seconds", float, 0.0) * FPS))
        self.max_fit_residual_mm = _number(max_fit_residual_mm, "max_fit_residual_mm", float, 0.0)
        self.fit_iterations = _number(fit_iterations, "fit_iterations", int, 0)
        self.progress = _as_bool(progress, "progress")
        self.skeleton = HandSkeleton()
        #: What ``iter_rows`` wrote and dropped, and why; filled while it runs.
        self.report: Counter = Counter()

    # -- what a subclass implements ---------------------------------------------------------------------------

    @abc.abstractmethod
    def discover_sequences(self) -> list[SequenceRef]:
        """Every sequence under ``self.root`` (any order; they are processed sorted by id)."""

    @abc.abstractmethod
    def read_sequence(self, ref: SequenceRef) -> LabSequence:
        """Read one sequence's labels and metadata; raise :class:`LabFormatError` naming the file and the fix."""

    # -- the shared pipeline ----------------------------------------------------------------------------------

    @property
    def source_name(self) -> str:
        """The registered name (``h2o``), which rows carry in ``source`` and their ids."""
        return getattr(self, "name", type(self).__name__.lower())

    def split_for(self, ref: SequenceRef) -> str:
        return self.split or hash_split(ref.split_group, self.test_fraction, self.split_salt)

    #: Sequences per pipeline task when the command does not say (reading and fitting one takes seconds).
    default_units_per_task = 4

    def _sorted_refs(self) -> list[SequenceRef]:
        refs = sorted(self.discover_sequences(), key=lambda ref: ref.id)
        if not refs:
            raise FileNotFoundError(f"{self.dataset_name} converter: no sequences under {self.root}.")
        seen: dict[str, Path] = {}
        for ref in refs:
            if ref.id in seen:
                raise LabFormatError(f"sequence id {ref.id!r} is used by both {seen[ref.id]} and {ref.path}.")
            seen[ref.id] = ref.path
        return refs

    def iter_rows(self) -> Iterator[dict[str, Any]]:
        yield from self.iter_unit_rows(0, self.num_units())

    def num_units(self) -> int:
        """One unit per sequence (sorted by id), for pipelines that split the source over tasks; ids count rows
        across the whole source, so those renumber them (``global_row_id``)."""
        return len(self._sorted_refs())

    def global_row_id(self, row_id: str, rows_before: int) -> str:
        return renumber_counted_id(row_id, rows_before)

    def iter_unit_rows(self, start: int, stop: int) -> Iterator[dict[str, Any]]:
        """Rows of sequences ``start .. stop - 1`` (sorted by id), ids counted from 0 in this range."""
        refs = self._sorted_refs()[start:stop]
        self.report.clear()
        index = 0
        for ref in tqdm(refs, desc=self.source_name, unit="seq", disable=not self.progress):
            sequence = self.read_sequence(ref)
            sequence.check(f"{self.dataset_name} sequence {ref.id} ({ref.path})")
            self.report["sequences"] += 1
            for row in self._sequence_rows(ref, sequence):
                row["id"] = f"{self.source_name}-lab-{row['split']}-{index:06d}"
                index += 1
                # Schema column order: the builder's parquet writer takes the column order of the rows it gets.
                yield {name: row[name] for name in (*COLUMN_DOCS, "split")}
        logger.info("%s: %s", self.source_name, dict(sorted(self.report.items())))

    def _clip_spans(self, labels: np.ndarray, have: np.ndarray) -> list[tuple[int, int]]:
        """(start, stop) on the 15 fps timeline: constant (instruction, hands present), >= 1 hand, 1-10 s."""
        state = np.concatenate((labels[:, None], have.astype(np.int64)), axis=1)
        cuts = np.flatnonzero(np.any(state[1:] != state[:-1], axis=1)) + 1
        bounds = [0, *cuts.tolist(), len(labels)]
        spans = []
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            if not have[start].any():
                self.report["frames_without_hand"] += stop - start
                continue
            pieces = split_evenly(start, stop, min_len=self.min_frames, max_len=self.max_frames)
            if not pieces:
                self.report["frames_in_short_runs"] += stop - start
            spans += pieces
        return spans

    def _sequence_rows(self, ref: SequenceRef, sequence: LabSequence) -> Iterator[dict[str, Any]]:
        timestamps = np.asarray(sequence.timestamps, dtype=np.float64)
        origin = float(timestamps[0])
        timestamps = timestamps - origin
        if sequence.end_s is not None:
            end_s = float(sequence.end_s) - origin
        else:
            step = float(np.median(np.diff(timestamps))) if len(timestamps) > 1 else 1.0 / FPS
            end_s = float(timestamps[-1]) + step
        plan = plan_resample(timestamps, end_s, fps=FPS, playback_speed=LAB_PLAYBACK_SPEED)
        source = plan.source_indices
        valid = sequence.valid[source]
        keypoints = np.zeros((plan.num_frames, 2, NUM_JOINTS, 3))
        have = np.zeros((plan.num_frames, 2), dtype=bool)
        for slot in range(2):
            keypoints[:, slot], have[:, slot] = interpolate_gaps(
                sequence.keypoints[source, slot], valid[:, slot], self.max_gap_frames
            )
        texts: list[str | None] = (
            [None] * len(timestamps) if sequence.instructions is None else list(sequence.instructions)
        )
        codes = {text: code for code, text in enumerate(sorted({t for t in texts if t}))}
        labels = np.array([codes.get(texts[i], -1) for i in source], dtype=np.int64)

        spans = self._clip_spans(labels, have)
        if not spans:
            self.report["sequences_without_clips"] += 1
            logger.info("%s: no clip of >= %d frames with a labelled hand.", ref.id, self.min_frames)
            return
        needed = sorted(
            {int(source[start + b]) for start, stop in spans for b in boundary_frame_indices(stop - start)}
        )
        stored, intrinsics, size = self._encode_frames(ref, sequence, needed)
        split = self.split_for(ref)
        for start, stop in spans:
            row = self._row(ref, sequence, source, start, stop, keypoints, have, valid, texts)
            if row is None:
                continue
            clip_source = source[start:stop]
            row.update(
                first_frame=stored[int(clip_source[0])],
                boundary_frames=[stored[int(clip_source[b])] for b in boundary_frame_indices(stop - start)],
                camera_intrinsics=list(intrinsics),
                split=split,
            )
            row["scene"] = json.dumps(
                {**row["scene"], "image_size": list(size), "split_group": ref.split_group}, sort_keys=True
            )
            self.report["rows"] += 1
            self.report[f"rows_{split}"] += 1
            yield row

    def _encode_frames(
        self, ref: SequenceRef, sequence: LabSequence, indices: list[int]
    ) -> tuple[dict[int, dict[str, Any]], tuple[float, float, float, float], tuple[int, int]]:
        """Decode the frames rows store, resize to ``image_max_side``, JPEG-encode; intrinsics of the result."""
        frames = sequence.load_frames(indices)
        missing = [i for i in indices if i not in frames]
        if missing:
            raise LabFormatError(f"{ref.id}: the frame loader returned no image for source frames {missing[:5]}.")
        height, width = frames[indices[0]].shape[:2]
        camera = Intrinsics(*sequence.intrinsics)
        if sequence.image_size is not None and tuple(sequence.image_size) != (width, height):
            logger.warning(
                "%s: intrinsics are for %s images, frames are %dx%d; scaling the intrinsics to the frames.",
                ref.id,
                "x".join(map(str, sequence.image_size)),
                width,
                height,
            )
            camera = camera.scaled(width / sequence.image_size[0], height / sequence.image_size[1])
        size = scaled_size(width, height, self.image_max_side)
        stored = {}
        for index in indices:
            image = frames[index]
            if image.shape[:2] != (height, width):
                raise LabFormatError(
                    f"{ref.id}: source frame {index} is {image.shape[1]}x{image.shape[0]}, the sequence's first "
                    f"stored frame {width}x{height}; every frame of a sequence must have one size."
                )
            if (width, height) != size:
                image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
            stored[index] = encode_image(image)
        intrinsics = camera.scaled(size[0] / width, size[1] / height).as_tuple()
        return stored, intrinsics, size

    def _row(
        self,
        ref: SequenceRef,
        sequence: LabSequence,
        source: np.ndarray,
        start: int,
        stop: int,
        keypoints: np.ndarray,
        have: np.ndarray,
        valid: np.ndarray,
        texts: list[str | None],
    ) -> dict[str, Any] | None:
        """One clip: D162 of the present hands (None when the fit is too poor to call exact), row columns."""
        num_frames = stop - start
        motion = np.zeros((num_frames, 2, D162_DIM), dtype=np.float32)
        residual, worst, scale, interpolated = {}, {}, {}, {}
        for slot, hand in enumerate(HANDS):
            if not have[start, slot]:
                continue
            fit = fit_d162(keypoints[start:stop, slot], hand, skeleton=self.skeleton, iterations=self.fit_iterations)
            motion[:, slot] = fit.motion.numpy().astype(np.float32)
            residual[hand] = round(float(fit.residual_mm.mean()), 3)
            worst[hand] = round(float(fit.residual_mm.max()), 3)
            scale[hand] = round(float(fit.bone_scale[0]), 4)
            interpolated[hand] = int((~valid[start:stop, slot]).sum())
        if max(residual.values()) > self.max_fit_residual_mm:
            self.report["clips_dropped_fit_residual"] += 1
            logger.warning(
                "%s frames %d-%d: fit residual %s mm > max_fit_residual_mm %.1f; dropping the clip. If most clips "
                "fail, the reader's joint order or units are wrong.",
                ref.id,
                int(source[start]),
                int(source[stop - 1]),
                residual,
                self.max_fit_residual_mm,
            )
            return None
        text = texts[int(source[start])]
        timestamps = np.asarray(sequence.timestamps, dtype=np.float64)
        scene = {
            "dataset": self.dataset_name,
            "sequence": ref.id,
            "source_frames": [int(source[start]), int(source[stop - 1])],
            "start_s": round(float(timestamps[source[start]] - timestamps[0]), 4),
            "instruction_from": "label" if text else "template",
            "fit_residual_mm": residual,
            "fit_residual_max_mm": worst,
            "bone_scale": scale,
            "interpolated_frames": interpolated,
            **sequence.scene,
        }
        return {
            "source": self.source_name,
            "domain": "lab",
            "instruction": text or TEMPLATE_INSTRUCTION,
            "task_type": "motion_generation",
            "fps": FPS,
            "num_frames": num_frames,
            "hands_present": [bool(have[start, 0]), bool(have[start, 1])],
            "labelled": True,
            "label_source": "exact",
            "label_confidence": 1.0,
            "motion": motion,
            "scene": scene,  # completed and JSON-encoded by the caller
        }
