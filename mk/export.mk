# Export (docs/export-and-triton.md): serving formats of a trained variant + the Triton repository.
#
#   make export VARIANT=v2                   pytorch, onnx, onnx-int8 (+ tensorrt where a GPU and
#                                            TensorRT exist; skipped here with a one-line reason)
#   make export VARIANT=v2 FORMAT=onnx-int8  one format → artifacts/v2/onnx-int8/ + export.json
#   make triton-repo VARIANT=v2              artifacts/v2/triton/ (TRITON_BACKEND, TRITON_KIND)
#
# Both train first when artifacts/<VARIANT>/model/ is missing. EXPORT_ARGS / TRITON_REPO_ARGS pass
# any other option of `python -m serving.export` / `python -m serving.triton_repo`.

EXPORT_FORMAT    ?= all
EXPORT_ARGS      ?=
TRITON_BACKEND   ?= onnxruntime
TRITON_KIND      ?= $(if $(shell command -v nvidia-smi 2>/dev/null),gpu,cpu)
TRITON_REPO_ARGS ?=
# FORMAT is shared with `make serve` (empty = the engine's default); for export, empty = all.
EXPORT_FMT        = $(or $(FORMAT),$(EXPORT_FORMAT))
TRAINED_MODEL     = $(ARTIFACTS)/$(VARIANT)/model/config.json

.PHONY: export triton-repo
ifeq ($(RUNTIME),docker)
export: docker-export
else
export: $(STAMP) ## export a trained variant: VARIANT= FORMAT=onnx|onnx-int8|pytorch|tensorrt|all (trains first if missing)
	@test -f $(TRAINED_MODEL) || $(MAKE) --no-print-directory $(BUILD_MODEL)
	$(PY) -m serving.export --variant $(VARIANT) --format $(EXPORT_FMT) --artifacts-dir $(ARTIFACTS) \
		--meter $(METER) $(if $(DATA),--data $(DATA)) $(EXPORT_ARGS)
endif

triton-repo: $(STAMP) ## generate the Triton model repository artifacts/<VARIANT>/triton (TRITON_BACKEND=onnxruntime|tensorrt|python-onnxruntime TRITON_KIND=gpu|cpu)
	@test -f $(TRAINED_MODEL) || $(MAKE) --no-print-directory $(BUILD_MODEL)
	$(PY) -m serving.triton_repo --variant $(VARIANT) --artifacts-dir $(ARTIFACTS) \
		--backend $(TRITON_BACKEND) --kind $(TRITON_KIND) $(TRITON_REPO_ARGS)
