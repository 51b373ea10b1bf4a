# All set-up is part of the targets: `make demo` and `make test` work on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[test]'
	touch $@

.PHONY: install demo test lint bench chromium
install: $(VENV)/.installed

demo: install
	$(VENV)/bin/cxrl demo

test: lint chromium
	$(PY) -m pytest -n 2 --dist loadgroup

# The `cxrl explain` gallery test loads index.html in headless Chromium (Debian's package; no Python dependency).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
		else echo "Chromium is missing: the explain gallery test is skipped (fails under CI=1); install it with" \
			"'sudo apt-get install -y chromium'"; fi; \
	fi

lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts

bench: install
	for b in benchmarks/[!_]*.py; do $(PY) $$b || exit 1; done
