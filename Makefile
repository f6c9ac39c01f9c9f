# Two commands do all set-up: `make run` (the main job on the embedded default) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip

.PHONY: run test install install-test tables bench clean-results

run: $(VENV)/.installed            ## the main job on the embedded default (digits, CPU, about a minute)
	$(BIN)/python run.py

test: $(VENV)/.installed-test       ## the whole test suite (installs what it needs)
	$(BIN)/python -m pytest

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.installed: setup.cfg pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-test: setup.cfg pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[test]'
	touch $(VENV)/.installed $@

clean-results:                      ## remove everything runs wrote under results/ (keeps its README)
	find results -mindepth 1 -not -name README.md -delete
