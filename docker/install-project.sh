#!/bin/sh
# The one shared "project base" step of every Python image (train, onnxruntime, locust,
# sidecar): a virtual environment at /opt/venv holding the repo's requirements.txt, with the
# torch and ONNX Runtime builds that the flavour asks for, and a non-root user.
#
#   install-project.sh cpu|gpu REQUIREMENTS_FILE
#
# cpu: torch (version pinned in requirements.txt) from the PyTorch CPU wheel index, CPU
#      onnxruntime — the stack that runs the embedded default on a GPU-less host.
# gpu: torch from PyPI, whose Linux wheel is the CUDA build (CUDA 13 for torch 2.13, its CUDA
#      and cuDNN libraries come as pip wheels), and onnxruntime-gpu[cuda,cudnn] in place of the
#      CPU onnxruntime (the two ship the same module and must never be installed together).
#      Needs only the NVIDIA driver on the host (R580+ for CUDA 13); no CUDA base image.
#
# Every image runs the same files, so Docker's layer cache shares this step between them.
set -eu

flavour="${1:-}"
requirements="${2:-}"
case "$flavour" in
  cpu|gpu) ;;
  *) echo "install-project.sh: FLAVOUR must be 'cpu' or 'gpu', got '${flavour}'" >&2; exit 64 ;;
esac
if [ ! -f "$requirements" ]; then
  echo "install-project.sh: requirements file '${requirements}' not found" >&2
  exit 66
fi

ORT_GPU_VERSION="${ORT_GPU_VERSION:-1.31.1}"
TORCH_CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"

torch_pin="$(grep -E '^torch==' "$requirements" | head -n 1 | tr -d ' ')"
if [ -z "$torch_pin" ]; then
  echo "install-project.sh: requirements.txt must pin torch (torch==X.Y.Z)" >&2
  exit 65
fi

python -m venv /opt/venv
pip="/opt/venv/bin/pip"
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

reqs="/tmp/requirements.${flavour}.txt"
if [ "$flavour" = cpu ]; then
  # Torch first from the CPU index, so that requirements.txt finds it satisfied and never
  # pulls the multi-GB CUDA build.
  "$pip" install --index-url "$TORCH_CPU_INDEX" "$torch_pin"
  cp "$requirements" "$reqs"
else
  "$pip" install "$torch_pin"
  grep -vE '^onnxruntime([<>=!~ ;\[]|$)' "$requirements" > "$reqs"
  echo "onnxruntime-gpu[cuda,cudnn]==${ORT_GPU_VERSION}" >> "$reqs"
fi
"$pip" install -r "$reqs"
rm -f "$reqs"

if [ "$flavour" = gpu ]; then
  # ONNX Runtime dlopen()s libcudart/libcublas/libcudnn by soname; the pip wheels put them
  # under site-packages/nvidia/…, which the loader does not search. Register every such
  # directory once, so the CUDA provider loads without the server having to import torch first.
  find /opt/venv/lib -path '*/site-packages/nvidia/*' -name 'lib*.so*' -exec dirname {} \; \
    | sort -u > /etc/ld.so.conf.d/zz-nvidia-pip-wheels.conf
  ldconfig
  /opt/venv/bin/python - <<'EOF'
import onnxruntime as ort
providers = ort.get_available_providers()
if "CUDAExecutionProvider" not in providers:
    raise SystemExit(f"onnxruntime-gpu lacks the CUDA provider: {providers}")
import importlib.metadata as md
try:
    md.version("onnxruntime")
    raise SystemExit("CPU onnxruntime got installed beside onnxruntime-gpu; remove it")
except md.PackageNotFoundError:
    pass
EOF
fi

# Non-root runtime user. HOME is world-writable (sticky) because compose runs the containers
# as the invoking host user (HOST_UID) so that files in the bind-mounted artifacts/ and
# results/ belong to them; that uid may differ from 1000.
useradd --uid 1000 --user-group --create-home --home-dir /home/app --shell /usr/sbin/nologin app
chmod 1777 /home/app
mkdir -p /workspace/artifacts /workspace/results
chown app:app /workspace/artifacts /workspace/results
# Sticky and world-writable like /tmp: libraries that drop files in the working directory
# (CodeCarbon's emissions.csv) must work for whichever uid compose runs the container as.
chmod 1777 /workspace
