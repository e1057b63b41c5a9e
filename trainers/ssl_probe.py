"""Linear probe of a frozen SSL frame encoder: how much of the hand does a clip's first-frame feature carry?

JALA's LSP reads the first frame's frozen-encoder features and the LAP reads boundary frames; if those features
say little about the hand, z and the LSP context say little too. This probe measures it without training any of
JALA: ridge regression from the features the model sees (`encode_ssl_frames`, patch tokens pooled to the model's
`ssl_pool_grid`, flattened) to the first frame's

* wrist position: MANO-D162 [96:99], metres, camera frame (OpenCV axes);
* grip aperture: thumb-tip to index-tip distance (keypoints 4 and 8 of the 21 joints in [99:162]), metres.

One probe per hand slot (left, right), fitted on the labelled train clips where that hand acts and evaluated on
the held-out test_lab / test_wild clips where it acts. The ridge penalty is picked per target by exact
leave-one-out error on the train clips (closed form through one SVD), so no test clip influences the fit. The mean
predictor (each hand's train mean) is the floor every encoder must beat.

R² is pooled within hands: 1 - (SSE_left + SSE_right) / (SST_left + SST_right), each SST about that hand's test
mean, summed over x, y, z for the wrist. Errors are in millimetres: mean Euclidean wrist error and mean absolute
aperture error.

    from trainers.ssl_probe import probe_encoders
    results = probe_encoders("outputs/unihand_mix", {"ssl": "outputs/ssl_encoder"}, random_init_seeds=(0, 1, 2))
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from transformers import AutoConfig, AutoModel, PreTrainedModel

from dataset_scripts.images import decode_image
from dataset_scripts.streaming import UniHandStream
from modeling_jala.hand_jala import JOINTS_XYZ, KEYPOINT_NAMES, WRIST_TRANSL
from modeling_jala.layout_jala import HANDS
from modeling_jala.ssl_features_jala import encode_ssl_frames, ssl_image_processor, ssl_image_settings
from modeling_jala.strict_loading_jala import strict_from_pretrained

logger = logging.getLogger("jala.ssl_probe")

THUMB_TIP, INDEX_TIP = KEYPOINT_NAMES.index("thumb_tip"), KEYPOINT_NAMES.index("index_tip")
MM_PER_M = 1000.0
#: Ridge penalties tried, as multiples of the mean squared singular value of the standardised train features.
ALPHA_GRID = tuple(float(a) for a in np.logspace(-4, 3, 22))
PROBE_COLUMNS = ("id", "domain", "labelled", "label_source", "hands_present", "first_frame", "motion")


# ------------------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------------------


def first_frame_targets(motion: np.ndarray) -> np.ndarray:
    """(T, 2, 162) MANO-D162 -> (2, 4): per hand (wrist x, y, z, thumb-index aperture) at frame 0, metres."""
    first = np.asarray(motion, dtype=np.float64)[0]
    joints = first[:, JOINTS_XYZ].reshape(2, -1, 3)
    aperture = np.linalg.norm(joints[:, THUMB_TIP] - joints[:, INDEX_TIP], axis=-1)
    return np.concatenate([first[:, WRIST_TRANSL], aperture[:, None]], axis=1)


@dataclass
class ProbeSplit:
    """First frames of one split with their targets; `present[i, h]` marks a label for hand h of clip i."""

    name: str
    images: list[Image.Image]
    targets: np.ndarray  # (N, 2, 4)
    present: np.ndarray  # (N, 2) bool
    ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


def load_probe_split(repos: str | os.PathLike | Sequence[str | os.PathLike], split: str) -> ProbeSplit:
    """Labelled clips of `split`: their first frame (decoded) and first-frame targets of the acting hands."""
    stream = UniHandStream(
        repos, split=split, infinite=False, shuffle=False, columns=PROBE_COLUMNS, rank=0, world_size=1
    )
    images, targets, present, ids = [], [], [], []
    for row in stream:
        if not row["labelled"] or row["motion"] is None:
            continue
        images.append(decode_image(row["first_frame"]))
        targets.append(first_frame_targets(row["motion"]))
        present.append(np.asarray(row["hands_present"], dtype=bool))
        ids.append(str(row["id"]))
    if not images:
        raise ValueError(f"split {split!r} of {repos} has no labelled clips to probe.")
    return ProbeSplit(split, images, np.stack(targets), np.stack(present), ids)


# ------------------------------------------------------------------------------------------------------------
# Features
# ------------------------------------------------------------------------------------------------------------


def preprocess(settings: Mapping[str, Any], images: Sequence[Image.Image]) -> Tensor:
    """(N, 3, h, w) pixel values from the torchvision-free processor JALA uses for the SSL encoder."""
    return ssl_image_processor(**settings)(images=list(images), return_tensors="pt")["pixel_values"]


@torch.no_grad()
def frame_features(
    encoder: PreTrainedModel, pixel_values: Tensor, pool_grid: int | None = None, batch_size: int = 128
) -> np.ndarray:
    """(N, P * D) flattened features of preprocessed frames, as `JalaModel.ssl_features` gives them to the LSP."""
    encoder.eval()
    chunks = []
    for start in range(0, len(pixel_values), batch_size):
        pixels = pixel_values[start : start + batch_size].to(encoder.device)
        chunks.append(encode_ssl_frames(encoder, pixels, "patches", pool_grid).flatten(1).double().cpu().numpy())
    return np.concatenate(chunks)


# ------------------------------------------------------------------------------------------------------------
# Ridge probe
# ------------------------------------------------------------------------------------------------------------


@dataclass
class RidgeProbe:
    """y = ((x - x_mean) / x_std) @ weight + y_mean, one penalty per target picked by leave-one-out error."""

    x_mean: np.ndarray
    x_std: np.ndarray
    weight: np.ndarray  # (F, K)
    y_mean: np.ndarray  # (K,)
    alphas: np.ndarray  # (K,)
    loo_predictions: np.ndarray  # (N, K) leave-one-out predictions of the train samples at the chosen penalties

    def predict(self, features: np.ndarray) -> np.ndarray:
        return ((np.asarray(features, np.float64) - self.x_mean) / self.x_std) @ self.weight + self.y_mean


def fit_ridge(features: np.ndarray, targets: np.ndarray, alpha_grid: Sequence[float] = ALPHA_GRID) -> RidgeProbe:
    """Ridge regression on standardised features; per target, the penalty with the lowest exact leave-one-out
    squared error (hat-matrix shortcut: residual_i / (1 - H_ii)) wins. Penalties scale with the mean squared
    singular value, so one grid fits any feature width."""
    x = np.asarray(features, np.float64)
    y = np.asarray(targets, np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features must be (N, F) and targets (N, K) with the same N, got {x.shape} and {y.shape}.")
    if len(x) < 3:
        raise ValueError(f"a ridge probe needs at least 3 samples, got {len(x)}.")
    x_mean, x_std = x.mean(0), x.std(0)
    x_std = np.where(x_std > 1e-8, x_std, 1.0)
    y_mean = y.mean(0)
    xs, yc = (x - x_mean) / x_std, y - y_mean
    u, s, vt = np.linalg.svd(xs, full_matrices=False)
    scale = float(np.mean(s**2)) if s.size else 1.0
    uty = u.T @ yc  # (r, K)
    best_error = np.full(y.shape[1], np.inf)
    best_alpha = np.zeros(y.shape[1])
    best_loo = np.zeros_like(y)
    for relative in alpha_grid:
        alpha = relative * scale
        shrink = s**2 / (s**2 + alpha)  # (r,)
        fitted = u @ (shrink[:, None] * uty)
        leverage = (u**2) @ shrink  # diag of the hat matrix (centring adds 1/N)
        loo = (yc - fitted) / np.clip(1.0 - leverage - 1.0 / len(x), 1e-6, None)[:, None]
        error = (loo**2).mean(0)
        better = error < best_error
        best_error[better], best_alpha[better] = error[better], alpha
        best_loo[:, better] = loo[:, better]
    weight = np.stack(
        [vt.T @ ((s / (s**2 + best_alpha[k])) * uty[:, k]) for k in range(y.shape[1])],
        axis=1,
    )
    return RidgeProbe(x_mean, x_std, weight, y_mean, best_alpha, y - best_loo)


def r2_within_groups(true: np.ndarray, pred: np.ndarray, groups: np.ndarray) -> float:
    """1 - SSE / SST with SST about each group's own mean (here: hands), summed over target dimensions."""
    sse = float(((true - pred) ** 2).sum())
    sst = sum(float(((true[groups == g] - true[groups == g].mean(0)) ** 2).sum()) for g in np.unique(groups))
    return 1.0 - sse / sst if sst > 0 else float("nan")


def probe_metrics(true: np.ndarray, pred: np.ndarray, hands: np.ndarray) -> dict[str, float]:
    """(n, 4) targets and predictions of (clip, hand) samples -> R² and mm errors for wrist and aperture."""
    wrist_true, wrist_pred = true[:, :3], pred[:, :3]
    return {
        "wrist_r2": r2_within_groups(wrist_true, wrist_pred, hands),
        "wrist_error_mm": float(np.linalg.norm(wrist_true - wrist_pred, axis=1).mean() * MM_PER_M),
        "aperture_r2": r2_within_groups(true[:, 3:], pred[:, 3:], hands),
        "aperture_error_mm": float(np.abs(true[:, 3] - pred[:, 3]).mean() * MM_PER_M),
        "samples": int(len(true)),
    }


TRAIN_LOO = "train (leave-one-out)"


def evaluate_probe(
    train_features: np.ndarray | None,
    train: ProbeSplit,
    tests: Mapping[str, tuple[np.ndarray | None, ProbeSplit]],
) -> dict[str, dict[str, float]]:
    """Fit one probe per hand on `train` and score every test split; features None = the mean predictor.

    Also scores the train clips by their leave-one-out predictions (`TRAIN_LOO`): ten times the samples of a test
    split, so a steadier (if in-distribution) number to compare encoders by.
    """
    predictions: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {TRAIN_LOO: [], **{n: [] for n in tests}}
    for hand in range(len(HANDS)):
        keep = train.present[:, hand]
        if keep.sum() < 3:
            raise ValueError(f"the train split has {int(keep.sum())} labelled clips with the {HANDS[hand]} hand.")
        y_train = train.targets[keep, hand]
        probe = None if train_features is None else fit_ridge(train_features[keep], y_train)
        # The mean predictor's leave-one-out prediction of a sample is the mean of the others.
        loo = (y_train.sum(0) - y_train) / (len(y_train) - 1) if probe is None else probe.loo_predictions
        predictions[TRAIN_LOO].append((y_train, loo, np.full(len(y_train), hand)))
        for name, (features, split) in tests.items():
            test_keep = split.present[:, hand]
            if not test_keep.any():
                continue
            y_true = split.targets[test_keep, hand]
            if probe is None or features is None:
                y_pred = np.broadcast_to(y_train.mean(0), y_true.shape)
            else:
                y_pred = probe.predict(features[test_keep])
            predictions[name].append((y_true, y_pred, np.full(len(y_true), hand)))
    results = {}
    for name, parts in predictions.items():
        true, pred, hands = (np.concatenate([p[i] for p in parts]) for i in range(3))
        results[name] = probe_metrics(true, pred, hands)
    return results


# ------------------------------------------------------------------------------------------------------------
# Encoders
# ------------------------------------------------------------------------------------------------------------


def load_encoder(encoder: str | os.PathLike | PreTrainedModel) -> PreTrainedModel:
    """A saved folder (every tensor must load: `strict_from_pretrained`) or a model object, in eval mode."""
    if isinstance(encoder, PreTrainedModel):
        return encoder.eval()
    return strict_from_pretrained(AutoModel, encoder).eval()


def probe_encoders(
    repos: str | os.PathLike | Sequence[str | os.PathLike],
    encoders: Mapping[str, str | os.PathLike],
    random_init_seeds: Sequence[int] = (0, 1, 2),
    pool_grid: int | None = None,
    test_splits: Sequence[str] = ("test_lab", "test_wild"),
) -> dict[str, Any]:
    """Probe each saved encoder folder, the same architecture at random init (first folder's config, one run per
    seed, averaged) and the mean predictor; returns {"results": {name: {split: metrics}}, ...}.

    Features are those `JalaModel.ssl_features` gives the LSP: the folder's preprocessing, patch tokens pooled to
    `pool_grid` (the model's `ssl_pool_grid`; None keeps every patch), flattened.
    """
    if not encoders:
        raise ValueError("give at least one encoder folder: encoders={'ssl': 'path/to/folder'}.")
    train = load_probe_split(repos, "train")
    tests = {split: load_probe_split(repos, split) for split in test_splits}
    logger.info("probe clips: train %d, %s", len(train), ", ".join(f"{k} {len(v)}" for k, v in tests.items()))
    results: dict[str, dict[str, dict[str, float]]] = {
        "mean predictor": evaluate_probe(None, train, {k: (None, v) for k, v in tests.items()})
    }
    details: dict[str, Any] = {}

    pixel_cache: dict[str, dict[str, Tensor]] = {}

    def run(model: PreTrainedModel, settings: Mapping[str, Any]) -> dict[str, dict[str, float]]:
        key = json.dumps(settings, sort_keys=True)
        if key not in pixel_cache:
            pixel_cache[key] = {
                name: preprocess(settings, split.images) for name, split in [("train", train), *tests.items()]
            }
        pixels = pixel_cache[key]
        test_x = {name: (frame_features(model, pixels[name], pool_grid), split) for name, split in tests.items()}
        return evaluate_probe(frame_features(model, pixels["train"], pool_grid), train, test_x)

    first_dir = next(iter(encoders.values()))
    settings = ssl_image_settings(first_dir)
    if random_init_seeds:
        config = AutoConfig.from_pretrained(first_dir)
        per_seed = []
        for seed in random_init_seeds:
            torch.manual_seed(seed)
            per_seed.append(run(AutoModel.from_config(config).eval(), settings))
        details["random_init_per_seed"] = dict(zip([str(s) for s in random_init_seeds], per_seed, strict=True))
        label = f"random init ({len(per_seed)} seed{'s' if len(per_seed) > 1 else ''})"
        results[label] = {
            split: {key: float(np.mean([r[split][key] for r in per_seed])) for key in per_seed[0][split]}
            for split in per_seed[0]
        }
    for name, folder in encoders.items():
        results[name] = run(load_encoder(folder), ssl_image_settings(folder))
    return {
        "results": results,
        "details": details,
        "encoders": {name: str(folder) for name, folder in encoders.items()},
        "image_settings": settings,
        "pool_grid": pool_grid,
        "clips": {"train": len(train), **{name: len(split) for name, split in tests.items()}},
    }


def format_probe_table(results: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """Markdown: one row per (encoder, split)."""
    lines = [
        "| encoder | split | wrist R² | wrist error (mm) | aperture R² | aperture error (mm) | (clip, hand) samples |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, splits in results.items():
        for split, m in splits.items():
            lines.append(
                f"| {name} | {split} | {m['wrist_r2']:.3f} | {m['wrist_error_mm']:.1f} | {m['aperture_r2']:.3f} "
                f"| {m['aperture_error_mm']:.1f} | {int(m['samples'])} |"
            )
    return "\n".join(lines)
