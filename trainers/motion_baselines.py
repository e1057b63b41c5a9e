"""Reference predictors that every motion-generation number is printed beside (docs/design.md §5).

A metric means little alone: on the procedural hand world a model can score worse than predicting the average
training motion. Both baselines are fitted on the labelled clips of the **train** split only (lab clips with exact
labels and wild clips with confident pseudo-labels: `labelled` in `dataset_scripts/schema.py`) and predict, for a
held-out clip, one joint trajectory per hand the clip uses; `trainers/evaluate_motion.py` scores them on exactly
the clips, hands and frames the model is scored on, with the same metric function.

* **mean motion**: for each hand and frame index t, the mean of the 21 joint positions over every training clip that
  uses that hand and has a frame t; frames past the longest clip hold the last mean frame. Joints are averaged
  directly (not D162): the metrics are joint-space errors, and the per-coordinate mean is the best constant
  predictor of squared joint error, while a mean of D162 (rotations, shape) would not decode to the mean joints.
* **nearest neighbour**: the training clip whose instruction and first frame are most similar, and its motion of
  that hand (the first T frames, its last frame held when it is shorter). Similarity is
  `w · cos(tfidf_query, tfidf_train) + (1 - w) · cos(z_query, z_train)`: the instruction as a TF-IDF bag of words
  (vocabulary and IDF from the training instructions), the first frame as frozen-encoder features standardised
  per dimension with the *training* mean and std (so a query's key does not depend on the batch it comes in), each
  part compared by cosine so both lie in [-1, 1] and `w` (default 0.5) alone sets their balance. A training clip
  that lacks a hand the query uses is never retrieved for that hand: the next most similar one that has it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modeling_jala.hand_jala import JOINTS_XYZ, NUM_JOINTS
from modeling_jala.layout_jala import HANDS

#: (B, H, W, 3) uint8 first frames -> (B, D) features (e.g. `evaluate_motion.model_frame_features`).
FrameFeatures = Callable[[np.ndarray], np.ndarray]
_WORD_SPLIT = str.maketrans({character: " " for character in ".,;:!?'\"()"})


def labelled_rows(
    repo: str | Path | Sequence[str | Path], split: str, max_clips: int, domain: str | None = None
) -> list[dict[str, Any]]:
    """The `max_clips` labelled clips of `split` (of `domain` only, if given) with the smallest row ids, in id order:
    what models and baselines are scored on (test splits) or fitted on (train).

    Chosen by id, not by stream position, so the same build scored twice — or rebuilt with another shard layout, or
    by the datatrove pipeline — gives the same clips. Only the id and label columns are read to choose them.
    """
    from dataset_scripts.streaming import UniHandStream

    def stream(columns: list[str] | None = None) -> UniHandStream:
        return UniHandStream(repo, split=split, infinite=False, shuffle=False, rank=0, world_size=1, columns=columns)

    labelled_ids = sorted(
        row["id"]
        for row in stream(["id", "labelled", "domain"])
        if row["labelled"] and (domain is None or row["domain"] == domain)
    )
    chosen = set(labelled_ids[:max_clips])
    rows = []
    for row in stream():
        if row["id"] in chosen and row["motion"] is not None:
            rows.append(row)
            if len(rows) == len(chosen):
                break
    return sorted(rows, key=lambda row: row["id"])


def load_training_rows(repo: str | Path | Sequence[str | Path], max_clips: int = 100_000) -> list[dict[str, Any]]:
    """Labelled training clips (lab, and wild clips with pseudo-labels) of one UniHand-Mix folder or several (what a
    model trained on several `--dataset` folders saw)."""
    rows = labelled_rows(repo, "train", max_clips)
    if not rows:
        raise ValueError(f"{repo} has no labelled train clips to fit the motion baselines on.")
    return rows


def clip_joints(row: dict[str, Any]) -> np.ndarray:
    """(T, 2, 21, 3) joints (left, right) of a row's D162 motion, metres."""
    motion = np.asarray(row["motion"], dtype=np.float32)
    return motion[..., JOINTS_XYZ].reshape(motion.shape[0], 2, NUM_JOINTS, 3)


def present_hands(row: dict[str, Any]) -> np.ndarray:
    return np.asarray(row["hands_present"], dtype=bool).reshape(2)


def hold_to_length(trajectory: np.ndarray, length: int) -> np.ndarray:
    """The first `length` frames of a (T, ...) trajectory, its last frame repeated when it is shorter."""
    if len(trajectory) >= length:
        return trajectory[:length]
    return np.concatenate([trajectory, np.repeat(trajectory[-1:], length - len(trajectory), axis=0)])


def instruction_words(text: str) -> list[str]:
    return text.lower().translate(_WORD_SPLIT).split()


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; all-zero rows stay zero (cosine 0 with everything)."""
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


@dataclass
class MeanMotionBaseline:
    """Per-hand, per-frame mean of the training joints."""

    mean: np.ndarray  # (2, T_max, 21, 3) metres
    counts: np.ndarray  # (2, T_max) training clips behind each mean frame

    @classmethod
    def fit(cls, rows: Sequence[dict[str, Any]]) -> MeanMotionBaseline:
        longest = max(len(row["motion"]) for row in rows)
        sums = np.zeros((2, longest, NUM_JOINTS, 3))
        counts = np.zeros((2, longest), dtype=np.int64)
        for row in rows:
            joints = clip_joints(row)
            for hand in np.flatnonzero(present_hands(row)):
                valid = np.isfinite(joints[:, hand]).all(axis=(-1, -2))
                sums[hand, : len(joints)][valid] += joints[valid, hand]
                counts[hand, : len(joints)][valid] += 1
        missing = [HANDS[hand] for hand in range(2) if counts[hand].sum() == 0]
        if missing:
            raise ValueError(f"no labelled training clip uses the {' or '.join(missing)} hand: no mean motion for it.")
        mean = np.zeros_like(sums)
        for hand in range(2):
            last = int(np.flatnonzero(counts[hand])[0])
            for t in range(longest):
                if counts[hand, t]:
                    mean[hand, t] = sums[hand, t] / counts[hand, t]
                    last = t
                else:  # past every clip of this hand: hold the last mean frame
                    mean[hand, t] = mean[hand, last]
        return cls(mean.astype(np.float32), counts)

    def predict(self, row: dict[str, Any], hand: int, length: int) -> np.ndarray:
        """(length, 21, 3) mean joints of `hand` (0 left, 1 right). `row` (the query clip) is ignored, by
        definition; it is taken so that this baseline is called like every per-clip predictor."""
        return hold_to_length(self.mean[hand], length)


@dataclass
class NearestNeighbourBaseline:
    """Retrieval of the most similar training clip by instruction (TF-IDF) and first frame (standardised
    features); see the module docstring for the similarity."""

    vocabulary: dict[str, int]
    idf: np.ndarray  # (V,)
    text_keys: np.ndarray  # (N, V) unit TF-IDF rows of the training instructions
    image_keys: np.ndarray | None  # (N, D) unit standardised features of the training first frames
    feature_mean: np.ndarray | None  # (D,) training statistics used to standardise every query
    feature_std: np.ndarray | None  # (D,)
    joints: list[np.ndarray]  # (T_i, 2, 21, 3) per training clip
    hands: np.ndarray  # (N, 2) hands each training clip uses
    ids: list[str]
    frame_features: FrameFeatures | None = None
    text_weight: float = 0.5

    @classmethod
    def fit(
        cls,
        rows: Sequence[dict[str, Any]],
        first_frames: np.ndarray | None = None,
        frame_features: FrameFeatures | None = None,
        text_weight: float = 0.5,
    ) -> NearestNeighbourBaseline:
        """Without `frame_features` (and frames) only the instruction counts (`text_weight` is then 1)."""
        if not 0.0 <= text_weight <= 1.0:
            raise ValueError(f"text_weight must be in [0, 1], got {text_weight}.")
        if frame_features is not None and (first_frames is None or len(first_frames) != len(rows)):
            raise ValueError("frame_features needs first_frames, one (H, W, 3) frame per training row.")
        vocabulary: dict[str, int] = {}
        documents = [instruction_words(row["instruction"]) for row in rows]
        for words in documents:
            for word in words:
                vocabulary.setdefault(word, len(vocabulary))
        frequency = np.zeros(len(vocabulary))
        for words in documents:
            frequency[[vocabulary[word] for word in set(words)]] += 1
        idf = np.log((1 + len(rows)) / (1 + frequency)) + 1  # smoothed IDF, as scikit-learn's default
        baseline = cls(
            vocabulary=vocabulary,
            idf=idf,
            text_keys=np.zeros((0, len(vocabulary))),
            image_keys=None,
            feature_mean=None,
            feature_std=None,
            joints=[clip_joints(row) for row in rows],
            hands=np.stack([present_hands(row) for row in rows]),
            ids=[str(row.get("id", index)) for index, row in enumerate(rows)],
            frame_features=frame_features,
            text_weight=text_weight if frame_features is not None else 1.0,
        )
        baseline.text_keys = baseline._text_keys(rows)
        if frame_features is not None:
            features = np.asarray(frame_features(first_frames), dtype=np.float64)
            baseline.feature_mean = features.mean(0)
            std = features.std(0)
            baseline.feature_std = np.where(std > 1e-8, std, 1.0)  # constant dimensions carry no information
            baseline.image_keys = baseline._image_keys(first_frames, features)
        return baseline

    def _text_keys(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        counts = np.zeros((len(rows), len(self.vocabulary)))
        for i, row in enumerate(rows):
            for word in instruction_words(row["instruction"]):
                if word in self.vocabulary:  # words never seen in training cannot match anything
                    counts[i, self.vocabulary[word]] += 1
        return _unit_rows(counts * self.idf)

    def _image_keys(self, first_frames: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        if features is None:
            features = np.asarray(self.frame_features(first_frames), dtype=np.float64)
        return _unit_rows((features - self.feature_mean) / self.feature_std)

    def similarity(self, rows: Sequence[dict[str, Any]], first_frames: np.ndarray | None = None) -> np.ndarray:
        """(B, N) similarity of each query clip to each training clip, in [-1, 1]."""
        score = self.text_weight * (self._text_keys(rows) @ self.text_keys.T)
        if self.image_keys is not None:
            if first_frames is None or len(first_frames) != len(rows):
                raise ValueError("this baseline was fitted with frame features: pass one first frame per query.")
            score = score + (1 - self.text_weight) * (self._image_keys(first_frames) @ self.image_keys.T)
        return score

    def neighbours(self, rows: Sequence[dict[str, Any]], first_frames: np.ndarray | None = None) -> np.ndarray:
        """(B, 2) index of the retrieved training clip per query and hand; -1 where no training clip has the hand
        (it is only an error when the query uses that hand, see `predict_batch`)."""
        similarity = self.similarity(rows, first_frames)
        picks = np.full((len(rows), 2), -1, dtype=np.int64)
        for hand in range(2):
            if self.hands[:, hand].any():
                picks[:, hand] = np.where(self.hands[:, hand], similarity, -np.inf).argmax(1)
        return picks

    def predict_batch(
        self, rows: Sequence[dict[str, Any]], first_frames: np.ndarray | None, lengths: Sequence[int]
    ) -> list[np.ndarray]:
        """(2, T_b, 21, 3) per query clip: the retrieved motion of each hand the query uses, NaN for the others
        (so that nothing scores a hand the clip does not use by accident)."""
        picks = self.neighbours(rows, first_frames)
        out = []
        for b, (row, length) in enumerate(zip(rows, lengths, strict=True)):
            prediction = np.full((2, length, NUM_JOINTS, 3), np.nan, dtype=np.float32)
            for hand in np.flatnonzero(present_hands(row)):
                if picks[b, hand] < 0:
                    raise ValueError(f"no training clip uses the {HANDS[hand]} hand that clip {b} uses.")
                prediction[hand] = hold_to_length(self.joints[picks[b, hand]][:, hand], length)
            out.append(prediction)
        return out


def standard_error(values: Sequence[float]) -> float:
    """Standard error of the mean (sample std / sqrt(n)); NaN below two values."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
