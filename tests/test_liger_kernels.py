"""`--use_liger_kernel` reaches JALA's Qwen2 language model: `apply_liger_kernels` hands liger-kernel exactly that
module with the LM-head loss kernels off, refuses clearly without a GPU or with another backbone, and the trainers'
mixin applies it (with the config keys that make sense) before training starts. liger-kernel's Triton kernels need a
CUDA GPU, so here a stand-in module records the call; the kernels' numbers are checked on the GPU by
`benchmarks/pretrain_throughput.py --liger` (first-step loss beside the reference rows)."""

from __future__ import annotations

import logging
import sys
import types
from types import SimpleNamespace

import pytest
import torch

from modeling_jala.modeling_jala import JalaForMotionPretraining
from tests.fixtures.tiny_jala import tiny_jala_config
from trainers.training_common import LigerKernelMixin, apply_liger_kernels_from_config


@pytest.fixture
def liger_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """A stand-in `liger_kernel.transformers` that records each `apply_liger_kernel_to_qwen2` call, on a machine
    that claims a GPU."""
    calls: list[dict] = []
    package = types.ModuleType("liger_kernel")
    transformers_module = types.ModuleType("liger_kernel.transformers")
    transformers_module.apply_liger_kernel_to_qwen2 = lambda **kwargs: calls.append(kwargs)
    package.transformers = transformers_module
    monkeypatch.setitem(sys.modules, "liger_kernel", package)
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", transformers_module)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return calls


def _model() -> JalaForMotionPretraining:
    torch.manual_seed(0)
    return JalaForMotionPretraining(tiny_jala_config())


def test_the_qwen2_language_model_is_patched_without_the_lm_head_loss_kernels(liger_calls: list[dict]) -> None:
    model = _model()
    patched = model.apply_liger_kernels(swiglu=False)
    assert patched == len(model.model.language_model.layers) > 0
    (call,) = liger_calls
    assert call["model"] is model.model.language_model
    assert (call["rope"], call["rms_norm"], call["swiglu"]) == (True, True, False)
    assert call["cross_entropy"] is False and call["fused_linear_cross_entropy"] is False


def test_no_gpu_or_another_backbone_is_a_clear_error(liger_calls: list[dict], monkeypatch) -> None:
    model = _model()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="need a CUDA GPU.*drop --use_liger_kernel"):
        model.apply_liger_kernels()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(model.config.vlm_config.get_text_config(), "model_type", "llama")
    with pytest.raises(ValueError, match="Qwen2 language model.*'llama'"):
        model.apply_liger_kernels()
    assert liger_calls == []


def test_missing_package_names_the_install(liger_calls: list[dict], monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", None)  # import fails
    with pytest.raises(ImportError, match="pip install liger-kernel"):
        _model().apply_liger_kernels()


def test_trainer_mixin_applies_the_kernels_before_training_with_the_keys_that_apply(
    liger_calls: list[dict], caplog
) -> None:
    order: list[str] = []

    class RecordingTrainer:
        def train(self, *args: object, **kwargs: object) -> str:
            order.append("train")
            return "trained"

    class Trainer(LigerKernelMixin, RecordingTrainer):
        def __init__(self, model: torch.nn.Module, **arguments: object) -> None:
            self.model, self.args = model, SimpleNamespace(**arguments)

    model = _model()
    original = model.apply_liger_kernels
    model.apply_liger_kernels = lambda **kwargs: order.append("liger") or original(**kwargs)
    config = {"swiglu": False, "fused_linear_cross_entropy": True}
    with caplog.at_level(logging.WARNING, logger="trainers.training_common"):
        assert Trainer(model, use_liger_kernel=True, liger_kernel_config=config).train() == "trained"
    assert order == ["liger", "train"]
    assert liger_calls[0]["swiglu"] is False and liger_calls[0]["fused_linear_cross_entropy"] is False
    assert "fused_linear_cross_entropy" in caplog.text
    Trainer(model, use_liger_kernel=False, liger_kernel_config=None).train()
    assert order == ["liger", "train", "train"] and len(liger_calls) == 1


def test_config_keys_reach_the_model_as_booleans(liger_calls: list[dict]) -> None:
    model = _model()
    apply_liger_kernels_from_config(model, {"rope": 0, "rms_norm": 1})
    assert (liger_calls[0]["rope"], liger_calls[0]["rms_norm"], liger_calls[0]["swiglu"]) == (False, True, True)
