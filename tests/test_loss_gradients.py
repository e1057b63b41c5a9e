"""trainers/loss_gradients.py: where L_MCP and λ·L_align send gradient, on a tiny model and fixture data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modeling_jala.modeling_jala import JalaForMotionPretraining
from tests.fixtures.tiny_jala import tiny_jala_config, tiny_processor
from trainers.loss_gradients import group_of, loss_gradient_norms


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fixtures.unihand_factory import FixtureSource, cached_repo

    sources = [FixtureSource(num_clips=8, seed=7, domain="lab", split="train", image_size=32)]
    return cached_repo(tmp_path_factory, "loss_gradients", sources, preview=False)


def test_groups_name_the_parts_alignment_can_reach() -> None:
    assert group_of("model.vlm.language_model.layers.3.mlp.up_proj.weight") == "decoder layer 3"
    assert group_of("model.lap.queries") == "LAP queries"
    assert group_of("model.lap.blocks.0.mlp.0.weight") == "other"  # the EMA trunk never gets a gradient anyway
    assert group_of("motion_heads.weight") == "motion heads"


def test_alignment_reaches_only_what_lies_below_its_layer(repo: Path) -> None:
    torch.manual_seed(0)
    model = JalaForMotionPretraining(tiny_jala_config())  # 4 decoder layers, h after layer 2
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    report = loss_gradient_norms(model, tiny_processor(), [repo], batches=2, batch_size=2, max_chunks=2)
    assert report["decoder layer 0"]["align"] > 0 and report["decoder layer 1"]["align"] > 0
    for layer in (2, 3):  # layers past h (layer index >= align_layer) see no alignment gradient
        assert report[f"decoder layer {layer}"]["align"] == pytest.approx(0.0, abs=1e-7)
    assert report["motion heads"]["align"] == pytest.approx(0.0, abs=1e-7) and report["motion heads"]["mcp"] > 0
    assert report["LAP queries"]["align"] > 0 and report["LAP queries"]["mcp"] == pytest.approx(0.0, abs=1e-7)
    assert report["decoder layer 0"]["ratio"] == pytest.approx(
        report["decoder layer 0"]["align"] / report["decoder layer 0"]["mcp"]
    )
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert all(parameter.grad is None for parameter in model.parameters())
    assert model.config.align_weight == 0.5


def test_without_alignment_there_is_only_the_masked_chunk_term(repo: Path) -> None:
    torch.manual_seed(0)
    model = JalaForMotionPretraining(tiny_jala_config(variant="wo_align", align_weight=0.0))
    report = loss_gradient_norms(model, tiny_processor(), [repo], batches=1, batch_size=2, max_chunks=2)
    assert all(set(values) == {"mcp"} for values in report.values())
