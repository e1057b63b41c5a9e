"""Regional compilation of the language model's decoder layers (`compile_decoder_layers`, `--compile_decoder_layers`):
every layer compiled in place, the same loss and gradients as eager, and unchanged saving and strict loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modeling_jala.modeling_jala import JalaForMotionPretraining
from tests.fixtures.tiny_jala import tiny_jala_config
from tests.test_activation_checkpointing import train_step
from tests.test_jala_model import make_batch


def test_compiled_decoder_layers_train_as_eager_and_save_the_same_keys(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = JalaForMotionPretraining(tiny_jala_config()).train()
    batch = make_batch()
    reference_loss, reference, _ = train_step(model, batch)
    keys = set(model.state_dict())

    layers = model.model.language_model.layers
    assert model.compile_decoder_layers(backend="aot_eager") == len(layers) > 1
    assert all(layer._compiled_call_impl is not None for layer in layers)
    loss, gradients, _ = train_step(model, batch)
    assert loss == pytest.approx(reference_loss, rel=1e-6)
    assert gradients.keys() == reference.keys()
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, reference[name], rtol=1e-5, atol=1e-6, msg=name)

    assert set(model.state_dict()) == keys  # in-place compilation adds no wrapper prefix
    model.save_pretrained(tmp_path / "compiled")
    reloaded = JalaForMotionPretraining.from_pretrained(tmp_path / "compiled")
    for name, tensor in reloaded.state_dict().items():
        torch.testing.assert_close(tensor, model.state_dict()[name], msg=name)
