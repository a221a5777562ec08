# Two commands: `make run` (set up everything, materialize the pipeline) and `make test` (run the test suite).
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup dvc-init run test test-quick lint ui bench clean-data

setup: $(VENV)/.installed

# torch==2.13.0 goes in first (the local CPU wheel); any looser torch spec would pull CUDA wheels.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip uv
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/uv pip install --python $(PY) $${PIP_FIND_LINKS:+--find-links $$PIP_FIND_LINKS} -e '.[dev]' \
		|| $(BIN)/pip install -q -e '.[dev]'
	touch $@

# DVC's default remote: a folder outside the checkout (every clone on this machine shares it), set in the git-ignored
# .dvc/config.local and only when no default remote is configured yet (a team's S3/GCS remote: README, "Data versions").
DVC_REMOTE_DIR ?= $(HOME)/.local/share/ruvtrain/dvc-remote

dvc-init: setup
	@test -d .dvc || $(BIN)/dvc init -q
	$(BIN)/dvc config core.analytics false
	@$(BIN)/dvc remote default >/dev/null 2>&1 \
		|| { mkdir -p "$(DVC_REMOTE_DIR)" && $(BIN)/dvc remote add --local --default --force local "$(DVC_REMOTE_DIR)"; }
	@echo "DVC default remote: $$($(BIN)/dvc remote default)"

# Each asset records itself with DVC as it materializes (dvc commit of its stage, dvc push); `dvc status` then shows
# the pipeline up to date.
run: setup dvc-init
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/dagster asset materialize -m ruvtrain_pipeline.definitions --select '*'
	$(BIN)/dvc status

test: setup
	$(PY) -m pytest

test-quick: setup
	$(PY) -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check ruvtrain_pipeline ruvtrain_pipeline_tests benchmarks

ui: setup
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/dagster dev -w workspace.yaml

bench: setup
	$(PY) benchmarks/generation.py
