"""The block-causal pattern as a FlexAttention BlockMask equals the dense reference mask, in the mask itself and in
every model path that uses it: training forward, cached motion generation and the action model's readout.

On CPU the flex path runs flex_attention eagerly (attention_jala.py says why), so these checks are quick.
"""

from __future__ import annotations

import pytest
import torch

from modeling_jala.attention_jala import (
    FLEX_ATTENTION,
    block_causal_block_mask,
    block_causal_mask,
    sequence_attention_mask,
)
from modeling_jala.modeling_jala import JalaForMotionPretraining
from tests.fixtures.tiny_jala import tiny_jala_config
from tests.test_jala_model import make_batch

flex_attention = pytest.importorskip("torch.nn.attention.flex_attention")


def _random_pattern(seed: int, batch: int = 3, length: int = 150, queries: int | None = None):
    """Non-decreasing block ids (a causal prefix, then blocks of random size), invalid keys at random (padding,
    absent hands)."""
    generator = torch.Generator().manual_seed(seed)
    steps = (torch.rand(batch, length, generator=generator) < 0.15).long()
    steps[:, :20] = 1  # a causal prefix: one block per token
    block_ids = steps.cumsum(-1)
    key_valid = torch.rand(batch, length, generator=generator) > 0.2
    query_block_ids = None if queries is None else block_ids[:, -queries:]
    return block_ids, key_valid, query_block_ids


@pytest.mark.parametrize(("seed", "queries"), [(0, None), (1, None), (2, 37), (3, 1)])
def test_the_block_mask_encodes_exactly_the_dense_pattern(seed: int, queries: int | None) -> None:
    block_ids, key_valid, query_block_ids = _random_pattern(seed, queries=queries)
    dense_allowed = block_causal_mask(block_ids, key_valid, torch.float32, query_block_ids)[:, 0] == 0
    block_mask = block_causal_block_mask(block_ids, key_valid, query_block_ids)
    batch, num_queries, num_keys = dense_allowed.shape
    assert block_mask.shape == (batch, 1, num_queries, num_keys)
    flex_allowed = flex_attention.create_mask(block_mask.mask_mod, batch, 1, num_queries, num_keys, device="cpu")
    assert torch.equal(flex_allowed[:, 0], dense_allowed)
    # Every query sees itself (no all-masked softmax row), even at an invalid key.
    assert dense_allowed[:, torch.arange(num_queries), torch.arange(num_queries) + num_keys - num_queries].all()


def test_an_unknown_format_is_an_error_naming_the_choices() -> None:
    block_ids, key_valid, _ = _random_pattern(0)
    with pytest.raises(ValueError, match="dense"):
        sequence_attention_mask("sparse", block_ids, key_valid, torch.float32)
    with pytest.raises(Exception, match="block_causal_attention"):
        tiny_jala_config(block_causal_attention="sparse")


@pytest.fixture(scope="module")
def dense_and_flex() -> tuple[JalaForMotionPretraining, JalaForMotionPretraining]:
    torch.manual_seed(0)
    dense = JalaForMotionPretraining(tiny_jala_config()).eval()
    flex = JalaForMotionPretraining(tiny_jala_config(block_causal_attention="flex")).eval()
    flex.load_state_dict(dense.state_dict(), strict=True)
    assert flex.model.language_model.config._attn_implementation == FLEX_ATTENTION
    assert dense.model.language_model.config._attn_implementation != FLEX_ATTENTION
    return dense, flex


def test_training_forward_is_the_same_with_the_block_mask(dense_and_flex) -> None:
    dense, flex = dense_and_flex
    batch = make_batch(batch=2, chunks=3, seed=4, labelled=(True, False))
    batch["hands_present"] = torch.tensor([[True, False], [True, True]])  # an absent hand: keys hidden from all
    batch["attention_mask"][1, :2] = 0  # left padding in the prefix
    batch["input_ids"][1, :2] = 0
    placeholders = torch.rand(2, 3, 2, batch["motion_token_ids"].shape[-1], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = dense(**batch, placeholder_slots=placeholders < 0.5)
        outputs = flex(**batch, placeholder_slots=placeholders < 0.5)
    torch.testing.assert_close(outputs.predictive_embeddings, reference.predictive_embeddings, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(outputs.mcp_loss, reference.mcp_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outputs.align_loss, reference.align_loss, atol=1e-5, rtol=1e-5)


def test_cached_generation_is_the_same_with_the_block_mask(dense_and_flex) -> None:
    dense, flex = dense_and_flex
    batch = make_batch(batch=1, chunks=2, seed=5, labelled=(True,))
    inputs = {
        "input_ids": batch["input_ids"],
        "pixel_values": batch["pixel_values"],
        "ssl_pixel_values": batch["ssl_pixel_values"][:, :1],
        "num_chunks": 2,
        "strategy": "sample",
        "decoding_steps": 2,
        "ensemble": 1,
    }
    with torch.no_grad():
        reference = dense.generate_motion(**inputs, generator=torch.Generator().manual_seed(0))
        generated = flex.generate_motion(**inputs, generator=torch.Generator().manual_seed(0))
    assert torch.equal(generated.token_ids, reference.token_ids)
    torch.testing.assert_close(generated.motion, reference.motion, atol=1e-5, rtol=1e-4)


def test_the_action_readout_is_the_same_with_the_block_mask() -> None:
    pytest.importorskip("diffusers")
    from modeling_jala.modeling_jala_action import JalaForActionPrediction

    torch.manual_seed(0)
    head = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "readout_chunks": 1}
    dense = JalaForActionPrediction(JalaForActionPrediction.config_for_actions(tiny_jala_config(), head)).eval()
    flex_config = JalaForActionPrediction.config_for_actions(tiny_jala_config(block_causal_attention="flex"), head)
    flex = JalaForActionPrediction(flex_config).eval()
    flex.load_state_dict(dense.state_dict(), strict=True)
    batch = make_batch(batch=2, chunks=1, seed=6)
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "pixel_values")}
    inputs["ssl_pixel_values"] = batch["ssl_pixel_values"][:, :1]
    with torch.no_grad():
        torch.testing.assert_close(
            flex.predictive_embeddings(**inputs), dense.predictive_embeddings(**inputs), atol=1e-5, rtol=1e-4
        )


def test_training_gradients_are_the_same_with_the_block_mask() -> None:
    torch.manual_seed(0)
    dense = JalaForMotionPretraining(tiny_jala_config())
    flex = JalaForMotionPretraining(tiny_jala_config(block_causal_attention="flex"))
    flex.load_state_dict(dense.state_dict(), strict=True)
    batch = make_batch(batch=2, chunks=2, seed=7, labelled=(True, False))
    placeholders = torch.rand(2, 2, 2, batch["motion_token_ids"].shape[-1], generator=torch.Generator().manual_seed(2))
    for model in (dense, flex):
        model.train()
        model(**batch, placeholder_slots=placeholders < 0.5).loss.backward()
    layer = "model.vlm.language_model.layers.0.self_attn.q_proj.weight"
    gradients = {name: parameter.grad for name, parameter in flex.named_parameters() if parameter.grad is not None}
    assert layer in gradients
    for name, parameter in dense.named_parameters():
        if parameter.grad is not None:
            torch.testing.assert_close(gradients[name], parameter.grad, atol=1e-5, rtol=1e-4, msg=name)
