# `make run` serves the app on http://127.0.0.1:8000; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run migrate test lint bench chromium clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,test]'
	touch $(STAMP)

install: $(STAMP)

# `aigen serve` applies pending migrations once, before the workers start.
run: install
	$(BIN)/aigen serve --host $(HOST) --port $(PORT)

migrate: install
	$(BIN)/aigen migrate

test: install chromium
	$(BIN)/pytest -q

# The same checks run in CI (.ci/run) and before each commit (.pre-commit-config.yaml).
lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# The performance suite (bench/suite.py): figures beside their ceilings, written to
# bench/results.json and bench/results.md. `make bench BENCH_ARGS=--quick` takes a few minutes.
BENCH_ARGS ?=
bench: install
	{ test -x $(BIN)/py-spy && $(BIN)/python -c 'import pyinstrument'; } 2>/dev/null || \
		$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -W ignore -m bench $(BENCH_ARGS)

# Browser tests drive Debian's chromium through playwright (never `playwright install`).
chromium:
	@command -v chromium >/dev/null 2>&1 || test -x /usr/bin/chromium || { \
		echo "installing Debian chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info
