# Quick start: `make run` (the main job) and `make test` (the whole test suite), on a machine with python3 and pip.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH := torch==2.13.0

.PHONY: install run test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps 'zhipuai>=2.1.5'
	touch $@

install: $(VENV)/.installed

# The main job: the Z.AI/OpenAI-compatible server (and web chat) on 127.0.0.1:8000, serving the bundled model
# glmv-small; MODEL=path/to/checkpoint serves another GLM-V checkpoint; ARGS are passed to `glmv serve`.
run: install
	$(VENV)/bin/glmv serve $(if $(MODEL),--model $(MODEL)) $(ARGS)

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info
