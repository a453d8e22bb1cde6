# Two commands: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

# torch/torchvision are pinned to the releases shipped on this machine's disk; the
# project itself only needs torch>=2.2.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: setup
	$(BIN)/scorpion-build run pipelines/demo.yaml

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check scorpion_build benchmarks tests
	$(BIN)/python -m pytest -q

# docs' code blocks keep their hand-aligned comments: the formatter checks Python sources
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check scorpion_build benchmarks tests

clean:
	rm -rf $(VENV) build demo_build
