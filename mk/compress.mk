# Compression (docs/compression.md): a trained variant → <variant>@<method>, served like any variant.
#
#   make compress VARIANT=v0 METHOD=magnitude-50          global unstructured magnitude pruning
#   make compress VARIANT=v0 METHOD=structured-25         25 % of the FFN neurons removed (smaller matrices)
#   make compress VARIANT=v0 METHOD=ptq-dynamic           PyTorch dynamic int8 (pytorch engine)
#   make compress VARIANT=v0 METHOD=qat FINETUNE_STEPS=20 quantisation-aware fine-tune → onnx-int8 is QDQ
#   make compress VARIANT=v0 METHOD=distill-1             a 1-layer student trained on v0's logits
#   make load ENGINE=onnxruntime VARIANT=v0@structured-25 (compresses first when missing)
#
# Writes $(ARTIFACTS)/<VARIANT>@<METHOD>/model/ and $(RESULTS_DIR)/compress/<VARIANT>@<METHOD>/result.json.
# Knobs: METHOD, FINETUNE_STEPS (empty = the method's default), COMPRESS_IDLE_S (3), COMPRESS_ARGS.
# The parent is trained first when $(ARTIFACTS)/<VARIANT>/model/ is missing.

METHOD          ?=
FINETUNE_STEPS  ?=
COMPRESS_IDLE_S ?= 3
COMPRESS_ARGS   ?=
# VARIANT=v0@qat → "v0" / "qat"; for a plain variant PARENT_OF is the variant and METHOD_OF empty.
PARENT_OF = $(word 1,$(subst @, ,$(1)))
METHOD_OF = $(word 2,$(subst @, ,$(1)))
# The make command that builds artifacts/<VARIANT>/model/ (train, or compress for <parent>@<method>).
BUILD_MODEL = $(if $(findstring @,$(VARIANT)),compress VARIANT=$(call PARENT_OF,$(VARIANT)) METHOD=$(call METHOD_OF,$(VARIANT)),train VARIANT=$(VARIANT))

COMPRESS_CLI_ARGS = --variant '$(VARIANT)' $(if $(METHOD),--method '$(METHOD)') --meter '$(METER)' \
	--idle-s $(COMPRESS_IDLE_S) --country $(COUNTRY) --results-dir '$(RESULTS_DIR)' --artifacts-dir '$(ARTIFACTS)' \
	$(if $(strip $(FINETUNE_STEPS)),--finetune-steps $(FINETUNE_STEPS)) $(COMPRESS_ARGS)

.PHONY: compress
compress: $(STAMP) ## compress a trained variant: VARIANT=v0 METHOD=magnitude-<pct>|structured-<pct>|ptq-dynamic|qat|distill-<layers> FINETUNE_STEPS= (artifacts/<VARIANT>@<METHOD>/model/)
	@$(PY) -m training.compress $(COMPRESS_CLI_ARGS) --check >/dev/null
	@test -f $(ARTIFACTS)/$(call PARENT_OF,$(VARIANT))/model/config.json || \
		$(MAKE) --no-print-directory train VARIANT=$(call PARENT_OF,$(VARIANT))
	$(PY) -m training.compress $(COMPRESS_CLI_ARGS)
