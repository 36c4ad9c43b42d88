"""Compress a trained variant into a new one, with the compression step's own energy measured.

``python -m training.compress --variant v0 --method magnitude-50 [--finetune-steps N]``
(or ``--variant v0@magnitude-50``) reads ``<artifacts>/v0/model/`` and writes (layout:
:mod:`study.paths`)

* ``<artifacts>/v0@magnitude-50/model/`` — safetensors + tokenizer + ``split.json`` (the parent's
  split) + ``compression.json``, loadable with ``AutoModelForSequenceClassification``; written
  to a temporary sibling and renamed into place, so a killed run leaves no half-written model;
* ``<results>/compress/v0@magnitude-50/result.json`` — ``energy_kwh.compress`` (the step itself:
  pruning/quantising/fine-tuning/distilling, window ``compress``) with its source and kind,
  its duration, ``size_mb``, ``params``, ``nonzero_params``, ``sparsity``,
  ``flops_per_request``, ``accuracy``/``f1``/``mcc`` on the parent's test split, and the
  parent's figures measured the same way under ``parent``.

Windows: ``evaluate_parent`` → ``compress`` → ``evaluate`` → ``save``; only ``compress`` is the
optimisation step's energy, the others are recorded beside it.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from energy.base import J_PER_KWH
from energy.window import recorded_window
from study.io import write_json_atomic
from study.paths import Paths
from training.cli import add_root_options, one_line, sigterm_as_interrupt
from training.compress.base import (
    ALLOWED,
    COMPRESSION_FILE,
    DEFAULT_FINETUNE_STEPS,
    SERVING_NOTES,
    CompressError,
    CompressPaths,
    Context,
    MethodSpec,
    classification_with_mcc,
    file_sizes,
    flops_per_request,
    parse_method,
    served_max_length,
    weight_stats,
)

log = logging.getLogger("training.compress")
EXIT_FAILED, EXIT_INPUT = 1, 2
WINDOWS = ("evaluate_parent", "compress", "evaluate", "save")


def _one_line(e: BaseException) -> str:
    return one_line(e, (CompressError,))


def check_inputs(parent: str, method: str, artifacts_dir: str | os.PathLike | None = None,
                 results_dir: str | os.PathLike | None = None, need_trained: bool = True) -> CompressPaths:
    """Validate the method and the parent before anything is measured; one-line errors. Roots:
    the arguments, else ``$ARTIFACTS`` / ``$RESULTS_DIR``, else the defaults (:mod:`study.paths`)."""
    from training.config import ConfigError, split_compressed, split_variant

    spec = parse_method(method)
    try:
        _, inner = split_compressed(parent)
        if inner is not None:
            raise CompressError(f"parent {parent!r} is itself compressed; compress a trained variant "
                                f"(v0, v2+v8, …), e.g. --variant v0 --method {spec.text}")
        split_variant(parent)  # an unknown parent name: one line listing the valid ones
    except ConfigError as e:
        raise CompressError(f"parent: {e}") from None
    paths = CompressPaths(parent, spec, Paths.from_env(artifacts=artifacts_dir, results=results_dir))
    if need_trained and not (paths.parent_model_dir / "config.json").exists():
        raise CompressError(f"parent {parent} is not trained: {paths.parent_model_dir} is missing; "
                            f"train it first (make train VARIANT={parent})")
    if need_trained and spec.family == "distill":
        layers = int(json.loads((paths.parent_model_dir / "config.json").read_text())["num_hidden_layers"])
        if not 1 <= int(spec.value) < layers:
            raise CompressError(f"method {spec.text}: the student must have 1 to {layers - 1} layers "
                                f"(the parent {parent} has {layers}); allowed: {ALLOWED}")
    return paths


def parent_config(paths: CompressPaths):
    """The parent's resolved training config: its result.json's ``config`` (what it was really
    trained with, ``--set`` overrides included), else the variant resolved from its YAML."""
    from training.config import from_dict, resolve

    if paths.parent_result.exists():
        try:
            res = json.loads(paths.parent_result.read_text())
            if isinstance(res.get("config"), dict) and res["config"]:
                return from_dict(res["config"], str(paths.parent_result)), res
        except (OSError, ValueError):
            pass
    return resolve(paths.parent), {}


def _split(name: str, model_dir: Path, limit: int, seed: int):
    """The parent's split ``name`` exactly as training drew it (split.json + the same limit)."""
    from training.data import load_split_for_artifact

    df = load_split_for_artifact(name, model_dir)
    if limit and len(df) > limit:
        df = df.sample(n=limit, random_state=seed).reset_index(drop=True)
    return df["text"].tolist(), [int(y) for y in df["label"]]


def _evaluate(model, tokenizer, texts, labels, cfg, device: str) -> dict[str, Any]:
    from training.evaluate import predict_pytorch

    logits, wall_s = predict_pytorch(model, tokenizer, texts, max_length=cfg.max_length,
                                     batch_size=cfg.inference.batch_size, device=device)
    return classification_with_mcc(labels, logits, wall_s)


def _figures(model, tokenizer, model_dir: Path | None, seq_len: int, size_mb: float | None = None) -> dict[str, Any]:
    from training.model import model_size_mb

    out: dict[str, Any] = weight_stats(model)
    out["size_mb"] = size_mb if size_mb is not None else model_size_mb(model)
    out["flops_per_request"] = flops_per_request(model, seq_len)
    out["flops_seq_len"] = seq_len
    out["layers"] = int(model.config.num_hidden_layers)
    out["intermediate_size"] = int(model.config.intermediate_size)
    if model_dir is not None:
        out.update(file_sizes(model_dir))
    return out


METRIC_KEYS = ("accuracy", "f1", "precision", "recall", "mcc", "latency_ms", "n_evaluated", "predicted_positive")


def empty_result(paths: CompressPaths, run_id: str) -> dict[str, Any]:
    """Every key of a compression result.json, unset (a failed run writes it as far as it got)."""
    spec = paths.spec
    return {
        "variant": paths.variant, "parent": paths.parent, "method": spec.text, "method_family": spec.family,
        "method_value": spec.value, "run_id": run_id, "status": "failed", "failure_reason": None,
        "energy_kwh": {w: None for w in WINDOWS}, "energy_net_kwh": {w: None for w in WINDOWS},
        "energy_source": {}, "energy_kind": "estimated", "energy": {}, "meter": {},
        "duration_s": {}, "co2_kg": None, "country": None,
        "size_mb": None, "params": None, "nonzero_params": None, "prunable_params": None, "sparsity": None,
        "flops_per_request": None, "flops_seq_len": None,
        **{k: None for k in METRIC_KEYS},
        "parent_figures": {}, "deltas": {}, "details": {}, "finetune_steps": None,
        "serving_note": SERVING_NOTES[spec.family], "artifact": None, "notes": [],
        "config": {}, "environment": {},
    }


def _fill_energy(result: dict[str, Any], records: dict[str, Any], durations: dict[str, float], meters) -> None:
    result["energy"] = {k: r.to_dict() for k, r in records.items()}
    idle = getattr(meters, "records", {}).get("idle")
    if idle is not None:
        result["energy"]["idle"] = idle.to_dict()
    result["energy_kwh"] = {w: (records[w].gross_kwh if w in records else None) for w in WINDOWS}
    result["energy_net_kwh"] = {w: (records[w].net_kwh if w in records else None) for w in WINDOWS}
    result["energy_source"] = {w: records[w].source for w in WINDOWS if w in records}
    kinds = {records[w].kind for w in WINDOWS if w in records}
    result["energy_kind"] = "measured" if kinds == {"measured"} else "estimated"
    result["duration_s"] = {**durations, "total": sum(durations.values())}
    result["meter"] = meters.describe()
    if meters.idle_w is not None:
        result["idle_w"] = meters.idle_w


def compress(parent: str, method: str | MethodSpec, *, results_dir: str | os.PathLike | None = None,
             artifacts_dir: str | os.PathLike | None = None, finetune_steps: int | None = None,
             meter: str | None = None, idle_s: float = 3.0, seed: int | None = None, calibration_n: int = 32,
             serving_max_length: int = 512, country: str = "FRA", threads: int = 0, meters=None) -> dict[str, Any]:
    """Compress ``parent`` with ``method`` and write the artifact and ``result.json``.

    Returns the result dict (``status: ok``). Raises :class:`CompressError` for bad input (before
    anything is measured or written) and re-raises any failure after writing ``result.json``
    with ``status: failed`` and one line why (no artifact is left behind).
    """
    from study.environment import capture
    from training.workspace import Busy, variant_lock

    spec = method if isinstance(method, MethodSpec) else parse_method(method)
    paths = check_inputs(parent, spec.text, artifacts_dir, results_dir)
    cfg, parent_res = parent_config(paths)
    steps = DEFAULT_FINETUNE_STEPS[spec.family] if finetune_steps is None else int(finetune_steps)
    if steps < 0:
        raise CompressError(f"finetune steps must be ≥ 0, got {steps}")
    if spec.family in ("qat", "distill") and steps < 1:
        raise CompressError(f"method {spec.text} trains: finetune steps must be ≥ 1, got {steps}")
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    result = empty_result(paths, run_id)
    result.update(config=cfg.to_dict(), country=country, finetune_steps=steps)
    try:
        lock = variant_lock(paths)
        lock.__enter__()
    except Busy as e:
        raise CompressError(str(e)) from None
    own_meters = meters is None
    records: dict[str, Any] = {}
    durations: dict[str, float] = {}
    try:
        result["environment"] = capture()
        if own_meters:
            from energy import open_meters

            meters = open_meters(meter, country=country, pids=(os.getpid(),))
        _fill_energy(result, records, durations, meters)
        _run(paths, spec, cfg, parent_res, steps, result, records, durations, meters,
             seed=cfg.training.seed if seed is None else seed, calibration_n=calibration_n,
             serving_max_length=serving_max_length, idle_s=idle_s, threads=threads)
        result["status"], result["failure_reason"] = "ok", None
        write_json_atomic(paths.result, result)
        return result
    except (Exception, KeyboardInterrupt) as e:
        result["status"] = "failed"
        result["failure_reason"] = "interrupted" if isinstance(e, KeyboardInterrupt) else _one_line(e)
        if meters is not None:
            _fill_energy(result, records, durations, meters)
        write_json_atomic(paths.result, result)
        raise
    finally:
        if own_meters and meters is not None:
            meters.close()
        lock.__exit__(None, None, None)


def _run(paths: CompressPaths, spec: MethodSpec, cfg, parent_res: dict[str, Any], steps: int,
         result: dict[str, Any], records: dict[str, Any], durations: dict[str, float], meters, *,
         seed: int, calibration_n: int, serving_max_length: int, idle_s: float, threads: int) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from training.data import SPLIT_FILE
    from training.stages.system import save_artifact_atomically

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if threads:
        torch.set_num_threads(threads)
    module = importlib.import_module(spec.module)  # before any window: import time is not the step
    device = "cuda" if torch.cuda.is_available() else "cpu"

    def window(name: str):
        return recorded_window(meters, name, records, durations,
                               after=lambda: _fill_energy(result, records, durations, meters))

    if idle_s > 0 and meters.idle_w is None:
        meters.measure_idle(seconds=idle_s)
    parent_dir = paths.parent_model_dir
    tokenizer = AutoTokenizer.from_pretrained(parent_dir)
    teacher = AutoModelForSequenceClassification.from_pretrained(parent_dir, use_safetensors=True).float()
    teacher.to(device).eval()
    test_x, test_y = _split("test", parent_dir, cfg.data.eval_limit, cfg.data.split_seed)
    train_x, train_y = _split("train", parent_dir, cfg.data.train_limit, cfg.data.split_seed)
    seq = served_max_length(tokenizer, teacher.config, serving_max_length)
    ctx = Context(parent=paths.parent, spec=spec, tokenizer=tokenizer, cfg=cfg, train_texts=train_x,
                  train_labels=train_y, max_length=cfg.max_length, finetune_steps=steps, seed=seed,
                  device=device, calibration_n=calibration_n, parent_model_dir=parent_dir)

    # the parent, measured exactly like the compressed model (same split, code, lengths)
    pfig = _figures(teacher, tokenizer, parent_dir, seq)
    with window("evaluate_parent"):
        pm = _evaluate(teacher, tokenizer, test_x, test_y, cfg, device)
    pfig.update({k: pm.get(k) for k in METRIC_KEYS})
    pfig["variant"] = paths.parent
    pfig["train_energy_kwh"] = (parent_res.get("energy_kwh") or {}).get("total")
    pfig["train_energy_kind"] = parent_res.get("energy_kind")
    pfig["recorded_test_f1"] = parent_res.get("f1")  # as the training run recorded it
    result["parent_figures"] = pfig

    torch.manual_seed(seed)
    with window("compress"):
        out = module.compress(copy.deepcopy(teacher), spec, ctx)
    result["details"] = out.details

    eval_model = out.eval_model if out.eval_model is not None else out.model
    eval_device = "cpu" if out.details.get("cpu_only") else device
    eval_model.to(eval_device).eval()
    with window("evaluate"):
        m = _evaluate(eval_model, tokenizer, test_x, test_y, cfg, eval_device)
    result.update({k: m.get(k) for k in METRIC_KEYS})
    result["evaluated_as"] = out.details.get("evaluated_as", "the saved artifact's model")

    record = {"variant": paths.variant, "parent": paths.parent, "method": spec.text,
              "method_family": spec.family, "method_value": spec.value, "serving_note": SERVING_NOTES[spec.family],
              "created_unix_s": time.time(), **out.compression_json}
    split = json.loads((parent_dir / SPLIT_FILE).read_text()) if (parent_dir / SPLIT_FILE).exists() else None
    model = out.model.float().cpu().eval()
    with window("save"):
        save_artifact_atomically(model, tokenizer, paths.artifact_dir, split=split,
                                 extra_json={COMPRESSION_FILE: record})
    result["artifact"] = str(paths.artifact_dir)
    fig = _figures(model, tokenizer, paths.artifact_dir, seq, size_mb=out.size_mb)
    result.update(fig)
    result["deltas"] = {
        k: (result[k] - pfig[k]) if isinstance(result.get(k), (int, float)) and isinstance(pfig.get(k), (int, float))
        else None
        for k in ("size_mb", "params", "nonzero_params", "sparsity", "flops_per_request", "accuracy", "f1", "mcc")
    }
    result["size_ratio"] = result["size_mb"] / pfig["size_mb"] if pfig.get("size_mb") else None
    if spec.family == "magnitude":
        result["notes"].append("FLOPs are counted on the dense kernels the engines run: zeros are multiplied too")
    for n in ctx.log:
        result["notes"].append(n)
    total = result["energy_kwh"].get("compress")
    if total is not None:
        from energy.carbon import co2_kg

        result["co2_kg"] = co2_kg(total, result["country"])


def summary_line(res: dict[str, Any]) -> str:
    if res.get("status") != "ok":
        return f"{res.get('variant')}: FAILED — {res.get('failure_reason')}"
    e = res["energy_kwh"].get("compress")
    p = res.get("parent_figures") or {}
    return (f"{res['variant']}: compress {0 if e is None else e * J_PER_KWH:.1f} J "
            f"({res['energy_source'].get('compress')}, {res['energy_kind']}) in "
            f"{res['duration_s'].get('compress', 0):.1f} s | size {res['size_mb']:.2f} MB (parent {p.get('size_mb', 0):.2f}) | "
            f"params {res['params']:,} nonzero {res['nonzero_params']:,} sparsity {res['sparsity']:.3f} | "
            f"{res['flops_per_request'] / 1e6:.1f} MFLOP/request | acc {res['accuracy']:.3f} F1 {res['f1']:.3f} "
            f"MCC {res['mcc']:.3f} (parent acc {p.get('accuracy', 0):.3f} F1 {p.get('f1', 0):.3f}) | {res['artifact']}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.compress",
        description="Compress a trained variant: artifacts/<variant>/model/ → artifacts/<variant>@<method>/model/ "
                    "and results/compress/<variant>@<method>/result.json (the step's own energy, size, "
                    f"sparsity, FLOPs, accuracy beside the parent's). Methods: {ALLOWED}.",
    )
    p.add_argument("--variant", default=os.environ.get("VARIANT", "v0"),
                   help="the trained parent (v0, v2+v8, …) or <parent>@<method>")
    p.add_argument("--method", default=None, help=f"compression method: {ALLOWED}")
    p.add_argument("--finetune-steps", type=int, default=None,
                   help="optimizer steps of fine-tuning (default: " +
                        ", ".join(f"{k} {v}" for k, v in DEFAULT_FINETUNE_STEPS.items()) + ")")
    p.add_argument("--meter", default=None, help="energy meter spec (default $METER or auto)")
    p.add_argument("--idle-s", type=float, default=3.0, help="idle baseline seconds before the step (0 = skip)")
    p.add_argument("--seed", type=int, default=None, help="seed (default: the parent's training seed)")
    p.add_argument("--calibration-n", type=int, default=32, help="training texts for importance/calibration")
    p.add_argument("--max-length", type=int, default=512, help="served max length for flops_per_request")
    p.add_argument("--country", default=os.environ.get("COUNTRY", "FRA"), help="grid region for CO₂")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    add_root_options(p)
    p.add_argument("--check", action="store_true", help="only validate --variant/--method (no parent needed)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    parent, method = args.variant, args.method
    if "@" in parent and method is None:
        parent, _, method = parent.partition("@")
    if not method:
        print(f"error: no compression method; give --method (METHOD=…); allowed: {ALLOWED}", file=sys.stderr)
        return EXIT_INPUT
    try:
        if args.check:
            paths = check_inputs(parent, method, args.artifacts_dir, args.results_dir, need_trained=False)
            print(paths.variant)
            return 0
        sigterm_as_interrupt()
        res = compress(parent, method, results_dir=args.results_dir, artifacts_dir=args.artifacts_dir,
                       finetune_steps=args.finetune_steps, meter=args.meter, idle_s=args.idle_s, seed=args.seed,
                       calibration_n=args.calibration_n, serving_max_length=args.max_length,
                       country=args.country, threads=args.threads)
    except CompressError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("error: interrupted; no artifact was written (rerun to compress again)", file=sys.stderr)
        return 130
    except Exception as e:
        log.debug("compression failed", exc_info=True)
        print(f"error: {parent}@{method} failed: {_one_line(e)}", file=sys.stderr)
        return EXIT_FAILED
    print(summary_line(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
