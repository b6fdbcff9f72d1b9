# Set-up and the main jobs, over a virtual environment in .venv.
#   make train   set up (once), then train Atari Pong with the default preset
#                (on the GPU with --cuda where torch sees one); ARGS="..." adds flags
#   make test    set up (once), then run the tests; ARGS="..." adds pytest flags
#   make bench   set up with the bench extra (the peers), then run benchmark suites
#                (SUITES="replay_buffer loss ...", default all), each one's raw figures
#                to benchmarks/raw/<suite>-<date>.json
#                (print them with: python benchmarks/table.py FILE)
#   make setup   only the set-up: .venv, torch, dqnfast built in place with its extras
#   make clean   remove .venv and the build outputs
# Variables: PYTHON (the interpreter that makes the venv, default python3), VENV,
# TORCH (the pip requirement for torch, default the newest: torch; e.g. torch==2.13.0).
# Re-running is cheap: each step reruns only when what it depends on changed.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch
EXTRAS ?= test
ARGS ?=
SUITES ?= $(patsubst benchmarks/bench_%.py,%,$(wildcard benchmarks/bench_*.py))

PY := $(VENV)/bin/python
BUILT := $(VENV)/.dqnfast-built
SOURCES := setup.py build_config.py pyproject.toml $(shell find csrc -type f)

.PHONY: setup train test bench clean

setup: $(BUILT)

$(VENV)/.torch-installed:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH)" numpy "setuptools>=64" ninja
	@touch $@

$(BUILT): $(VENV)/.torch-installed $(SOURCES)
	@$(PY) build_config.py
	$(PY) -m pip install -q --disable-pip-version-check --no-build-isolation -e ".[$(EXTRAS)]"
	@$(PY) -c "import torch, dqnfast; cuda = torch._C._dispatch_has_kernel_for_dispatch_key('dqnfast::replay_sample', 'CUDA'); print(f'dqnfast built against torch {torch.__version__}: C++ kernels' + (' and CUDA kernels' if cuda else ''))"
	@touch $@

train: setup
	$(PY) -m dqnfast.train $$($(PY) -c "import torch; print('--cuda' if torch.cuda.is_available() else '')") $(ARGS)

test: setup
	$(PY) -m pytest tests -q $(ARGS)

bench: EXTRAS = bench
bench: setup
	@mkdir -p benchmarks/raw
	for suite in $(SUITES); do \
	  json=benchmarks/raw/$$suite-$$(date -u +%F).json; \
	  $(PY) -m pytest benchmarks/bench_$$suite.py -q --benchmark-only \
	    --benchmark-json=$$json $(ARGS) || exit 1; \
	  $(PY) benchmarks/table.py --strip $$json; \
	done

clean:
	rm -rf $(VENV) build dqnfast/*.so *.egg-info
