# vLLM role, GPU flavour: vLLM's own OpenAI-compatible server (CUDA build) serving the merged
# Hugging Face directory of a variant (artifacts/<variant>/pytorch/: ModernBertForSequenceClassification,
# LoRA merged) as a pooling/classification model — `python3 -m vllm.entrypoints.openai.api_server
# --model DIR --runner pooling --convert classify`, the command of the CPU flavour
# (docker/vllm-cpu.Dockerfile) and of the native engine, which exposes POST /classify (the load
# client's vLLM request function) and GET /health. The directory is mounted at run time;
# HF_HUB_OFFLINE=1 keeps vLLM off the Hub.
#   docker build -f docker/vllm.Dockerfile -t green-pipeline-study/vllm:v0.11.0 .
FROM vllm/vllm-openai:v0.11.0@sha256:014a95f21c9edf6abe0aea6b07353f96baa4ec291c427bb1176dc7c93a85845c

SHELL ["/bin/bash", "-euo", "pipefail", "-c"]

COPY docker/entrypoint.sh /usr/local/bin/gps-entrypoint
# vLLM's image runs as root; add a non-root user (uid 1000 unless the base already has one).
RUN if ! getent passwd 1000 > /dev/null; then \
        useradd --uid 1000 --user-group --no-create-home --shell /usr/sbin/nologin app; \
    fi \
    && mkdir -p /home/app /workspace/artifacts /workspace/results \
    && chmod 1777 /home/app /workspace
# DL3064 flags TOKENIZERS_PARALLELISM for containing "TOKEN"; it is a thread switch, not a secret.
# hadolint ignore=DL3064
ENV HOME=/home/app \
    HF_HOME=/home/app/.cache/huggingface \
    VLLM_CACHE_ROOT=/home/app/.cache/vllm \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1
WORKDIR /workspace

USER 1000:1000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=300s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
# The base image's entrypoint is `vllm serve`; ours guards the mounted model, then runs the
# full command line given by CMD / compose (no --max-model-len: vLLM takes the model's own).
ENTRYPOINT ["/bin/sh", "/usr/local/bin/gps-entrypoint"]
CMD ["python3", "-m", "vllm.entrypoints.openai.api_server", "--model", "/workspace/artifacts/v0/pytorch", "--runner", "pooling", "--convert", "classify", "--served-model-name", "bigvul-modernbert", "--host", "0.0.0.0", "--port", "8000", "--max-num-seqs", "32", "--dtype", "float32"]
