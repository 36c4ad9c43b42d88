# Energy meter layer (energy/). Variables: METER (auto | nvml | rapl | estimate | codecarbon |
# replay:<csv>, joined with '+'), COUNTRY (ISO-3 for CodeCarbon), and below.
OUT      ?= $(RESULTS_DIR)/power/power.csv
INTERVAL ?= 0.1
IDLE_S   ?= 10
IDLE_OUT ?= $(RESULTS_DIR)/power/idle.json

.PHONY: sidecar idle meters
sidecar: $(STAMP) ## run the power sidecar until Ctrl-C: OUT=results/power/power.csv INTERVAL=0.1 (marks: POST /mark, port in OUT's .port file)
	$(PY) -m energy.sidecar --out $(OUT) --interval-s $(INTERVAL) --meter '$(METER)' --country $(COUNTRY) \
		--mark-port 0 --port-file $(basename $(OUT)).port

idle: $(STAMP) ## measure idle power for IDLE_S seconds with the selected METER → IDLE_OUT (JSON)
	$(PY) -m energy idle --seconds $(IDLE_S) --meter '$(METER)' --interval-s $(INTERVAL) --country $(COUNTRY) --out $(IDLE_OUT)

meters: $(STAMP) ## list the energy meters and whether each can run on this machine
	$(PY) -m energy meters
