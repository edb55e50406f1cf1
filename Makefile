# symjac: `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: demo test bench bench-quick clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.base: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.base
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.bench: pyproject.toml $(VENV)/.test
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

demo: $(VENV)/.base
	$(PY) -m symjac demo

test: $(VENV)/.test
	$(PY) tests/run.py

bench: $(VENV)/.bench
	$(PY) -m benchmarks.run_all

bench-quick: $(VENV)/.bench
	$(PY) -m benchmarks.run_all --quick

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
