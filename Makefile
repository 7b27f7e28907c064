# Two commands for a fresh machine: `make bench` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0+cpu
SUITE  ?= shapes
STAMP  := $(VENV)/.installed
LOCK   := requirements.lock
# Where pip finds the local torch wheel (pip's own find-links setting, or PIP_FIND_LINKS); uv is told too.
FIND_LINKS ?= $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))

.PHONY: install bench test test-fast lint clean lock

install: $(STAMP)

# Everything comes from the committed lock, every file checked against its hash (bench/lockfile.py);
# the project itself is installed on top, without dependencies of its own.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m bench.lockfile platform
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Refresh the lock from pyproject.toml (seconds): after adding or changing a dependency there.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet "uv>=0.5"
	$(BIN)/python -m bench.lockfile stamp > $(LOCK).tmp
	echo "$(TORCH)" | $(BIN)/uv pip compile pyproject.toml - --extra dev --generate-hashes \
	  --python $(BIN)/python $(if $(FIND_LINKS),--find-links $(FIND_LINKS)) --no-header --no-emit-find-links \
	  >> $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)

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
