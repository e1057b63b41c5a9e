"""Folders that can be published as they are: the `evaluate` metric loads where this repository is not importable,
and (below) trained output folders hold no pickle and no local path, with Hub metadata in their cards."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

METRIC_FOLDER = REPO_ROOT / "trainers" / "metrics" / "jala_hand_motion"
#: What a Hub Space of the metric may import: the standard library modules used, numpy, datasets and evaluate.
METRIC_IMPORTS = {"__future__", "logging", "math", "typing", "numpy", "datasets", "evaluate"}

#: Run in a fresh interpreter: the repository's packages made unimportable (also through the editable install),
#: the metric folder loaded with `evaluate.load`, its results printed as JSON.
STANDALONE_METRIC = """
import json, sys
for package in ("trainers", "modeling_jala", "dataset_scripts"):
    sys.modules[package] = None  # `import trainers` now raises ImportError
import evaluate
import numpy as np

data = np.load(sys.argv[2])
lengths = data["lengths"].tolist()
metric = evaluate.load(sys.argv[1], keep_in_memory=True)
results = metric.compute(
    predictions=[data["pred"][i, :n] for i, n in enumerate(lengths)],
    references=[data["target"][i, :n] for i, n in enumerate(lengths)],
)
print(json.dumps(results))
"""


def test_metric_module_imports_only_numpy_datasets_and_evaluate() -> None:
    """A Space's requirements are what the two files import; relative imports are files of the folder."""
    imported: set[str] = set()
    for path in (METRIC_FOLDER / "jala_hand_motion.py", METRIC_FOLDER / "hand_motion_math.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.ImportFrom):
                assert (METRIC_FOLDER / f"{node.module}.py").exists(), node.module
    assert imported <= METRIC_IMPORTS, imported - METRIC_IMPORTS


def test_metric_folder_loads_with_evaluate_where_the_repository_is_not_importable(tmp_path: Path) -> None:
    import torch

    from trainers.metrics.hand_motion import hand_motion_metrics

    rng = np.random.default_rng(0)
    target = 0.05 * rng.standard_normal((3, 6, 21, 3)) + 0.02 * np.arange(6)[None, :, None, None]
    pred = target + 0.004 * rng.standard_normal(target.shape)
    lengths = np.array([6, 2, 4])
    mask = np.arange(6)[None, :] < lengths[:, None]
    expected = hand_motion_metrics(torch.as_tensor(pred), torch.as_tensor(target), torch.as_tensor(mask))
    np.savez(tmp_path / "example.npz", pred=pred, target=target, lengths=lengths)

    # A copy of the folder alone, as a Space download would give it; nothing of the repository beside it.
    folder = tmp_path / "jala_hand_motion"
    shutil.copytree(METRIC_FOLDER, folder, ignore=shutil.ignore_patterns("__pycache__"))
    environment = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "HF_HOME": str(tmp_path / "hf_home"),
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-I", "-c", STANDALONE_METRIC, str(folder), str(tmp_path / "example.npz")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    assert results == pytest.approx(expected, rel=1e-12, abs=1e-9)
    assert results["mpjpe_mm"] > 1.0  # a real error, so a wrong mask or padding would show
