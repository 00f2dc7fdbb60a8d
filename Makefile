# iot-flink: the two commands a user needs are `make demo` and `make test`.
# Both install what is missing first (scripts/setup.sh is idempotent).
SHELL := /bin/bash
PY    := .venv/bin/python
# the project's command, installed into the venv by setup (pip install -e .)
CLI   := .venv/bin/iotflink

.PHONY: setup demo scenario smart-factory test test-unit test-integration chaos firmware-test down status bench lock help

help:
	@echo "make demo    set up, start the local stack, run the main job on real data, print a summary"
	@echo "make scenario NAME=patient-vitals [SHORT=1]  run a worked example and check its claim (NAME=list: all)"
	@echo "make test    set up, run the whole test suite (firmware host tests + pytest)"
	@echo "make down    stop the local stack"
	@echo "make status  show the local stack's services"
	@echo "make chaos   fault-injection tests only (also part of make test)"
	@echo "make bench   run the benchmarks under bench/ (needs the stack for some)"

setup:
	@bash scripts/setup.sh

demo: setup
	@$(CLI) demo

scenario: setup
	@.venv/bin/iotflink scenario $(or $(NAME),list) $(if $(SHORT),--short)

smart-factory: setup
	@$(PY) -m iotflink.simulation.scenarios.smart_factory $(ARGS)

test: setup
	@bash scripts/run_tests.sh

test-unit: setup
	@$(PY) -m pytest -q -m "not integration"

test-integration: setup
	@$(PY) -m pytest -q -m integration

chaos: setup
	@$(PY) -m pytest -q -m integration tests/test_chaos.py tests/test_bridge_memory.py

firmware-test: setup
	@bash esp32/test.sh

down:
	@if [ -x $(PY) ]; then $(PY) -m iotflink.cli stack stop; else echo "nothing to stop (no venv)"; fi

status:
	@$(PY) -m iotflink.cli stack status

bench: setup
	@bash bench/run_all.sh

lock:
	@$(PY) -m pip freeze --exclude-editable > requirements.lock
