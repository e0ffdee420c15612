# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  := torch==2.13.0
# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads
# slow torch down several-fold.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: demo test lint bench reliability synth-costs accumulator-aware hw-tools network-build interop clean

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
	$(VENV)/bin/lint-imports
	$(PY) -m pytest
	$(PY) -m pytest --doctest-modules src/hwquant

# The layers of docs/architecture.md are import-linter contracts in pyproject.toml.
lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/lint-imports

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

# Consumer round trips (qonnx channels-last, onnxruntime, hls4ml C++ emulation, FINN execute_onnx)
# on the demo models (the small CNN of `make demo`, LLSQ W4A4 and W2A2, plus MSQ and non-uniform
# W4A4 fine-tuned from its FP32 weights, and an MLP in all three schemes and with the demo's 16-bit
# accumulator bound: benchmarks/interop/models.py),
# hls4ml and FINN each in its own environment under $(INTEROP)/ (never the main .venv); writes
# benchmarks/results/interop.json. Every round trip saves its result file as it finishes, so a
# stopped run resumes. finn-plus is installed without its dependencies (they pull CUDA wheels):
# only what ConvertQONNXtoFINN, Streamline, the to_hw inference and execute_onnx import.
INTEROP := .venv-interop
INTEROP_RUN := runs/interop
FINN_IMAGES := 1000
INTEROP_MODELS := small_cnn_llsq_w4a4=runs/demo/w4a4.npz@mnist5k \
	small_cnn_llsq_w2a2=runs/demo/w2a2.npz@mnist5k \
	small_cnn_msq_w4a4=runs/interop_models/small_cnn_msq_w4a4.npz@mnist5k \
	small_cnn_nonuniform_w4a4=runs/interop_models/small_cnn_nonuniform_w4a4.npz@mnist5k \
	mlp_llsq_w4a4=runs/interop_models/mlp_llsq_w4a4.npz@mnist5k \
	mlp_msq_w4a4=runs/interop_models/mlp_msq_w4a4.npz@mnist5k \
	mlp_nonuniform_w4a4=runs/interop_models/mlp_nonuniform_w4a4.npz@mnist5k \
	mlp_llsq_w4a4_acc16=runs/interop_models/mlp_llsq_w4a4_acc16.npz@mnist5k

$(INTEROP)/hls4ml/.installed:
	$(PYTHON) -m venv $(INTEROP)/hls4ml
	$(INTEROP)/hls4ml/bin/pip install -q --upgrade pip
	$(INTEROP)/hls4ml/bin/pip install -q "hls4ml==1.3.*" "qonnx==1.0.0" onnx
	touch $@

$(INTEROP)/finn/.installed:
	$(PYTHON) -m venv $(INTEROP)/finn
	$(INTEROP)/finn/bin/pip install -q --upgrade pip
	$(INTEROP)/finn/bin/pip install -q --no-deps "finn-plus==1.6.1"
	$(INTEROP)/finn/bin/pip install -q $(TORCH) "qonnx==1.0.0" "onnx==1.21.0" "onnxruntime==1.25.1" \
		"protobuf==5.29.6" "numpy>=2.4.6,<2.5.0" "bitstring>=4.3.1,<4.4.0" "scipy>=1.17.0,<1.18.0" \
		"pyyaml>=6.0.2,<6.1.0" "onnx-ir>=0.1.15" "onnxscript>=0.7.0" "onnxoptimizer>=0.4.2,<0.5.0" \
		"click>=8.1.8,<9.0.0" "termcolor>=2.5.0,<3.0.0" "rich>=13.9.4,<14.0.0" "pydantic>2.0" \
		"mashumaro[yaml]>=3.15,<4.0" "pandas>=2.3.1,<2.4.0" jinja2 "scikit-learn>=1.7.2,<1.8.0"
	touch $@

runs/demo/w4a4.npz runs/demo/w2a2.npz: $(VENV)/.installed
	$(VENV)/bin/hwquant demo --out runs/demo

runs/interop_models/mlp_llsq_w4a4_acc16.npz: runs/demo/w4a4.npz
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.interop.models runs/interop_models

interop: $(VENV)/.installed-test $(INTEROP)/hls4ml/.installed $(INTEROP)/finn/.installed runs/demo/w4a4.npz runs/demo/w2a2.npz runs/interop_models/mlp_llsq_w4a4_acc16.npz
	command -v g++ >/dev/null || (apt-get update && apt-get install -y --no-install-recommends g++)
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.interop.prepare $(INTEROP_RUN) $(INTEROP_MODELS)
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.interop.onnx_roundtrip $(INTEROP_RUN)/*/
	OMP_NUM_THREADS=1 $(INTEROP)/hls4ml/bin/python benchmarks/interop/hls4ml_roundtrip.py $(INTEROP_RUN)/*/
	OMP_NUM_THREADS=1 $(INTEROP)/finn/bin/python benchmarks/interop/finn_roundtrip.py --images $(FINN_IMAGES) $(INTEROP_RUN)/*/
	$(PY) -m benchmarks.interop.collect $(INTEROP_RUN)

clean:
	rm -rf $(VENV) $(BREVITAS_VENV) runs $(INTEROP) .pytest_cache
