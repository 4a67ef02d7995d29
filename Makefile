# The commands of the README: `make demo`, `make install`, `make test`. Each installs what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
UV_VERSION := 0.13.9
export UV_CACHE_DIR := $(CURDIR)/.cache/uv
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/.venv
export PREFECT_HOME := $(CURDIR)/.cache/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
UV := $(CURDIR)/.cache/bin/uv
VENV ?= $(CURDIR)/.venv
# `make install` links the `pausepoint` command here (a directory on PATH).
BINDIR ?= /usr/local/bin
LOGS := $(CURDIR)/var/log
QUIETLY := bash $(CURDIR)/scripts/quietly.sh

.PHONY: help setup servers scalar-admin scalardb-node cassandra native test test-unit lint demo demo-up install bench proto clean

help:
	@echo "make demo    - back up and restore a local site on real PostgreSQL and MariaDB"
	@echo "make demo-up - the same, then keep its servers up to try the commands it prints"
	@echo "make install - put the pausepoint command on PATH (BINDIR=$(BINDIR))"
	@echo "make test   - install everything and run the whole test suite"
	@echo "make lint   - ruff check and format check"
	@echo "make bench  - benchmarks; results in BENCHMARKS.md"

$(UV):
	@mkdir -p $(CURDIR)/.cache/bin
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target $(CURDIR)/.cache/uv-pkg uv==$(UV_VERSION)
	ln -sf $(CURDIR)/.cache/uv-pkg/bin/uv $(UV)

# The lock file pins every dependency; --frozen refuses to run with a stale lock.
$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

setup: $(VENV)/.synced

servers:
	bash scripts/install-servers.sh

# The MySQL fingerprint's row sums in C (pausepoint/stores/rowsum.py); needs cc and Debian's
# libxxhash-dev (installed by `servers`). Without it the Python path runs, slower.
ROWSUM := pausepoint/stores/librowsum.so.0
$(ROWSUM): pausepoint/stores/_rowsum.c
	cc -O2 -shared -fPIC -o $@ $<

native: $(ROWSUM)

# scalar-admin 2.2.1 (the AdminCommand CLI, the server stubs) into .cache/scalar-admin.
scalar-admin:
	bash scripts/fetch-scalar-admin.sh

# The ScalarDB-backed node (harness/scalardb_node) built into .cache/scalardb-node, with
# ScalarDB's schema loader on a class path of its own (.cache/scalardb-node/tools).
scalardb-node:
	bash scripts/fetch-scalardb-node.sh

# Cassandra 5.0 (pinned in harness/cassandra/pom.xml) and the cassandra store's JMX agent into
# .cache/cassandra, once; offline afterwards (stamped by the pom's and the agent's sha256).
cassandra:
	bash scripts/fetch-cassandra.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: setup servers native scalar-admin scalardb-node cassandra
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

test-unit: setup
	$(VENV)/bin/pytest tests/unit tests/contract -m "not integration and not e2e"

# Installs only what the demo uses (no Chromium: only the e2e tests need it), each step in one
# line; the full output of each is in var/log/.
define demo_setup
	@$(QUIETLY) "Python environment (uv sync)" $(LOGS)/setup.log $(MAKE) --no-print-directory setup
	@$(QUIETLY) "PostgreSQL, MariaDB and build tools" $(LOGS)/servers.log bash scripts/install-servers.sh --demo
	@$(QUIETLY) "MySQL row sums in C" $(LOGS)/native.log $(MAKE) --no-print-directory native
	@$(QUIETLY) "ScalarDB-backed nodes (Maven)" $(LOGS)/scalardb-node.log $(MAKE) --no-print-directory scalardb-node
endef

demo:
	$(demo_setup)
	@$(VENV)/bin/python -m demo.run

demo-up:
	$(demo_setup)
	@$(VENV)/bin/python -m demo.run --keep-running

# The `pausepoint` entry point of the project's environment, linked into BINDIR (on PATH).
# Prefect keeps its state (the temporary API's database, settings) in PREFECT_HOME, by default
# ~/.prefect. Without make: `uv tool install .` (or `pipx install .`) installs it on PATH too.
install: setup
	install -d $(BINDIR)
	ln -sf $(VENV)/bin/pausepoint $(BINDIR)/pausepoint
	@echo "installed $(BINDIR)/pausepoint -> $(VENV)/bin/pausepoint"
	@echo "try: pausepoint --help; Prefect state lives in PREFECT_HOME (default ~/.prefect)"

bench: setup servers native
	$(VENV)/bin/python -m bench.run

proto: setup
	$(VENV)/bin/python scripts/gen_proto.py

clean:
	rm -rf .venv .pytest_cache .ruff_cache var $(ROWSUM)
