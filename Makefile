# Two commands on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# What the set-up installs. A GPU runner brings its own CUDA build of torch: point VENV at the
# environment that holds it and leave TORCH empty (docs/gpu.md), e.g.
#   make gpu-check VENV=/opt/torch/.venv TORCH= EXTRAS=
TORCH     ?= torch==2.13.0
EXTRAS    ?= dev,lms
PIP_FLAGS ?=

.PHONY: setup demo test bench bench-shards gpu-check bench-gpu clean

setup: $(VENV)/.installed

# torch first, pinned: 2.13.0 is a CPU wheel on the course machines' local disk.
# An unpinned torch would pull a multi-GB CUDA build. The lms extra (otter-grader, about
# 100 packages) is installed too, so that the otter / Gradescope tests run here and in CI.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(if $(TORCH),$(PY) -m pip install --quiet --disable-pip-version-check $(PIP_FLAGS) "$(TORCH)",\
	  @$(PY) -c "import torch" 2>/dev/null || { echo "TORCH= keeps the torch of VENV=$(VENV), which has none: point VENV at the environment that holds your CUDA torch"; exit 2; })
	$(PY) -m pip install --quiet --disable-pip-version-check $(PIP_FLAGS) -e ".$(if $(EXTRAS),[$(EXTRAS)])"
	touch $@

demo: setup
	$(PY) -m grader grade examples/submissions

test: setup
	$(PY) -m pytest

# Grades a generated class of 500 and prints throughput, latency, memory, where the time went,
# one submission from the shell, and the ratios to the naive way and to otter run.
bench: setup
	$(PY) benchmarks/bench.py --size 500 --jobs 2

# A class of 5,000 graded whole, then in 4 shards one after another, merged and compared.
bench-shards: setup
	$(PY) benchmarks/shards.py --size 5000 --shards 4 --jobs 2

# On a GPU machine: the reference, the sample class and the device-bug submissions on CUDA.
gpu-check: setup
	$(PY) -m grader.run.gpu_check $(GPU_CHECK_FLAGS)

# On a GPU machine: make bench's class (200 of it) on CUDA and on the CPU; GPU memory, leftovers.
bench-gpu: setup
	$(PY) benchmarks/gpu_bench.py --size 200 --jobs 2 $(GPU_BENCH_FLAGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
