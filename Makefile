# Two commands set everything up on a fresh machine:
#   make run    creates .venv, installs lcfix (no torch), plans examples/prompts.txt offline
#   make test   creates .venv, installs lcfix with every extra, runs the test suite
# torch is installed first and pinned: it is the CPU wheel on local disk, while a bare
# "torch" requirement resolves to a 5 GB CUDA build.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
TORCH := torch==2.13.0
export LITELLM_LOCAL_MODEL_COST_MAP := True

.PHONY: run test install install-all lint typecheck check bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# The main job needs no torch: the offline planner is pure Python.
$(VENV)/.core: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e .
	touch $@

$(VENV)/.all: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[all]"
	touch $(VENV)/.core $@

install: $(VENV)/.core
install-all: $(VENV)/.all

run: $(VENV)/.core
	$(VENV)/bin/lcfix plan examples/prompts.txt

test: $(VENV)/.all
	$(PY) -m pytest

lint: $(VENV)/.all
	$(VENV)/bin/ruff check sdk adapters cli tests benchmarks
	$(VENV)/bin/ruff format --check sdk adapters cli

typecheck: $(VENV)/.all
	$(PY) scripts/typecheck.py

check: lint typecheck

bench: $(VENV)/.all
	$(PY) benchmarks/planner_quality.py ../shared/data/lcmis_dev.jsonl
	$(PY) benchmarks/planner_speed.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
