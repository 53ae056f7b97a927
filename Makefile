# The two commands of the README:
#   make demo   # the main job at a small CPU-sized default
#   make test   # export check + every notebook at CI scale + pytest
# Both set everything up first (idempotent): .venv with pinned packages, miniai editable, the data.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.miniai-setup
PYTHON ?= $(shell command -v python3.11 || command -v python3)
DEMO_OUT ?= demo_out

.PHONY: setup data test demo demo-diffusion export clean-nbs readme

setup: $(STAMP) data

$(STAMP): requirements.txt settings.ini setup.py
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"miniai needs Python 3.11, found {sys.version.split()[0]}: set PYTHON=/path/to/python3.11"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

# Fashion-MNIST: MINIAI_DATA, or Debian/Ubuntu's package (installed here when we are root).
data:
	@bash tools/get_data.sh

test: setup
	$(BIN)/nbdev_export
	@if [ -n "$$(git status --porcelain -- miniai)" ]; then \
	  echo "nbdev_export changed miniai/: the library is out of sync with nbs/. Run nbdev_export and commit."; \
	  git status --short -- miniai; exit 1; fi
	MINIAI_SCALE=ci $(BIN)/nbdev_test --n_workers 1 --timing
	MINIAI_SCALE=ci $(PY) -m pytest -q tests

demo: setup
	$(BIN)/miniai classify --out $(DEMO_OUT)

# The diffusion pipeline (train -> sample -> eval) at a CPU-sized default; see README for its status.
DIFF_OUT ?= runs/demo
demo-diffusion: setup
	$(BIN)/miniai train --out $(DIFF_OUT) --preset tiny $(if $(wildcard $(DIFF_OUT)/checkpoint.pt),--resume,) --quiet
	$(BIN)/miniai sample --ckpt $(DIFF_OUT) --n 256 --sampler dpmpp_2m --steps 20
	$(BIN)/miniai eval --samples $(DIFF_OUT)/samples.pt

# helpers for developers
export: setup
	$(BIN)/nbdev_export
clean-nbs: setup
	$(BIN)/nbdev_clean
readme: setup
	$(BIN)/jupyter nbconvert --to markdown nbs/index.ipynb --output-dir . --output README --TagRemovePreprocessor.remove_cell_tags='["hide"]'
