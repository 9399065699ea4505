# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
RUN    ?= runs/demo
export OMP_NUM_THREADS ?= 1

.PHONY: venv demo demo-smoke rl-demo demo-clean test test-fast test-gpu-sim clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: a looser requirement pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev,hf,launch]"
	touch $(STAMP)

venv: $(STAMP)

# The whole OctoThinker pipeline in miniature (tokenizer, stable, 3 decay branches, GRPO from each
# and from the stable control, eval, HF export, report.md + plots) on 2 CPU cores.
demo: $(STAMP)
	$(BIN)/python -m megatron_octo.demo --out $(RUN)

# Every stage with a few steps (what CI runs): the mechanics, not results.
demo-smoke: $(STAMP)
	$(BIN)/python -m megatron_octo.demo --smoke --out runs/demo-smoke

# GRPO and PPO each raise a briefly trained tiny model's held-out accuracy (synthetic arithmetic,
# ~10 min on 2 CPU cores); result table in runs/rl-demo/rl_demo.json.
rl-demo: $(STAMP)
	$(BIN)/python -m megatron_octo.rl_demo --out runs/rl-demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -ra --durations=25 tests

# Unit tests only (no torchrun, no end-to-end runs).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -ra tests/unit

# The GPU code paths on CPU under the simulated-GPU mode (runtime/simulated_gpu.py): CUDA's device
# rules and NCCL's CUDA-only collectives enforced; pretraining, GRPO, PPO, eval, HF import/export.
test-gpu-sim: $(STAMP)
	$(BIN)/python -m pytest -q -ra --durations=15 -m gpu_sim tests

clean:
	rm -rf $(VENV) runs .pytest_cache
