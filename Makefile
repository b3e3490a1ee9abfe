# make demo | make test | make bench | make lint
# Two install levels, one stamp each, so `make test` after `make demo` only adds what is
# missing:
#   runtime: .venv with every distribution found in the repository (each directory
#            holding a pyproject.toml) in editable mode, and their own dependencies only;
#   dev:     runtime plus the workspace's dev extras (pytest, hypothesis, mypy, ruff,
#            moto, ...), for test, bench and lint.
# The build backend is installed once into the venv and the editable installs are built
# without isolation: with isolation pip makes one throwaway build environment per
# distribution, which was most of the install time.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet
DISTS := $(sort $(patsubst %/pyproject.toml,%,$(shell find kernel providers storage_backends sandboxes plugins -name pyproject.toml -not -path '*/.*' 2>/dev/null)))
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev

.PHONY: install install-runtime demo test bench lint typecheck clean

install: $(DEV)
install-runtime: $(RUNTIME)

$(RUNTIME): $(addsuffix /pyproject.toml,$(DISTS))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) 'hatchling>=1.21' editables
	$(PIP) --no-build-isolation $(addprefix -e ./,$(DISTS))
	touch $@

$(DEV): $(RUNTIME) pyproject.toml
	$(PIP) --no-build-isolation -e '.[dev]'
	touch $@

demo: $(RUNTIME)
	$(BIN)/python examples/quickstart/quickstart.py
	$(BIN)/python examples/quickstart/run_config_demo.py

# Two pytest-xdist workers: most of the suite waits on subprocesses, servers and disks, so
# two workers on two cores take the suite from 8 to under 5 minutes; TEST_WORKERS=0 runs it
# in this process (for a debugger, or -x).
TEST_WORKERS ?= 2

test: $(DEV)
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) $(PYTEST_ARGS)

bench: $(DEV)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check kernel
	$(BIN)/mypy

clean:
	rm -rf $(VENV)
