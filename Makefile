# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
RUN    ?= runs/demo
export OMP_NUM_THREADS ?= 1

.PHONY: venv demo demo-clean test test-fast clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: a looser requirement pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev,hf,launch]"
	touch $(STAMP)

venv: $(STAMP)

# A tiny stable run then a tiny decay branch on the built-in data bundle (CPU, about a minute).
demo: $(STAMP)
	$(BIN)/python -m megatron_octo.demo --out $(RUN)

test: $(STAMP)
	$(BIN)/python -m pytest -q -ra tests

# Unit tests only (no torchrun, no end-to-end runs).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -ra tests/unit

clean:
	rm -rf $(VENV) runs .pytest_cache
