"""The grounding stand-in VLM (trainers/train_grounding_vlm.py): the image-token grid it supervises is the one
InternVL lays out, it learns a fixed batch, its folder loads as a standard VLM, and pretraining starts from it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

from modeling_jala.configuration_jala import JalaMotionTokenizerConfig
from tests.conftest import TINY_TOKENIZER
from trainers import train_grounding_vlm as grounding_vlm
from trainers.grounding_data import grid_cell, render_scenes


@pytest.fixture(scope="module")
def procedural_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fixtures.unihand_factory import procedural_repo as build

    return build(tmp_path_factory)


@pytest.fixture(scope="module")
def trained_folder(procedural_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    output = tmp_path_factory.mktemp("grounding_vlm_out") / "vlm"
    report = grounding_vlm.main(
        [
            f"--dataset={procedural_repo}",
            f"--output_dir={output}",
            "--scenes=4",
            "--max_steps=3",
            "--eval_every=2",
            "--eval_clips=2",
            "--batch_size=3",
        ]
    )
    return output, report


def test_image_tokens_follow_the_row_major_cell_grid() -> None:
    """After pixel shuffle, image token r * G + c holds the 2 x 2 patches of cell (r, c): what grid_cell indexes."""
    from trainers.presets import jala_structure

    config = jala_structure("tiny", 64, 3, JalaMotionTokenizerConfig()).vlm_config
    vlm = AutoModel.from_config(config)
    side = config.vision_config.image_size[0] // config.vision_config.patch_size[0]  # patches per side (8)
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    features = torch.stack([rows, cols], -1).float()[None]  # (1, side, side, 2): each patch says where it is
    tokens = vlm.pixel_shuffle(features, scale_factor=config.downsample_ratio).reshape(1, -1, 8)
    grid = side // 2
    for token in range(grid * grid):
        patch_rows, patch_cols = tokens[0, token, 0::2], tokens[0, token, 1::2]
        centre = np.array([(patch_cols.mean() + 0.5) / side, (patch_rows.mean() + 0.5) / side])
        assert grid_cell(centre, grid) == token


def test_image_token_states_are_gathered_in_order_and_counts_must_agree() -> None:
    states = torch.arange(2 * 5 * 1, dtype=torch.float32).view(2, 5, 1)
    input_ids = torch.tensor([[1, 9, 9, 2, 0], [9, 1, 9, 0, 0]])
    gathered = grounding_vlm.image_token_states(states, input_ids, image_token_id=9)
    assert gathered[..., 0].tolist() == [[1.0, 2.0], [5.0, 7.0]]
    with pytest.raises(ValueError, match="same, non-zero number of image tokens"):
        grounding_vlm.image_token_states(states, torch.tensor([[9, 9, 0, 0, 0], [9, 0, 0, 0, 0]]), image_token_id=9)


def test_the_trainer_fits_a_fixed_batch(procedural_repo: Path) -> None:
    torch.manual_seed(0)
    args = grounding_vlm.GroundingVlmArguments(dataset=[str(procedural_repo)])
    vlm, processor = grounding_vlm.build_vlm_and_processor(args)
    queries = [query for scene in render_scenes(2, seed=7, image_size=(64, 64)) for query in scene][:4]
    positions = np.stack([q.position for q in queries])
    trainer = grounding_vlm.GroundingTrainer(vlm, processor, positions.mean(0), positions.std(0) + 1e-3)
    texts = [f"the {q.colour} {q.kind}" for q in queries]
    optimizer = torch.optim.AdamW(trainer.parameters(), lr=1e-3)
    first = trainer.loss(queries, texts, position_weight=1.0)
    for _ in range(40):
        losses = trainer.loss(queries, texts, position_weight=1.0)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    last = trainer.loss(queries, texts, position_weight=1.0)
    assert last["cell_loss"] < 0.3 * first["cell_loss"] and last["position_loss"] < 0.3 * first["position_loss"]
    assert trainer.grid == 4  # 16 image tokens
    assert trainer.readout_layer == 2  # half of the tiny language model's 4 layers: 2 are left above the answer
    with pytest.raises(ValueError, match="--readout_layer must be in 1..4"):
        grounding_vlm.GroundingTrainer(vlm, processor, positions.mean(0), positions.std(0), readout_layer=5)


def test_each_query_is_answered_in_its_hands_slot() -> None:
    torch.manual_seed(0)
    heads = grounding_vlm.GroundingHeads(hidden_size=6, slots=2)
    states = torch.randn(3, 5, 6)
    scores, positions = heads(states)
    assert scores.shape == (3, 2, 5) and positions.shape == (3, 2, 3)
    # Each slot pools the states with its own scores: slot 1's position is read where slot 1 looks.
    weights = scores[:, 1].softmax(-1)
    torch.testing.assert_close(positions[:, 1], heads.position((weights.unsqueeze(-1) * states).sum(1)))


def test_the_folder_is_a_standard_vlm_with_its_tokenizer_and_image_processor(trained_folder) -> None:
    from modeling_jala.strict_loading_jala import strict_from_pretrained

    folder, report = trained_folder
    vlm = strict_from_pretrained(AutoModel, folder)
    assert type(vlm).__name__ == "InternVLModel"
    assert not list(folder.glob("*.bin")) and (folder / "model.safetensors").exists()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>") == vlm.config.image_token_id
    assert AutoImageProcessor.from_pretrained(folder).size["height"] == vlm.config.vision_config.image_size[0]
    record = json.loads((folder / "grounding_results.json").read_text())
    assert [point["step"] for point in record["evaluations"]] == [2, 3]
    for split in ("test_lab", "test_wild"):
        assert set(record["baselines"][split]) == {"global mean", "scene mean"}
        assert 0.0 <= record["evaluations"][-1][split]["cell_accuracy"] <= 1.0
    assert len(report["history"]) == 3 and (folder / "training_curve.png").exists()
    assert "| test_lab |" in (folder / "README.md").read_text()


def test_pretraining_starts_from_the_backbone_with_the_tiny_settings(
    trained_folder, procedural_repo, tmp_path
) -> None:
    from modeling_jala.motion_tokenizer_jala import JalaMotionTokenizer
    from trainers.presets import TINY_TRAINING_DEFAULTS
    from trainers.pretrain import build_model_and_processor, parse_arguments

    folder, _ = trained_folder
    JalaMotionTokenizer(JalaMotionTokenizerConfig(**TINY_TOKENIZER)).save_pretrained(tmp_path / "tokenizer")
    base = [f"--dataset={procedural_repo}", f"--motion_tokenizer={tmp_path / 'tokenizer'}", "--output_dir=out"]
    model_args, data_args, training_args, _ = parse_arguments(
        [*base, f"--backbone_name_or_path={folder}", "--structure=tiny"]
    )
    assert training_args.learning_rate == TINY_TRAINING_DEFAULTS["learning_rate"]
    model, processor = build_model_and_processor(model_args, data_args)
    backbone = AutoModel.from_pretrained(folder)
    loaded = model.model.vlm.state_dict()
    assert all(torch.equal(loaded[name], tensor) for name, tensor in backbone.state_dict().items())
    assert model.config.align_layer == 3 and model.config.backbone_name_or_path == str(folder)
    assert processor.tokenizer.get_vocab() == AutoTokenizer.from_pretrained(folder).get_vocab()
    # Without --structure a backbone is a released VLM: the paper's settings and optimisation.
    _, _, paper_args, _ = parse_arguments([*base, f"--backbone_name_or_path={folder}"])
    assert paper_args.learning_rate == 3e-5


def test_a_tokenizer_that_does_not_fit_the_backbone_is_refused(trained_folder) -> None:
    from trainers.pretrain import check_backbone_tokens

    folder, _ = trained_folder
    config = AutoModel.from_pretrained(folder).config
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config.image_token_id += 1
    with pytest.raises(ValueError, match="leave --processor_name_or_path out"):
        check_backbone_tokens(config, tokenizer, str(folder))
