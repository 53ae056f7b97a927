# The two commands of the README:
#   make demo   # the main job at a small CPU-sized default
#   make test   # export check, clean-notebook check, lint, every notebook at CI scale, pytest
# and the lessons: make lab (JupyterLab on nbs/ with the miniai kernel).
# Each sets everything up first (idempotent): .venv with pinned packages, miniai editable, the kernel, the data.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.miniai-setup
PYTHON ?= $(shell command -v python3.11 || command -v python3)
DEMO_OUT ?= demo_out
# The Jupyter kernel of .venv: notebooks name it in their metadata (kernelspec name `miniai`).
KERNEL := miniai
KERNEL_DISPLAY := miniai (.venv)

.PHONY: setup data test check-export check-clean lint lab demo demo-classify gpu-check export clean-nbs readme
# steps run in the order written, also under make -j
.NOTPARALLEL:

setup: $(STAMP) data

$(STAMP): requirements.txt settings.ini setup.py Makefile
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"miniai needs Python 3.11, found {sys.version.split()[0]}: set PYTHON=/path/to/python3.11"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	@# the distribution was called `miniai` before it became miniai-lessons (the import name stays miniai)
	@if $(PY) -m pip show -q miniai 2>/dev/null; then $(PY) -m pip uninstall -q -y miniai; fi
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "$(KERNEL_DISPLAY)" >/dev/null
	@# nbdev's hooks: Jupyter cleans a notebook when it saves it, git merges notebooks with nbdev_merge
	@$(BIN)/nbdev_install_hooks >/dev/null 2>&1 || echo "nbdev_install_hooks failed (not needed to run miniai)"
	@touch $(STAMP)

# Fashion-MNIST: MINIAI_DATA, or Debian/Ubuntu's package (installed here when we are root).
data:
	@bash tools/get_data.sh

# CI runs this (.ci/run) on a fresh clone: every step below fails the command.
test: setup check-export check-clean lint
	MINIAI_SCALE=ci $(BIN)/nbdev_test --n_workers 1 --timing
	MINIAI_SCALE=ci $(PY) -m pytest -q tests

# miniai/ is what nbdev_export makes of nbs/ (run `make export` and commit both)
check-export: setup
	$(BIN)/nbdev_export
	@if [ -n "$$(git status --porcelain -- miniai)" ]; then \
	  echo "nbdev_export changed miniai/: the library is out of sync with nbs/. Run nbdev_export and commit."; \
	  git status --short -- miniai; exit 1; fi

# every notebook is as nbdev_clean leaves it (fix: make clean-nbs)
check-clean: setup
	$(PY) tools/check_clean_nbs.py

# exported code: lines of at most 120 characters, no unused imports (rules in tools/ruff.toml)
lint: setup
	$(PY) tools/lint.py

# The main job: train -> sample -> eval with the recipe ten_minutes (micro U-Net, Karras preconditioning, 3 epochs with
# one-cycle, about 9 minutes of training on 2 idle cores), 2,048 samples with DPM-Solver++(2M) at 20 steps, FID/KID at
# N=2,048 with the shipped feature network: the scale of the README's figures.
# Leaves $(DEMO_OUT)/samples.png and $(DEMO_OUT)/metrics.json. A killed run continues from its last checkpoint.
demo: setup
	@echo "== miniai train --recipe ten_minutes: micro U-Net, 3 epochs on 60,000 images (about 9 minutes on 2 CPU cores) -> $(DEMO_OUT)"
	$(BIN)/miniai train --out $(DEMO_OUT) --recipe ten_minutes $(if $(wildcard $(DEMO_OUT)/checkpoint.pt),--resume,)
	@echo "== miniai sample: 2,048 images, DPM-Solver++(2M), 20 steps"
	$(BIN)/miniai sample --ckpt $(DEMO_OUT) --n 2048 --sampler dpmpp_2m --steps 20
	@echo "== miniai eval: FID and KID against the 10,000 test images"
	$(BIN)/miniai eval --samples $(DEMO_OUT)/samples.pt
	@echo "wrote $(DEMO_OUT)/samples.png and $(DEMO_OUT)/metrics.json"

# The ResNet classifier of 05_resnet (the library's first main job).
CLASSIFY_OUT ?= classify_out
demo-classify: setup
	$(BIN)/miniai classify --out $(CLASSIFY_OUT)

# Is miniai ready for a GPU? On a CUDA machine: the fp32/fp16/bf16 and accelerate fits, sampling and checkpoints on the
# GPU (resumed on the CPU), GPU throughput, the CI-scale training notebooks -> bench/results/gpu_check.json (a few
# minutes). Without CUDA it is a dry run of the same checks on the CPU at toy size (-> gpu_check_dry_run.json).
gpu-check: setup
	$(PY) bench/gpu_check.py --notebooks

# The lessons: JupyterLab on nbs/, new notebooks get the miniai kernel. Ctrl-C stops it.
# LAB_ARGS passes options, e.g. make lab LAB_ARGS="--no-browser --port=8890" on a remote machine. As root (a container),
# Jupyter needs --allow-root: added then.
lab: setup
	$(BIN)/jupyter lab --ServerApp.root_dir=nbs --MappingKernelManager.default_kernel_name=$(KERNEL) \
	  $(if $(filter 0,$(shell id -u)),--allow-root,) $(LAB_ARGS)

# helpers for developers
export: setup
	$(BIN)/nbdev_export
clean-nbs: setup
	$(BIN)/nbdev_clean
readme: setup
	$(BIN)/jupyter nbconvert --to markdown nbs/index.ipynb --output-dir . --output README --TagRemovePreprocessor.remove_cell_tags='["hide"]'
