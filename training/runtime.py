"""What this machine can run: hardware probes, the per-variant refusal rules, the multi-GPU
launcher command line and the opt-in NVML power limit.

:func:`plan` is pure given a :class:`Hardware` description, so every refusal is unit-tested on a
CPU box (with a described, not real, GPU). A refusal is never silent: the run fails with
``status: failed`` and a reason starting ``refused:``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from training.config import Config

POWER_OPT_IN_ENV = "GPS_ALLOW_POWER_LIMIT"


class Refused(RuntimeError):
    """This variant cannot run honestly on this machine (the message says why and what would)."""


@dataclass(frozen=True)
class Hardware:
    """What the run could use. :func:`probe_hardware` fills it from the real machine."""

    cuda_devices: int = 0
    bitsandbytes: bool = False
    flash_attn: bool = False
    nvml: bool = False
    cxx_compiler: bool = False
    cpu_bf16_native: bool = False


def probe_hardware() -> Hardware:
    """Probe this machine (imports torch; cheap; never changes anything)."""
    import torch

    spec = importlib.util.find_spec
    nvml = False
    if spec("pynvml") is not None:
        try:
            import pynvml

            pynvml.nvmlInit()
            nvml = pynvml.nvmlDeviceGetCount() > 0
            pynvml.nvmlShutdown()
        except Exception:
            nvml = False
    bf16_native = False
    try:
        bf16_native = bool(getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")() == "AVX512"
                           and torch.cpu._is_avx512_bf16_supported())
    except Exception:
        bf16_native = False
    return Hardware(
        cuda_devices=torch.cuda.device_count() if torch.cuda.is_available() else 0,
        bitsandbytes=spec("bitsandbytes") is not None,
        flash_attn=spec("flash_attn") is not None,
        nvml=nvml,
        cxx_compiler=any(shutil.which(c) for c in ("g++", "c++", "clang++")),
        cpu_bf16_native=bf16_native,
    )


@dataclass
class Plan:
    """The decisions a run follows, derived from the config and the hardware."""

    device: str  # "cpu" | "cuda"
    precision: str  # effective: "fp32" | "fp16" | "bf16"
    eval_quantization: str = "none"  # "none" | "dynamic_int8" (v3's CPU substitute)
    bnb_quantization: str = "none"  # "none" | "bnb_4bit" | "bnb_8bit"
    power_limit_w: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device, "precision": self.precision,
            "eval_quantization": self.eval_quantization, "bnb_quantization": self.bnb_quantization,
            "power_limit_w": self.power_limit_w, "notes": list(self.notes),
        }


def plan(cfg: Config, hw: Hardware, env: dict[str, str] | None = None) -> Plan:
    """Decide how ``cfg`` runs on ``hw``, or raise :class:`Refused` with every reason at once."""
    env = os.environ if env is None else env
    reasons: list[str] = []
    notes: list[str] = []
    rt, tr = cfg.runtime, cfg.training

    if rt.device == "cuda" and hw.cuda_devices == 0:
        reasons.append("runtime.device=cuda but no CUDA device is visible")
    device = "cuda" if (rt.device == "cuda" or (rt.device == "auto" and hw.cuda_devices > 0)) else "cpu"
    if rt.gpus > 1 and hw.cuda_devices < rt.gpus:
        reasons.append(f"GPUS={rt.gpus} needs {rt.gpus} CUDA devices; this machine has {hw.cuda_devices}")

    precision = tr.precision
    if precision == "half":
        precision = "fp16" if device == "cuda" else "bf16"
        notes.append(f"precision half → {precision} on {device}")
    if precision == "fp16" and device == "cpu":
        reasons.append("training.precision=fp16 needs CUDA (CPU autocast is bf16): use precision=bf16 or half")
    if precision == "bf16" and device == "cpu" and not hw.cpu_bf16_native:
        notes.append("bf16 on a CPU without native bf16 instructions: emulated, expect it to be slower")

    eval_q, bnb_q = "none", "none"
    q = cfg.quantization
    if q.mode != "none":
        if device == "cuda":
            if not hw.bitsandbytes:
                reasons.append(f"quantization.mode={q.mode} needs bitsandbytes (pip install bitsandbytes)")
            if not cfg.peft.enabled:
                reasons.append(
                    f"quantization.mode={q.mode}: a bitsandbytes-quantised base cannot be fully "
                    "fine-tuned; enable LoRA (v2 or --set peft.enabled=true), i.e. QLoRA"
                )
            bnb_q = q.mode
        elif q.cpu_fallback == "refuse":
            reasons.append(f"quantization.mode={q.mode} needs bitsandbytes on CUDA; no GPU here "
                           "(quantization.cpu_fallback=refuse)")
        else:
            if cfg.inference.engine != "pytorch":
                reasons.append(
                    "v3's CPU substitute (dynamic int8 Linear layers) quantises the PyTorch "
                    f"evaluation; it does not combine with inference.engine={cfg.inference.engine} "
                    "(use serving.export --format onnx-int8 for a quantised ONNX model)"
                )
            eval_q = "dynamic_int8"
            notes.append(
                f"quantization.mode={q.mode} needs bitsandbytes on CUDA; CPU substitute: the base "
                "trains in full precision and the evaluation runs with dynamic int8 Linear layers"
            )

    if cfg.power.limit_w is not None:
        opted_in = cfg.power.allow_change or env.get(POWER_OPT_IN_ENV) == "1"
        if not hw.nvml or device != "cuda":
            reasons.append(f"power.limit_w={cfg.power.limit_w:g} W needs an NVIDIA GPU with NVML; none here")
        elif not opted_in:
            reasons.append(
                f"power.limit_w={cfg.power.limit_w:g} W changes the GPU's power limit for the whole "
                f"machine: opt in with --set power.allow_change=true or {POWER_OPT_IN_ENV}=1 (needs root)"
            )

    if tr.optim == "adamw_8bit" and not (device == "cuda" and hw.bitsandbytes):
        reasons.append("training.optim=adamw_8bit needs bitsandbytes on CUDA; on CPU use adamw_torch_fused or adafactor")
    if cfg.model.attn_implementation == "flash_attention_2" and not (device == "cuda" and hw.flash_attn):
        reasons.append("model.attn_implementation=flash_attention_2 needs CUDA and the flash_attn package; use sdpa or eager")
    if tr.torch_compile and device == "cpu" and not hw.cxx_compiler:
        reasons.append("training.torch_compile=true on CPU needs a C++ compiler (inductor); none found")
    if tr.dataloader_pin_memory and device == "cpu":
        notes.append("dataloader_pin_memory has no effect without a GPU (torch ignores it on CPU)")
    if tr.gradient_checkpointing and cfg.peft.enabled:
        notes.append("gradient checkpointing with LoRA: input embeddings made to require grad")

    if reasons:
        raise Refused("refused: " + "; ".join(reasons))
    return Plan(device=device, precision=precision, eval_quantization=eval_q, bnb_quantization=bnb_q,
                power_limit_w=cfg.power.limit_w, notes=notes)


# -- multi-GPU ---------------------------------------------------------------------------------

LAUNCHED_ENV = "GPS_LAUNCHED"


def launch_command(argv: Sequence[str], gpus: int, python: str | None = None) -> list[str]:
    """The ``accelerate launch`` command that runs ``python -m training.train <argv>`` on
    ``gpus`` GPUs, data-parallel. ``argv`` is this process's arguments; its ``--gpus`` is kept
    so each worker knows the world size (workers see ``GPS_LAUNCHED=1`` and do not relaunch)."""
    if gpus < 2:
        raise ValueError(f"launch_command is for 2 or more GPUs, got {gpus}")
    return [
        python or sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", str(gpus), "--num_machines", "1",
        "--mixed_precision", "no",  # precision comes from the variant via TrainingArguments
        "--module", "training.train", *argv,
    ]


def is_worker() -> bool:
    """True inside a process started by :func:`launch_command`."""
    return os.environ.get(LAUNCHED_ENV) == "1" or int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


# -- power limit -------------------------------------------------------------------------------


@contextmanager
def power_limit(limit_w: float | None):
    """Set every GPU's NVML power limit to ``limit_w`` for the block, and restore the previous
    limits afterwards (also on error). Only called after :func:`plan` checked the opt-in."""
    if limit_w is None:
        yield []
        return
    import pynvml

    pynvml.nvmlInit()
    previous = []
    try:
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        for h in handles:
            lo, hi = pynvml.nvmlDeviceGetPowerManagementLimitConstraints(h)
            target = int(limit_w * 1000)
            if not lo <= target <= hi:
                raise Refused(f"refused: power.limit_w={limit_w:g} W is outside this GPU's range "
                              f"{lo / 1000:g}–{hi / 1000:g} W")
            previous.append((h, pynvml.nvmlDeviceGetPowerManagementLimit(h)))
            try:
                pynvml.nvmlDeviceSetPowerManagementLimit(h, target)
            except pynvml.NVMLError as e:
                raise Refused(f"refused: setting the NVML power limit failed ({e}); it needs root") from None
        yield [p for _, p in previous]
    finally:
        for h, p in previous:
            try:
                pynvml.nvmlDeviceSetPowerManagementLimit(h, p)
            except Exception:
                pass
        pynvml.nvmlShutdown()
