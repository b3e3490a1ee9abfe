# make demo | make test | make bench | make lint
# Every target first creates .venv and installs every distribution found in the
# repository (each directory holding a pyproject.toml) in editable mode.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DISTS := $(sort $(patsubst %/pyproject.toml,%,$(shell find kernel providers storage_backends sandboxes plugins -name pyproject.toml -not -path '*/.*' 2>/dev/null)))
STAMP := $(VENV)/.installed

.PHONY: install demo test bench lint typecheck clean

install: $(STAMP)

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(DISTS))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' $(addprefix -e ./,$(DISTS))
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/quickstart/quickstart.py
	$(BIN)/python examples/quickstart/run_config_demo.py

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check kernel
	$(BIN)/mypy

clean:
	rm -rf $(VENV)
