"""H2O (Kwon et al., ICCV 2021, "H2O: Two Hands Manipulating Objects for First Person Interaction Recognition").

Why H2O: two hands in every frame, an egocentric camera like the paper's wild footage, exact 3D joints in the
camera frame per frame, and per-frame action labels (verb + object) that make natural instructions.

The format, as documented by the authors (read for this converter):

* README of https://github.com/taeinkwon/h2odataset: the folder tree
  ``subjectN/<scene>/<take>/cam{0..4}/{rgb, depth, cam_pose, hand_pose, hand_pose_MANO, obj_pose, obj_pose_RT,
  action_label (only in cam4), rgb256 (only in cam4), verb_label, cam_intrinsics.txt}`` (cam0-3 fixed,
  cam4 head-mounted / egocentric); ``rgb`` 1280x720; ``hand_pose``: "cam_to_hand", per frame
  ``1 (annotated or not) + 21 * 3 (x, y, z in order) + 1 + 21 * 3 (right hand)``, the left hand first;
  ``cam_intrinsics.txt``: six numbers ``fx, fy, cx, cy, width, height``; the 37 action labels (0 background,
  1 "grab book" ... 36 "squeeze lotion"); the official split by subject (subjects 1-3 train/val, 4 test).
* The authors' viewer https://github.com/taeinkwon/h2oplayer (``h2oplayer.py``, ``utils.py``): frame files are
  ``{frame:06d}.png`` / ``{frame:06d}.txt``; ``cam4/action_label/{frame:06d}.txt`` holds one number, the
  frame's action id; ``hand_pose`` points are projected with ``cv2.projectPoints`` and zero rotation and
  translation, i.e. they are in the OpenCV camera frame of that camera (our convention); the skeleton is drawn
  as wrist -> 1-2-3-4, wrist -> 5-6-7-8, ... -> 17-18-19-20; MANO vertices are placed at ``verts / 1000 +
  trans``, so translations are metres; the MANO folder is spelled ``hand_pose_mano`` there.
* Public loaders built on H2O (e.g. egocentric pose estimators that read ``hand_pose`` with
  ``np.split(values, [1, 64, 65, 128])`` and convert "meters to millimeters" by multiplying by 1000) confirm the
  value order and that the joints are in metres.

Assumptions (not stated in so many words by the documentation):

* Joint order inside each hand: wrist, then thumb, index, middle, ring, pinky, four keypoints each, base to tip:
  the order ``manopth`` returns MANO joints in (H2O's poses are MANO fits) and the order the viewer's skeleton
  drawing implies; it equals :data:`modeling_jala.hand_jala.KEYPOINT_NAMES`. A wrong order would show as fit
  residuals of centimetres (``scene.fit_residual_mm``) and clips dropped with a warning.
* Frame rate 30 fps (Azure Kinect capture; the viewer's default playback rate); ``source_fps`` changes it.
* Views other than cam4 have no ``action_label`` folder; frames are synchronised across a take's cameras (the
  viewer indexes all five by one frame number), so they take the labels of the take's ``cam4``.

Not read: ``hand_pose_MANO`` (pose/shape need the MANO model, a licensed pickle we do not load; its joints are
what ``hand_pose`` holds, and its README length "59 numbers" per hand contradicts its own 1 + 3 + 48 + 10 = 62,
which is what the viewer reads), depth, object poses and ``verb_label``.

Sequence ids are the camera folder's last four path parts (``subject1/h1/0/cam4``, as in H2O's own pose lists),
so a take keeps its id, and its split, whichever folder is passed as root; the split group is the take
(``subject1/h1/0``), so all views of a take share a split.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from dataset_scripts.sources.base import register_source
from dataset_scripts.sources.lab_converter import (
    LabConverter,
    LabFormatError,
    LabSequence,
    SequenceRef,
    image_file_loader,
)
from modeling_jala.hand_jala import NUM_JOINTS

logger = logging.getLogger(__name__)

__all__ = ["H2O_ACTIONS", "H2OConverter", "h2o_instruction"]

#: Action ids of ``action_label`` files, from the H2O README (0 is background: no action).
H2O_ACTIONS: tuple[str, ...] = (
    "background",
    "grab book",
    "grab espresso",
    "grab lotion",
    "grab spray",
    "grab milk",
    "grab cocoa",
    "grab chips",
    "grab cappuccino",
    "place book",
    "place espresso",
    "place lotion",
    "place spray",
    "place milk",
    "place cocoa",
    "place chips",
    "place cappuccino",
    "open lotion",
    "open milk",
    "open chips",
    "close lotion",
    "close milk",
    "close chips",
    "pour milk",
    "take out espresso",
    "take out cocoa",
    "take out chips",
    "take out cappuccino",
    "put in espresso",
    "put in cocoa",
    "put in cappuccino",
    "apply lotion",
    "apply spray",
    "read book",
    "read espresso",
    "spray spray",
    "squeeze lotion",
)
# H2O's "spray" object is a lotion spray bottle (the viewer's mesh is named lotion_spray).
_OBJECT_PHRASES = {"spray": "spray bottle"}
#: Values per ``hand_pose`` file: per hand (left, then right) a validity flag and 21 x (x, y, z).
HAND_POSE_VALUES = 2 * (1 + NUM_JOINTS * 3)
_PER_HAND = 1 + NUM_JOINTS * 3
# Sub-folders of a camera folder; discovery never walks into them (they hold one file per frame).
_DATA_FOLDERS = frozenset(
    {
        "rgb",
        "rgb256",
        "depth",
        "cam_pose",
        "hand_pose",
        "hand_pose_mano",
        "hand_pose_MANO",
        "obj_pose",
        "obj_pose_rt",
        "obj_pose_RT",
        "action_label",
        "verb_label",
    }
)
# Hand joints farther than this from the camera (m) mean the file is not in metres.
_MAX_METRES = 10.0


def h2o_instruction(action_id: int) -> str | None:
    """The instruction for an H2O action id ("take out espresso" -> "Take out the espresso."); None for 0."""
    if action_id == 0:
        return None
    *verb, noun = H2O_ACTIONS[action_id].split()
    return f"{' '.join(verb).capitalize()} the {_OBJECT_PHRASES.get(noun, noun)}."


def _read_numbers(path: Path) -> np.ndarray:
    try:
        return np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as error:
        raise LabFormatError(
            f"{path}: not a list of numbers ({error}); H2O label files hold space-separated numbers on one line. "
            "Re-extract the file from the H2O archive."
        ) from None


@register_source("h2o")
class H2OConverter(LabConverter):
    """H2O (Kwon et al., ICCV 2021): egocentric two-hand manipulation with exact 3D joints per frame.

    Reads ``<take>/<camera>/{rgb/*.png, hand_pose/*.txt, cam_intrinsics.txt, action_label/*.txt}`` as
    documented in https://github.com/taeinkwon/h2odataset (see the module docstring for sources and
    assumptions). Instructions come from the action labels ("Grab the book."); background frames and views
    without labels get the template instruction.

    Options:
        root: the H2O folder (``subject*/...``), or any folder below it down to one camera folder.
        cameras: camera folders to convert, ``+``-separated on the CLI (default ``cam4``, the egocentric view;
            ``cam0+cam1+cam2+cam3+cam4`` for all five).
        source_fps: frame rate of the recordings (30).
        plus the LabConverter options: test_fraction (0.1), split, split_salt, image_max_side (512),
        min_clip_seconds (1), max_clip_seconds (10), max_gap_seconds (0.2), max_fit_residual_mm (15),
        fit_iterations (100), progress (true).
    """

    dataset_name = "H2O"

    def __init__(
        self,
        root: str | Path,
        *,
        cameras: tuple[str, ...] = ("cam4",),
        source_fps: float = 30.0,
        **options: Any,
    ) -> None:
        super().__init__(root, **options)
        if isinstance(cameras, str):
            cameras = tuple(part for part in cameras.replace(",", "+").split("+") if part)
        if not cameras:
            raise ValueError("option 'cameras' needs at least one camera folder name, e.g. cam4.")
        self.cameras = tuple(cameras)
        self.source_fps = float(source_fps)
        if not self.source_fps > 0:
            raise ValueError(f"option 'source_fps' must be > 0, got {source_fps!r}.")

    # -- discovery -------------------------------------------------------------------------------------------

    def discover_sequences(self) -> list[SequenceRef]:
        if (self.root / "rgb").is_dir():  # the root is one camera folder
            folders = [self.root]
        else:
            folders = []
            for folder, subfolders, _ in os.walk(self.root):
                path = Path(folder)
                if path.name in self.cameras and (path / "rgb").is_dir():
                    folders.append(path)
                    subfolders[:] = []
                else:
                    subfolders[:] = sorted(name for name in subfolders if name not in _DATA_FOLDERS)
        if not folders:
            raise FileNotFoundError(
                f"H2O converter: no camera folder named {'/'.join(self.cameras)} with an rgb/ folder under "
                f"{self.root}; expected subjectN/<scene>/<take>/cam4/{{rgb, hand_pose, cam_intrinsics.txt}}. Pass "
                "the folder you extracted H2O into, or cameras=cam0+cam4 for other views."
            )
        refs = []
        for path in folders:
            parts = path.resolve().parts[-4:]
            refs.append(SequenceRef(id="/".join(parts), path=path, group="/".join(parts[:-1])))
        return refs

    # -- reading ---------------------------------------------------------------------------------------------

    def read_sequence(self, ref: SequenceRef) -> LabSequence:
        folder = ref.path
        fx, fy, cx, cy, width, height = self._read_intrinsics(folder / "cam_intrinsics.txt")
        frames = sorted((p for p in (folder / "rgb").glob("*.png") if p.stem.isdigit()), key=lambda p: int(p.stem))
        if not frames:
            raise LabFormatError(
                f"{folder / 'rgb'}: no frames named {{frame:06d}}.png; extract the H2O rgb archive for this camera."
            )
        numbers = np.array([int(p.stem) for p in frames])
        keypoints, valid = self._read_hand_poses(folder, numbers)
        instructions, labels_from = self._read_actions(folder, numbers)
        return LabSequence(
            keypoints=keypoints,
            valid=valid,
            timestamps=numbers / self.source_fps,
            intrinsics=(fx, fy, cx, cy),
            image_size=(int(width), int(height)),
            load_frames=image_file_loader(frames),
            instructions=instructions,
            scene={"camera": folder.name, "take": ref.split_group, "action_labels": labels_from},
        )

    @staticmethod
    def _read_intrinsics(path: Path) -> tuple[float, ...]:
        if not path.is_file():
            raise LabFormatError(
                f"{path} is missing: every H2O camera folder has cam_intrinsics.txt (fx fy cx cy width height) beside "
                "rgb/. Copy it from the H2O archive of this take, or remove the folder to skip the sequence."
            )
        values = _read_numbers(path)
        if values.size != 6 or not np.isfinite(values).all() or min(values[0], values[1], values[4], values[5]) <= 0:
            raise LabFormatError(
                f"{path}: {values.size} numbers {values.tolist()}, expected six: fx fy cx cy width height (pixels, "
                "all finite, fx fy width height > 0). Re-extract the file from the H2O archive."
            )
        return tuple(float(v) for v in values)

    def _read_hand_poses(self, folder: Path, numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(F, 2, 21, 3) metres and (F, 2) validity from ``hand_pose/{frame:06d}.txt``; a missing file = no hands."""
        directory = folder / "hand_pose"
        if not directory.is_dir():
            raise LabFormatError(
                f"{directory} is missing: the H2O hand labels are a separate download (download_script.py --mode "
                "pose, or the hand_pose archive); extract them into each camera folder."
            )
        keypoints = np.zeros((len(numbers), 2, NUM_JOINTS, 3))
        valid = np.zeros((len(numbers), 2), dtype=bool)
        missing = 0
        for index, number in enumerate(numbers):
            path = directory / f"{number:06d}.txt"
            if not path.is_file():
                missing += 1
                continue
            values = _read_numbers(path)
            if values.size != HAND_POSE_VALUES:
                raise LabFormatError(
                    f"{path}: {values.size} numbers, expected {HAND_POSE_VALUES} = left hand (1 validity flag + 21 "
                    "joints x y z, metres) then right hand (same). The file is truncated or not an H2O hand_pose "
                    "file (hand_pose_MANO files have 124 numbers): re-extract it from the H2O archive, or delete "
                    f"the camera folder {folder} to skip the sequence."
                )
            flags = values[[0, _PER_HAND]]
            if not np.isin(flags, (0.0, 1.0)).all() or not np.isfinite(values).all():
                raise LabFormatError(
                    f"{path}: validity flags (numbers 1 and {_PER_HAND + 1}) are {flags.tolist()}, must be 0 or 1, "
                    "and every number must be finite; re-extract the file from the H2O archive."
                )
            valid[index] = flags == 1.0
            keypoints[index, 0] = values[1:_PER_HAND].reshape(NUM_JOINTS, 3)
            keypoints[index, 1] = values[_PER_HAND + 1 :].reshape(NUM_JOINTS, 3)
        if missing:
            self.report["frames_without_hand_pose_file"] += missing
            logger.warning(
                "%s: %d of %d frames have no hand_pose file; their hands count as unlabelled.",
                directory,
                missing,
                len(numbers),
            )
        if valid.any() and np.abs(keypoints[valid]).max() > _MAX_METRES:
            raise LabFormatError(
                f"{directory}: joints up to {np.abs(keypoints[valid]).max():.1f} from the camera; H2O hand_pose is in "
                "metres, these look like millimetres. Convert the files to metres (divide by 1000)."
            )
        return keypoints, valid

    def _read_actions(self, folder: Path, numbers: np.ndarray) -> tuple[list[str | None], str]:
        """Per-frame instructions from ``action_label`` (own, else the take's cam4); where they came from."""
        directory, labels_from = folder / "action_label", "own"
        if not directory.is_dir():
            directory, labels_from = folder.parent / "cam4" / "action_label", "cam4"
        if not directory.is_dir():
            return [None] * len(numbers), "none"
        instructions: list[str | None] = []
        for number in numbers:
            path = directory / f"{number:06d}.txt"
            if not path.is_file():
                instructions.append(None)
                continue
            values = _read_numbers(path)
            if values.size != 1 or values[0] != int(values[0]) or not 0 <= values[0] < len(H2O_ACTIONS):
                raise LabFormatError(
                    f"{path}: {values.tolist()}, expected one action id in 0..{len(H2O_ACTIONS) - 1} (0 background). "
                    "Re-extract the file from the H2O archive."
                )
            instructions.append(h2o_instruction(int(values[0])))
        return instructions, labels_from
