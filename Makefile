# Social Pulse: `make demo` and `make test` work on a bare Debian machine with Python 3.11.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# the suite runs in two pytest-xdist workers, whole test files each (module fixtures run once): about half the
# time of one process on two cores, most tests wait on Redis or a subprocess
TEST_WORKERS ?= 2

.PHONY: demo test lint bench browser install lock clean help

help:
	@echo "make demo   - set up .venv, start Redis (embedded if REDIS_URL is unset), simulator -> flow -> dashboard on :8501"
	@echo "make test   - set up .venv (and Chromium for the browser test), run the whole suite"
	@echo "make lint   - ruff and mypy"
	@echo "make bench  - benchmarks; results go to benchmarks/RESULTS.md by hand"
	@echo "make lock   - re-resolve pyproject.toml's dependencies in a fresh venv and rewrite requirements.lock"

LOCK := requirements.lock

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 needed, found " + sys.version' 
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "python venv failed: on Debian run 'apt-get install python3-venv'"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[dev]'
	@touch $(STAMP)

# The versions `make install` pins (the ones the suite was run with): resolve pyproject.toml afresh in a
# throw-away venv and freeze it. Review the diff, run `make test`, commit requirements.lock.
lock:
	@rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[dev]'
	@{ echo "# make lock: pip freeze of a fresh venv with -e '.[dev]' (Python $$(.lock-venv/bin/python -c 'import platform; print(platform.python_version())'))"; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^socialpulse'; } > $(LOCK)
	@rm -rf .lock-venv
	@echo "requirements.lock updated: review 'git diff requirements.lock', run 'make test', commit it"

install: $(STAMP)

# Debian's chromium for the headless-browser test (Playwright drives it; no browser download).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian chromium for the browser test"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium could not be installed: the browser test will be skipped"; \
	  else echo "no /usr/bin/chromium and not root: the browser test will be skipped"; fi; \
	fi

demo: $(STAMP)
	$(BIN)/pulse demo

test: $(STAMP) browser lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check stream models crm connectors dashboard tests benchmarks
	$(BIN)/mypy stream connectors crm models

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) .pulse
