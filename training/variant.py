"""A whole variant: the meters and idle baseline, ``repeats`` seeds (:mod:`training.repeat`),
every result file, the means over the repeats (:func:`training.results.aggregate`)."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Any

from energy.base import J_PER_KWH
from training.cli import one_line
from training.config import Config, ConfigError
from training.repeat import Repeat, new_run_id, run_once
from training.results import EXPORT, STAGES, aggregate, empty_result, write_result
from training.runtime import Hardware, Refused, is_worker, plan, probe_hardware, rank
from training.workspace import RunPaths

log = logging.getLogger("training")


def describe_error(e: BaseException) -> str:
    """One line; a refusal or a config error without its type."""
    return one_line(e, (Refused, ConfigError))


def write_failed(paths: RunPaths, variant: str, cfg: Config, reason: str,
                 environment: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``result.json`` for a run that could not start (refusal, no meter) and return it."""
    res = empty_result(variant, new_run_id(cfg.training.seed))
    res.update(failure_reason=reason, config=cfg.to_dict(), environment=environment or {},
               country=cfg.runtime.country)
    write_result(paths.result, res)
    return res


class NoMeters:
    """Stand-in for non-zero ranks of a multi-GPU run: rank 0's meters cover every device."""

    idle_w = None
    records: dict[str, Any] = {}

    @contextmanager
    def window(self, name: str, **_: Any):
        class W:
            record = None

        yield W()

    def measure_idle(self, seconds: float = 0.0) -> float:
        return 0.0

    def describe(self) -> dict[str, Any]:
        return {"source": "none", "kind": "estimated", "note": f"rank {rank()} does not measure"}

    def close(self) -> None:
        pass


def _preload(cfg: Config) -> None:
    """Import the heavy libraries before the first window: Python import time is not a stage
    of the pipeline, and the first repeat would otherwise pay it alone."""
    import torch  # noqa: F401
    import transformers.models.modernbert.modeling_modernbert  # noqa: F401
    from transformers import AutoTokenizer, Trainer  # noqa: F401

    if cfg.peft.enabled:
        import peft  # noqa: F401
    if cfg.inference.engine == "onnxruntime":
        import onnxruntime  # noqa: F401
        import torch.onnx  # noqa: F401


def _open_meters(cfg: Config, device: str):
    if is_worker() and rank() != 0:
        return NoMeters()
    from energy import open_meters
    from energy.nvml import cuda_devices_spec

    # pids: the estimate meter also attributes this process's own share (a cross-check, never
    # summed) — on a shared box the machine-wide figure includes other work. gpus: NVML reads
    # exactly the boards this run trains on (cuda:0 … cuda:gpus-1 of its CUDA_VISIBLE_DEVICES),
    # none when it trains on the CPU.
    gpus = cuda_devices_spec(cfg.runtime.gpus) if device == "cuda" else "none"
    return open_meters(cfg.runtime.meter, interval_s=cfg.runtime.meter_interval_s,
                       country=cfg.runtime.country, pids=(os.getpid(),), gpus=gpus)


def run_variant(variant: str, cfg: Config, *, repeats: int = 1, paths: RunPaths | None = None,
                hw: Hardware | None = None, meters=None, include_flagged: bool = False) -> dict[str, Any]:
    """Run ``repeats`` seeds of ``variant`` and write every result file. Returns the variant's
    result dict (``status`` ok/failed). Raises :class:`Refused` (after writing a failed
    result.json) when the variant cannot run here. Flagged repeats (resumed, tokenisation
    cache hit) are left out of the means unless ``include_flagged``."""
    from study.environment import capture

    paths = paths or RunPaths(variant)
    paths.variant_dir.mkdir(parents=True, exist_ok=True)
    environment = capture()
    try:
        pl = plan(cfg, hw or probe_hardware())
    except Refused as e:
        write_failed(paths, variant, cfg, str(e), environment)
        raise

    own_meters = meters is None
    if own_meters:
        try:
            meters = _open_meters(cfg, pl.device)
        except (ValueError, RuntimeError) as e:  # unknown spec, MeterUnavailable
            write_failed(paths, variant, cfg, f"energy meter: {describe_error(e)}", environment)
            raise
    writer = not (is_worker() and rank() != 0)  # rank 0 writes the result files
    runs: list[dict[str, Any]] = []
    try:
        _preload(cfg)
        if cfg.runtime.idle_s > 0 and meters.idle_w is None:
            try:
                meters.measure_idle(seconds=cfg.runtime.idle_s)
            except RuntimeError as e:  # the idle window produced no energy
                write_failed(paths, variant, cfg, f"idle baseline: {describe_error(e)}", environment)
                raise
        for k in range(repeats):
            seed = cfg.training.seed + k
            rep = Repeat(variant, cfg, pl, seed, paths, meters, new_run_id(seed), environment)
            try:
                res = run_once(rep)
            except (Exception, KeyboardInterrupt) as e:
                res = rep.result
                if res is None:  # failed before the repeat built its result
                    res = empty_result(variant, rep.run_id)
                    res.update(config=cfg.to_dict(), environment=environment, seed=seed,
                               country=cfg.runtime.country)
                res.update(status="failed", failure_reason=describe_error(e))
                if not isinstance(e, Exception):  # interrupted: record it, then stop
                    if writer:
                        write_result(paths.run_result(res["run_id"]), res)
                        runs.append(res)
                        write_result(paths.result, aggregate(variant, runs, runs[-1]["run_id"],
                                                             include_flagged=include_flagged))
                    raise
                log.debug("run %s failed", rep.run_id, exc_info=True)
            res["n_repeats"] = 1
            if not writer:
                continue
            write_result(paths.run_result(res["run_id"]), res)
            runs.append(res)
            print(summary_line(res), flush=True)
        if not writer:
            return {"status": "ok", "variant": variant}
        final = aggregate(variant, runs, runs[0]["run_id"] if len(runs) == 1 else
                          f"{runs[0]['run_id']}..{runs[-1]['run_id']}", include_flagged=include_flagged)
        write_result(paths.result, final)
        return final
    finally:
        if own_meters:
            meters.close()


def fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def summary_line(res: dict[str, Any]) -> str:
    """One line: variant, F1 (beside the constant baseline), MCC, class balance, energy per
    stage with source/kind, flags, artifact."""
    if res.get("status") != "ok":
        return f"{res.get('variant')} [{res.get('run_id')}]: FAILED — {res.get('failure_reason')}"
    cb = res.get("class_balance", {}).get("test", {})
    e = res.get("energy_kwh", {})
    src = res.get("energy_source", {})
    stages = " ".join(
        f"{s} {e[s] * J_PER_KWH:.0f}J" if e.get(s) is not None else f"{s} n/a"
        for s in (*STAGES, EXPORT, "unaccounted") if s in STAGES or e.get(s) is not None
    )
    sources = ",".join(sorted(set(src.values()))) or "none"
    chance = " AT CHANCE" if res.get("at_chance") else ""
    flags = f" | flags {','.join(res['flags'])}" if res.get("flags") else ""
    return (
        f"{res['variant']} [{res['run_id']}]: F1 {fmt(res['f1'])} (constant 'vulnerable' "
        f"{fmt(res.get('baseline_f1'))}) MCC {fmt(res.get('mcc'))}{chance} acc {fmt(res['accuracy'])} "
        f"pair acc {fmt(res.get('pair_accuracy'))} "
        f"(test n={cb.get('n')}, {100 * cb.get('positive_share', 0):.0f}% vulnerable) | "
        f"energy {stages} total {(e.get('total') or 0) * 1000:.4f} Wh ({sources}, {res.get('energy_kind')}) | "
        f"{res.get('duration_s', {}).get('total', 0):.0f} s{flags} | artifact {res.get('artifact')}"
    )
