# The README's two commands: `make quickstart` (the main job) and `make test` (the test suite).
# Both set up everything on a fresh machine first: a virtual environment in .venv with the
# project and its pinned dependencies (torch 2.13.0, the CPU build on this machine's disk).

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

# The main job: Llama-2-7B, 256-token prompt + 20 decode tokens on the BitMoD FP16 baseline.
QUICKSTART := $(VENV)/bin/sim run configs/quickstart.yaml

.PHONY: quickstart test test-fast golden setup bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

quickstart: $(STAMP)
	$(QUICKSTART)

# the whole suite: every test but the live measurements spread over the cores (pytest-xdist, a
# test file per worker), then the live measurements (marked timing) alone, so that no other test
# shares the machine while they time it
TEST_JOBS ?= $(shell nproc 2>/dev/null || echo 1)
test: $(STAMP)
	$(VENV)/bin/python -m pytest -n $(TEST_JOBS) --dist loadfile -m "not timing"
	$(VENV)/bin/python -m pytest -m timing

# the tier for every edit: everything not marked slow, timing or gpu (about a minute on 2 cores)
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -n $(TEST_JOBS) -m "not slow and not timing and not gpu" -q

# rewrite results/golden/ from the current code, and the docs' tables made from it (commit the diff
# with the reason a number moved)
golden: $(STAMP)
	$(VENV)/bin/python -m sim.golden
	$(VENV)/bin/python -m sim.docs

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/trace_speed.py
	$(VENV)/bin/python benchmarks/run_speed.py
	$(VENV)/bin/python benchmarks/sweep_speed.py
	$(VENV)/bin/python benchmarks/long_decode.py
	$(VENV)/bin/python benchmarks/tp_175b.py

clean:
	rm -rf $(VENV) results/quickstart
