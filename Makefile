# Two entry points (see README): `make quickstart` runs the main job on embedded default data,
# `make test` runs the test suite. Both set up their own virtual environment on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel by default; on a GPU machine pass e.g. TORCH_SPEC="torch==2.13.0" with your CUDA index.
TORCH_SPEC ?= torch==2.13.0
OUTPUT_DIR ?= outputs/quickstart
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export MUJOCO_GL ?= egl

.PHONY: setup hand-tracking quickstart space test check-floors lint clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned, so no resolver pulls a multi-GB CUDA build on a CPU machine.
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev,world,space,sim,lora]"
	touch $@

setup: $(BIN)/.installed

# Optional: MediaPipe 0.10.21 hand tracking for real-video pseudo-labels. It declares numpy<2, which pip cannot
# co-resolve with datasets>=4, so it goes in without its declared dependencies (see the requirements file).
hand-tracking: setup
	$(BIN)/python -m pip install --quiet --no-deps -r dataset_scripts/requirements-hand-tracking.txt

quickstart: setup
	$(BIN)/python -m trainers.quickstart --output_dir $(OUTPUT_DIR)

# The Gradio Space on the quickstart checkpoint (http://localhost:7860).
space: setup
	$(BIN)/python spaces/jala_demo/build_examples.py
	$(BIN)/python spaces/jala_demo/app.py --model $(OUTPUT_DIR)/jala

test: hand-tracking
	$(BIN)/python -m pytest -q

# Every declared dependency floor installed exactly in a fresh venv without this repo, then a load + generate
# smoke test of a saved tiny model (tests/scripts/floor_smoke.py); see .ci/check_floors.
check-floors: setup
	PROJECT_PYTHON=$(BIN)/python bash .ci/check_floors

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf outputs .pytest_cache .ruff_cache
