"""Shared fixtures: tiny real configs and procedural data written by the project's own generators."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch

# Tests never reach the Hub; everything is built locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
datasets.disable_progress_bars()

REPO_ROOT = Path(__file__).resolve().parent.parent

#: The paper's token layout (4 steps x 2 groups x 8 layers per part) at widths a CPU trains in seconds.
TINY_TOKENIZER = {"codebook_size": 64, "code_dim": 32, "hidden_size": 64, "num_res_blocks": 1}


@pytest.fixture
def single_torch_thread():
    """Tiny tensors run fastest on one thread; with several, a busy shared CPU makes each op wait for the others."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trained_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny tokenizer trained briefly through the real CLI (`python trainers/train_tokenizer.py`)."""
    output_dir = tmp_path_factory.mktemp("tokenizer")
    command = [
        sys.executable,
        str(REPO_ROOT / "trainers" / "train_tokenizer.py"),
        "--preset=tiny",
        "--max_steps=500",
        "--learning_rate=1e-3",
        "--warmup_steps=50",
        "--num_procedural_clips=200",
        "--num_eval_clips=30",
        "--log_every=50",
        f"--output_dir={output_dir}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return output_dir
