"""One way to build the `Accelerator` for every JALA entry point.

`accelerate launch --multi_gpu --num_processes N` starts N processes through torchrun. On a machine without CUDA,
a plain `Accelerator()` then silently runs N independent single-process trainings; asking for the CPU backend
makes them one gloo process group instead, which is what a CPU multi-process launch means. A launch that still
ends up undistributed is an error rather than N copies of the same run.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from accelerate import Accelerator


def launched_world_size() -> int:
    """Processes the launcher started (torchrun sets WORLD_SIZE), 1 for a plain `python script.py`."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def make_accelerator(**kwargs: Any) -> Accelerator:
    if launched_world_size() > 1 and not torch.cuda.is_available():
        kwargs.setdefault("cpu", True)
    accelerator = Accelerator(**kwargs)
    if accelerator.num_processes != launched_world_size():
        raise RuntimeError(
            f"the launcher started {launched_world_size()} processes but accelerate formed a group of "
            f"{accelerator.num_processes}; on CPU launch with `accelerate launch --multi_gpu --num_processes N`."
        )
    return accelerator
