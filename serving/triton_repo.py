"""Generate a Triton model repository for a variant: ``python -m serving.triton_repo --help``.

    artifacts/<variant>/triton/
      bigvul-modernbert/          ensemble: TEXT → tokenizer → model → LOGITS, postprocess → LABEL
        config.pbtxt
        1/                        (ensembles need an empty version directory)
      bigvul-tokenizer/           python backend: TEXT → input_ids, attention_mask (INT64)
        config.pbtxt
        1/model.py  1/tokenizer/{tokenizer.json, tokenizer_config.json}
      bigvul-modernbert-onnx/     native onnxruntime_onnx (or python-onnxruntime, see below)
        config.pbtxt  1/model.onnx
      bigvul-modernbert-trt/      native tensorrt_plan (only when tensorrt/model.plan exists)
        config.pbtxt  1/model.plan
      bigvul-postprocess/         python backend: LOGITS → LABEL (argmax, INT64 [batch])
        config.pbtxt  1/model.py
      repository.json             what was generated from what, for the record

The ensemble exposes the study's contract (DESIGN.md): ``TEXT`` BYTES [batch, 1] →
``LOGITS`` FP32 [batch, 2], ``LABEL`` INT64 [batch]. ``--backend`` picks the model step:
``onnxruntime`` (native ORT backend, the default), ``tensorrt`` (native TensorRT plan; needs
the tensorrt export) or ``python-onnxruntime`` (ORT inside the python backend: for Triton builds
without the ORT backend, e.g. PyTriton's bundled server, which the tests use to run this
repository end to end). Dynamic batching is on for every non-ensemble model; the tokenizer
buckets sequence lengths (``--pad-to-multiple-of``) so the model step can batch across requests.

Every ``config.pbtxt`` is built as an ``inference.ModelConfig`` protobuf (tritonclient ships the
schema; :mod:`serving.triton_config`), so a misspelt field or an invalid combination fails here, not in the server.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

# parse_pbtxt is re-exported: callers of the repository's API need not know the split
from serving.triton_config import ENSEMBLE, check_repository, parse_pbtxt, to_pbtxt  # noqa: F401
from study.paths import Paths, artifacts_root

TOKENIZER = "bigvul-tokenizer"
POSTPROCESS = "bigvul-postprocess"
MODEL_ONNX = "bigvul-modernbert-onnx"
MODEL_TRT = "bigvul-modernbert-trt"
BACKENDS = ("onnxruntime", "tensorrt", "python-onnxruntime")
KINDS = ("cpu", "gpu")
TEMPLATES = Path(__file__).resolve().parent / "triton_models"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@dataclass
class RepoSettings:
    """Knobs of the generated repository (validated: a bad value names the key and what's allowed)."""

    variant: str = "v0"
    artifacts_dir: str | None = None
    out: str | None = None  # default <artifacts>/<variant>/triton
    backend: str = "onnxruntime"
    kind: str = "gpu"  # instance_group kind of the model step (tokenizer/postprocess: CPU)
    instances: int = 1
    max_batch_size: int = 32
    preferred_batch_sizes: list[int] = field(default_factory=lambda: [8, 16, 32])
    max_queue_delay_us: int = 5000
    max_length: int = 512
    pad_to_multiple_of: int = 64
    cpu_instances: int = 1  # tokenizer/postprocess instances
    intra_op_threads: int = 0  # ORT intra-op threads (0 = ORT default)
    model_name: str = ENSEMBLE

    def __post_init__(self) -> None:
        def need(cond: bool, key: str, allowed: str) -> None:
            if not cond:
                raise ValueError(f"triton repo setting {key}={getattr(self, key)!r} is invalid; allowed: {allowed}")

        need(self.backend in BACKENDS, "backend", ", ".join(BACKENDS))
        need(self.kind in KINDS, "kind", ", ".join(KINDS))
        need(self.instances >= 1, "instances", ">= 1")
        need(self.cpu_instances >= 1, "cpu_instances", ">= 1")
        need(self.max_batch_size >= 1, "max_batch_size", ">= 1")
        need(all(1 <= b <= self.max_batch_size for b in self.preferred_batch_sizes),
             "preferred_batch_sizes", f"sizes in 1..max_batch_size ({self.max_batch_size})")
        need(self.max_queue_delay_us >= 0, "max_queue_delay_us", ">= 0")
        need(self.max_length >= 8, "max_length", ">= 8")
        need(self.pad_to_multiple_of >= 1, "pad_to_multiple_of", ">= 1")
        need(self.intra_op_threads >= 0, "intra_op_threads", ">= 0")
        need(bool(self.model_name) and "/" not in self.model_name, "model_name", "a name without '/'")
        need(self.backend != "python-onnxruntime" or self.kind == "cpu", "kind",
             "cpu with backend python-onnxruntime (it runs ORT's CPU provider)")

    @property
    def root(self) -> Path:
        return artifacts_root(self.artifacts_dir)

    @property
    def paths(self) -> Paths:
        return Paths.from_env(artifacts=self.root)

    @property
    def out_dir(self) -> Path:
        if self.out:
            p = Path(self.out)
            return p if p.is_absolute() else Path.cwd() / p
        return self.paths.triton_repo(self.variant)

    @property
    def model_step(self) -> str:
        return MODEL_TRT if self.backend == "tensorrt" else MODEL_ONNX


def _tensor(name: str, dtype: str, dims: list[int], reshape: list[int] | None = None) -> dict:
    t: dict[str, Any] = {"name": name, "data_type": dtype, "dims": dims}
    if reshape is not None:
        t["reshape"] = {"shape": reshape}
    return t


def _batching(s: RepoSettings) -> dict[str, Any]:
    return {"preferred_batch_size": sorted(set(s.preferred_batch_sizes)),
            "max_queue_delay_microseconds": int(s.max_queue_delay_us)}


def _params(**kv: Any) -> dict[str, Any]:
    return {k: {"string_value": str(v)} for k, v in kv.items()}


def tokenizer_config(s: RepoSettings) -> dict[str, Any]:
    return {
        "name": TOKENIZER, "backend": "python", "max_batch_size": s.max_batch_size,
        "input": [_tensor("TEXT", "TYPE_STRING", [1])],
        "output": [_tensor("input_ids", "TYPE_INT64", [-1]), _tensor("attention_mask", "TYPE_INT64", [-1])],
        "instance_group": [{"kind": "KIND_CPU", "count": s.cpu_instances}],
        "dynamic_batching": _batching(s),
        "parameters": _params(max_length=s.max_length, pad_to_multiple_of=s.pad_to_multiple_of),
    }


def model_config(s: RepoSettings) -> dict[str, Any]:
    """The model step: native ORT, native TensorRT or ORT inside the python backend."""
    cfg: dict[str, Any] = {
        "name": s.model_step, "max_batch_size": s.max_batch_size,
        "input": [_tensor("input_ids", "TYPE_INT64", [-1]), _tensor("attention_mask", "TYPE_INT64", [-1])],
        "output": [_tensor("logits", "TYPE_FP32", [2])],
        "instance_group": [{"kind": "KIND_GPU" if s.kind == "gpu" else "KIND_CPU", "count": s.instances}],
        "dynamic_batching": _batching(s),
    }
    if s.backend == "onnxruntime":
        cfg["platform"] = "onnxruntime_onnx"
        cfg["backend"] = "onnxruntime"
        if s.intra_op_threads:
            cfg["parameters"] = _params(intra_op_thread_count=s.intra_op_threads)
    elif s.backend == "tensorrt":
        cfg["platform"] = "tensorrt_plan"
        cfg["backend"] = "tensorrt"
        cfg["instance_group"] = [{"kind": "KIND_GPU", "count": s.instances}]  # plans are GPU-only
    else:
        cfg["backend"] = "python"
        cfg["parameters"] = _params(intra_op_thread_count=s.intra_op_threads)
    return cfg


def postprocess_config(s: RepoSettings) -> dict[str, Any]:
    return {
        "name": POSTPROCESS, "backend": "python", "max_batch_size": s.max_batch_size,
        "input": [_tensor("LOGITS", "TYPE_FP32", [2])],
        # Triton's config needs a non-empty dims; the model returns [batch] and the python
        # backend passes that shape through, so clients see LABEL INT64 [batch] (the study's
        # contract, as on the other engines). A `reshape { shape: [] }` here would instead make
        # Triton answer [batch, 1].
        "output": [_tensor("LABEL", "TYPE_INT64", [1])],
        "instance_group": [{"kind": "KIND_CPU", "count": s.cpu_instances}],
        "dynamic_batching": _batching(s),
    }


def ensemble_config(s: RepoSettings) -> dict[str, Any]:
    """The served model: input_map/output_map keys are the step model's tensor names, values
    the ensemble's (internal or external) tensor names."""
    return {
        "name": s.model_name, "platform": "ensemble", "max_batch_size": s.max_batch_size,
        "input": [_tensor("TEXT", "TYPE_STRING", [1])],
        # An ensemble tensor's shape must equal the producing step's declared shape ([-1, 1]);
        # the actual LABEL tensor is [batch] (see postprocess_config).
        "output": [_tensor("LOGITS", "TYPE_FP32", [2]), _tensor("LABEL", "TYPE_INT64", [1])],
        "ensemble_scheduling": {"step": [
            {"model_name": TOKENIZER, "model_version": -1,
             "input_map": {"TEXT": "TEXT"},
             "output_map": {"input_ids": "input_ids", "attention_mask": "attention_mask"}},
            {"model_name": s.model_step, "model_version": -1,
             "input_map": {"input_ids": "input_ids", "attention_mask": "attention_mask"},
             "output_map": {"logits": "LOGITS"}},
            {"model_name": POSTPROCESS, "model_version": -1,
             "input_map": {"LOGITS": "LOGITS"},
             "output_map": {"LABEL": "LABEL"}},
        ]},
    }


# -- generation -------------------------------------------------------------------------------


def _write_model(root: Path, name: str, config: dict[str, Any], header: str) -> Path:
    d = root / name
    (d / "1").mkdir(parents=True, exist_ok=True)
    (d / "config.pbtxt").write_text(to_pbtxt(config, header))
    return d


def _ensure_export(s: RepoSettings, fmt: str) -> Path:
    """The export's model file, building it (``serving.export``) when missing."""
    name = "model.plan" if fmt == "tensorrt" else "model.onnx"
    path = s.paths.format_dir(s.variant, fmt) / name
    if not path.exists():
        from serving.export import run_export

        run_export(s.variant, fmt, artifacts_dir=s.root, max_length=s.max_length)
    return path


def _check_plan_profile(s: RepoSettings, export_json: Path) -> None:
    """A plan accepts only shapes inside its optimisation profile: the repository's batch and
    sequence limits must fit it (read from the tensorrt export's record when there is one)."""
    if not export_json.exists():
        return
    profile = (json.loads(export_json.read_text()).get("details") or {}).get("profile") or {}
    max_shape = profile.get("max_shape")
    if not max_shape:
        return
    if s.max_batch_size > max_shape[0]:
        raise ValueError(f"max_batch_size={s.max_batch_size} exceeds the TensorRT profile's max batch "
                         f"{max_shape[0]}; allowed: <= {max_shape[0]} (or re-export with --trt-max-batch)")
    if s.max_length > max_shape[1]:
        raise ValueError(f"max_length={s.max_length} exceeds the TensorRT profile's max sequence "
                         f"{max_shape[1]}; allowed: <= {max_shape[1]} (or re-export with --max-length)")


def generate(s: RepoSettings) -> Path:
    """Write the repository to ``s.out_dir`` (replacing an old one) and return its path.

    Builds the onnx (and, for ``--backend tensorrt``, the tensorrt) export first when missing.
    The directory is assembled beside the target and swapped in, so a reader never sees half
    a repository.
    """
    onnx_path = _ensure_export(s, "onnx")
    plan_path = s.paths.format_dir(s.variant, "tensorrt") / "model.plan"
    if s.backend == "tensorrt":
        plan_path = _ensure_export(s, "tensorrt")
        _check_plan_profile(s, plan_path.parent / "export.json")
    out = s.out_dir
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        gen = f"generated by serving.triton_repo for variant {s.variant} ({time.strftime('%Y-%m-%d %H:%M:%S')})"

        tok = _write_model(tmp, TOKENIZER, tokenizer_config(s),
                           f"{gen}\nTEXT → input_ids/attention_mask; sequence lengths bucketed to multiples "
                           f"of {s.pad_to_multiple_of} so the model step can batch across requests.")
        shutil.copy2(TEMPLATES / "tokenizer.py", tok / "1" / "model.py")
        (tok / "1" / "tokenizer").mkdir()
        src_tok = onnx_path.parent
        for f in TOKENIZER_FILES:
            if (src_tok / f).exists():
                shutil.copy2(src_tok / f, tok / "1" / "tokenizer" / f)

        # The ORT model is always present (TensorRT-backed repositories keep it as a fallback the
        # ensemble can be pointed at); only the model step the ensemble uses depends on --backend.
        onnx_backend = "python-onnxruntime" if s.backend == "python-onnxruntime" else "onnxruntime"
        onnx_dir = _write_model(tmp, MODEL_ONNX, model_config(replace(s, backend=onnx_backend)),
                                f"{gen}\nONNX export {onnx_path}")
        for p in onnx_path.parent.glob("model.onnx*"):  # model.onnx (+ model.onnx.data when > 2 GB)
            shutil.copy2(p, onnx_dir / "1" / p.name)
        if s.backend == "python-onnxruntime":
            shutil.copy2(TEMPLATES / "onnx_model.py", onnx_dir / "1" / "model.py")

        if plan_path.exists():
            trt_dir = _write_model(tmp, MODEL_TRT, model_config(replace(s, backend="tensorrt")),
                                   f"{gen}\nTensorRT plan {plan_path} (built for one GPU model + TensorRT version)")
            shutil.copy2(plan_path, trt_dir / "1" / "model.plan")

        post = _write_model(tmp, POSTPROCESS, postprocess_config(s), f"{gen}\nLOGITS → LABEL (argmax)")
        shutil.copy2(TEMPLATES / "postprocess.py", post / "1" / "model.py")

        _write_model(tmp, s.model_name, ensemble_config(s),
                     f"{gen}\nServed model: TEXT BYTES [batch,1] → LOGITS FP32 [batch,2], LABEL INT64 [batch]\n"
                     f"model step: {s.model_step} ({s.backend})")

        problems = check_repository(tmp, s.model_name)
        if problems:
            raise RuntimeError("generated repository is inconsistent: " + "; ".join(problems))
        meta = {"settings": asdict(s), "ensemble": s.model_name, "model_step": s.model_step,
                "onnx": str(onnx_path), "plan": str(plan_path) if plan_path.exists() else None,
                "models": sorted(p.name for p in tmp.iterdir() if p.is_dir()),
                "generated_unix_s": time.time()}
        (tmp / "repository.json").write_text(json.dumps(meta, indent=2) + "\n")
        from serving.export import _world_readable

        _world_readable(tmp)  # tritonserver runs as uid 1000 in NVIDIA's image
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # never leave a half-built repository behind
        raise
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)
    return out


# -- PyTriton's bundled tritonserver ----------------------------------------------------------


def bundled_tritonserver(repo: Path, workdir: Path, *, http_port: int, grpc_port: int,
                         metrics_port: int, host: str = "127.0.0.1") -> tuple[list[str], dict[str, str]]:
    """argv + environment to run nvidia-pytriton's bundled ``tritonserver`` on ``repo``.

    That build carries only the python backend (ensembles are part of the core), so it loads a
    repository generated with ``--backend python-onnxruntime``. The python backend stub is
    copied in for this interpreter's version, as PyTriton itself does; the stub's Python finds
    this environment's packages (numpy, tokenizers, onnxruntime) via ``PATH``.
    """
    import sysconfig

    import pytriton
    from pytriton.utils.distribution import get_libs_path, get_stub_path

    dist = Path(pytriton.__file__).resolve().parent / "tritonserver"
    server = Path(workdir) / "tritonserver"
    if not server.exists():
        shutil.copytree(dist, server, ignore=shutil.ignore_patterns("python_backend_stubs"))
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        shutil.copy2(get_stub_path(version), server / "backends" / "python" / "triton_python_backend_stub")
    env = dict(os.environ)
    libdirs = [str(get_libs_path()), sysconfig.get_config_var("LIBDIR") or "", env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libdirs if p)
    # The stub resolves its environment from the first python on PATH (as PyTriton arranges).
    env["PATH"] = os.pathsep.join([str(Path(sys.exec_prefix) / "bin"), env.get("PATH", "")])
    argv = [
        str(server / "bin" / "tritonserver"),
        f"--model-repository={repo}",
        f"--backend-directory={server / 'backends'}",
        f"--http-address={host}", f"--http-port={http_port}",
        f"--grpc-address={host}", f"--grpc-port={grpc_port}",
        f"--metrics-address={host}", f"--metrics-port={metrics_port}",
        "--allow-gpu-metrics=false", "--exit-timeout-secs=5", "--log-verbose=0",
        # the python backend passes tensors through shared memory; the 1 MB default is too small
        "--backend-config=python,shm-default-byte-size=16777216",
        "--backend-config=python,shm-growth-byte-size=16777216",
    ]
    return argv, env


# -- CLI ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    d = RepoSettings()
    p = argparse.ArgumentParser(
        prog="python -m serving.triton_repo",
        description="Generate a Triton model repository (ensemble 'bigvul-modernbert': python "
        "tokenizer → onnxruntime/tensorrt model → python postprocess) for a trained variant, or "
        "--check an existing one.",
    )
    p.add_argument("--variant", default=os.environ.get("VARIANT", d.variant))
    p.add_argument("--artifacts-dir", default=None, help="artifacts root (default $ARTIFACTS or ./artifacts)")
    p.add_argument("--out", default=None, help="repository directory (default artifacts/<variant>/triton)")
    p.add_argument("--backend", default=d.backend, choices=BACKENDS, help="model step backend")
    p.add_argument("--kind", default=d.kind, choices=KINDS, help="instance_group kind of the model step")
    p.add_argument("--instances", type=int, default=d.instances, help="model step instances")
    p.add_argument("--cpu-instances", type=int, default=d.cpu_instances, help="tokenizer/postprocess instances")
    p.add_argument("--max-batch-size", type=int, default=d.max_batch_size)
    p.add_argument("--preferred-batch-sizes", default=",".join(map(str, d.preferred_batch_sizes)),
                   help="comma-separated preferred batch sizes")
    p.add_argument("--max-queue-delay-us", type=int, default=d.max_queue_delay_us,
                   help="dynamic batcher max_queue_delay_microseconds")
    p.add_argument("--max-length", type=int, default=d.max_length, help="tokenizer truncation (tokens)")
    p.add_argument("--pad-to-multiple-of", type=int, default=d.pad_to_multiple_of,
                   help="bucket sequence lengths (tokens) so requests batch together")
    p.add_argument("--intra-op-threads", type=int, default=d.intra_op_threads, help="ORT intra-op threads (0 = default)")
    p.add_argument("--model-name", default=d.model_name, help="served (ensemble) model name")
    p.add_argument("--check", metavar="DIR", default=None, help="only check an existing repository")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.check:
        problems = check_repository(Path(args.check), args.model_name)
        for pr in problems:
            print(f"problem: {pr}", file=sys.stderr)
        print(f"{args.check}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        return 1 if problems else 0
    try:
        preferred = [int(x) for x in args.preferred_batch_sizes.split(",") if x.strip()]
    except ValueError:
        print(f"triton_repo: --preferred-batch-sizes {args.preferred_batch_sizes!r}: expected integers like 8,16,32",
              file=sys.stderr)
        return 1
    try:
        s = RepoSettings(
            variant=args.variant, artifacts_dir=args.artifacts_dir, out=args.out, backend=args.backend,
            kind=args.kind, instances=args.instances, cpu_instances=args.cpu_instances,
            max_batch_size=args.max_batch_size, preferred_batch_sizes=preferred,
            max_queue_delay_us=args.max_queue_delay_us, max_length=args.max_length,
            pad_to_multiple_of=args.pad_to_multiple_of, intra_op_threads=args.intra_op_threads,
            model_name=args.model_name,
        )
        out = generate(s)
    except Exception as e:
        from serving.export.base import ExportUnavailable

        if isinstance(e, ExportUnavailable):
            print(f"triton_repo: {e}", file=sys.stderr)
            return 2
        if isinstance(e, (ValueError, FileNotFoundError, RuntimeError)):
            print(f"triton_repo: {e}", file=sys.stderr)
            return 1
        raise
    print(f"{out}: Triton model repository ({s.backend}, model step {s.model_step}); "
          f"serve with: tritonserver --model-repository={out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
