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

.PHONY: setup data test demo demo-classify export clean-nbs readme

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

# The main job: train -> sample -> eval at the CLI's CPU-sized defaults (micro U-Net, Karras preconditioning, one epoch,
# about 8 minutes on 2 cores), 256 samples with DPM-Solver++(2M) at 20 steps, FID/KID at N=256.
# Leaves $(DEMO_OUT)/samples.png and $(DEMO_OUT)/metrics.json. A killed run continues from its last checkpoint.
demo: setup
	$(BIN)/miniai train --out $(DEMO_OUT) $(if $(wildcard $(DEMO_OUT)/checkpoint.pt),--resume,) --quiet
	$(BIN)/miniai sample --ckpt $(DEMO_OUT) --n 256 --sampler dpmpp_2m --steps 20 --quiet
	$(BIN)/miniai eval --samples $(DEMO_OUT)/samples.pt
	@echo "wrote $(DEMO_OUT)/samples.png and $(DEMO_OUT)/metrics.json"

# The ResNet classifier of 05_resnet (the library's first main job).
CLASSIFY_OUT ?= classify_out
demo-classify: setup
	$(BIN)/miniai classify --out $(CLASSIFY_OUT)

# helpers for developers
export: setup
	$(BIN)/nbdev_export
clean-nbs: setup
	$(BIN)/nbdev_clean
readme: setup
	$(BIN)/jupyter nbconvert --to markdown nbs/index.ipynb --output-dir . --output README --TagRemovePreprocessor.remove_cell_tags='["hide"]'
