"""The motion baselines on data with a known answer, their evaluation on the model's clips, hands and frames, and
the table that prints them beside the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_jala.hand_jala import JOINTS_XYZ
from trainers.evaluate_motion import (
    MotionBaselines,
    evaluate_baselines,
    evaluate_generation,
    first_frames_of,
    format_table,
    score_predictors,
)
from trainers.motion_baselines import MeanMotionBaseline, NearestNeighbourBaseline, labelled_rows, load_training_rows


def row(instruction: str, offset: float, frames: int, hands: tuple[bool, bool]) -> dict:
    """A clip whose every joint sits at `offset` (metres) on x, for the hands present."""
    motion = np.zeros((frames, 2, 162), np.float32)
    for hand, present in enumerate(hands):
        if present:
            motion[:, hand, JOINTS_XYZ] = np.tile([offset, 0.0, 0.5], 21)
        else:
            motion[:, hand] = np.nan
    return {"instruction": instruction, "motion": motion, "hands_present": hands, "labelled": True}


def frames_of(*values: int) -> np.ndarray:
    return np.stack([np.full((8, 8, 3), value, np.uint8) for value in values])


def brightness(images: np.ndarray) -> np.ndarray:
    """A 3-d image feature: mean brightness, its square, and its inverse (not collinear after standardising)."""
    mean = images.reshape(len(images), -1).mean(1, keepdims=True) / 255.0
    return np.concatenate([mean, mean**2, 1 / (1 + mean)], axis=1)


def test_mean_motion_is_the_per_frame_average_of_each_hand_and_holds_the_last_frame() -> None:
    rows = [row("a", 0.1, 4, (False, True)), row("b", 0.3, 2, (True, True))]
    baseline = MeanMotionBaseline.fit(rows)
    right = baseline.predict(rows[0], 1, 6)
    assert right.shape == (6, 21, 3)
    np.testing.assert_allclose(right[:2, :, 0], 0.2, atol=1e-6)  # frames both clips have
    np.testing.assert_allclose(right[2:4, :, 0], 0.1, atol=1e-6)  # only the longer clip
    np.testing.assert_allclose(right[4:, :, 0], 0.1, atol=1e-6)  # held
    np.testing.assert_allclose(right[..., 2], 0.5, atol=1e-6)
    left = baseline.predict(rows[0], 0, 3)
    np.testing.assert_allclose(left[:, :, 0], 0.3, atol=1e-6)  # the NaN left hand of clip a never counts
    assert baseline.counts[1].tolist() == [2, 2, 1, 1] and baseline.counts[0].tolist() == [1, 1, 0, 0]


def test_mean_motion_needs_both_hands_in_training() -> None:
    with pytest.raises(ValueError, match="no labelled training clip uses the left hand"):
        MeanMotionBaseline.fit([row("a", 0.1, 4, (False, True))])


def test_nearest_neighbour_matches_instruction_and_frame_and_respects_hands() -> None:
    rows = [
        row("reach the red cup", 0.1, 3, (False, True)),
        row("reach the blue box", 0.2, 3, (False, True)),
        row("reach the blue box", 0.4, 3, (True, False)),  # the closest clip of all, but it has no right hand
        row("reach the red cup", 0.6, 3, (True, False)),
    ]
    baseline = NearestNeighbourBaseline.fit(rows, frames_of(10, 150, 190, 20), brightness)
    query = [row("reach the blue box", 0.0, 5, (True, True))]
    picks = baseline.neighbours(query, frames_of(190))
    assert picks[0].tolist() == [2, 1]  # left: the identical clip; right: the nearest clip that has a right hand
    prediction = baseline.predict_batch(query, frames_of(190), [5])[0]
    assert prediction.shape == (2, 5, 21, 3)
    np.testing.assert_allclose(prediction[1, :, :, 0], 0.2)  # held past its 3 frames
    np.testing.assert_allclose(prediction[0, :, :, 0], 0.4)
    right_only = baseline.predict_batch([row("reach the blue box", 0.0, 2, (False, True))], frames_of(190), [2])[0]
    assert np.isnan(right_only[0]).all() and not np.isnan(right_only[1]).any()  # an unused hand is never filled

    words_only = NearestNeighbourBaseline.fit(rows)
    assert words_only.neighbours([row("the red cup", 0.0, 2, (True, True))])[0].tolist() == [3, 0]
    with pytest.raises(ValueError, match="pass one first frame per query"):
        baseline.neighbours(query)
    lefties = NearestNeighbourBaseline.fit(rows[2:3])
    with pytest.raises(ValueError, match="no training clip uses the right hand"):
        lefties.predict_batch(query, None, [5])


def test_nearest_neighbour_key_does_not_depend_on_the_query_batch() -> None:
    """Image features are standardised with training statistics: a query retrieves the same clip alone or in any
    batch (a batch-mean centring would flip a lone query's features to zero)."""
    rows = [row("reach the cup", 0.1 * i, 3, (True, True)) for i in range(4)]
    baseline = NearestNeighbourBaseline.fit(rows, frames_of(10, 80, 160, 240), brightness)
    queries = [row("reach the cup", 0.0, 3, (True, True)) for _ in range(3)]
    together = baseline.neighbours(queries, frames_of(150, 155, 165))
    alone = [baseline.neighbours(queries[:1], frames_of(value))[0] for value in (150, 155, 165)]
    assert together.tolist() == [list(pick) for pick in alone] == [[2, 2]] * 3


# ------------------------------------------------------------------------------------------------------------
# On a UniHand-Mix folder, through the evaluation code
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fixtures.unihand_factory import FixtureSource, cached_repo

    sources = [
        FixtureSource(num_clips=10, seed=3, domain="lab", split="train", image_size=32),
        FixtureSource(num_clips=8, seed=4, domain="wild", split="train", image_size=32, wild_labelled_fraction=0.5),
        FixtureSource(num_clips=3, seed=5, domain="lab", split="test_lab", image_size=32),
    ]
    return cached_repo(tmp_path_factory, "motion_baselines", sources, preview=False)


def pixels(images: np.ndarray) -> np.ndarray:
    """The frame itself, 8x8-downsampled, as the image feature."""
    return images[:, ::4, ::4].reshape(len(images), -1).astype(np.float64)


def fitted(repo: Path, image_size: tuple[int, int]) -> MotionBaselines:
    rows = load_training_rows(repo)
    return MotionBaselines(
        MeanMotionBaseline.fit(rows),
        NearestNeighbourBaseline.fit(rows, first_frames_of(rows, image_size), pixels),
    )


def test_baselines_on_their_own_training_clips(repo: Path) -> None:
    """Scored on the train split itself, the neighbour retrieves each clip (0 mm) and the mean motion beats a
    constant-zero prediction; only labelled clips (lab + pseudo-labelled wild) are fitted on."""
    rows = load_training_rows(repo)
    stored = labelled_rows(repo, "train", 1000) + labelled_rows(repo, "test_lab", 1000)
    assert {r["domain"] for r in rows} == {"lab", "wild"} and all(r["labelled"] for r in rows)
    assert len(rows) < 18 and all("train" in r["id"] for r in rows) and len(stored) == len(rows) + 3

    baselines = fitted(repo, (32, 32))
    report = evaluate_baselines(repo, "train", baselines, (32, 32), max_clips=100, max_chunks=2, batch_size=4)
    assert report["clips"] == len(rows)
    scores = report["baselines"]
    assert scores["nearest neighbour"]["mpjpe_mm"] == pytest.approx(0.0, abs=1e-3)

    def zeros(batch_rows: list[dict], batch: dict, frames: int) -> torch.Tensor:
        return torch.zeros(len(batch_rows), 2, frames, 21, 3)

    zero = score_predictors(labelled_rows(repo, "train", 100), {"zero": zeros}, (32, 32), 2, 4, show_progress=False)
    assert 0 < scores["mean motion"]["mpjpe_mm"] < 0.5 * zero["zero"]["mpjpe_mm"]
    assert scores["mean motion"]["mpjpe_se_mm"] > 0
    table = format_table({"train": report})
    assert "| train | mean motion |" in table and "| train | nearest neighbour |" in table and "JALA" not in table


def test_mpjpe_per_chunk_pools_each_chunks_valid_frames(repo: Path) -> None:
    """A predictor off by 10 mm in the first chunk and 30 mm after it: the report says so chunk by chunk."""
    rows = labelled_rows(repo, "train", 100)

    def offset(batch_rows: list[dict], batch: dict, frames: int) -> torch.Tensor:
        truth = batch["motion"][..., JOINTS_XYZ].reshape(*batch["motion"].shape[:3], 21, 3).nan_to_num()
        shift = torch.where(torch.arange(frames) < 15, 0.010, 0.030)
        return truth + torch.stack([shift, torch.zeros(frames), torch.zeros(frames)], -1)[None, None, :, None]

    report = score_predictors(rows, {"offset": offset}, (32, 32), 2, 4, show_progress=False)["offset"]
    assert report["mpjpe_per_chunk_mm"] == pytest.approx([10.0, 30.0], abs=1e-4)
    assert 10.0 < report["mpjpe_mm"] < 30.0


def test_generation_report_holds_the_baselines_on_the_same_sequences(repo: Path) -> None:
    from modeling_jala.modeling_jala import JalaForMotionPretraining
    from tests.fixtures.tiny_jala import IMAGE_SIZE, tiny_jala_config, tiny_processor

    torch.manual_seed(0)
    model = JalaForMotionPretraining(tiny_jala_config())
    processor = tiny_processor()
    baselines = fitted(repo, (IMAGE_SIZE, IMAGE_SIZE))
    arguments = {"max_clips": 3, "max_chunks": 1, "batch_size": 2}
    report = evaluate_generation(
        model, processor, repo, "test_lab", decoding_steps=1, ensemble=1, show_progress=False, baselines=baselines,
        **arguments,
    )  # fmt: skip
    alone = evaluate_baselines(repo, "test_lab", baselines, (IMAGE_SIZE, IMAGE_SIZE), **arguments)
    assert report["clips"] == 3 and report["hand_sequences"] == alone["hand_sequences"]
    assert report["baselines"] == alone["baselines"]  # the same clips, hands and frames, with or without the model
    assert np.isfinite(report["mpjpe_mm"]) and set(report["baselines"]) == {"mean motion", "nearest neighbour"}
    table = format_table({"test_lab": report})
    assert [line.split(" | ")[1] for line in table.splitlines()[3:]] == ["JALA", "mean motion", "nearest neighbour"]


def test_table_prints_the_model_beside_both_baselines() -> None:
    metrics = {"mpjpe_mm": 90.0, "pa_mpjpe_mm": 10.0, "mwte_mm": 80.0, "mde_deg": 30.0, "mpjpe_se_mm": 4.0}
    report = {
        **metrics,
        "clips": 3,
        "baselines": {
            "mean motion": {**metrics, "mpjpe_mm": 120.0},
            "nearest neighbour": {**metrics, "mpjpe_mm": 150.0, "mpjpe_se_mm": float("nan")},
        },
    }
    table = format_table({"test_lab": report})
    assert "standard error over clips" in table.splitlines()[0]
    assert "| test_lab | JALA | 3 | 90.0 ± 4.0 | 0.75 | 10.0 | 80.0 | 30.0 |" in table
    assert "| test_lab | mean motion | 3 | 120.0 ± 4.0 | 1.00 |" in table
    assert "| test_lab | nearest neighbour | 3 | 150.0 | 1.25 |" in table


def test_model_card_shows_the_baselines_beside_the_model(tmp_path: Path) -> None:
    from tests.fixtures.tiny_jala import tiny_jala_config
    from trainers.model_card import write_jala_card

    metrics = {"mpjpe_mm": 130.0, "pa_mpjpe_mm": 10.0, "mwte_mm": 80.0, "mde_deg": 30.0, "mpjpe_se_mm": 4.0}
    report = {**metrics, "clips": 24, "baselines": {"mean motion": {**metrics, "mpjpe_mm": 100.0}}}
    history = [{"step": 1, "loss": 1.0}]
    card = write_jala_card(tmp_path, tiny_jala_config(), history, {"max_steps": 1}, {"test_wild": report}).read_text()
    assert "± = standard error over clips" in card
    assert "| test_wild | JALA | 24 | 130.0 ± 4.0 | 1.30 |" in card
    assert "| test_wild | mean motion | 24 | 100.0 ± 4.0 | 1.00 |" in card


def test_scored_clips_are_chosen_by_id_whatever_the_shard_layout(tmp_path: Path) -> None:
    """The same rows built with one shard per split and with four give the same scored clips, in id order, so a
    rebuild with another layout scores the same clips."""
    from dataset_scripts.builder import build_unihand
    from tests.fixtures.unihand_factory import FixtureSource

    chosen = []
    for shards in (1, 4):
        repo = tmp_path / f"shards_{shards}"
        source = FixtureSource(num_clips=16, seed=9, domain="lab", split="test_lab", image_size=16)
        build_unihand(repo, [source], shards_per_split=shards, progress=False, preview=False)
        ids = [row["id"] for row in labelled_rows(repo, "test_lab", 5)]
        assert ids == sorted(ids) and len(ids) == 5
        chosen.append(ids)
    assert chosen[0] == chosen[1]
    every_id = sorted(row["id"] for row in labelled_rows(tmp_path / "shards_4", "test_lab", 100))
    assert chosen[0] == every_id[:5]
