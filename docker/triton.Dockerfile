# Triton role: NVIDIA's own tritonserver serving the model repository that the serving package
# generates for a variant (artifacts/<variant>/triton/: native onnxruntime_onnx / tensorrt_plan
# models, a python-backend tokenizer and an ensemble; issue 5). The repository is mounted at
# run time; nothing here downloads a model. The image runs on CPU-only hosts too.
#   docker build -f docker/triton.Dockerfile -t green-pipeline-study/triton:25.10 .
# 25.10 is built on CUDA 13.0 (driver R580+ on the host). A tensorrt_plan only loads in the
# TensorRT version it was built with: build plans with this image's trtexec (docs/containers.md).
FROM nvcr.io/nvidia/tritonserver:25.10-py3

SHELL ["/bin/bash", "-euo", "pipefail", "-c"]

# The python-backend tokenizer model (serving/triton_models/tokenizer.py) needs `tokenizers`
# (the version the project's environment saves tokenizer.json with) and numpy, which the image
# ships; nothing else is added.
RUN PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir \
        tokenizers==0.23.3 \
    && python3 -c "import numpy, tokenizers"

COPY docker/entrypoint.sh /usr/local/bin/gps-entrypoint
# DL3064 flags TOKENIZERS_PARALLELISM for containing "TOKEN"; it is a thread switch, not a secret.
# hadolint ignore=DL3064
ENV HOME=/home/app \
    HF_HOME=/home/app/.cache/huggingface \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false
RUN mkdir -p /home/app /workspace/artifacts /workspace/results \
    && chmod 1777 /home/app /workspace
WORKDIR /workspace

# uid 1000 is NVIDIA's own non-root `triton-server` user in this image.
USER 1000:1000
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=10s --timeout=3s --start-period=180s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2)"]
# Keep NVIDIA's entrypoint (driver/compat checks) behind the artifact guard.
ENTRYPOINT ["/bin/sh", "/usr/local/bin/gps-entrypoint", "/opt/nvidia/nvidia_entrypoint.sh"]
CMD ["tritonserver", "--model-repository=/workspace/artifacts/v0/triton", "--http-port=8000", "--grpc-port=8001", "--metrics-port=8002", "--backend-config=python,shm-default-byte-size=16777216", "--backend-config=python,shm-growth-byte-size=16777216", "--exit-timeout-secs=5"]
