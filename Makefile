# Two commands do all set-up: `make run` (the whole pipeline on the embedded demo config) and
# `make test` (the test suite). Both create .venv and install dnalm on first use.
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
# test files run in parallel on this many workers (pytest-xdist; most workflow tests wait on
# subprocesses, so 2 workers pay off even on 2 cores)
TEST_WORKERS ?= 2
BIN := $(VENV)/bin
STAMP := $(VENV)/.dnalm-installed

.PHONY: run test lint report clean help

help:
	@echo "make run    - run the whole pipeline on config/config.yaml (CPU, minutes)"
	@echo "make test   - run the test suite"
	@echo "make lint   - ruff"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# a Snakemake killed with kill -9 leaves its lock: cleared first when no snakemake runs here
run: $(STAMP)
	@$(BIN)/python -m dnalm.workflow_lock
	$(BIN)/snakemake --cores $(CORES) --printshellcmds
	@$(BIN)/python -m dnalm.results

test: $(STAMP)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf results resources logs .snakemake
