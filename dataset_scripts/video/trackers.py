"""Pluggable 2D/3D hand trackers behind one protocol, a name registry, and the ``none`` and ``mediapipe`` ones.

Why a protocol: the tracker is the part of the ingest most likely to be swapped (MediaPipe today; WiLoR, HaMeR
or a lab's own model later), and the clip logic (presence filter, gap filling, confidence) must be testable
without any of them. A tracker turns the frames of one continuous video into, per frame, the hands it sees,
each with 21 keypoints in MediaPipe order both in pixels and as metric 3D "world" landmarks
(:class:`HandDetection`). Register a new one with ``@register_tracker("name")`` on a factory; the ``video``
source takes ``tracker=name``.

MediaPipe (the default, ``mediapipe``): ``mp.solutions.hands`` of mediapipe 0.10.21, the last release that bundles
its hand models in the wheel, so it runs offline. It is an optional, separate install because it declares
``numpy<2`` while ``datasets`` needs numpy 2; it runs fine on numpy 2.4, so install it without its declared
dependencies, then the few it needs at run time::

    pip install --no-deps -r dataset_scripts/requirements-hand-tracking.txt

(see that file's header for what is left out and why). Handedness: MediaPipe labels hands as if the image were
a mirrored selfie view, so on ordinary (non-mirrored) footage its "Left" is the person's right hand (checked on
the dex-retargeting clip: a real right hand is "Left" in every frame, and its world landmarks fit a right-hand
skeleton with a 4.8 mm mean residual against 11.6 mm for a left one). :class:`MediaPipeTracker` therefore
always swaps the label, so ``HandDetection.handedness`` is the hand whose shape the image shows. Footage that
was itself mirrored (a selfie preview recording) shows a real right hand as a left one; flip such frames back
before tracking (the ``video`` source's ``mirrored`` option) so that frames, labels and motion describe the
real scene.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from modeling_jala.layout_jala import HANDS

logger = logging.getLogger(__name__)

__all__ = [
    "MEDIAPIPE_INSTALL_COMMAND",
    "HandDetection",
    "HandTracker",
    "MediaPipeTracker",
    "NoneTracker",
    "available_trackers",
    "get_tracker",
    "register_tracker",
]

#: Run from the repository root, in the project's venv, after ``pip install -e .``.
MEDIAPIPE_INSTALL_COMMAND = "pip install --no-deps -r dataset_scripts/requirements-hand-tracking.txt"
_MEDIAPIPE_INSTALL_INLINE = (
    "pip install --no-deps mediapipe==0.10.21 'protobuf>=4.25.3,<5' 'opencv-python-headless>=4.13,<5' "
    "'absl-py>=2' 'attrs>=19.1.0' 'flatbuffers>=2.0'"
)


@dataclass(frozen=True)
class HandDetection:
    """One hand in one frame.

    ``handedness``: ``"left"`` or ``"right"``, the hand the image shows (already corrected for MediaPipe's
    mirrored labels). ``score``: the tracker's confidence in [0, 1]. ``image_landmarks``: (21, 2) pixel
    coordinates (x right, y down) in the frame given to the tracker, MediaPipe keypoint order.
    ``world_landmarks``: (21, 3) metres, axes parallel to the camera's (OpenCV: x right, y down, z forward),
    origin anywhere near the hand (MediaPipe: its approximate centre); the shape of the hand, not its position.
    """

    handedness: str
    score: float
    image_landmarks: np.ndarray
    world_landmarks: np.ndarray

    def __post_init__(self) -> None:
        if self.handedness not in HANDS:
            raise ValueError(f"HandDetection.handedness must be 'left' or 'right', got {self.handedness!r}.")
        if np.shape(self.image_landmarks) != (21, 2):
            raise ValueError(
                f"HandDetection.image_landmarks must be (21, 2) pixels, got {np.shape(self.image_landmarks)}."
            )
        if np.shape(self.world_landmarks) != (21, 3):
            raise ValueError(
                f"HandDetection.world_landmarks must be (21, 3) metres, got {np.shape(self.world_landmarks)}."
            )


@runtime_checkable
class HandTracker(Protocol):
    """Anything that finds hands in the frames of one video.

    ``detects_hands`` is False for trackers that do not look at all (``none``): their empty results mean
    "unknown", not "no hand", and the ingest then keeps every clip, unlabelled.
    """

    name: str
    detects_hands: bool

    def track(self, frames: Iterable[np.ndarray]) -> list[list[HandDetection]]:
        """Per frame (RGB uint8 (H, W, 3), in time order, consumed once), the hands found in it.

        The frames are one continuous sequence, so a tracker may use the previous frame's hands; it must not
        carry state from one call to the next.
        """
        ...


_TRACKERS: dict[str, Callable[..., HandTracker]] = {}


def register_tracker(name: str) -> Callable[[Callable[..., HandTracker]], Callable[..., HandTracker]]:
    """Register a tracker factory (usually the class) under ``name``, for ``get_tracker(name, **options)``."""

    def decorate(factory: Callable[..., HandTracker]) -> Callable[..., HandTracker]:
        if name in _TRACKERS and _TRACKERS[name] is not factory:
            raise ValueError(f"tracker name {name!r} is already registered by {_TRACKERS[name]!r}.")
        _TRACKERS[name] = factory
        return factory

    return decorate


def available_trackers() -> list[str]:
    return sorted(_TRACKERS)


def get_tracker(name: str, **options: Any) -> HandTracker:
    """Build the tracker registered as ``name``; ImportError (with the install command) if its package is missing."""
    if name not in _TRACKERS:
        raise KeyError(f"unknown hand tracker {name!r}; available: {available_trackers()}.")
    return _TRACKERS[name](**options)


@register_tracker("none")
class NoneTracker:
    """No tracking: every frame "unknown". Clips are cut from the whole video and written unlabelled."""

    name: ClassVar[str] = "none"
    detects_hands: ClassVar[bool] = False

    def track(self, frames: Iterable[np.ndarray]) -> list[list[HandDetection]]:
        return [[] for _ in frames]


@register_tracker("mediapipe")
class MediaPipeTracker:
    """MediaPipe Hands (0.10.21 ``mp.solutions.hands``): 21 keypoints, world landmarks, handedness.

    Defaults follow MediaPipe's video settings: ``static_image_mode=False`` runs the palm detector only until a
    hand is found and then follows it with the landmark model (faster, steadier, and on the hard fridge clips it
    finds hands the per-frame detector misses); ``True`` detects in every frame. ``score`` is the handedness
    classifier's probability: the solutions API reports only hands whose landmark-model presence passed
    ``min_tracking_confidence`` and exposes no other per-hand score.
    """

    name: ClassVar[str] = "mediapipe"
    detects_hands: ClassVar[bool] = True

    def __init__(
        self,
        *,
        static_image_mode: bool = False,
        max_num_hands: int = 2,
        model_complexity: int = 1,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
    ) -> None:
        try:
            import mediapipe  # noqa: F401 - fail here, with the fix, rather than in the middle of a build
            from mediapipe.python.solutions import hands as mp_hands
        except ImportError as error:
            raise ImportError(
                f"The 'mediapipe' hand tracker needs mediapipe 0.10.21, installed as an optional step (it declares "
                f"numpy<2 but runs on numpy 2). From the repository root, in this venv: {MEDIAPIPE_INSTALL_COMMAND} "
                f"(or: {_MEDIAPIPE_INSTALL_INLINE}). Or use tracker='none' for unlabelled clips. ({error})"
            ) from error
        self._hands_module = mp_hands
        self.options = {
            "static_image_mode": bool(static_image_mode),
            "max_num_hands": int(max_num_hands),
            "model_complexity": int(model_complexity),
            "min_detection_confidence": float(min_detection_confidence),
            "min_tracking_confidence": float(min_tracking_confidence),
        }

    def track(self, frames: Iterable[np.ndarray]) -> list[list[HandDetection]]:
        results: list[list[HandDetection]] = []
        # A fresh graph per call: tracking state must not leak from one video into the next.
        with self._hands_module.Hands(**self.options) as hands:
            for frame in frames:
                if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                    raise ValueError(
                        f"MediaPipeTracker.track needs RGB uint8 frames (H, W, 3), got {frame.dtype} {frame.shape}."
                    )
                output = hands.process(np.ascontiguousarray(frame))
                results.append(self._parse(output, width=frame.shape[1], height=frame.shape[0]))
        return results

    @staticmethod
    def _parse(output: Any, *, width: int, height: int) -> list[HandDetection]:
        if not output.multi_hand_landmarks:
            return []
        detections = []
        for landmarks, world, classes in zip(
            output.multi_hand_landmarks, output.multi_hand_world_landmarks, output.multi_handedness, strict=True
        ):
            image = np.array([(p.x * width, p.y * height) for p in landmarks.landmark], dtype=np.float64)
            metric = np.array([(p.x, p.y, p.z) for p in world.landmark], dtype=np.float64)
            best = classes.classification[0]
            # MediaPipe's label names the hand of the mirrored image: swap (see the module docstring).
            handedness = "right" if best.label.lower() == "left" else "left"
            detections.append(
                HandDetection(
                    handedness=handedness, score=float(best.score), image_landmarks=image, world_landmarks=metric
                )
            )
        return detections
