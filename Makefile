# Front door: `make conformance` (the main job) and `make test` (the project's
# own tests). Both run `make setup` first; all three are idempotent. Run as root.
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST := $(PY) -m pytest

.PHONY: setup test conformance lint bench clean

setup:
	@bash scripts/setup-host.sh

test: setup
	$(PYTEST) -n 2 -q tests

# Until the conformance suite lands, the main job checks the reference runtime's
# kernel behaviours with its integration tests, after describing the host.
conformance: setup
	$(VENV)/bin/conform doctor
	$(PYTEST) -n 2 -q tests/runtime_ref

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(PY) bench/startup.py

clean:
	rm -rf $(VENV) build *.egg-info reports/out
