"""FSDP2 with the wrapping units of `trainers/configs/fsdp.yaml`: on two CPU ranks (gloo), a sharded JALA gives the
unsharded model's loss, gradients, optimizer step and decoupled EMA. The EMA runs on each rank's parameter shards,
which is exact only because it is elementwise; this checks it, and that every class the config names exists in the
model (a renamed layer class would otherwise leave it unwrapped, silently)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from modeling_jala.modeling_jala import JalaForMotionPretraining
from tests.fixtures.tiny_jala import tiny_jala_config
from tests.test_jala_model import make_batch

FSDP_CONFIG = Path(__file__).resolve().parent.parent / "trainers" / "configs" / "fsdp.yaml"
WORLD_SIZE = 2


def wrapped_class_names() -> list[str]:
    config = yaml.safe_load(FSDP_CONFIG.read_text())["fsdp_config"]
    assert config["fsdp_version"] == 2
    return config["fsdp_transformer_layer_cls_to_wrap"].split(",")


def _full(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def _one_step(model: torch.nn.Module) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and gradients of one step on the shared batch, then an SGD step and the EMA."""
    torch.manual_seed(1)  # the masking / noise draws
    loss = model(**make_batch()).loss
    loss.backward()
    gradients = {name: _full(p.grad).clone() for name, p in model.named_parameters() if p.grad is not None}
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5).step()
    model.ema_step()
    return float(loss.detach()), gradients


def _rank(rank: int, port: int, results: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)
    try:
        from torch.distributed.fsdp import fully_shard

        torch.manual_seed(0)
        reference = JalaForMotionPretraining(tiny_jala_config()).train()
        model = JalaForMotionPretraining(tiny_jala_config()).train()
        model.load_state_dict(reference.state_dict())
        initial = {name: value.detach().clone() for name, value in reference.state_dict().items()}
        names = wrapped_class_names()
        units = [module for module in model.modules() if type(module).__name__ in names]
        classes = sorted({type(module).__name__ for module in units})  # fully_shard renames them FSDP<class>
        for module in units:
            fully_shard(module)
        fully_shard(model)
        loss, gradients = _one_step(model)
        reference_loss, reference_gradients = _one_step(reference)
        state = {name: _full(value).detach().clone() for name, value in model.state_dict().items()}
        if rank == 0:
            torch.save(
                {
                    "classes": classes,
                    "sharded": any(hasattr(p, "full_tensor") for p in model.parameters()),
                    "loss": (loss, reference_loss),
                    "gradient_error": max(
                        float((gradients[name] - expected).abs().max())
                        for name, expected in reference_gradients.items()
                    ),
                    "gradient_names": (sorted(gradients), sorted(reference_gradients)),
                    "state_error": max(
                        float((state[name].float() - value.float()).abs().max())
                        for name, value in reference.state_dict().items()
                    ),
                    "ema_moved": float(
                        sum((state[name].float() - value.float()).abs().sum() for name, value in initial.items())
                    ),
                },
                results,
            )
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built in")
def test_sharded_training_step_and_ema_equal_the_unsharded_model(tmp_path: Path) -> None:
    results = tmp_path / "rank0.pt"
    mp.spawn(_rank, args=(_free_port(), results), nprocs=WORLD_SIZE, join=True)
    report = torch.load(results, weights_only=True)
    assert report["classes"] == sorted(wrapped_class_names())  # every configured unit exists and was sharded
    assert report["sharded"]
    loss, reference_loss = report["loss"]
    assert loss == pytest.approx(reference_loss, rel=1e-5)
    assert report["gradient_names"][0] == report["gradient_names"][1]
    assert report["gradient_error"] < 1e-5
    assert report["state_error"] < 1e-5  # after the optimizer step and the decoupled EMA
    assert report["ema_moved"] > 0  # the step changed the weights, so the comparison above can fail
