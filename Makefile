# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create .venv, install the CPU build of torch 2.13.0 first (a bare `torch` requirement
# would pull a multi-GB CUDA build), then this package with its dev extra.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
TORCH ?= torch==2.13.0
JOBS ?= 2

.PHONY: install test demo bench clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet "$(TORCH)"
	$(PIP) install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS) tests

demo: $(STAMP)
	$(PY) examples/pusht_plan.py

bench: $(STAMP)
	$(PY) benchmarks/bench_envs.py
	$(PY) benchmarks/dp_fidelity.py --restore-mode episode
	$(PY) benchmarks/dp_fidelity.py --restore-mode anchor
	$(PY) benchmarks/bad_inputs.py
	$(PY) benchmarks/soak.py --n-calls 1000

clean-venv:
	rm -rf $(VENV)
