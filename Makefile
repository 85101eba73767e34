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

conformance: setup
	$(PYTEST) -q tests/runtime_ref -m "not slow" -p no:cacheprovider

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(PY) bench/startup.py

clean:
	rm -rf $(VENV) build *.egg-info reports/out
