"""trainers/latent_probe.py: chunk targets, the probe's fit / floor / outlier guard, and a run on a tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_jala.hand_jala import JOINTS_XYZ, WRIST_TRANSL
from trainers.latent_probe import (
    FEATURE_SETS,
    FINGERTIPS,
    TARGETS,
    chunk_motion_targets,
    probe_latent_actions,
    probe_predictions,
)
from trainers.motion_baselines import labelled_rows
from trainers.ssl_probe import r2_within_groups


def test_chunk_targets_are_wrist_motion_end_position_and_opening_change() -> None:
    motion = np.zeros((20, 162), dtype=np.float32)
    motion[:, WRIST_TRANSL] = np.linspace([0.0, 0.0, 0.5], [0.19, -0.38, 0.69], 20)  # 1 cm per frame in x
    joints = np.zeros((20, 21, 3), dtype=np.float32)
    joints[:, list(FINGERTIPS), 0] = np.linspace(0.05, 0.10, 20)[:, None]  # every fingertip moves away
    motion[:, JOINTS_XYZ] = joints.reshape(20, -1)
    targets = chunk_motion_targets(motion, 0, 14)
    np.testing.assert_allclose(targets[TARGETS["displacement"]], [0.14, -0.28, 0.14], atol=1e-6)
    np.testing.assert_allclose(targets[TARGETS["end_position"]], [0.14, -0.28, 0.64], atol=1e-6)
    np.testing.assert_allclose(targets[TARGETS["opening_change"]], [0.05 * 14 / 19], atol=1e-6)


def _samples(rng: np.random.Generator, n: int, informative: bool) -> dict[str, np.ndarray]:
    hands = rng.integers(0, 2, n)
    signal = rng.normal(size=(n, 7))
    read = signal if informative else rng.normal(size=(n, 7))
    features = np.concatenate([read, rng.normal(size=(n, 5)), np.eye(2)[hands]], 1)  # + the hand, as chunk_samples
    targets = signal + 3.0 * hands[:, None]  # each hand has its own mean
    return {"z (trained)": features, "targets": targets, "hands": hands}


def test_probe_reads_linear_information_and_the_mean_is_per_hand() -> None:
    rng = np.random.default_rng(0)
    train, test = _samples(rng, 300, True), _samples(rng, 100, True)
    predicted = probe_predictions(train, test, "z (trained)")
    assert r2_within_groups(test["targets"], predicted, test["hands"]) > 0.95
    floor = probe_predictions(train, test, "mean")
    assert abs(r2_within_groups(test["targets"], floor, test["hands"])) < 0.1  # near 0, not the between-hand gap
    noise_train, noise_test = _samples(rng, 300, False), _samples(rng, 100, False)
    noise = probe_predictions(noise_train, noise_test, "z (trained)")
    assert r2_within_groups(noise_test["targets"], noise, noise_test["hands"]) < 0.1


def test_an_outlying_test_feature_cannot_extrapolate_the_probe() -> None:
    rng = np.random.default_rng(1)
    train, test = _samples(rng, 200, True), _samples(rng, 5, True)
    test["z (trained)"][0] = 1e6  # e.g. a frame far outside anything seen in training
    predicted = probe_predictions(train, test, "z (trained)")
    assert np.abs(predicted).max() < 100 * np.abs(train["targets"]).max()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fixtures.unihand_factory import FixtureSource, cached_repo

    sources = [
        FixtureSource(num_clips=12, seed=3, domain="lab", split="train", image_size=32),
        FixtureSource(num_clips=4, seed=4, domain="wild", split="train", image_size=32, wild_labelled_fraction=0.5),
        FixtureSource(num_clips=4, seed=5, domain="lab", split="test_lab", image_size=32),
        FixtureSource(num_clips=3, seed=6, domain="wild", split="test_wild", image_size=32),
    ]
    return cached_repo(tmp_path_factory, "latent_probe", sources, preview=False)


def test_domain_filter_picks_only_that_domains_labelled_clips(repo: Path) -> None:
    lab, wild = labelled_rows(repo, "train", 100, "lab"), labelled_rows(repo, "train", 100, "wild")
    assert lab and {row["domain"] for row in lab} == {"lab"} and all(row["labelled"] for row in lab)
    assert {row["domain"] for row in wild} <= {"wild"}
    assert len(lab) + len(wild) == len(labelled_rows(repo, "train", 100))


def test_probe_runs_on_a_model_and_skips_a_domain_without_enough_labels(repo: Path) -> None:
    from modeling_jala.modeling_jala import JalaForMotionPretraining
    from tests.fixtures.tiny_jala import tiny_jala_config, tiny_processor

    torch.manual_seed(0)
    model = JalaForMotionPretraining(tiny_jala_config())
    report = probe_latent_actions(model, tiny_processor(), repo, repo, max_train_clips=12, max_test_clips=4)
    assert set(report) == set(FEATURE_SETS)
    for feature_set in FEATURE_SETS:
        assert set(report[feature_set]) == {"test_lab"}  # at most 2 pseudo-labelled wild clips: too few to probe
        scores = report[feature_set]["test_lab"]
        assert {f"{target}_r2" for target in TARGETS} <= set(scores)
        assert scores["train_samples"] >= 20 and scores["test_samples"] > 0
        assert all(np.isfinite(scores[f"{target}_r2"]) for target in TARGETS)
    # a fresh model's LAP and its own (untrained) LAP start identical up to the seed: both rows exist and differ
    assert report["z (trained)"]["test_lab"] != report["boundary features"]["test_lab"]


def test_a_model_without_a_lap_is_refused(repo: Path) -> None:
    from modeling_jala.modeling_jala import JalaForMotionPretraining
    from tests.fixtures.tiny_jala import tiny_jala_config, tiny_processor

    model = JalaForMotionPretraining(tiny_jala_config(variant="wo_align", align_weight=0.0))
    with pytest.raises(ValueError, match="no latent action perceiver"):
        probe_latent_actions(model, tiny_processor(), repo, repo)
