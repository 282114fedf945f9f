# The two commands of the README. Everything else is in scripts/dev.py.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	$(PY) scripts/dev.py run

test: $(VENV)/.installed
	$(PY) scripts/dev.py test $(ARGS)

lint: $(VENV)/.installed
	$(PY) -m ruff check . && $(PY) -m ruff format --check .
