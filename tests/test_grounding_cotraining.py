"""Grounding co-training (trainers/grounding_cotraining.py): its loss is the stand-in's, weighted; its heads train
with the model but are not saved; pretraining with it logs both terms and scores grounding at the end."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainingArguments

from modeling_jala.configuration_jala import JalaMotionTokenizerConfig
from modeling_jala.motion_tokenizer_jala import JalaMotionTokenizer
from tests.conftest import TINY_TOKENIZER
from trainers import train_grounding_vlm as grounding_vlm
from trainers.grounding_cotraining import GroundingCoTraining
from trainers.grounding_data import render_scenes
from trainers.jala_trainer import JalaPretrainTrainer


@pytest.fixture(scope="module")
def procedural_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fixtures.unihand_factory import procedural_repo as build

    return build(tmp_path_factory)


@pytest.fixture(scope="module")
def vlm_and_processor(procedural_repo: Path):
    torch.manual_seed(0)
    return grounding_vlm.build_vlm_and_processor(grounding_vlm.GroundingVlmArguments(dataset=[str(procedural_repo)]))


def test_the_query_sampler_is_reproducible_and_names_objects_of_drawn_scenes() -> None:
    scenes = render_scenes(3, seed=11, image_size=(64, 64))
    first, texts = grounding_vlm.QuerySampler(scenes, batch_size=5, seed=4)()
    again, texts_again = grounding_vlm.QuerySampler(scenes, batch_size=5, seed=4)()
    assert texts == texts_again and [q.kind for q in first] == [q.kind for q in again]
    assert len(first) == 5 and all(any(q in scene for scene in scenes) for q in first)
    assert all(text.startswith(f"the {q.colour} ") for q, text in zip(first, texts, strict=True))


def test_the_loss_is_the_weighted_stand_in_loss_and_reaches_the_vlm(vlm_and_processor) -> None:
    vlm, processor = vlm_and_processor
    cotraining = GroundingCoTraining(vlm, processor, weight=2.0, scenes=2, batch_size=3, seed=0)
    terms = cotraining.losses()
    expected = 2.0 * (terms["grounding_cell_loss"] + terms["grounding_position_loss"])
    assert torch.allclose(terms["loss"], expected)
    terms["loss"].backward()
    assert vlm.language_model.layers[0].self_attn.q_proj.weight.grad is not None
    # The heads read half-way up: the layers above the readout get no gradient from grounding.
    assert vlm.language_model.layers[-1].self_attn.q_proj.weight.grad is None
    assert all(parameter.grad is not None for parameter in cotraining.parameters())
    with pytest.raises(ValueError, match="--grounding_weight must be > 0"):
        GroundingCoTraining(vlm, processor, weight=0.0, scenes=2)


def test_instruction_grounding_answers_each_hand_in_its_own_slot(vlm_and_processor) -> None:
    vlm, processor = vlm_and_processor
    cotraining = GroundingCoTraining(vlm, processor, weight=1.0, scenes=6, batch_size=8, seed=1)
    queries, texts = cotraining.sample()
    assert all(query.text == text for query, text in zip(queries, texts, strict=True))  # prompts are instructions
    assert {query.hand for query in queries} == {0, 1}
    with torch.no_grad():
        cotraining.trainer.heads.score.weight[0] = 0.0  # slot 0 (left hand) scores every token 0
        cotraining.trainer.heads.score.bias[0] = 0.0
        scores, _ = cotraining.trainer.forward(queries, texts)
    for query, row in zip(queries, scores, strict=True):
        assert bool((row == 0).all()) == (query.hand == 0)
    phrase_task = GroundingCoTraining(vlm, processor, weight=1.0, scenes=2, task="phrase")
    assert phrase_task.trainer.heads.score.out_features == 1 and phrase_task.sample()[0][0].text is None
    with pytest.raises(ValueError, match="--grounding_task must be one of"):
        GroundingCoTraining(vlm, processor, weight=1.0, scenes=2, task="boxes")


def test_the_heads_join_the_optimizer(vlm_and_processor, tmp_path: Path) -> None:
    vlm, processor = vlm_and_processor
    cotraining = GroundingCoTraining(vlm, processor, weight=1.0, scenes=2, batch_size=2)
    trainer = JalaPretrainTrainer(
        model=vlm, args=TrainingArguments(output_dir=str(tmp_path), report_to=[]), auxiliaries=[cotraining]
    )
    optimizer = trainer.create_optimizer()
    optimised = {id(parameter) for group in optimizer.param_groups for parameter in group["params"]}
    assert {id(parameter) for parameter in cotraining.parameters()} <= optimised
    assert sum(len(group["params"]) for group in trainer.create_optimizer().param_groups) == len(optimised)


def test_auxiliaries_are_refused_in_a_distributed_run(vlm_and_processor, tmp_path: Path) -> None:
    """The heads sit outside DDP's gradient all-reduce, so several processes would train diverging copies."""
    vlm, processor = vlm_and_processor
    cotraining = GroundingCoTraining(vlm, processor, weight=1.0, scenes=2, batch_size=2)
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[])
    with mock.patch.object(TrainingArguments, "world_size", new_callable=mock.PropertyMock, return_value=2):
        with pytest.raises(ValueError, match="single process only.*2 processes.*--grounding_weight"):
            JalaPretrainTrainer(model=vlm, args=args, auxiliaries=[cotraining])
        JalaPretrainTrainer(model=vlm, args=args)  # without auxiliaries a distributed run is fine


def test_pretraining_with_auxiliaries_logs_them_scores_grounding_and_saves_only_the_model(
    procedural_repo: Path, tmp_path: Path
) -> None:
    from trainers import pretrain

    JalaMotionTokenizer(JalaMotionTokenizerConfig(**TINY_TOKENIZER)).save_pretrained(tmp_path / "tokenizer")
    output = tmp_path / "jala"
    pretrain.main(
        [
            f"--dataset={procedural_repo}",
            f"--motion_tokenizer={tmp_path / 'tokenizer'}",
            f"--output_dir={output}",
            "--per_device_train_batch_size=2",
            "--max_chunks=2",
            "--shuffle_buffer_size=8",
            "--max_steps=2",
            "--logging_steps=1",
            "--save_strategy=no",
            "--eval_strategy=no",
            "--report_to=none",
            "--grounding_weight=1",
            "--grounding_scenes=2",
            "--grounding_batch_size=2",
            "--waypoint_weight=0.5",
        ]
    )
    logged = json.loads((output / "training_log.json").read_text())[0]
    assert {"grounding_cell_loss", "grounding_position_loss", "waypoint_loss", "mcp_loss"} <= set(logged)
    # The optimised loss is JALA's hybrid loss plus the grounding terms (weight 1) and the waypoint term (0.5).
    jala_loss = logged["mcp_loss"] + 0.5 * logged["align_loss"]
    grounding = logged["grounding_cell_loss"] + logged["grounding_position_loss"]
    assert logged["loss"] == pytest.approx(jala_loss + grounding + 0.5 * logged["waypoint_loss"], abs=1e-3)
    scores = json.loads((output / "grounding_results.json").read_text())
    assert set(scores) == {"test_lab", "test_wild"} and 0.0 <= scores["test_lab"]["cell_accuracy"] <= 1.0
    saved = load_file(output / "model.safetensors")
    assert not any(name.startswith(("score.", "position.")) or ".heads." in name for name in saved)
    from modeling_jala.modeling_jala import JalaForMotionPretraining

    JalaForMotionPretraining.from_pretrained(output)  # strict: the saved tensors are exactly the model's
