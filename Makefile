# The two commands of the README. Each one creates or updates .venv from
# pyproject.toml and installs the data it needs, so both work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: demo test test-fast install dataset lint

demo: install dataset  ## small real comparison on Fashion-MNIST: every strategy, report + plots
	$(BIN)/flower-synth compare simulations/demo.yaml

# Two workers: the end-to-end runs spend much of their time starting processes and
# waiting on each other, so two at a time take about two thirds of the serial time.
test: install dataset  ## the whole test suite, end-to-end runs included (what CI runs)
	$(BIN)/python -m pytest -n 2 --dist worksteal

test-fast: install  ## the test suite without the slow end-to-end runs
	$(BIN)/python -m pytest -n 2 --dist worksteal -m "not slow"

lint: install
	$(BIN)/ruff check flower_synth tests
	$(BIN)/ruff format --check flower_synth tests

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package where apt is usable.
dataset:
	@if [ -f $(FASHION_MNIST) ]; then \
		echo "Fashion-MNIST found in $(dir $(FASHION_MNIST))"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else \
		echo "warning: cannot install Debian's dataset-fashion-mnist here; give the run-config"; \
		echo "         key data-dir a folder with the IDX files, or set download=true (README)"; \
	fi
