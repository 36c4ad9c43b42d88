# Analysis (docs/analysis.md): aggregate results, build the report, check it in Chromium, sweep.
#
#   make aggregate                         results/tables/*.csv + results/aggregated_metrics.json
#   make report                            results/report/index.html + report.md (runs aggregate)
#   make report-check                      headless Chromium screenshot + section check of the report
#   make sweep N=4 [WORKERS=2] [SAMPLER=random|tpe|nsga2] [SERVE=1]   Optuna study (results/sweep/study.db);
#                                          rerun the same command to continue it
#   make sweep-worker STORAGE=postgresql://USER@HOST/DB N=8               one more worker on a shared study
#
# Knobs: RESULTS_DIR (results), SLO_P99_MS (500), ACCURACY_METRIC (mcc | f1 | pair_accuracy),
# SLO_ACCURACY_MIN (default per metric: mcc 0.05, f1 0.5, pair_accuracy 0.5), REQUESTS_PER_DAY (100000),
# REGIONS (DEU,FIN,FRA,USA), SWEEP_SPACE (analysis/search_space.yaml), SWEEP_MAX_STEPS (from
# the space file), SWEEP_OUT (results/sweep), STORAGE (sqlite:///$(SWEEP_OUT)/study.db), STUDY
# (green-sweep), SAMPLER (random), WORKERS (worker processes here; 0 or unset = 1), SWEEP_ENERGY /
# SWEEP_ACCURACY (the objectives: auto = server→net→gross Wh/1k when serving, else training kWh;
# mcc where present, else f1).

REPORT_DIR       ?= $(RESULTS_DIR)/report
SLO_P99_MS       ?= 500
ACCURACY_METRIC  ?= mcc
SLO_ACCURACY_MIN ?=
REQUESTS_PER_DAY ?= 100000
REGIONS          ?= DEU,FIN,FRA,USA
N                ?= 3
SWEEP_SEED       ?= 0
SWEEP_SPACE      ?= analysis/search_space.yaml
SWEEP_OUT        ?= $(RESULTS_DIR)/sweep
SWEEP_MAX_STEPS  ?=
SERVE            ?=
SAMPLER          ?= random
STORAGE          ?= sqlite:///$(SWEEP_OUT)/study.db
STUDY            ?= green-sweep
SWEEP_ENERGY     ?= auto
SWEEP_ACCURACY   ?= auto
SWEEP_ARGS        = --n $(N) --sampler $(SAMPLER) --seed $(SWEEP_SEED) --space $(SWEEP_SPACE) --out $(SWEEP_OUT) \
	--storage '$(STORAGE)' --study-name $(STUDY) --energy-metric $(SWEEP_ENERGY) --accuracy-metric $(SWEEP_ACCURACY) \
	$(if $(SWEEP_MAX_STEPS),--max-steps $(SWEEP_MAX_STEPS)) $(if $(SERVE),--serve) --meter $(METER)

.PHONY: aggregate report report-check sweep sweep-worker

aggregate: $(STAMP) ## tidy tables (results/tables/) + results/aggregated_metrics.json from every result file
	$(PY) -m analysis.aggregate --results-dir $(RESULTS_DIR)

report: $(STAMP) ## build results/report/index.html + report.md (self-contained; SLO_P99_MS= ACCURACY_METRIC= SLO_ACCURACY_MIN= REGIONS=)
	$(PY) -m analysis.report --results-dir $(RESULTS_DIR) --out $(REPORT_DIR) \
		--p99-max-ms $(SLO_P99_MS) --accuracy-metric $(ACCURACY_METRIC) \
		$(if $(SLO_ACCURACY_MIN),--accuracy-min $(SLO_ACCURACY_MIN)) \
		--requests-per-day $(REQUESTS_PER_DAY) --countries $(REGIONS)

report-check: $(STAMP) ## render the report in headless Chromium and save a screenshot (builds the report if missing)
	@test -f $(REPORT_DIR)/index.html || $(MAKE) --no-print-directory report
	$(PY) -m analysis.screenshot $(REPORT_DIR)/index.html --out $(REPORT_DIR)/screenshot.png

sweep: $(STAMP) ## Optuna study: N=3 complete trials (WORKERS=2 SAMPLER=random|tpe|nsga2 SERVE=1 STORAGE=); rerun to continue
	$(PY) -m analysis.sweep $(SWEEP_ARGS) --workers $(if $(filter-out 0,$(WORKERS)),$(WORKERS),1)

sweep-worker: $(STAMP) ## one worker on a shared study: STORAGE=postgresql://USER@HOST/DB N= (run on each machine)
	@case '$(STORAGE)' in postgresql*) ;; *) echo "sweep-worker: set STORAGE=postgresql://USER@HOST/DB (the study all machines share); for one machine use make sweep WORKERS=2" >&2; exit 2;; esac
	$(PY) -m analysis.sweep $(SWEEP_ARGS) --workers $(if $(filter-out 0,$(WORKERS)),$(WORKERS),1)
