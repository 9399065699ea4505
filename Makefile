# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
RUN    ?= runs/demo
export OMP_NUM_THREADS ?= 1

.PHONY: venv demo demo-seeds demo-smoke rl-demo rl-demo-seeds demo-clean test test-fast test-gpu-sim clean

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

# The whole pipeline once per seed (task split, initialisation, data order, RL sampling): each model's
# accuracy before/after RL as mean ± sd and whether every claim holds in every seed (runs/demo-seeds/seeds.md).
demo-seeds: $(STAMP)
	$(BIN)/python -m megatron_octo.demo --seeds 0,1,2 --out runs/demo-seeds

# Every stage with a few steps (what CI runs): the mechanics, not results.
demo-smoke: $(STAMP)
	$(BIN)/python -m megatron_octo.demo --smoke --out runs/demo-smoke

# GRPO and PPO each raise a briefly trained tiny model's held-out accuracy (synthetic arithmetic,
# ~10 min on 2 CPU cores); result table in runs/rl-demo/rl_demo.json.
rl-demo: $(STAMP)
	$(BIN)/python -m megatron_octo.rl_demo --out runs/rl-demo

# `make rl-demo` once per seed: GRPO's and PPO's gains as mean ± sd (runs/rl-demo-seeds/seeds.md).
rl-demo-seeds: $(STAMP)
	$(BIN)/python -m megatron_octo.rl_demo --seeds 0,1,2 --out runs/rl-demo-seeds

# Every tier, on two pytest-xdist workers (one per core of the 2-core machines this runs on; a module is one
# unit of work, tests/conftest.py); the summary ends with each tier's wall time.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -ra --durations=25 -n $(TEST_WORKERS) --no-loadscope-reorder tests

# The in-process tier (tests/unit, < 3 min): no interpreter, torchrun or CLI is started; a test there
# that starts a process fails (tests/conftest.py).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -ra --durations=10 -m "not process" tests/unit

# The GPU code paths on CPU under the simulated-GPU mode (runtime/simulated_gpu.py): CUDA's device
# rules and NCCL's CUDA-only collectives enforced; pretraining, GRPO, PPO, eval, HF import/export.
test-gpu-sim: $(STAMP)
	$(BIN)/python -m pytest -q -ra --durations=15 -m gpu_sim tests

clean:
	rm -rf $(VENV) runs .pytest_cache
