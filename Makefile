# accumopt: two-command quick start (`make demo`, `make test`) on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv demo test test-fast bench mutation clean

venv: $(STAMP)

# uv (itself from the package registry) installs the same versions as pip in ~10 s instead of ~45 s on a fresh
# machine; when uv cannot be had or fails, pip does the install. Both compile the installed packages to bytecode
# (pip by default, uv with --compile-bytecode): where PYTHONDONTWRITEBYTECODE is set (as on the dev host),
# Python never writes a .pyc, so without them every `accumopt` process and test subprocess compiles pandas, scipy,
# optuna, ... from source again (4-6 s per process on a slow host; `accumopt study list` 8.3 s -> 3.8 s).
# The Makefile is a prerequisite too: a changed install recipe re-runs on an existing venv.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	if $(PY) -m pip install --quiet uv && $(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -e ".[postgres,test]"; \
	then :; else $(PY) -m pip install --quiet --upgrade pip && $(PY) -m pip install --quiet -e ".[postgres,test]"; fi
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/accumopt demo

# Two workers (pytest-xdist), one test file per worker at a time (module fixtures built once), in the order
# tests/conftest.py sets (long process-bound files first); the session stores and numba's kernel cache are built
# once for both workers (tests/conftest.py). TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

test: $(STAMP)
	$(PY) -m pytest $(XDIST)

# The edit loop: everything but the end-to-end tests marked slow (worker processes, PostgreSQL, the demo and the
# README, the notebook, the headless browser), with few Hypothesis examples.
test-fast: $(STAMP)
	HYPOTHESIS_PROFILE=fast $(PY) -m pytest $(XDIST) -m "not slow" -q

bench: $(STAMP)
	$(PY) bench/run_all.py

# Mutation testing (bench/mutation/README.md): not part of `make test` or CI; long (niced, 2 workers).
mutation: $(STAMP)
	$(PY) -m pip install --quiet mutmut==3.8.1
	$(PY) bench/mutation/run.py $(GROUPS)

clean:
	rm -rf $(VENV) output/*
