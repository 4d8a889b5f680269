# Two commands for newcomers: `make chat` (the main job) and `make test` (the test suite).
# Each creates .venv and installs what it needs; the llama.cpp build is kept beside pip's cache, so
# only the very first install compiles it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: chat test fuzz lint bench bench-voice bench-offline clean llama-wheel espeak-ng redis-server

# llama.cpp (the 'local' extra) is built once into a wheel kept beside pip's cache, for any x86-64 with
# AVX2 rather than -march=native: a native build uses AMX where the build machine advertises it and then
# crashes (SIGSEGV in ldtilecfg) on VMs that advertise AMX without enabling it, or on another CPU that
# reuses the cached wheel. pip's own wheel cache ignores CMAKE_ARGS, so it cannot keep the two apart.
LLAMA := $(shell sed -n 's/.*"\(llama-cpp-python\)\[server\]\(==[0-9.]*\)".*/\1\2/p' pyproject.toml)
ARCH := $(shell uname -m)
ifeq ($(ARCH),x86_64)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
else
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF
endif
PIP_CACHE := $(or $(shell $(PYTHON) -m pip cache dir 2>/dev/null),$(HOME)/.cache/pip)
WHEELS := $(PIP_CACHE)/openrouter-voice/$(subst ==,-,$(LLAMA))-$(ARCH)-$(shell echo '$(LLAMA_CMAKE_ARGS)' | cksum | cut -d' ' -f1)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(if $(findstring local,$*),$(MAKE) --no-print-directory llama-wheel)
	$(BIN)/pip install --quiet --find-links '$(WHEELS)' -e '.[$*]'
	@# pip keeps an llama-cpp-python of the same version already in the venv, even a native build
	$(if $(findstring local,$*),$(BIN)/pip install --quiet --no-deps --force-reinstall '$(WHEELS)'/llama_cpp_python-*.whl)
	touch $@

llama-wheel: | $(BIN)/python
	@ls '$(WHEELS)'/llama_cpp_python-*.whl >/dev/null 2>&1 || { \
	  echo "building $(LLAMA) once (about 4 minutes on 2 cores) into $(WHEELS)"; \
	  rm -rf '$(WHEELS).tmp' && mkdir -p '$(WHEELS).tmp' && \
	  CMAKE_ARGS='$(LLAMA_CMAKE_ARGS)' $(BIN)/pip wheel --quiet --no-deps --no-cache-dir '$(LLAMA)' -w '$(WHEELS).tmp' && \
	  mv '$(WHEELS).tmp' '$(WHEELS)'; }

# The local voice turns text into phonemes with espeak-ng (GPL-3.0), run as a separate program: a
# system package, installed here when missing and we may (root with apt), else named with the fix.
espeak-ng:
	@command -v espeak-ng >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq espeak-ng >/dev/null; \
	  else echo "The local voice needs espeak-ng: sudo apt-get install espeak-ng (or brew install espeak-ng)"; fi; }

# The fleet health tests share state through a real Redis: Debian's redis-server, like espeak-ng.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; \
	  else echo "The fleet health tests need redis-server: sudo apt-get install redis-server (or brew install redis)"; fi; }

chat: $(VENV)/.installed-local | espeak-ng
	$(BIN)/openrouter-voice chat $(ARGS)

# Two worker processes (pytest-xdist): the audio tests spend most of their time waiting on real-time
# audio, so two of them share a core well. Tests of one module that share a server started once
# (xdist_group) run in the same worker. PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
test: $(VENV)/.installed-dev,local | espeak-ng redis-server
	OPENROUTER_VOICE_REQUIRE_LOCAL=1 $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# Property tests with fresh random examples, ten times as many as `make test` (which runs the same
# derandomized ones every time); failures are kept in .hypothesis/ and replayed first on the next run.
fuzz: $(VENV)/.installed-dev,local
	$(BIN)/python -m pytest -m hypothesis --hypothesis-profile=fuzz -p no:cacheprovider $(PYTEST_ARGS) tests

lint: $(VENV)/.installed-dev,local
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: $(VENV)/.installed-bench,local
	$(BIN)/python -m bench $(ARGS)

# time to first audio on the whole voice pipeline, per fault, and the false cut-off table (sized for under
# 30 minutes on an idle 2-core machine; ARGS=--quick for under 10)
bench-voice: $(VENV)/.installed-bench,local | espeak-ng
	$(BIN)/python -m bench.voice $(ARGS)

# the local model's answers to 40 everyday questions, before and after its few-shot prompt (a few minutes)
bench-offline: $(VENV)/.installed-bench,local
	$(BIN)/python -m bench.offline $(ARGS)

clean:
	rm -rf $(VENV)
