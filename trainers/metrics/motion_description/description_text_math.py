"""Text-overlap scores of generated motion descriptions against references: ROUGE-L F1, token F1, exact match.

Numpy and the standard library only, so the standalone `evaluate` module beside this file (motion_description.py)
and the project's evaluation script (trainers/evaluate_description.py) share one implementation. Written here from
the definitions (ROUGE-L: Lin 2004, F-measure of the longest common subsequence with β = 1; token F1 and exact match:
SQuAD's bag-of-words definitions), on text normalised the same way for every score.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np

_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")


def normalize_words(text: str) -> list[str]:
    """Lower-case words with punctuation removed: 'The right hand, lifts it.' -> [the, right, hand, lifts, it]."""
    return _PUNCTUATION.sub(" ", text.lower()).split()


def longest_common_subsequence(first: Sequence[str], second: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, one row at a time: O(len1 * len2))."""
    if not first or not second:
        return 0
    previous = np.zeros(len(second) + 1, dtype=np.int64)
    for word in first:
        current = np.zeros_like(previous)
        for j, other in enumerate(second, start=1):
            current[j] = previous[j - 1] + 1 if word == other else max(previous[j], current[j - 1])
        previous = current
    return int(previous[-1])


def _f1(overlap: int, predicted: int, reference: int) -> float:
    """F1 of an overlap count; two empty texts agree (1.0), one empty text does not (0.0)."""
    if predicted == 0 or reference == 0:
        return float(predicted == reference)
    if overlap == 0:
        return 0.0
    precision, recall = overlap / predicted, overlap / reference
    return 2 * precision * recall / (precision + recall)


def rouge_l_f1(prediction: str, reference: str) -> float:
    """ROUGE-L F1: precision = LCS / predicted words, recall = LCS / reference words, harmonic mean."""
    predicted, expected = normalize_words(prediction), normalize_words(reference)
    return _f1(longest_common_subsequence(predicted, expected), len(predicted), len(expected))


def token_f1(prediction: str, reference: str) -> float:
    """Bag-of-words F1: words in common counted with multiplicity, order ignored."""
    predicted, expected = normalize_words(prediction), normalize_words(reference)
    overlap = sum((Counter(predicted) & Counter(expected)).values())
    return _f1(overlap, len(predicted), len(expected))


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalised word sequences are equal, else 0.0."""
    return float(normalize_words(prediction) == normalize_words(reference))


SCORES = {"rouge_l_f1": rouge_l_f1, "token_f1": token_f1, "exact_match": exact_match}


def description_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-pair scores {name: (N,) array}; the per-pair values give standard errors over clips."""
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions for {len(references)} references; pair them one to one.")
    return {
        name: np.array([score(p, r) for p, r in zip(predictions, references, strict=True)], dtype=np.float64)
        for name, score in SCORES.items()
    }


def description_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean of each score over the pairs (NaN for no pairs)."""
    scores = description_scores(predictions, references)
    return {name: float(values.mean()) if len(values) else float("nan") for name, values in scores.items()}
