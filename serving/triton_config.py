"""Triton model configurations as protobuf: ``config.pbtxt`` written and read through
``inference.ModelConfig`` (tritonclient ships the schema), and the structural check of a whole
model repository (:func:`check_repository`, ``python -m serving.triton_repo --check DIR``).

A misspelt field or an invalid combination fails here, not in the server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ENSEMBLE = "bigvul-modernbert"


# -- config.pbtxt as protobuf ----------------------------------------------------------------


def _proto():
    try:
        from google.protobuf import json_format, text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as e:
        raise RuntimeError(
            f"generating config.pbtxt needs tritonclient[grpc] (model_config_pb2) and protobuf: {e}"
        ) from None
    return model_config_pb2, json_format, text_format


def to_pbtxt(config: dict[str, Any], header: str = "") -> str:
    """``config`` (ModelConfig in JSON field names) → validated protobuf text."""
    pb2, json_format, text_format = _proto()
    msg = json_format.ParseDict(config, pb2.ModelConfig())
    text = text_format.MessageToString(msg)
    lines = [f"# {ln}" if ln else "#" for ln in header.strip().splitlines()] if header else []
    return ("\n".join(lines) + "\n\n" if lines else "") + text


def parse_pbtxt(path: Path):
    """A ``config.pbtxt`` → ``inference.ModelConfig`` (raises on any syntax/schema error)."""
    pb2, _, text_format = _proto()
    return text_format.Parse(Path(path).read_text(), pb2.ModelConfig())


# -- structural check ---------------------------------------------------------------------------

MODEL_FILES = {"onnxruntime_onnx": "model.onnx", "tensorrt_plan": "model.plan",
               "onnxruntime": "model.onnx", "tensorrt": "model.plan", "python": "model.py"}


def _io(cfg) -> tuple[dict[str, Any], dict[str, Any]]:
    return ({t.name: t for t in cfg.input}, {t.name: t for t in cfg.output})


def check_repository(root: Path, ensemble: str = ENSEMBLE) -> list[str]:
    """Problems found in a model repository (empty list = consistent).

    Checks: every model dir has a ``config.pbtxt`` that parses as ``ModelConfig`` and names its
    directory, a version dir ``1/`` holding the backend's model file (ensembles: empty),
    dims given for every tensor; every ensemble step refers to an existing model, maps only
    tensors that model declares, with matching data types, and every ensemble input/output is
    wired (inputs consumed, outputs produced exactly once).
    """
    root = Path(root)
    problems: list[str] = []
    configs = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        cfg_path = d / "config.pbtxt"
        if not cfg_path.exists():
            problems.append(f"{d.name}: no config.pbtxt")
            continue
        try:
            cfg = parse_pbtxt(cfg_path)
        except Exception as e:
            problems.append(f"{d.name}: config.pbtxt does not parse: {e}")
            continue
        configs[d.name] = cfg
        if cfg.name and cfg.name != d.name:
            problems.append(f"{d.name}: config name {cfg.name!r} differs from its directory")
        if not (d / "1").is_dir():
            problems.append(f"{d.name}: no version directory 1/")
        kind = cfg.platform or cfg.backend
        if kind != "ensemble":
            need = MODEL_FILES.get(cfg.platform) or MODEL_FILES.get(cfg.backend)
            if need is None:
                problems.append(f"{d.name}: unknown platform/backend {kind!r}")
            elif not (d / "1" / need).exists():
                problems.append(f"{d.name}: 1/{need} is missing")
        for t in [*cfg.input, *cfg.output]:
            if len(t.dims) == 0:
                problems.append(f"{d.name}: tensor {t.name} has no dims")
    ens = configs.get(ensemble)
    if ens is None:
        problems.append(f"ensemble {ensemble!r} is missing")
        return problems
    if ens.platform != "ensemble":
        problems.append(f"{ensemble}: platform is {ens.platform!r}, not 'ensemble'")
        return problems
    ens_in, ens_out = _io(ens)
    dtypes = {n: t.data_type for n, t in {**ens_in, **ens_out}.items()}
    produced: dict[str, int] = {}
    consumed: set[str] = set()
    for i, step in enumerate(ens.ensemble_scheduling.step):
        sub = configs.get(step.model_name)
        where = f"{ensemble} step {i} ({step.model_name})"
        if sub is None:
            problems.append(f"{where}: no such model in the repository")
            continue
        if ens.max_batch_size > sub.max_batch_size:
            problems.append(f"{where}: max_batch_size {sub.max_batch_size} < ensemble's {ens.max_batch_size}")
        sub_in, sub_out = _io(sub)
        for key, val in step.input_map.items():
            if key not in sub_in:
                problems.append(f"{where}: input_map key {key!r} is not an input of {step.model_name}")
                continue
            if val not in ens_in and val not in produced:
                problems.append(f"{where}: input_map value {val!r} is neither an ensemble input nor produced earlier")
            if val in dtypes and dtypes[val] != sub_in[key].data_type:
                problems.append(f"{where}: {val!r} data type differs from {step.model_name}.{key}")
            consumed.add(val)
        missing = set(sub_in) - set(step.input_map) - {t.name for t in sub.input if t.optional}
        if missing:
            problems.append(f"{where}: inputs {sorted(missing)} of {step.model_name} are not mapped")
        for key, val in step.output_map.items():
            if key not in sub_out:
                problems.append(f"{where}: output_map key {key!r} is not an output of {step.model_name}")
                continue
            produced[val] = produced.get(val, 0) + 1
            if val in dtypes and dtypes[val] != sub_out[key].data_type:
                problems.append(f"{where}: {val!r} data type differs from {step.model_name}.{key}")
            dtypes.setdefault(val, sub_out[key].data_type)
    for name in ens_out:
        if produced.get(name, 0) != 1:
            problems.append(f"{ensemble}: output {name!r} is produced {produced.get(name, 0)} times (need 1)")
    for name in ens_in:
        if name not in consumed:
            problems.append(f"{ensemble}: input {name!r} is not consumed by any step")
    for name, n in produced.items():
        if n > 1:
            problems.append(f"{ensemble}: tensor {name!r} is produced by {n} steps")
    return problems
