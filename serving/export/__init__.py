"""Export a trained variant to the serving formats: ``python -m serving.export --help``.

    from serving.export import run_export
    result = run_export("v0", "onnx")          # → artifacts/v0/onnx/{model.onnx, tokenizer…, export.json}

Every export is measured as energy window ``"export:<format>"`` (the energy of the optimisation
step itself), timed, parity-checked against the PyTorch logits on test-split inputs
(:mod:`serving.export.parity`) and recorded in ``<format>/export.json`` (atomic write).
Format modules are imported only when used, so a CPU box never imports TensorRT.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import time
from pathlib import Path
from typing import Any

from serving.export.base import (
    EXPORT_JSON,
    FORMAT_MODULES,
    FORMATS,
    ExportContext,
    ExportResult,
    ExportUnavailable,
    ParityError,
    dir_size_bytes,
)

log = logging.getLogger(__name__)

__all__ = ["EXPORT_JSON", "FORMATS", "ExportResult", "ExportUnavailable", "ParityError",
           "export_path", "read_export", "run_export"]


def format_module(fmt: str):
    """The module implementing ``fmt`` (``build(ctx)``, ``predictor(ctx)``, ``OPTIONS``)."""
    if fmt not in FORMAT_MODULES:
        raise ValueError(f"unknown export format {fmt!r}; allowed: {', '.join(FORMATS)}")
    return importlib.import_module(FORMAT_MODULES[fmt])


def export_path(variant: str, fmt: str, artifacts_dir: str | Path | None = None) -> Path:
    """``<artifacts>/<variant>/<format>/``."""
    return ExportContext(variant, fmt, artifacts_dir).out_dir


def read_export(variant: str, fmt: str, artifacts_dir: str | Path | None = None) -> dict[str, Any]:
    """The recorded ``export.json`` of one export (``FileNotFoundError`` when never exported)."""
    import json

    return json.loads((export_path(variant, fmt, artifacts_dir) / EXPORT_JSON).read_text())


def run_export(
    variant: str,
    fmt: str,
    *,
    artifacts_dir: str | Path | None = None,
    max_length: int = 512,
    options: dict[str, Any] | None = None,
    meters=None,
    meter: str | None = None,
    parity_n: int = 64,
    data_path: str | None = None,
    check_parity: bool = True,
) -> ExportResult:
    """Build one export and write its ``export.json``; returns the record.

    ``meters``: an open :class:`energy.MeterSession` to measure in (``all`` shares one);
    otherwise one is opened with ``meter`` (``None`` → ``$METER`` or ``auto``). A build error
    is written as ``status: failed`` and re-raised; a parity failure is written as failed and
    raised as :class:`ParityError`. :class:`ExportUnavailable` (no TensorRT/GPU here) is raised
    before anything is written.
    """
    from study.environment import capture
    from study.io import write_json_atomic

    ctx = ExportContext(variant, fmt, artifacts_dir, max_length=max_length, options=dict(options or {}))
    if not (ctx.model_dir / "config.json").exists():
        raise FileNotFoundError(
            f"{ctx.model_dir} is missing: train first (`make train VARIANT={variant}` or "
            f"`python -m training.train --variant {variant}`)"
        )
    from training.compress.base import export_refusal

    refusal = export_refusal(ctx.model_dir, fmt)  # e.g. ptq-dynamic is a pytorch-engine artifact
    if refusal:
        raise ExportUnavailable(refusal)
    module = format_module(fmt)
    if hasattr(module, "validate_options"):
        module.validate_options(ctx.options)
    if hasattr(module, "available_builder"):  # fail fast, before any window or file
        module.available_builder(ctx.options.get("builder", "auto"))

    result = ExportResult(
        status="failed", variant=variant, format=fmt, out_dir=str(ctx.out_dir), model_file=None,
        source_model_dir=str(ctx.model_dir), created_unix_s=time.time(),
    )
    with contextlib.ExitStack() as stack:
        if meters is None:
            from energy import open_meters

            meters = stack.enter_context(open_meters(meter))
        t0 = time.perf_counter()
        window = None
        try:
            with meters.window(f"export:{fmt}") as window:
                details = module.build(ctx)
        except ExportUnavailable:
            raise
        except Exception as e:
            result.failure_reason = f"export failed: {type(e).__name__}: {e}"
            _finish(result, ctx, window, meters, time.perf_counter() - t0, capture, write_json_atomic)
            raise
        result.details = details
        result.model_file = details.pop("model_file", None)
        export_s = time.perf_counter() - t0
        result.status = "ok"
        if check_parity:
            from serving.export import parity

            try:
                report = parity.check(fmt, ctx.model_dir, module.predictor(ctx), n=parity_n,
                                      max_length=max_length, data_path=data_path)
            except ExportUnavailable as e:  # e.g. a TensorRT host whose torch has no CUDA
                result.parity = {"skipped": str(e)}
            except Exception as e:
                result.status = "failed"
                result.failure_reason = f"parity check could not run: {type(e).__name__}: {e}"
            else:
                result.parity = report.to_dict()
                if not report.passed:
                    result.status = "failed"
                    result.failure_reason = (
                        f"parity failed: max_abs_diff={report.max_abs_diff:.3g}, label_agreement="
                        f"{report.label_agreement:.3f} (tolerance {report.tolerance})"
                    )
        else:
            result.parity = {"skipped": "check_parity=False"}
        _finish(result, ctx, window, meters, export_s, capture, write_json_atomic)
    if result.status != "ok":
        raise ParityError(f"{fmt}: {result.failure_reason}")
    return result


def _finish(result, ctx, window, meters, export_s, capture, write_json_atomic) -> None:
    """Fill sizes, timing, energy and environment; write ``export.json`` atomically."""
    result.export_time_s = export_s
    if ctx.out_dir.exists():
        result.size_bytes = dir_size_bytes(ctx.out_dir)
        result.size_mb = result.size_bytes / 1e6
    rec = getattr(window, "record", None)
    if rec is not None:
        result.energy = rec.to_dict()
        result.energy_source, result.energy_kind = rec.source, rec.kind
    result.environment = capture()
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(ctx.out_dir / EXPORT_JSON, result.to_dict())
    _world_readable(ctx.out_dir)
    log.info("export %s/%s: %s (%s)", result.variant, result.format, result.status, ctx.out_dir)


def _world_readable(root) -> None:
    """Exports are read by servers in containers running as another uid (tritonserver: 1000);
    safetensors and the atomic JSON writer create files 0600, so open them for reading."""
    for p in [root, *root.rglob("*")]:
        mode = p.stat().st_mode
        p.chmod(mode | (0o055 if p.is_dir() else 0o044))
