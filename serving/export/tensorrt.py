"""tensorrt export: an fp16 engine (``<variant>/tensorrt/model.plan``) built from the ONNX export.

Two builders, same result: the TensorRT Python API when ``import tensorrt`` works, else the
``trtexec`` command line (e.g. inside NVIDIA's TensorRT / Triton containers). Both get one
optimisation profile per input covering batch ``1..max_batch`` and sequence ``1..max_length``
with the "opt" point where the server spends its time (``opt_batch`` × ``opt_length``).
Where neither TensorRT nor a GPU is present, :class:`ExportUnavailable` says so in one line.

A plan is specific to the GPU model and TensorRT version that built it: build it on the host
(or in the container) that serves it. ``export.json`` records both.

The pure parts — :func:`build_profile`, :func:`trtexec_command` — are unit-tested on any box.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from serving.export.base import (
    ExportContext,
    ExportUnavailable,
    check_options,
    copy_tokenizer,
    fresh_dir,
)
from training.model import ONNX_INPUTS

INPUT_NAMES = tuple(ONNX_INPUTS)  # the ONNX export's inputs, each profiled [batch, sequence]
OPTIONS: dict[str, Any] = {
    "max_batch": 32,
    "opt_batch": 8,
    "opt_length": 128,
    "fp16": True,
    "workspace_mb": 4096,
    "builder": "auto",  # auto | python | trtexec
}
BUILDERS = ("auto", "python", "trtexec")


@dataclass(frozen=True)
class Profile:
    """One TensorRT optimisation profile: (min, opt, max) shape per input, all [batch, sequence]."""

    min_shape: tuple[int, int]
    opt_shape: tuple[int, int]
    max_shape: tuple[int, int]
    inputs: tuple[str, ...] = INPUT_NAMES

    def shapes(self) -> dict[str, tuple[tuple[int, int], tuple[int, int], tuple[int, int]]]:
        return {n: (self.min_shape, self.opt_shape, self.max_shape) for n in self.inputs}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def validate_options(options: dict[str, Any]) -> dict[str, Any]:
    opts = check_options("tensorrt", options, OPTIONS, {"builder": BUILDERS})
    for k in ("max_batch", "opt_batch", "opt_length", "workspace_mb"):
        if int(opts[k]) < 1:
            raise ValueError(f"tensorrt {k}={opts[k]!r}; allowed: an integer >= 1")
        opts[k] = int(opts[k])
    return opts


def build_profile(max_batch: int, max_length: int, opt_batch: int = 8, opt_length: int = 128,
                  inputs: tuple[str, ...] = INPUT_NAMES) -> Profile:
    """Batch ``1..max_batch``, sequence ``1..max_length``; opt clamped into that range.

    Raises ``ValueError`` naming the argument when a bound is below 1.
    """
    for name, v in (("max_batch", max_batch), ("max_length", max_length),
                    ("opt_batch", opt_batch), ("opt_length", opt_length)):
        if int(v) < 1:
            raise ValueError(f"{name}={v!r}; allowed: an integer >= 1")
    opt = (min(int(opt_batch), int(max_batch)), min(int(opt_length), int(max_length)))
    return Profile((1, 1), opt, (int(max_batch), int(max_length)), tuple(inputs))


def _shape_arg(profile: Profile, which: str) -> str:
    shape = {"min": profile.min_shape, "opt": profile.opt_shape, "max": profile.max_shape}[which]
    return ",".join(f"{n}:{shape[0]}x{shape[1]}" for n in profile.inputs)


def trtexec_command(onnx_path: Path | str, plan_path: Path | str, profile: Profile, *,
                    fp16: bool = True, workspace_mb: int = 4096, trtexec: str = "trtexec") -> list[str]:
    """The ``trtexec`` argv that builds ``plan_path`` from ``onnx_path`` with ``profile``."""
    cmd = [
        trtexec,
        f"--onnx={onnx_path}",
        f"--saveEngine={plan_path}",
        f"--minShapes={_shape_arg(profile, 'min')}",
        f"--optShapes={_shape_arg(profile, 'opt')}",
        f"--maxShapes={_shape_arg(profile, 'max')}",
        f"--memPoolSize=workspace:{int(workspace_mb)}M",
        "--skipInference",
    ]
    if fp16:
        cmd.append("--fp16")
    return cmd


def available_builder(preferred: str = "auto") -> str:
    """``"python"`` or ``"trtexec"``; raises :class:`ExportUnavailable` when neither works here."""
    reasons = []
    if preferred in ("auto", "python"):
        try:
            import tensorrt  # noqa: F401

            return "python"
        except ImportError as e:
            reasons.append(f"the tensorrt Python package is not importable ({e})")
    if preferred in ("auto", "trtexec"):
        if shutil.which("trtexec"):
            return "trtexec"
        reasons.append("trtexec is not on PATH")
    raise ExportUnavailable(
        "TensorRT export needs an NVIDIA GPU with TensorRT: " + "; ".join(reasons)
        + " — pip install tensorrt on a CUDA host, or run it in nvcr.io/nvidia/tritonserver "
        "(trtexec is in /usr/src/tensorrt/bin)"
    )


def _require_gpu() -> dict[str, Any]:
    """The GPU the plan is built for (name, driver), via NVML; ExportUnavailable without one."""
    try:
        import pynvml as nv

        nv.nvmlInit()
        try:
            if nv.nvmlDeviceGetCount() < 1:
                raise ExportUnavailable("TensorRT export needs an NVIDIA GPU; NVML sees none")
            h = nv.nvmlDeviceGetHandleByIndex(0)
            name = nv.nvmlDeviceGetName(h)
            return {"gpu": name.decode() if isinstance(name, bytes) else name,
                    "driver": _s(nv.nvmlSystemGetDriverVersion())}
        finally:
            nv.nvmlShutdown()
    except ExportUnavailable:
        raise
    except Exception as e:
        raise ExportUnavailable(f"TensorRT export needs an NVIDIA GPU; NVML is not usable here ({e})") from None


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def build_with_python(onnx_path: Path, plan_path: Path, profile: Profile, *, fp16: bool,
                      workspace_mb: int) -> dict[str, Any]:
    """Build via the TensorRT Python API (explicit batch, one profile, optional fp16)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") and int(trt.__version__.split(".")[0]) < 10:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors[:3]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    opt_profile = builder.create_optimization_profile()
    for name, (mn, op, mx) in profile.shapes().items():
        opt_profile.set_shape(name, mn, op, mx)
    config.add_optimization_profile(opt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT build_serialized_network returned None (see the log above)")
    plan_path.write_bytes(bytes(serialized))
    return {"builder": "python", "tensorrt_version": trt.__version__}


def build_with_trtexec(onnx_path: Path, plan_path: Path, profile: Profile, *, fp16: bool,
                       workspace_mb: int) -> dict[str, Any]:
    """Build via ``trtexec``; its output tail is kept in the error when it fails."""
    cmd = trtexec_command(onnx_path, plan_path, profile, fp16=fp16, workspace_mb=workspace_mb,
                          trtexec=shutil.which("trtexec") or "trtexec")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not plan_path.exists():
        raise RuntimeError(f"trtexec failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-800:]}")
    version = next((ln.split()[-1] for ln in proc.stdout.splitlines() if "TensorRT version" in ln), None)
    return {"builder": "trtexec", "command": cmd, "tensorrt_version": version}


def build(ctx: ExportContext) -> dict[str, Any]:
    """Write ``<variant>/tensorrt/``: ``model.plan`` + tokenizer. Builds the ONNX export first."""
    opts = validate_options(ctx.options)
    builder = available_builder(opts["builder"])
    gpu = _require_gpu()
    src = ctx.format_dir("onnx") / "model.onnx"
    if not src.exists():
        from serving.export import run_export

        run_export(ctx.variant, "onnx", artifacts_dir=ctx.artifacts_dir, max_length=ctx.max_length)
    out = fresh_dir(ctx.out_dir)
    profile = build_profile(opts["max_batch"], ctx.max_length, opts["opt_batch"], opts["opt_length"])
    t0 = time.perf_counter()
    fn = build_with_python if builder == "python" else build_with_trtexec
    info = fn(src, out / "model.plan", profile, fp16=opts["fp16"], workspace_mb=opts["workspace_mb"])
    info.update({"source": str(src), "profile": profile.to_dict(), "fp16": opts["fp16"],
                 "workspace_mb": opts["workspace_mb"], "build_s": time.perf_counter() - t0,
                 **gpu, "model_file": "model.plan",
                 "tokenizer_files": copy_tokenizer(ctx.model_dir, out)})
    return info


class TensorRTRunner:
    """texts → (logits, labels) on the plan, for parity. Needs tensorrt + torch with CUDA."""

    def __init__(self, plan_path: Path, tokenizer_dir: Path, max_length: int) -> None:
        import tensorrt as trt
        import torch

        from training.inference import TextEncoder  # the servers' tokenisation, reused on purpose

        if not torch.cuda.is_available():
            raise ExportUnavailable("TensorRT parity needs torch with CUDA to hold device buffers")
        self._tok = TextEncoder.from_dir(tokenizer_dir, max_length)
        self.max_length = self._tok.max_length
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(plan_path).read_bytes())
        self.context = self.engine.create_execution_context()
        self._torch = torch

    def predict(self, texts: list[str]):
        from training.inference import labels_of

        torch = self._torch
        feed = self._tok.tokenize(texts)
        bufs = {k: torch.from_numpy(v).cuda() for k, v in feed.items()}
        for k, t in bufs.items():
            self.context.set_input_shape(k, tuple(t.shape))
            self.context.set_tensor_address(k, t.data_ptr())
        out = torch.empty((len(texts), 2), dtype=torch.float32, device="cuda")
        self.context.set_tensor_address("logits", out.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        logits = out.float().cpu().numpy()
        return logits, labels_of(logits)


def predictor(ctx: ExportContext):
    return TensorRTRunner(ctx.out_dir / "model.plan", ctx.out_dir, ctx.max_length).predict
