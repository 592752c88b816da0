# The two commands a fresh clone needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The slowest tests are listed at the end of every run: the ones to mark slow when `make test` grows.
PYTEST_ARGS ?= --durations=25

.PHONY: venv demo test test-slow test-all lint bench bench-floors clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/contact-sync demo --dir demo

# The default suite; slow reliability tests are deselected here and run by `make test-all`.
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# pytest's exit 5 (nothing marked slow was collected) is not a failure here.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

test-all: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff, and the layer rules as import contracts (pyproject.toml [tool.importlinter]).
lint: $(STAMP)
	$(BIN)/ruff check contactsync tasks flows expectations tests bench
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m bench.run

# The CRM read at 100,000, old way beside new (bench/crm_read_bench.py; needs the cycles bench's cache).
bench-crm-read: $(STAMP)
	$(BIN)/python -m bench.crm_read_bench

# The speed floors the timed tests used to assert, measured (bench/speed_floors.py, ~20 s).
bench-floors: $(STAMP)
	$(BIN)/python -m bench.speed_floors

clean:
	rm -rf $(VENV) demo .pytest_cache
