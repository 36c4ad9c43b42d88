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
export PYTHONPATH := $(CURDIR)
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

# Shared knobs (each stage documents the ones it reads)
VARIANT  ?= v0
MODEL    ?= tiny
DATA     ?= data/bigvul/bigvul_sample.csv.gz
METER    ?= auto
RUNTIME  ?= local# local | docker (train/export/serve/load through compose: docs/containers.md)
COUNTRY  ?= FRA
PYTEST_ARGS ?=

.PHONY: help venv system-deps test lint clean
help: ## list every target with its one-line description
	@echo "green-pipeline-study — make targets (variables: VARIANT=$(VARIANT) MODEL=$(MODEL) METER=$(METER) COUNTRY=$(COUNTRY))"
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort -u | awk 'BEGIN{FS=":.*## "}{printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

venv: $(STAMP) ## create/update the local virtual environment (.venv; torch pinned to 2.13.0 CPU)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-dev.txt
	@touch $@

# Debian packages some checks use: chromium (the report's headless render), docker-compose
# (compose file validation) and postgresql (the sweep's shared-study test starts its own server
# with initdb/pg_ctl; Debian keeps those in /usr/lib/postgresql/<v>/bin). Installed when missing
# and we can (root + apt-get); otherwise the tests that need them skip with a reason.
SYSTEM_DEPS := chromium docker-compose postgresql
system-deps: ## install chromium + docker-compose + postgresql from Debian when missing (root + apt-get only; else their checks skip)
	@missing=""; for c in $(SYSTEM_DEPS); do \
	  case $$c in postgresql) ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
	    || missing="$$missing $$c";; *) command -v $$c >/dev/null 2>&1 || missing="$$missing $$c";; esac; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing$$missing (apt-get)"; \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; } \
	    || echo "could not install$$missing: the checks that need them skip with a reason"; \
	else echo "missing$$missing (needs root + apt-get): the checks that need them skip with a reason"; fi

test: $(STAMP) system-deps ## run the test suite (unit + integration on real loopback servers; gpu/docker tests skip with a reason)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff over the whole tree
	$(VENV)/bin/ruff check .

clean: ## remove artifacts/ and results/ (keeps the venv)
	rm -rf artifacts results

-include mk/*.mk
