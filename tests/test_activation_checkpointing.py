"""Selective activation checkpointing (transformers' `every_n_layers`, e.g. `--activation_checkpointing
--activation_checkpointing_kwargs '{"every_n_layers": 2}'`) on JALA: exactly every n-th layer recomputes its forward
in the backward pass, and the loss and gradients equal those without checkpointing, for the pretraining and the
action model."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
import torch
from transformers.modeling_layers import GradientCheckpointingLayer

from modeling_jala.modeling_jala import JalaForMotionPretraining
from tests.fixtures.tiny_jala import tiny_jala_config
from tests.test_jala_model import make_batch
from tests.test_posttrain import batch as action_batch
from tests.test_posttrain import tiny_action_model


def _pretraining() -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(0)
    return JalaForMotionPretraining(tiny_jala_config()), make_batch()


def _action() -> tuple[torch.nn.Module, dict]:
    return tiny_action_model(), action_batch()


def train_step(model: torch.nn.Module, batch: dict) -> tuple[float, dict[str, torch.Tensor], Counter]:
    """Loss, gradients, and how often the insides of each GradientCheckpointingLayer ran (twice as often when it is
    recomputed; the layer's own hooks sit outside the checkpoint, so its children are counted)."""
    calls: Counter = Counter()
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    hooks = [
        child.register_forward_hook(lambda module, args, output, index=index: calls.update([index]))
        for index, layer in enumerate(layers)
        for child in layer.children()
    ]
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the masking / noise draws
    loss = model(**batch).loss
    loss.backward()
    for hook in hooks:
        hook.remove()
    gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), gradients, calls


@pytest.mark.parametrize("build", [_pretraining, _action], ids=["pretraining", "action"])
@pytest.mark.parametrize("every_n_layers", [1, 2])
def test_every_nth_layer_recomputes_and_training_is_unchanged(
    build: Callable[[], tuple[torch.nn.Module, dict]], every_n_layers: int
) -> None:
    model, batch = build()
    model.train()
    reference_loss, reference, plain_calls = train_step(model, batch)

    model.activation_checkpointing_enable(every_n_layers=every_n_layers)
    layers = [module for module in model.modules() if isinstance(module, GradientCheckpointingLayer)]
    flags = [module.gradient_checkpointing for module in layers]
    assert flags == [index % every_n_layers == 0 for index in range(len(layers))]
    decoder = [m.gradient_checkpointing for m in layers if type(m).__name__ == "Qwen2DecoderLayer"]
    assert any(decoder) and (every_n_layers == 1) == all(decoder)  # the language model's layers are among them

    loss, gradients, calls = train_step(model, batch)
    # A checkpointed layer on the gradient path runs its forward twice; the others, and frozen ones, once.
    recomputed = {index for index in calls if calls[index] == 2 * plain_calls[index]}
    assert recomputed and recomputed <= {index for index, flag in enumerate(flags) if flag}
    assert loss == pytest.approx(reference_loss, rel=1e-6)
    assert gradients.keys() == reference.keys() and len(gradients) > 20
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, reference[name], rtol=1e-5, atol=1e-7, msg=name)

    model.activation_checkpointing_disable()
    assert not any(module.gradient_checkpointing for module in layers)
