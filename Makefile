# The two commands: `make demo` (run the whole pipeline on the embedded SQLite default) and
# `make test` (the suite; CI runs exactly this). Both create .venv and install when it is missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install lock validate serve clean

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (CAMS needs Python 3.11)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/cams demo

# The suite's scratch files (SQLite warehouses, Dagster homes and their event logs, drop folders) go to
# memory where the machine has /dev/shm: every SQLite commit is an fsync, a quarter of a Dagster-heavy
# test's time on these disks. `make test TEST_TMP=/some/dir` puts them elsewhere.
TEST_TMP ?= $(if $(wildcard /dev/shm/.),/dev/shm/cams-test-$(shell id -u),$(or $(TMPDIR),/tmp))

test: $(STAMP)
	$(BIN)/ruff check .
	@mkdir -p $(TEST_TMP)
	TMPDIR=$(TEST_TMP) $(BIN)/python -m pytest -n 2 -m "not serial" --cov --cov-report= -q --durations=12 $(PYTEST_ARGS)
	TMPDIR=$(TEST_TMP) $(BIN)/python -m pytest -m serial --cov --cov-append --cov-report=term:skip-covered -q $(PYTEST_ARGS) || test $$? -eq 5

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

validate: $(STAMP)
	$(BIN)/dagster definitions validate -w workspace.yaml

serve: $(STAMP)
	$(BIN)/cams serve

lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | sort -f > constraints.txt.new && mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .cams .pytest_cache .coverage
