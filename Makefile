# Two commands for a fresh machine: `make bench` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
SUITE  ?= shapes
STAMP  := $(VENV)/.installed

.PHONY: install bench test test-fast lint clean

install: $(STAMP)

# torch goes in first and pinned: an unpinned torch resolved from scratch pulls several GB of CUDA.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

bench: install
	$(BIN)/bench run --suite $(SUITE)

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
