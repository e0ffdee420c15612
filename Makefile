# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  := torch==2.13.0
# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads
# slow torch down several-fold.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: demo test lint bench reliability synth-costs accumulator-aware hw-tools network-build clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[mnist5k]"
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -e ".[test]"
	touch $@

$(VENV)/.installed-hw: $(VENV)/.installed
	$(PIP) install -q -e ".[hw]"
	touch $@

# The open FPGA tools of `hwquant build` and the implementation flow (hwquant.rtl.implement):
# Debian's Yosys, Verilator, nextpnr-ice40 and icestorm; YoWASP Yosys and nextpnr-ecp5 from PyPI.
hw-tools: $(VENV)/.installed-hw
	command -v yosys >/dev/null && command -v verilator >/dev/null && command -v nextpnr-ice40 >/dev/null && command -v icepack >/dev/null || (apt-get update && apt-get install -y --no-install-recommends yosys verilator nextpnr-ice40 fpga-icestorm)

demo: $(VENV)/.installed
	$(VENV)/bin/hwquant demo --out runs/demo

test: $(VENV)/.installed-test hw-tools
	command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium)
	command -v iverilog >/dev/null && command -v yosys >/dev/null && command -v verilator >/dev/null || (apt-get update && apt-get install -y --no-install-recommends iverilog yosys verilator)
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

FASHION_MNIST := /usr/share/datasets/fashion-mnist

bench: $(VENV)/.installed-test
	$(PY) -m benchmarks.qat_step_time
	$(PY) -m benchmarks.engine_throughput
	$(PY) -m benchmarks.hw_throughput
	test -d $(FASHION_MNIST) || (apt-get update && apt-get install -y dataset-fashion-mnist)
	$(PY) -m benchmarks.fashion_mnist_llsq

# Accumulator-aware LLSQ (docs/llsq.md section 5): the Fashion-MNIST curve, one MAC per
# accumulator width in Yosys, and Brevitas A2Q+ side by side in its own venv (~1-2 h on 2 cores).
BREVITAS_VENV ?= .venv-brevitas
accumulator-aware: $(VENV)/.installed-test
	test -d $(FASHION_MNIST) || (apt-get update && apt-get install -y dataset-fashion-mnist)
	mkdir -p runs
	$(PY) -m benchmarks.accumulator_aware_fashion_mnist --save-fp32 runs/fp32_small_cnn.pt
	$(PY) -m benchmarks.accumulator_aware_hardware
	test -x $(BREVITAS_VENV)/bin/python || ($(PYTHON) -m venv $(BREVITAS_VENV) && \
		$(BREVITAS_VENV)/bin/pip install -q $(TORCH) && $(BREVITAS_VENV)/bin/pip install -q brevitas==0.13.4)
	$(PY) -m benchmarks.brevitas_a2q_fashion_mnist --init-fp32 runs/fp32_small_cnn.pt \
		--brevitas-python $(BREVITAS_VENV)/bin/python

# Faults injected on purpose and fuzzed inputs (~10-15 min on 2 cores; not part of `make test`).
reliability: $(VENV)/.installed-test
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.reliability

# Re-synthesize every unit of the cost sweep with Yosys and refit src/hwquant/hw/data/synth_costs.json.
synth-costs: $(VENV)/.installed
	command -v yosys >/dev/null || (apt-get update && apt-get install -y --no-install-recommends yosys)
	$(VENV)/bin/hwquant synth sweep --jobs 2

# Whole-network designs built, simulated, synthesized and placed (benchmarks/network_build.py;
# resumes: finished entries of benchmarks/results/network_build.json are kept).
network-build: $(VENV)/.installed-test hw-tools
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.network_build

clean:
	rm -rf $(VENV) $(BREVITAS_VENV) runs .pytest_cache
