# Load role: the project's load orchestrator (`python -m loadtest.run`, issue 6) and plain Locust
# master/worker processes over loadtest/locustfile.py. No GPU work happens here, so the CPU
# flavour is the only one; where compose gives this container the GPU's *utility* capability,
# the orchestrator's power sidecar reads NVML through it.
#   docker build -f docker/locust.Dockerfile -t green-pipeline-study/locust:cpu .
FROM python:3.11.9-slim-bookworm@sha256:8fb099199b9f2d70342674bd9dbccd3ed03a258f26bbd1d556822c6dfc60c317

ARG FLAVOUR=cpu
SHELL ["/bin/sh", "-eu", "-c"]

# --- project base: identical in every Python image (a test keeps it so), so Docker's layer
# --- cache builds it once for train, onnxruntime, locust and sidecar.
COPY requirements.txt docker/install-project.sh /tmp/build/
RUN sh /tmp/build/install-project.sh "${FLAVOUR}" /tmp/build/requirements.txt && rm -rf /tmp/build
# DL3064 flags TOKENIZERS_PARALLELISM for containing "TOKEN"; it is a thread switch, not a secret.
# hadolint ignore=DL3064
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/workspace \
    PYTHONUNBUFFERED=1 \
    HOME=/home/app \
    HF_HOME=/home/app/.cache/huggingface \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    MPLCONFIGDIR=/tmp/matplotlib \
    GPS_FLAVOUR=${FLAVOUR}
WORKDIR /workspace
COPY --chown=1000:1000 energy/ energy/
COPY --chown=1000:1000 training/ training/
COPY --chown=1000:1000 serving/ serving/
COPY --chown=1000:1000 loadtest/ loadtest/
COPY --chown=1000:1000 analysis/ analysis/
COPY --chown=1000:1000 data/ data/
COPY docker/entrypoint.sh /usr/local/bin/gps-entrypoint
USER 1000:1000
ENTRYPOINT ["/bin/sh", "/usr/local/bin/gps-entrypoint"]
# --- end of project base

# 8089: Locust web UI (unused when headless); 5557: master <-> worker.
EXPOSE 8089 5557
CMD ["python", "-m", "loadtest.run", "--help"]
