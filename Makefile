# The README's two commands, on a fresh machine or an existing checkout:
#   make fit    set up what is missing (.venv, torch: the CPU build where there is no NVIDIA GPU, lit-llm),
#               then train on the embedded default corpus (`lit-llm fit`)
#   make test   the same set-up plus the test extras, then the test suite
# Extra arguments: make fit ARGS="--trainer.max_steps 50"; make test ARGS="-k resume"
# Another torch: make fit TORCH=torch==2.5.1 (or install it into .venv yourself first).

PYTHON ?= python3
VENV   ?= .venv
ARGS   ?=
BIN    := $(VENV)/bin
# An NVIDIA GPU gets PyPI's default (CUDA) torch; a CPU-only machine the CPU build, which is a small download
# (a local wheel where pip's find-links has one, else PyTorch's CPU index).
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
TORCH  ?= $(if $(HAS_GPU),torch,torch==2.13.0)
CPU_INDEX := https://download.pytorch.org/whl/cpu

.PHONY: fit test
fit: $(VENV)/.lit-llm
	$(BIN)/lit-llm fit $(ARGS)

# The suite runs on every core (pytest-xdist), one thread per test process: tiny models gain nothing from more,
# and several threads per process on a busy machine only wait for each other. Serial: make test ARGS="-n 0".
test: $(VENV)/.lit-llm-dev
	WANDB_MODE=offline WANDB_SILENT=true OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n auto --dist worksteal \
	    --durations=15 $(ARGS)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)" \
	    || $(if $(HAS_GPU),false,$(BIN)/python -m pip install -q torch --index-url $(CPU_INDEX))
	touch $@

$(VENV)/.lit-llm: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.lit-llm-dev: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@ $(VENV)/.lit-llm
