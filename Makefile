# skyvault: one target per habit. `make demo` and `make test` do all their own set-up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= demo-data
SCALE ?= medium
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint typecheck pytest sysdeps venv bench clean portal

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# System packages the test suite drives (IVOA validators, PostgreSQL). Installed only when absent.
sysdeps:
	@command -v stilts >/dev/null 2>&1 || { \
	  echo "installing stilts (IVOA validators votlint/taplint)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq stilts >/dev/null; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing postgresql (the job-storage tests start a throw-away server)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql >/dev/null; }
	@command -v aria2c >/dev/null 2>&1 || { \
	  echo "installing aria2 (the bulk tests download with aria2c -x4)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq aria2 >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (the portal's browser tests)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }
	@test -f /usr/share/java/aladin.jar || { \
	  echo "installing aladin (CDS Hipsgen: the HiPS lint the tests run)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq aladin >/dev/null; }

# Build the demo data set when missing (a no-op when built), then serve it over TAP.
# `skyvault demo` makes the demo tables public itself (other tables are private until granted).
demo: $(STAMP)
	$(BIN)/skyvault demo --data $(DATA) --scale $(SCALE)
	@echo ""
	@echo "TAP service: http://$(HOST):$(PORT)/tap   (Ctrl-C stops it)"
	@echo "  pyvo:   import pyvo; tap = pyvo.dal.TAPService('http://$(HOST):$(PORT)/tap')"
	@echo "          tap.run_sync('SELECT TOP 10 * FROM dp02_dc2_catalogs.Object').to_table()"
	@echo "  TOPCAT: VO > Table Access Protocol (TAP) Query > TAP URL http://$(HOST):$(PORT)/tap"
	@echo "  examples: http://$(HOST):$(PORT)/tap/examples"
	@echo ""
	$(BIN)/skyvault serve --data $(DATA) --host $(HOST) --port $(PORT) --workers $(WORKERS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) sysdeps
	$(BIN)/pytest

test: lint typecheck pytest

# Rebuild the portal's JavaScript from npm packages into src/skyvault/portal/static (committed:
# users need no Node). Only for who edits portal/; a test fails when the build is stale.
portal:
	cd portal && npm ci --no-audit --no-fund && npm run build

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/bench_ingest.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
