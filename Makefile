# Front door: `make conformance` (the main job) and `make test` (the project's
# own tests). Both run `make setup` first; all three are idempotent. Run as root.
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST := $(PY) -m pytest

.PHONY: setup test test-v2 conformance lint bench clean

setup:
	@bash scripts/setup-host.sh

test: setup
	$(PYTEST) -n 2 -q tests

# The pure cgroup v2 lane: a qemu guest (Debian's 6.1 kernel, only cgroup2 mounted, this
# host's root shared read-only) runs the project's cgroup v2 tests and the suite's CG, CGNS,
# USR, PID, LIFE and SEC-03 behaviours against ref and runc (runner label cgroup-v2).
# Results (junit.xml, summary.json, allure-results, the guest's console) go to $(V2_OUT);
# `conform report $(RESULTS) $(V2_OUT)/conformance -o DIR` shows v1 and v2 side by side.
V2_OUT ?= reports/out/v2
test-v2: setup
	$(VENV)/bin/conform lane v2 --out $(V2_OUT)

# The main job: describe the host, verify every behaviour against rref, render the
# HTML report (even when behaviours fail) and print where it is.
# The report (Allure + matrix.html) goes to $(REPORT); its history/ is compared with and
# extended, so consecutive runs show what changed. RUNNER_LABEL names this host in merges.
RESULTS ?= reports/out/latest
REPORT  ?= $(RESULTS)/html
RUNTIME ?= ref
RUNNER_LABEL ?=
conformance: setup
	$(VENV)/bin/conform doctor
	$(VENV)/bin/conform run --runtime $(RUNTIME) -n 2 --results $(RESULTS) \
	  $(if $(RUNNER_LABEL),--runner-label $(RUNNER_LABEL)); rc=$$?; \
	$(VENV)/bin/conform report $(RESULTS) -o $(REPORT) || rc=1; exit $$rc

# Style and types: ruff (pinned), then mypy on the packages listed in pyproject.toml.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: setup
	$(PY) bench/startup.py

clean:
	rm -rf $(VENV) build *.egg-info reports/out
