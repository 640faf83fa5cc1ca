# Two commands: `make demo` (set up + run the whole pipeline on the embedded sample)
# and `make test` (set up + run the test suite). `make ui` opens the Dagster UI.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export MMORAL_HOME ?= $(CURDIR)/.mmoral
PYTEST_ARGS ?=

.PHONY: setup demo test ui clean perf

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned to the build this machine kind serves from local disk (see README)
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

demo: setup $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/mmoral materialize

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc

ui: setup $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

perf: setup
	for f in perf/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf .mmoral .dagster_home
