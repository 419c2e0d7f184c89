# sweepnet: two commands on a fresh machine — `make demo` and `make test`.
# Each creates or refreshes .venv from pyproject.toml, installs the project, and runs.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# Numba's on-disk cache lives beside the sources (keyed on path + mtime); workers share it.
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MPLBACKEND := Agg

.PHONY: setup postgres chromium hosttools demo test test-slow bench reliability features-examples services-up services-down clean help

help:
	@echo "make demo         set up .venv and run a real sweep on a local Dask cluster (MLflow store in ./mlflow.db)"
	@echo "make test         set up .venv and run the test suite (real dask/mlflow/prefect servers on 127.0.0.1)"
	@echo "make test-slow    slow and scale checks (pytest -m slow)"
	@echo "make bench        benchmarks; results in BENCHMARKS.md"
	@echo "make reliability  fault-injection tests; results in RELIABILITY.md"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP) postgres chromium hosttools

# PostgreSQL server binaries (initdb, postgres) for `sweepnet services up --backend postgres` and its tests:
# installed from Debian's postgresql-15 where missing and we can (root with apt-get), else the command to run.
postgres:
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15; \
	else \
	  echo "PostgreSQL server binaries (initdb) are missing; install them with:" >&2; \
	  echo "  sudo apt-get install -y postgresql-15" >&2; exit 1; \
	fi

# The browser tests (tests/ui) drive Debian's chromium; Playwright's own browser download is unreachable here.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium || { apt-get update -qq && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }; \
	  else \
	    echo "tests/ui needs Debian's chromium; install it with:  sudo apt-get install -y chromium" >&2; exit 1; \
	  fi; }

# tests/cluster makes its hosts with `ip netns` (iproute2) and probes them with curl.
hosttools:
	@command -v ip >/dev/null 2>&1 && command -v curl >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 curl; \
	  else \
	    echo "tests/cluster needs iproute2 and curl; install them with:  sudo apt-get install -y iproute2 curl" >&2; \
	    exit 1; \
	  fi; }

# A real sweep on embedded defaults: an XOR initialisation census (hidden x epsilon x 20 seeds) and a digits
# grid (activation x l1 x input dropout x 3 seeds) on a local Dask cluster, tracked in .sweepnet/mlflow.db.
# --no-keep-services: the demo starts its Prefect server and Dask workers and stops them (a user's own sweeps keep
# them running for the next sweep; see README "Local services between sweeps").
demo: setup
	$(VENV)/bin/sweepnet sweep --no-keep-services examples/sweeps/xor_census.yaml examples/sweeps/digits_grid.yaml

test: setup
	$(PY) -m pytest

test-slow: setup
	$(PY) -m pytest -m slow

bench: setup
	$(PY) benchmarks/run_all.py

reliability: setup
	$(PY) -m pytest -m "reliability" -p no:cacheprovider tests/reliability
	$(PY) benchmarks/reliability_report.py

features-examples: setup
	$(VENV)/bin/sweepnet features examples/conv_pool.yaml
	$(VENV)/bin/sweepnet features examples/self_taught.yaml
	$(VENV)/bin/sweepnet features examples/colour_conv.yaml

services-up: setup
	$(VENV)/bin/sweepnet services up

services-down:
	$(VENV)/bin/sweepnet services down

clean:
	rm -rf $(VENV) .sweepnet mlruns mlflow.db .pytest_cache
