# whatsapp-relay: `make run` to try it, `make test` to test it. Both work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check lint format bench bench-smoke kafka-start kafka-stop clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## run: local Kafka (unless KAFKA_BOOTSTRAP_SERVERS is set), topics, relay with a dev token
run: $(STAMP)
	scripts/dev-run

## test: the whole suite against a real broker (KAFKA_BOOTSTRAP_SERVERS, Docker, or local-kafka)
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

## check: lint and types only
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

kafka-start:
	scripts/local-kafka start

kafka-stop:
	scripts/local-kafka stop

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
