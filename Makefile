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
# The npm tools (buf, protoc-gen-es, tsc) and the TypeScript client's libraries, pinned by
# clients/typescript/package-lock.json.
TS := clients/typescript
NODE_STAMP := $(TS)/node_modules/.installed
BUF := $(TS)/node_modules/.bin/buf
BASELINE := contract/baseline.binpb
# The e2e browser test's driver, pinned; Debian's chromium is the browser (a downloaded build
# is never used).
PLAYWRIGHT := node_modules/playwright-core/package.json
PLAYWRIGHT_VERSION := 1.65.1
CHROMIUM := /usr/bin/chromium
# make test's pytest processes (pytest-xdist): one per logical CPU; PYTEST_WORKERS=0 runs in one
# process.
PYTEST_WORKERS ?= logical

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

$(NODE_STAMP): $(TS)/package-lock.json
	npm ci --prefix $(TS) --silent --no-audit --no-fund
	touch $@

$(BUF): $(NODE_STAMP)

$(PLAYWRIGHT):
	npm install --silent --no-audit --no-fund --no-save playwright-core@$(PLAYWRIGHT_VERSION)

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
		echo "Installing Debian's chromium (for the e2e browser test)..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "The e2e browser test needs Debian's chromium: sudo apt-get install chromium" >&2; exit 1; \
	fi

# tests/integration/test_pgbouncer.py runs the service through Debian's PgBouncer.
PGBOUNCER := /usr/sbin/pgbouncer
$(PGBOUNCER):
	@if [ "$$(id -u)" = 0 ]; then \
		echo "Installing Debian's pgbouncer (for the PgBouncer integration test)..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null; \
	else \
		echo "The PgBouncer integration test needs Debian's pgbouncer: sudo apt-get install pgbouncer" >&2; exit 1; \
	fi

# The Go client test's toolchain, from Debian: tests/e2e/go_client.py names the packages (and why
# golang/protobuf 1.5 is named explicitly). Installed when run as root, as chromium is; otherwise,
# or if apt-get fails, the Go client test is not run and one line says so (pytest repeats it).
.PHONY: go-toolchain
go-toolchain: $(STAMP) ## As root: install Debian's Go toolchain for the Go client test (else say it is not run)
	@if ! $(PY) -m tests.e2e.go_client >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "Installing Debian's Go toolchain (for the Go client test)..."; \
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				$$($(PY) -m tests.e2e.go_client --packages) >/dev/null; } || true; \
		fi; \
		$(PY) -m tests.e2e.go_client || true; \
	fi

.PHONY: generate
generate: $(STAMP) ## Rebuild generated/ (messages, stubs, .pyi, descriptor set), the OpenAPI document and the TypeScript client
	$(PY) tools/generate.py
	$(PY) tools/openapi.py
	$(MAKE) --no-print-directory generate-ts

.PHONY: check-generated
check-generated: $(STAMP) ## Fail if generated/ is not what protos/ generates
	$(PY) tools/generate.py --check

.PHONY: lint
lint: $(STAMP) $(BUF) ## ruff, mypy and buf lint
	$(BIN)/ruff check server tests tools gateway bench clients/python
	$(BIN)/ruff format --check server tests tools gateway bench clients/python
	$(BIN)/mypy
	$(PY) tools/generate.py --buf-lint $(BUF)

.PHONY: migrate
migrate: $(STAMP) ## Apply the Alembic migrations to EXPERIMENTS_DATABASE_URL
	$(BIN)/experiments-admin migrate

.PHONY: run
run: $(STAMP) ## Set up, migrate, serve gRPC and REST (Envoy), then seed demo data if empty
	@echo "OpenAPI 3.1 document of the REST API: $(CURDIR)/openapi/experiments.v5.yaml"
	@$(PY) -m gateway.run

INSTANCES ?= 3
.PHONY: run-cluster
run-cluster: $(STAMP) ## Several instances on EXPERIMENTS_DATABASE_URL (PostgreSQL) behind experiments-gateway; INSTANCES=3
	@$(PY) -m gateway.cluster --instances $(INSTANCES)

.PHONY: buf-build
buf-build: $(BUF) ## Build the contract with buf alone (vendored googleapis, no network)
	$(BUF) build

.PHONY: buf-breaking
buf-breaking: $(BUF) ## Fail if the contract breaks compatibility with contract/baseline.binpb
	$(BUF) breaking protos --against $(BASELINE)

.PHONY: baseline
baseline: $(BUF) ## Deliberately move the compatibility baseline to the current contract (commit it)
	$(BUF) build protos --exclude-source-info -o $(BASELINE)
	@echo "$(BASELINE) now holds the current contract; commit it with the change it allows"

.PHONY: generate-ts
generate-ts: $(BUF) ## Rebuild clients/typescript/src/gen from protos/ (protoc-gen-es)
	cd $(TS) && node_modules/.bin/buf generate ../.. --template buf.gen.yaml

.PHONY: check-ts-generated
check-ts-generated: $(BUF) ## Fail if clients/typescript/src/gen is not what protos/ generates
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  (cd $(TS) && node_modules/.bin/buf generate ../.. --template buf.gen.yaml -o "$$tmp") && \
	  diff -r "$$tmp/src/gen" $(TS)/src/gen || \
	  { echo "clients/typescript/src/gen is stale: run make generate-ts and commit it" >&2; exit 1; }

.PHONY: check-openapi
check-openapi: $(STAMP) ## Fail if openapi/experiments.v5.yaml is not what the descriptor set generates
	$(PY) tools/openapi.py --check

.PHONY: test-openapi
test-openapi: $(STAMP) ## Validate the OpenAPI document, then schemathesis through the real Envoy and server
	$(BIN)/pytest -q tests/e2e/test_openapi.py

.PHONY: test-typescript
test-typescript: $(STAMP) $(NODE_STAMP) ## The TypeScript client against the real server and Envoy, and its assignment vectors
	$(BIN)/pytest -q tests/e2e/test_typescript_client.py tests/e2e/test_typescript_assignment.py

.PHONY: test
test: $(STAMP) $(NODE_STAMP) $(PLAYWRIGHT) $(CHROMIUM) $(PGBOUNCER) go-toolchain check-generated lint buf-build buf-breaking check-ts-generated check-openapi ## Set up, then run every test (unit, integration, e2e, contract, fuzz)
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist worksteal

.PHONY: test-unit
test-unit: $(STAMP) ## Unit tests only (rules, no I/O)
	$(BIN)/pytest -q tests/unit

.PHONY: test-fuzz
test-fuzz: $(STAMP) ## Fuzz tier only (hypothesis, gRPC and REST); EXPERIMENTS_FUZZ_EXAMPLES=N for more
	$(BIN)/pytest -q tests/fuzz

.PHONY: bench
bench: $(STAMP) ## Load benchmark (h2load): gRPC and REST against an echo ceiling; BENCH_* vars in bench/README.md
	$(PY) -m bench.run

.PHONY: bench-scale
bench-scale: $(STAMP) ## Get/List latency at 1,000 vs 100,000 experiments
	$(PY) -m bench.run --sizes 1000,100000
