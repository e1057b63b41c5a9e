"""Trivial baselines that every motion-generation number is printed beside (docs/design.md §5).

Both are fitted on the labelled clips of the training split only and predict, for a held-out clip, one joint
trajectory per present hand — the same clips, hands and frames the model is scored on:

* **mean motion**: the per-frame mean of the training joints of that hand (frame t averages every training clip that
  has a frame t; later frames hold the last mean). Joints are averaged directly because the metrics live in joint
  space: it is the best constant prediction under MPJPE-like squared errors.
* **nearest neighbour**: the training clip whose instruction and first frame are closest, its motion of that hand
  (held at its last frame when shorter). Distance: cosine over [instruction bag of words ; first-frame features],
  each block L2-normalised so words and pixels weigh equally. A training clip without the hand is never retrieved
  for that hand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modeling_jala.hand_jala import JOINTS_XYZ, NUM_JOINTS

#: (B, H, W, 3) uint8 first frames -> (B, D) features.
FrameFeatures = Callable[[np.ndarray], np.ndarray]
WORD_SPLIT = str.maketrans({character: " " for character in ".,;:!?'\"()"})


def clip_joints(row: dict[str, Any]) -> np.ndarray:
    """(T, 2, 21, 3) joints of a row's D162 motion (left, right), metres."""
    motion = np.asarray(row["motion"], dtype=np.float32)
    return motion[..., JOINTS_XYZ].reshape(motion.shape[0], 2, NUM_JOINTS, 3)


def present_hands(row: dict[str, Any]) -> np.ndarray:
    return np.asarray(row["hands_present"], dtype=bool).reshape(2)


def hold_to_length(trajectory: np.ndarray, length: int) -> np.ndarray:
    """First `length` frames of a (T, ...) trajectory, the last frame repeated when it is shorter."""
    if len(trajectory) >= length:
        return trajectory[:length]
    return np.concatenate([trajectory, np.repeat(trajectory[-1:], length - len(trajectory), axis=0)])


def instruction_words(text: str) -> list[str]:
    return text.lower().translate(WORD_SPLIT).split()


@dataclass
class MeanMotionBaseline:
    """Per-hand, per-frame mean of the training joints: `mean[h]` is (T_max, 21, 3)."""

    mean: np.ndarray  # (2, T_max, 21, 3)

    @classmethod
    def fit(cls, rows: Sequence[dict[str, Any]]) -> MeanMotionBaseline:
        longest = max(len(row["motion"]) for row in rows)
        sums = np.zeros((2, longest, NUM_JOINTS, 3))
        counts = np.zeros((2, longest))
        for row in rows:
            joints = clip_joints(row)
            for hand in np.flatnonzero(present_hands(row)):
                valid = np.isfinite(joints[:, hand]).all(axis=(-1, -2))
                sums[hand, : len(joints)][valid] += joints[valid, hand]
                counts[hand, : len(joints)][valid] += 1
        if (counts.sum(1) == 0).any():
            missing = [name for name, n in zip(("left", "right"), counts.sum(1), strict=True) if n == 0]
            raise ValueError(f"no training clip uses the {missing} hand; the mean-motion baseline needs both hands.")
        mean = np.zeros_like(sums)
        for hand in range(2):
            seen = np.flatnonzero(counts[hand])
            mean[hand, seen] = sums[hand, seen] / counts[hand, seen, None, None]
            # Frames no clip reaches (or gaps) hold the last observed mean frame.
            last = 0
            for t in range(longest):
                if counts[hand, t]:
                    last = t
                else:
                    mean[hand, t] = mean[hand, last]
        return cls(mean.astype(np.float32))

    def predict(self, row: dict[str, Any], hand: int, length: int) -> np.ndarray:
        return hold_to_length(self.mean[hand], length)


@dataclass
class NearestNeighbourBaseline:
    """Retrieval of the closest training clip by instruction words + first-frame features."""

    vocabulary: dict[str, int]
    keys: np.ndarray  # (N, V + D) normalised keys of the training clips
    joints: list[np.ndarray]
    hands: np.ndarray  # (N, 2)
    frame_features: FrameFeatures | None

    @classmethod
    def fit(
        cls,
        rows: Sequence[dict[str, Any]],
        first_frames: np.ndarray | None = None,
        frame_features: FrameFeatures | None = None,
    ) -> NearestNeighbourBaseline:
        vocabulary: dict[str, int] = {}
        for row in rows:
            for word in instruction_words(row["instruction"]):
                vocabulary.setdefault(word, len(vocabulary))
        baseline = cls(vocabulary, np.zeros((0, 0)), [], np.zeros((0, 2), bool), frame_features)
        images = first_frames if frame_features is not None else None
        baseline.keys = baseline.key(rows, images)
        baseline.joints = [clip_joints(row) for row in rows]
        baseline.hands = np.stack([present_hands(row) for row in rows])
        return baseline

    def key(self, rows: Sequence[dict[str, Any]], first_frames: np.ndarray | None) -> np.ndarray:
        words = np.zeros((len(rows), len(self.vocabulary)), np.float32)
        for i, row in enumerate(rows):
            for word in instruction_words(row["instruction"]):
                if word in self.vocabulary:
                    words[i, self.vocabulary[word]] += 1.0
        blocks = [words]
        if self.frame_features is not None:
            if first_frames is None:
                raise ValueError("this baseline was fitted with frame features; pass the clips' first frames too.")
            features = np.asarray(self.frame_features(first_frames), dtype=np.float32)
            blocks.append(features - features.mean(0, keepdims=True) if len(rows) > 1 else features)
        normalised = [block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-8) for block in blocks]
        return np.concatenate(normalised, axis=1)

    def neighbours(self, rows: Sequence[dict[str, Any]], first_frames: np.ndarray | None = None) -> np.ndarray:
        """(B, 2) index of the retrieved training clip per query clip and hand."""
        similarity = self.key(rows, first_frames) @ self.keys.T  # (B, N)
        picks = np.zeros((len(rows), 2), dtype=np.int64)
        for hand in range(2):
            allowed = np.where(self.hands[:, hand], similarity, -np.inf)
            picks[:, hand] = allowed.argmax(1)
        return picks

    def predict_batch(
        self, rows: Sequence[dict[str, Any]], first_frames: np.ndarray | None, lengths: Sequence[int]
    ) -> list[np.ndarray]:
        """(2, T_b, 21, 3) predictions per query clip."""
        picks = self.neighbours(rows, first_frames)
        out = []
        for b, length in enumerate(lengths):
            out.append(np.stack([hold_to_length(self.joints[picks[b, hand]][:, hand], length) for hand in range(2)]))
        return out


def load_training_rows(repo: str | Path, max_clips: int = 100_000) -> list[dict[str, Any]]:
    """Labelled training clips (lab, and wild clips with pseudo-labels) of a UniHand-Mix folder."""
    from trainers.evaluate_motion import labelled_rows

    rows = labelled_rows(repo, "train", max_clips)
    if not rows:
        raise ValueError(f"{repo} has no labelled training clips to fit the motion baselines on.")
    return rows
