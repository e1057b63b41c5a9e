"""The target probe (benchmarks/motion_target_probe.py): answers read from a known scene, a ridge whose strength is
cross-validated on the training clips, and the probe end to end on a procedural build."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import motion_target_probe as probe  # noqa: E402


def test_each_acting_hands_target_and_the_wordless_guesses() -> None:
    scene = {
        "hand_starts": {"right": {"wrist_camera": [0.1, 0.0, 0.5]}},
        "motion": {"targets": {"right": "far"}},
        "objects": [
            {"name": "far", "position_camera": [-0.3, 0.0, 0.9]},
            {"name": "near", "position_camera": [0.1, 0.0, 0.6]},
        ],
    }
    answers = probe.hand_targets({"scene": json.dumps(scene)})
    assert list(answers) == [1]  # HANDS = ("left", "right"): only the right hand has a target
    np.testing.assert_allclose(answers[1]["target"], [-0.3, 0.0, 0.9])
    np.testing.assert_allclose(answers[1]["frame objects"], [-0.1, 0.0, 0.75])
    np.testing.assert_allclose(answers[1]["nearest object"], [0.1, 0.0, 0.6])


def test_the_motion_probe_scores_mean_joint_error_and_knows_the_hand() -> None:
    truth = np.zeros((2, 4 * 21 * 3))
    shifted = truth.copy()
    shifted[0, 0::3] = 0.03  # sample 0: every joint of every frame 3 cm off along x
    np.testing.assert_allclose(probe.mean_joint_error(shifted, truth), [0.03, 0.0])
    np.testing.assert_array_equal(probe.with_hand(np.array([5.0, 6.0]), 1), [5.0, 6.0, 0.0, 1.0])


def test_the_ridge_recovers_a_linear_answer_with_the_weakest_strength() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    y = x @ rng.normal(size=(6, 3)) + [0.0, 0.0, 1.0]
    assert probe.cross_validated_strength(x, y) == min(probe.RIDGE_STRENGTHS)
    predicted = probe.fit_ridge(x, y, 1.0)(x[:5])
    np.testing.assert_allclose(predicted, y[:5], atol=0.05)


def test_out_of_fold_estimates_never_see_their_own_answer() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 4))
    y = x @ rng.normal(size=(4, 3))
    np.testing.assert_allclose(probe.out_of_fold(x, y, 1e-3), y, atol=1e-3)
    # One private feature per sample: a fit that saw the sample returns its answer, out of fold it cannot.
    private = np.eye(50)
    noise = rng.normal(size=(50, 3))
    assert np.abs(probe.fit_ridge(private, noise, 1e-6)(private) - noise).max() < 1e-3
    assert np.abs(probe.out_of_fold(private, noise, 1e-6) - noise.mean(0)).max() < 0.5


@pytest.fixture(scope="module")
def procedural_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fixtures.unihand_factory import procedural_repo as build

    return build(tmp_path_factory)


def test_the_probe_runs_on_a_pretrained_folder(procedural_repo: Path, tmp_path: Path) -> None:
    from modeling_jala.configuration_jala import JalaMotionTokenizerConfig
    from modeling_jala.motion_tokenizer_jala import JalaMotionTokenizer
    from tests.conftest import TINY_TOKENIZER
    from trainers import pretrain

    JalaMotionTokenizer(JalaMotionTokenizerConfig(**TINY_TOKENIZER)).save_pretrained(tmp_path / "tokenizer")
    folder = pretrain.main(
        [
            f"--dataset={procedural_repo}",
            f"--motion_tokenizer={tmp_path / 'tokenizer'}",
            f"--output_dir={tmp_path / 'jala'}",
            "--per_device_train_batch_size=2",
            "--max_chunks=2",
            "--max_steps=1",
            "--save_strategy=no",
            "--eval_strategy=no",
            "--report_to=none",
        ]
    )
    output = tmp_path / "probe.json"
    results = probe.main(["--model", str(folder), "--dataset", str(procedural_repo), "--output", str(output)])
    result = results[str(folder)]
    assert result["queries"]["train"] >= 3 and result["queries"]["test_lab"] >= 2
    assert result["ridge_strength"] in probe.RIDGE_STRENGTHS
    for key in ("probe of h", "training targets' mean", "frame objects (reads the scene)"):
        assert np.isfinite(result[key]["mm"]) and result[key]["mm"] > 0
    assert json.loads(output.read_text()) == json.loads(json.dumps(results))
    # The ceiling reader fed with h's estimates of the start and target, beside the same reader of the true facts.
    facts = result["facts from h"]
    assert set(facts) == {"true facts", "start and target from h", "true start, target from h", "mean motion"}
    assert all(np.isfinite(value["mm"]) and value["mm"] > 0 for value in facts.values())
    # The motion probe: h's linear read-out, generation and the mean motion on the same clips, hands and frames; the
    # mean-motion row is the evaluation's own baseline.
    assert result["trajectory_ridge_strength"] in probe.RIDGE_STRENGTHS
    assert set(result["trajectory"]) == {"test_lab", "test_wild"}
    for scores in result["trajectory"].values():
        assert set(scores) == set(probe.TRAJECTORY_ROWS)
        assert all(np.isfinite(scores[name]["mpjpe_mm"]) and scores[name]["mpjpe_mm"] > 0 for name in scores)
    from modeling_jala.modeling_jala import JalaForMotionPretraining
    from modeling_jala.processing_jala import JalaProcessor
    from trainers.evaluate_motion import _image_size, evaluate_baselines, fit_baselines

    model = JalaForMotionPretraining.from_pretrained(folder)
    processor = JalaProcessor.from_pretrained(folder)
    reference = evaluate_baselines(
        procedural_repo,
        "test_lab",
        fit_baselines(procedural_repo, model, processor),
        _image_size(processor),
        max_chunks=4,
    )["baselines"]["mean motion"]["mpjpe_mm"]
    assert result["trajectory"]["test_lab"]["mean motion"]["mpjpe_mm"] == pytest.approx(reference)
