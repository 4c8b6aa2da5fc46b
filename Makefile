# Two commands for a fresh machine:  `make run` (set up, train the default) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test bench lint clean

# The venv is rebuilt when pyproject.toml changes. torch/torchvision come from PyPI (or a local wheel
# mirror where pip is configured for one); everything else is a plain pip install.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all,test]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m powertrain $(ARGS)

# The Slurm tests bring up a local single-node cluster themselves (slurm/cluster.sh up, needs root + apt).
test: $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf outputs multirun/*/ wandb .pytest_cache
