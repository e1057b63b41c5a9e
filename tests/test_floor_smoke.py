"""The dependency-floor smoke script (tests/scripts/floor_smoke.py) run in the project venv.

`.ci/check_floors` runs it against the declared floors; running it here too keeps it in step with the model code,
so a change that breaks the script shows up in `make test`, not only in the slower floor check."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "tests" / "scripts" / "floor_smoke.py"


@pytest.mark.slow
def test_floor_smoke_builds_and_checks_in_the_project_venv(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}
    data = tmp_path / "data"
    build = subprocess.run(
        [sys.executable, str(SCRIPT), "build", str(data)], capture_output=True, text=True, env=env, timeout=600
    )
    assert build.returncode == 0, build.stderr[-5000:]
    space = ["--space"] if importlib.util.find_spec("gradio") else []
    check = subprocess.run(
        [sys.executable, str(SCRIPT), "check", str(data), *space],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-5000:]
    assert "floor smoke passed" in check.stdout
    assert "outputs match the build venv's" in check.stdout
