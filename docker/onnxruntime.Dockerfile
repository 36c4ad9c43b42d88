# Serving role: the project's Open Inference Protocol server (`python -m serving.serve`, issue 5)
# around ONNX Runtime — onnxruntime-gpu with its CUDA 13 + cuDNN 9 pip wheels for FLAVOUR=gpu,
# CPU onnxruntime for FLAVOUR=cpu. The same image also serves `--engine pytorch` (torch is in
# the project base). The model is mounted at run time (artifacts/<variant>/<format>/).
#   docker build -f docker/onnxruntime.Dockerfile --build-arg FLAVOUR=gpu -t green-pipeline-study/onnxruntime:gpu .
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

EXPOSE 8000
# Ready = model loaded and warm, the same probe the load orchestrator waits on.
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2)"]
# compose/compose.yaml gives the full command: engine, variant, format, the execution provider of
# the flavour (CPU, or CUDA in compose.gpu.yaml), --no-build, and --host 0.0.0.0 — the server
# binds 127.0.0.1 by default in Python; inside a container it must listen on all interfaces to
# be reachable, and compose publishes it on the host's 127.0.0.1 only. A bare `docker run`
# prints the options rather than serve with a provider that may not match the flavour.
CMD ["python", "-m", "serving.serve", "--help"]
