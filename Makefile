# All set-up is part of the targets: `make demo` and `make test` work on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[test]'
	touch $@

.PHONY: install demo test lint bench
install: $(VENV)/.installed

demo: install
	$(VENV)/bin/cxrl demo

test: lint
	$(PY) -m pytest -n 2 --dist loadgroup

lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts

bench: install
	for b in benchmarks/[!_]*.py; do $(PY) $$b || exit 1; done
