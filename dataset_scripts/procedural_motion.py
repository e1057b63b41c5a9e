"""Procedural, physiologically plausible hand-motion clips with exact MANO-D162 labels.

The motion tokenizer needs lots of varied hand motion before any real corpus is at hand. Clips here move through
random key poses: finger angles inside the skeleton's joint limits, coupled through a grasp synergy (fingers close
together, as real hands do), a wrist orientation within a cone around a palm-down, fingers-forward pose, and a
wrist position inside a table-top workspace in front of the camera. Key poses are joined with minimum-jerk
profiles (Flash & Hogan 1985), the standard model of smooth human reaching, plus a little physiological tremor.
Joint positions come from the skeleton's forward kinematics, so every label is self-consistent.

Coordinates: camera frame (OpenCV: +x right, +y down, +z forward), metres, 15 fps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import datasets
import numpy as np
import torch

from modeling_jala.hand_jala import D162_DIM, HandSkeleton, axis_angle_to_matrix, mirror_motion

#: Column types of a motion-only dataset; time-major so `datasets` can store variable-length clips.
MOTION_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "num_frames": datasets.Value("int32"),
        "fps": datasets.Value("float32"),
        "hands_present": datasets.Sequence(datasets.Value("bool"), length=2),  # (left, right)
        "motion": datasets.Array3D(shape=(None, 2, D162_DIM), dtype="float32"),  # (T, hand, 162)
    }
)


@dataclass
class ProceduralMotionConfig:
    """Ranges of the procedural motion; defaults describe a seated person working at a table."""

    fps: float = 15.0
    min_seconds: float = 1.0
    max_seconds: float = 10.0
    keypose_interval_seconds: tuple[float, float] = (0.4, 1.6)
    workspace_low: tuple[float, float, float] = (0.02, -0.12, 0.35)  # right hand; the left one is mirrored
    workspace_high: tuple[float, float, float] = (0.30, 0.18, 0.65)
    wrist_cone_degrees: float = 55.0
    two_hands_probability: float = 0.5
    tremor_degrees: float = 0.4
    tremor_metres: float = 0.0008

    def __post_init__(self) -> None:
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ValueError(f"need 0 < min_seconds <= max_seconds, got {self.min_seconds}, {self.max_seconds}.")
        if not 0.0 <= self.two_hands_probability <= 1.0:
            raise ValueError(f"two_hands_probability must be in [0, 1], got {self.two_hands_probability}.")


def minimum_jerk(phase: np.ndarray) -> np.ndarray:
    """Position profile of a minimum-jerk move from 0 to 1 over phase in [0, 1]; zero speed at both ends."""
    return 10 * phase**3 - 15 * phase**4 + 6 * phase**5


#: Palm down, fingers pointing away from the camera and tilted 35 degrees toward the table: the columns are the
#: wrist-frame axes (+x toward the fingers, +y toward the thumb of a right hand, +z out of the back of the hand)
#: written in the camera frame.
_FINGERS_FORWARD = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
_TILT = axis_angle_to_matrix(torch.tensor([math.radians(-35.0), 0.0, 0.0], dtype=torch.float64)).numpy()
CANONICAL_WRIST_ROTATION = _TILT @ _FINGERS_FORWARD


class ProceduralHandMotion:
    """Samples clips of one or two hands; deterministic for a given numpy Generator state."""

    def __init__(self, config: ProceduralMotionConfig | None = None, skeleton: HandSkeleton | None = None) -> None:
        self.config = config or ProceduralMotionConfig()
        self.skeleton = skeleton or HandSkeleton()

    def _keyframe_times(self, rng: np.random.Generator, num_frames: int) -> np.ndarray:
        low, high = (s * self.config.fps for s in self.config.keypose_interval_seconds)
        times = [0.0]
        while times[-1] < num_frames - 1:
            times.append(times[-1] + rng.uniform(low, high))
        return np.asarray(times)

    def _finger_keyposes(self, rng: np.random.Generator, count: int) -> torch.Tensor:
        """(count, 15, 3) angles: a shared grasp closure blends a random in-limit pose toward the flat hand."""
        generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
        random_pose = self.skeleton.sample_angles((count,), generator=generator).double()
        closure = torch.from_numpy(rng.beta(1.2, 1.2, size=(count, 1, 1)))
        individual = torch.from_numpy(rng.uniform(0.7, 1.0, size=(count, 15, 1)))
        return self.skeleton.clamp_angles(random_pose * closure * individual)

    def _wrist_keyposes(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(count, 3) axis-angle offsets from the canonical orientation and (count, 3) positions."""
        axes = rng.normal(size=(count, 3))
        axes /= np.linalg.norm(axes, axis=1, keepdims=True)
        angles = np.radians(self.config.wrist_cone_degrees) * np.sqrt(rng.uniform(size=(count, 1)))
        positions = rng.uniform(self.config.workspace_low, self.config.workspace_high, size=(count, 3))
        return axes * angles, positions

    def _interpolate(self, keys: np.ndarray, key_times: np.ndarray, num_frames: int) -> np.ndarray:
        """Minimum-jerk interpolation of (K, ...) key values at frames 0..num_frames-1."""
        frames = np.arange(num_frames, dtype=np.float64)
        segment = np.clip(np.searchsorted(key_times, frames, side="right") - 1, 0, len(key_times) - 2)
        phase = (frames - key_times[segment]) / (key_times[segment + 1] - key_times[segment])
        weight = minimum_jerk(np.clip(phase, 0.0, 1.0)).reshape((-1,) + (1,) * (keys.ndim - 1))
        return keys[segment] + weight * (keys[segment + 1] - keys[segment])

    def sample_right_hand(self, rng: np.random.Generator, num_frames: int) -> torch.Tensor:
        """One right-hand trajectory (num_frames, 162) in the camera frame."""
        key_times = self._keyframe_times(rng, num_frames)
        count = len(key_times)
        fingers = self._interpolate(self._finger_keyposes(rng, count).numpy(), key_times, num_frames)
        wrist_offsets, positions = self._wrist_keyposes(rng, count)
        # Interpolating the small axis-angle offsets is smooth and stays close to geodesic within the cone.
        wrist_offsets = self._interpolate(wrist_offsets, key_times, num_frames)
        positions = self._interpolate(positions, key_times, num_frames)

        tremor = np.radians(self.config.tremor_degrees)
        fingers = fingers + rng.normal(scale=tremor, size=fingers.shape)
        wrist_offsets = wrist_offsets + rng.normal(scale=tremor, size=wrist_offsets.shape)
        positions = positions + rng.normal(scale=self.config.tremor_metres, size=positions.shape)

        angles = self.skeleton.clamp_angles(torch.from_numpy(fingers))
        joint_rots = self.skeleton.joint_rotations_from_angles(angles)
        wrist_rot = axis_angle_to_matrix(torch.from_numpy(wrist_offsets)) @ torch.from_numpy(CANONICAL_WRIST_ROTATION)
        return self.skeleton.to_d162(wrist_rot, torch.from_numpy(positions), joint_rots).float()

    def sample_clip(self, rng: np.random.Generator) -> dict:
        """A clip of 1-10 s: (T, 2, 162) motion in (left, right) order; an absent hand's slot is zeros."""
        config = self.config
        seconds = rng.uniform(config.min_seconds, config.max_seconds)
        num_frames = max(1, round(seconds * config.fps))
        two_hands = rng.uniform() < config.two_hands_probability
        present = [True, True] if two_hands else ([False, True] if rng.uniform() < 0.6 else [True, False])
        motion = torch.zeros(num_frames, 2, D162_DIM)
        for slot, is_present in enumerate(present):
            if is_present:
                hand = self.sample_right_hand(rng, num_frames)
                motion[:, slot] = mirror_motion(hand) if slot == 0 else hand
        return {"num_frames": num_frames, "fps": config.fps, "hands_present": present, "motion": motion.numpy()}


def _generate(num_clips: int, seed: int, config: ProceduralMotionConfig, prefix: str) -> Iterator[dict]:
    sampler = ProceduralHandMotion(config)
    for index in range(num_clips):
        # One generator per clip: clip i is the same whatever num_clips is and however work is split.
        rng = np.random.default_rng([seed, index])
        yield {"id": f"{prefix}-{seed}-{index:07d}", **sampler.sample_clip(rng)}


def procedural_motion_dataset(
    num_clips: int, seed: int = 0, config: ProceduralMotionConfig | None = None, prefix: str = "procedural"
) -> datasets.Dataset:
    """A `datasets.Dataset` of procedural clips with MOTION_FEATURES columns."""
    return datasets.Dataset.from_generator(
        _generate,
        gen_kwargs={
            "num_clips": num_clips,
            "seed": seed,
            "config": config or ProceduralMotionConfig(),
            "prefix": prefix,
        },
        features=MOTION_FEATURES,
    )
