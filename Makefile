# Two commands do all set-up: `make run` (the main job on the embedded default) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# faiss build: cpu (default) or gpu (faiss-gpu-cu12, for CUDA hosts): make install FAISS=gpu. The two builds ship
# the same `faiss` module, so switching removes both before installing the one asked for.
FAISS  ?= cpu
OTHER_FAISS := $(if $(filter gpu,$(FAISS)),faiss-cpu,faiss-gpu-cu12)
# the other build's files are this build's files too: when it is installed, remove both, then install this one
SWITCH_FAISS := if $(PIP) show -q $(OTHER_FAISS) 2>/dev/null; then $(PIP) uninstall -y -q faiss-cpu faiss-gpu-cu12; fi
STAMP      := $(VENV)/.installed-$(FAISS)
STAMP_TEST := $(VENV)/.installed-test-$(FAISS)

.PHONY: run test lint docs linkcheck install install-test tune tables reproduce bench gpu-check clean-results slurm-packages slurm-up slurm-down postgres-packages

# `make run`: the harness picks the threads itself (harness/runtime/threads.py: one for the digits MLP, else the job's CPUs)
run: $(STAMP)            ## the main job: the digits ablation (sweeps/digits_ablation.yaml), then its table (about a minute on CPU)
	$(BIN)/python run.py -m sweep=digits_ablation; grid=$$?; \
	$(BIN)/python -m harness.tables --sweep digits_ablation --seeds 3 && exit $$grid

test: $(STAMP_TEST) slurm-packages postgres-packages lint docs   ## lint, the docs build, then the whole test suite (installs what it needs)
	$(BIN)/python -m pytest

lint: $(STAMP_TEST)      ## ruff: lint and format check (the configuration is in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The docs site (docs/README.md): strict, every warning and broken internal reference is an error. No network.
docs: $(STAMP_TEST)      ## the documentation site -> docs/_build/html (Sphinx + MyST + furo; the config reference from conf/)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m sphinx -W --keep-going -n -q -b html docs docs/_build/html

linkcheck: $(STAMP_TEST) ## the docs' external links (needs the network; not part of make test)
	$(BIN)/python -m sphinx -q -b linkcheck docs docs/_build/linkcheck

tune: $(STAMP)           ## Optuna search over AntiCo's eps and weight on digits (sweeps/tune_eps.yaml; TUNE_ARGS=...)
	$(BIN)/python run.py -m sweep=tune_eps hydra/launcher=submitit_local $(TUNE_ARGS)

tables: $(STAMP)         ## every run under results/ -> results/tables/all/ (Markdown, LaTeX, CSV, parquet, plots)
	$(BIN)/python -m harness.tables $(TABLES_ARGS)

reproduce: $(STAMP)       ## one paper's seed table, PAPER=antico|nir|metrix: both protocols x both arms (+ its released baselines), then its tables
	@case "$(PAPER)" in antico|nir|metrix) ;; *) echo "error: set PAPER=antico, nir or metrix (make reproduce PAPER=nir)"; exit 2;; esac
	$(BIN)/python run.py -m sweep=reproduce_$(PAPER) $(REPRODUCE_ARGS); grid=$$?; \
	if [ -f sweeps/reproduce_$(PAPER)_released.yaml ]; then \
	  $(BIN)/python run.py -m sweep=reproduce_$(PAPER)_released $(REPRODUCE_ARGS) || grid=1; fi; \
	$(BIN)/python -m harness.tables --sweep reproduce_$(PAPER),reproduce_$(PAPER)_released --seeds 3 \
	  --out $(or $(HARNESS_RESULTS),results)/tables/reproduce_$(PAPER) $(TABLES_ARGS) && exit $$grid

bench: $(STAMP)          ## performance ratios -> results/bench/ (docs/results/benchmarks.md: time; BENCH_ARGS=--quick / --only NAME)
	$(BIN)/python -m harness.bench $(BENCH_ARGS)

gpu-check: $(STAMP)      ## on a GPU machine (make install FAISS=gpu): throughput, host syncs, resume, faiss-gpu -> results/bench/gpu.md
	$(BIN)/python -m harness.bench.gpu_check $(GPU_CHECK_ARGS)

# A one-node SLURM cluster on localhost (tests/slurm_cluster.py; the SLURM tests start their own).
SLURM_DIR ?= /tmp/harness-slurm
slurm-packages:                     ## apt-get install slurmctld slurmd slurm-client munge (as root, when missing)
	$(PYTHON) tests/slurm_cluster.py install
slurm-up: slurm-packages            ## start it; then: export SLURM_CONF=$(SLURM_DIR)/slurm.conf
	$(PYTHON) tests/slurm_cluster.py up $(SLURM_DIR)
slurm-down:                         ## stop what slurm-up started
	$(PYTHON) tests/slurm_cluster.py down $(SLURM_DIR)

# A PostgreSQL server for the Optuna storage test (tests/postgres_server.py; the test starts and stops its own).
postgres-packages:                  ## apt-get install postgresql (as root, when missing)
	$(PYTHON) tests/postgres_server.py install

install: $(STAMP)      ## the harness and faiss-cpu (FAISS=gpu: faiss-gpu-cu12 instead)
install-test: $(STAMP_TEST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(SWITCH_FAISS)
	rm -f $(VENV)/.installed-*
	$(PIP) install -e '.[$(FAISS)]'
	touch $@

$(STAMP_TEST): setup.cfg pyproject.toml | $(BIN)/python
	$(SWITCH_FAISS)
	rm -f $(VENV)/.installed-*
	$(PIP) install -e '.[$(FAISS),test]'
	touch $(STAMP) $@

clean-results:                      ## remove everything runs wrote under results/ (keeps its README)
	find results -mindepth 1 -not -name README.md -delete
