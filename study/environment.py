"""What machine and software produced a result: captured into every result file.

:func:`capture` is cheap (no heavy imports: versions come from package metadata, the GPU from
NVML when it loads) and never raises — a field it cannot fill is ``None``.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "datasets",
    "tokenizers",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "tensorrt",
    "nvidia-pytriton",
    "tritonclient",
    "vllm",
    "locust",
    "codecarbon",
    "nvidia-ml-py",
    "numpy",
    "pandas",
    "psutil",
)
_REPO = Path(__file__).resolve().parent.parent


def _safe(fn: Any, default: Any = None) -> Any:
    try:
        return fn()
    except Exception:
        return default


def _git(*args: str) -> str | None:
    out = subprocess.run(["git", *args], cwd=_REPO, capture_output=True, text=True, timeout=5)
    return out.stdout.strip() if out.returncode == 0 else None


def git_info() -> dict[str, Any]:
    """``{"sha", "dirty"}`` of the repository (``None`` outside a git checkout)."""
    sha = _safe(lambda: _git("rev-parse", "HEAD"))
    porcelain = _safe(lambda: _git("status", "--porcelain", "--untracked-files=no")) if sha else None
    return {"sha": sha, "dirty": None if porcelain is None else bool(porcelain)}


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that matter for the figures (absent ones omitted)."""
    out: dict[str, str] = {}
    for p in packages:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            continue
        except Exception:
            continue
    return out


def cpu_info() -> dict[str, Any]:
    """CPU model, logical/physical core counts, memory (GiB)."""
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    model = model or platform.processor() or None
    info: dict[str, Any] = {"model": model, "logical_cores": os.cpu_count()}
    try:
        import psutil

        info["physical_cores"] = psutil.cpu_count(logical=False)
        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 2)
    except Exception:
        pass
    affinity = _safe(lambda: len(os.sched_getaffinity(0)))
    if affinity is not None:
        info["usable_cores"] = affinity
    return info


def gpu_info() -> dict[str, Any] | None:
    """GPU names, memory and driver through NVML; ``None`` when there is no NVIDIA GPU."""
    try:
        import pynvml as nv

        nv.nvmlInit()
    except Exception:
        return None
    try:
        def _s(x: Any) -> str:
            return x.decode() if isinstance(x, bytes) else str(x)

        gpus = []
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            gpus.append({
                "index": i,
                "name": _s(nv.nvmlDeviceGetName(h)),
                "uuid": _safe(lambda h=h: _s(nv.nvmlDeviceGetUUID(h))),
                "memory_gib": _safe(lambda h=h: round(nv.nvmlDeviceGetMemoryInfo(h).total / 2**30, 2)),
                "power_limit_w": _safe(lambda h=h: nv.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0),
            })
        return {
            "driver": _safe(lambda: _s(nv.nvmlSystemGetDriverVersion())),
            "cuda_driver": _safe(lambda: nv.nvmlSystemGetCudaDriverVersion()),
            # what this process may use (the meters read these GPUs only, see energy.nvml)
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "cuda_device_order": os.environ.get("CUDA_DEVICE_ORDER"),
            "devices": gpus,
        }
    except Exception:
        return None
    finally:
        _safe(nv.nvmlShutdown)


def capture() -> dict[str, Any]:
    """Environment of this run: ``{git_sha, git_dirty, python, platform, hostname, cpu, gpu,
    driver, versions, captured_unix_s}``. Never raises."""
    try:
        git = git_info()
        gpu = _safe(gpu_info)
        return {
            "git_sha": git["sha"],
            "git_dirty": git["dirty"],
            "python": sys.version.split()[0],
            "platform": _safe(platform.platform),
            "hostname": _safe(platform.node),
            "cpu": _safe(cpu_info, {}),
            "gpu": gpu,
            "driver": gpu.get("driver") if gpu else None,
            "versions": _safe(versions, {}),
            "captured_unix_s": time.time(),
        }
    except Exception as e:  # belt and braces: a result file must still be written
        return {"error": f"{type(e).__name__}: {e}", "captured_unix_s": time.time()}
