# Training (docs/training.md): one variant, five energy-measured stages, result.json + artifact.
#
#   make train VARIANT=v2                       tiny ModernBERT on the embedded BigVul sample
#   make train VARIANT=v2+v7+v8 REPEATS=3       a combination, 3 seeds → means + 95 % CI
#   make train VARIANT=v0 MODEL=/models/modernbert-base DATA=/data/MSR_data_cleaned.csv
#   make train VARIANT=v0 MAX_STEPS=20 SET="training.save_steps=5 data.eval_limit=50"
#   make variants                               every variant and what it changes
#
# Knobs: VARIANT MODEL DATA METER COUNTRY (Makefile), REPEATS (1), MAX_STEPS (empty = the
# variant's epochs), GPUS (1; >1 = accelerate launch), TRAIN_IDLE_S (empty = the config's 3 s), SET
# (space-separated section.key=value overrides), RESULTS_DIR (results), ARTIFACTS (artifacts),
# INCLUDE_FLAGGED (empty; 1 = average flagged repeats — resumed, tokenisation cache hit — too).
# Rerunning the same command after a kill resumes from the last checkpoint.

MAX_STEPS   ?=
GPUS        ?=
TRAIN_IDLE_S ?=
SET         ?=
INCLUDE_FLAGGED ?=

# Everything after `python -m training.train` (containers.mk runs the same in its container).
TRAIN_CLI_ARGS = --variant '$(VARIANT)' --model '$(MODEL)' --data '$(DATA)' --meter '$(METER)' \
	--repeats $(REPEATS) --results-dir '$(RESULTS_DIR)' --artifacts-dir '$(ARTIFACTS)' \
	--set runtime.country=$(COUNTRY) \
	$(if $(strip $(MAX_STEPS)),--max-steps $(MAX_STEPS)) $(if $(strip $(GPUS)),--gpus $(GPUS)) \
	$(if $(strip $(TRAIN_IDLE_S)),--idle-s $(TRAIN_IDLE_S)) $(foreach s,$(SET),--set '$(s)') \
	$(if $(filter 1 true yes,$(INCLUDE_FLAGGED)),--include-flagged)

.PHONY: train variants
ifeq ($(RUNTIME),docker)
train: docker-train
else
train: $(STAMP) ## train one variant: VARIANT=v2 MODEL=tiny DATA=… REPEATS=1 MAX_STEPS= GPUS= SET="k=v …" INCLUDE_FLAGGED= (results/train/<VARIANT>/result.json)
	$(PY) -m training.train $(TRAIN_CLI_ARGS)
endif

variants: ## list every training variant (v0…, aliases, combinations) and what it changes
	@$(PY) -m training.train --list
