# Two commands: `make demo` (set up + run the whole pipeline on the embedded sample)
# and `make test` (set up + run the test suite). `make ui` opens the Dagster UI.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export MMORAL_HOME ?= $(CURDIR)/.mmoral
PYTEST_ARGS ?=

.PHONY: setup demo test lint ui clean perf

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

# The demo adds 200 generated images to the embedded sample (assets/sources_demo.yaml): the sample's 23 training
# images are too few for the tiny model to learn the closed-ended questions (perf/cpu_sft.py has the figures).
# It also adds 30 generated X-rays whose labels the pipeline never reads (source `synth_unlabelled`, format
# `images`): the visual expert that `expert_model` trains on the labelled images labels them, and
# `mmoral expert compare` sets the reports written from its boxes against the withheld true labels.
SYNTH_TRAIN := $(CURDIR)/.mmoral/synth_train
SYNTH_UNLABELLED := $(CURDIR)/.mmoral/synth_unlabelled
DEMO_SOURCES := $(CURDIR)/assets/sources_demo.yaml

$(SYNTH_TRAIN)/annotations.json: | setup
	$(BIN)/mmoral synth --n 200 --seed 42 --out $(SYNTH_TRAIN) --format coco --scores --width 700 --height 350

$(SYNTH_UNLABELLED)/annotations.json: | setup
	$(BIN)/mmoral synth --n 30 --seed 7 --out $(SYNTH_UNLABELLED) --format coco --width 700 --height 350

demo: setup $(DAGSTER_HOME)/dagster.yaml $(SYNTH_TRAIN)/annotations.json $(SYNTH_UNLABELLED)/annotations.json
	MMORAL_SOURCES=$${MMORAL_SOURCES:-$(DEMO_SOURCES)} $(BIN)/mmoral materialize --config assets/demo_run_config.yaml
	$(BIN)/mmoral expert compare --source synth_unlabelled --truth-root $(SYNTH_UNLABELLED) \
		--json $(MMORAL_HOME)/expert_compare.json --sheet $(MMORAL_HOME)/expert_compare.png

test: setup lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc

# ruff with the project's rules and line length (pyproject.toml [tool.ruff]); `make test` runs it first
lint: setup
	$(BIN)/ruff check .

ui: setup $(DAGSTER_HOME)/dagster.yaml $(SYNTH_TRAIN)/annotations.json $(SYNTH_UNLABELLED)/annotations.json
	MMORAL_SOURCES=$${MMORAL_SOURCES:-$(DEMO_SOURCES)} $(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

perf: setup
	for f in perf/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf .mmoral .dagster_home
