# Training role: the project's own `python -m training.train` CLI (issue 4), nothing else.
#   docker build -f docker/train.Dockerfile --build-arg FLAVOUR=gpu -t green-pipeline-study/train:gpu .
# FLAVOUR=gpu: the CUDA build of torch (host needs the NVIDIA driver, R580+ for CUDA 13);
# FLAVOUR=cpu: CPU torch, for the embedded default on a GPU-less host. Weights and data are
# mounted at run time, never baked in. compose/compose.yaml gives the full command line.
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

CMD ["python", "-m", "training.train", "--help"]
