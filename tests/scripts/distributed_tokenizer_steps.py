"""Run under `accelerate launch --num_processes 2`: a few DDP training steps of a tiny tokenizer, each rank on
different data, then every rank writes its full state dict so the test can compare them."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from modeling_jala.configuration_jala import JalaMotionTokenizerConfig
from modeling_jala.motion_tokenizer_jala import JalaMotionTokenizer
from tests.conftest import TINY_TOKENIZER
from trainers.accelerator_setup import make_accelerator


def main(output_dir: Path) -> None:
    accelerator = make_accelerator()
    assert accelerator.num_processes == 2, accelerator.num_processes
    torch.manual_seed(0)  # same initial weights on both ranks, as DDP expects
    # Codes start at the expected usage; a dead-code fraction near 1, checked every other step, makes every code
    # that was not used at both steps dead, so restarts (and their broadcast) happen during these few steps too.
    config = JalaMotionTokenizerConfig(**TINY_TOKENIZER, dead_code_usage_fraction=0.99, dead_code_restart_every=2)
    model = JalaMotionTokenizer(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, optimizer = accelerator.prepare(model, optimizer)
    data_generator = torch.Generator().manual_seed(100 + accelerator.process_index)  # different data per rank
    model.train()
    for _ in range(4):
        motion = 0.1 * torch.randn(8, 1, 15, 162, generator=data_generator)
        output = model(motion, handedness=("right",))
        accelerator.backward(output.loss)
        optimizer.step()
        optimizer.zero_grad()
    unwrapped = accelerator.unwrap_model(model)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in unwrapped.state_dict().items()}
    restarts = sum(book.restarts_total for part in unwrapped.parts for book in part.quantizer.codebooks)
    state["restarts_total"] = torch.tensor(restarts)
    save_file(state, output_dir / f"rank{accelerator.process_index}.safetensors")
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
