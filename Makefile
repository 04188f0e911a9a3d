# Entry points. `make demo` and `make test` are all a newcomer needs; see README.md.
SHELL := /bin/bash
VENV ?= .venv
# The interpreter of every target: PYTHON=... on the command line, else the one `make env` recorded
# in $(PYTHON_FILE) (a file, not a shell export: tcsh and bash users type the same commands), else
# the .venv's. An interpreter that already has the project (a conda env on a cluster) skips the venv.
PYTHON_FILE ?= .python
PYTHON ?= $(or $(shell cat $(PYTHON_FILE) 2>/dev/null),$(VENV)/bin/python)
SWEEP ?= jobs/cifar10.yaml
CLUSTER ?= auto
ARGS ?=
DRY ?=
ENV_PREFIX ?= $(if $(wildcard /speed-scratch/$(USER)),/speed-scratch/$(USER)/envs/al-sweep,$(CURDIR)/.conda-env)
# make env's temporary files and pip/conda caches: beside the environment, in scratch (a node's /tmp
# is too small for PyTorch's wheels; $HOME's quota too small for the caches).
ENV_SCRATCH ?= $(ENV_PREFIX)-build
BENCH_ARGS ?=
# make env: the PyTorch build of the profile's GPUs (jobs/profiles/$(PROFILE).yaml: torch_build).
PROFILE ?= speed
TORCH_VERSION ?= 2.14.1
TORCHVISION_VERSION ?= 0.29.1
TORCH_BUILD ?= $(shell sed -n 's/^torch_build: *\([a-z0-9]*\).*/\1/p' jobs/profiles/$(PROFILE).yaml 2>/dev/null)

.PHONY: setup test lint demo data sweep status sync report bench env preflight gpu-check help

help:
	@echo "make setup | test | lint | demo | data | sweep | status | sync | report | bench | env | preflight | gpu-check"
	@echo "  SWEEP=$(SWEEP) CLUSTER=$(CLUSTER) ARGS='key=value ...' DRY=1 PYTHON=/path/to/python"

# The stamp makes setup idempotent and cheap; it is skipped when PYTHON already has the project.
setup:
	@if [ "$(PYTHON)" != "$(VENV)/bin/python" ]; then \
	  $(PYTHON) -c "import al_core, torch, submitit" 2>/dev/null && exit 0; \
	  echo "error: PYTHON=$(PYTHON) cannot import the project; run: $(PYTHON) -m pip install -e '.[test]'" >&2; exit 2; \
	fi; \
	if [ ! -f $(VENV)/.installed ] || [ pyproject.toml -nt $(VENV)/.installed ]; then \
	  python3 -m venv $(VENV) && \
	  $(VENV)/bin/pip install -q --upgrade pip && \
	  $(VENV)/bin/pip install -q -e '.[test]' && touch $(VENV)/.installed; \
	fi

# PYTEST_ARGS: more pytest arguments, e.g. PYTEST_ARGS='-m slurm' (CI's second pass) or '-k resume'.
# TEST_WORKERS: test processes (pytest-xdist): auto = one per core, at most 4 (each holds torch);
# 0 runs in this process (the cluster tests: they share one small cluster and time its jobs).
PYTEST_ARGS ?=
TEST_WORKERS ?= auto
test: setup
	$(PYTHON) -m pytest -q --durations=10 $(if $(filter 0,$(TEST_WORKERS)),,$(shell $(PYTHON) -c 'import xdist' 2>/dev/null && printf -- '-n %s --maxprocesses=4' $(TEST_WORKERS))) $(PYTEST_ARGS)

# ruff (pinned in the test extra): pyflakes + pycodestyle, and the formatter's check. CI runs it.
lint: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

# The local backend writes the report at the end of its wait (slurm.report_job, on by default).
demo: setup
	$(PYTHON) -m slurm.sweep jobs/demo.yaml --cluster local --wait $(ARGS)

data: setup
	$(PYTHON) -m al_core.data.download $(SWEEP) $(ARGS)

sweep: setup
	$(PYTHON) -m slurm.sweep $(SWEEP) $(ARGS) --cluster $(CLUSTER) $(if $(DRY),--dry-run,)

status: setup
	$(PYTHON) -m slurm.status $(SWEEP) $(ARGS)

# Uploads the sweep's offline W&B runs (tracking.wandb); from a node with internet.
sync: setup
	$(PYTHON) -m slurm.sync $(SWEEP) $(ARGS)

report: setup
	$(PYTHON) -m analysis.report $(SWEEP) $(ARGS)

bench: setup
	$(PYTHON) -m bench.bench_train $(BENCH_ARGS)
	$(PYTHON) -m bench.bench_select $(SELECT_ARGS)
	$(PYTHON) -m bench.bench_pack $(PACK_ARGS)
	$(PYTHON) -m bench.bench_calibration $(CALIBRATION_ARGS)
	$(PYTHON) -m bench.bench_study $(STUDY_ARGS)
	$(PYTHON) -m bench.bench_scale $(SCALE_ARGS)

# What this node offers a job (GPU, compute capability, the build's kernels); exit 78 if a job here could not use its GPU.
preflight: setup
	$(PYTHON) -m al_core.preflight $(ARGS)

# On a GPU node: environment report, gpu tests, the benchmark at full width, a timed 3-cycle run.
gpu-check: setup
	$(PYTHON) -m bench.gpu_check $(ARGS)

# A conda environment for a cluster (Speed: under /speed-scratch/$USER, never in $HOME). It builds
# on a compute node only, where a SLURM job runs it (SLURMD_NODENAME: set by slurmd for batch jobs
# and steps): clusters stop long work on their login nodes. Without SLURM (a workstation) it builds
# here. On success it records the interpreter in $(PYTHON_FILE), which every target then uses.
env: export TMPDIR = $(ENV_SCRATCH)/tmp
env: export PIP_CACHE_DIR = $(ENV_SCRATCH)/pip-cache
env: export CONDA_PKGS_DIRS = $(ENV_SCRATCH)/conda-pkgs
env:
	@if command -v sbatch >/dev/null 2>&1 && [ -z "$$SLURMD_NODENAME" ]; then \
	  echo "error: make env builds PyTorch's environment and must run in a job, not on the login node: srun -p ps -c 4 --mem=16G -t 2:00:00 make env" >&2; exit 2; \
	fi
	@command -v conda >/dev/null 2>&1 || { echo "error: make env needs conda on PATH (Speed: module load anaconda3/2023.03/default)" >&2; exit 2; }
	@mkdir -p "$$TMPDIR" "$$PIP_CACHE_DIR" "$$CONDA_PKGS_DIRS" && echo "temporary files and caches in $(ENV_SCRATCH)"
	conda env create --prefix $(ENV_PREFIX) --file environment.yml || conda env update --prefix $(ENV_PREFIX) --file environment.yml
	conda run --prefix $(ENV_PREFIX) python -m pip install --no-deps -e .
	@if [ -n "$(TORCH_BUILD)" ] && [ "$(TORCH_BUILD)" != null ]; then \
	  echo "installing torch $(TORCH_VERSION)+$(TORCH_BUILD) (profile $(PROFILE): torch_build)"; \
	  conda run --prefix $(ENV_PREFIX) python -m pip install -q "torch==$(TORCH_VERSION)+$(TORCH_BUILD)" \
	    "torchvision==$(TORCHVISION_VERSION)+$(TORCH_BUILD)" --extra-index-url https://download.pytorch.org/whl/$(TORCH_BUILD); \
	fi
	@echo "$(ENV_PREFIX)/bin/python" > $(PYTHON_FILE).tmp && mv -f $(PYTHON_FILE).tmp $(PYTHON_FILE)
	@echo "every make target now uses $(ENV_PREFIX)/bin/python (recorded in $(PYTHON_FILE)); check a GPU node with: srun -p pg --gpus=1 --mem=4G -t 10 make preflight"
