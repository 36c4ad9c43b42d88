"""Train one variant end to end, with the energy of every stage measured (the CLI).

``python -m training.train --variant v2 [--model tiny|<dir>|<hub id>] [--data PATH] [--repeats N]
[--max-steps N] [--meter auto] [--include-flagged] [--set section.key=value …]``

Stages (each an energy window, one module each under :mod:`training.stages`): **data** (load
BigVul, paired examples, group split, tokenizer, tokenisation) → **architecture** (build/load
the model, layer pruning, LoRA wrapping) → **training** (HF Trainer, checkpoints every
``save_steps``; a rerun resumes) → **system** (save the artifact, LoRA merged, and reload it) →
**inference** (evaluate the reloaded artifact on the test split). v9's ONNX export is its own
window (``export``) and an outer window (``run``) covers the whole repeat (:mod:`training.repeat`):
``energy_kwh.total``, with ``unaccounted`` = total − stages − export. Repeats
(:mod:`training.variant`) flagged ``resumed_from_step_<n>`` / ``tokenisation_cache_hit`` are
left out of the means unless ``--include-flagged``. ``--gpus N`` relaunches under accelerate
(:mod:`training.launcher`). Output (layout: :mod:`study.paths`): ``<artifacts>/<variant>/model/``,
``<results>/train/<variant>/result.json``, ``<results>/train/<variant>/runs/<run_id>/result.json``
per repeat, and ``<results>/train/<variant>/training_progress.log``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from contextlib import nullcontext
from typing import Any

from study.paths import Paths
from training.cli import add_root_options, sigterm_as_interrupt
from training.config import ConfigError, describe_overlay, discover_variants, resolve
from training.results import REQUIRED_KEYS
from training.runtime import LAUNCHED_ENV, Refused, is_worker, plan, probe_hardware, rank
from training.variant import describe_error, fmt, run_variant, write_failed
from training.workspace import Busy, RunPaths, variant_lock

log = logging.getLogger("training")

EXIT_FAILED, EXIT_CONFIG, EXIT_REFUSED, EXIT_INTERRUPTED = 1, 2, 3, 130

__all__ = ["main", "run_variant", "RunPaths", "REQUIRED_KEYS"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Train one variant (v0…, aliases, or a combination like v2+v7+v8) with per-stage "
                    "energy; writes artifacts/<variant>/model/ and results/train/<variant>/result.json.",
    )
    p.add_argument("--variant", default=os.environ.get("VARIANT", "v0"), help="variant name, alias or A+B+C (default v0)")
    p.add_argument("--model", default=None, help="tiny (default) | local checkpoint dir | hub id in the HF cache")
    p.add_argument("--data", default=None, help="BigVul CSV (MSR_data_cleaned.csv[.gz]); default: embedded sample")
    p.add_argument("--repeats", type=int, default=1, help="seeds to run (seed, seed+1, …); result.json holds means + ci95")
    p.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps (overrides epochs)")
    p.add_argument("--meter", default=None, help="energy meter spec: auto | nvml | rapl | estimate | codecarbon | replay:<csv>")
    p.add_argument("--gpus", type=int, default=None, help="data-parallel over N GPUs via accelerate launch")
    p.add_argument("--idle-s", type=float, default=None, help="idle baseline seconds before the first repeat (0 = skip)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config key (validated like the YAML); repeatable")
    p.add_argument("--include-flagged", action="store_true",
                   default=os.environ.get("INCLUDE_FLAGGED", "").lower() in ("1", "true", "yes"),
                   help="average flagged repeats too (resumed from a checkpoint, tokenisation cache hit); "
                        "default: left out of the means and CIs, listed in 'excluded' (env INCLUDE_FLAGGED=1)")
    add_root_options(p)
    p.add_argument("--list", action="store_true", help="list every variant and what it changes, then exit")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and plan as JSON, then exit")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging (and tracebacks on failure)")
    return p


def list_variants() -> str:
    rows = []
    for name, info in discover_variants().items():
        rows.append(f"{name:<5} {info.description}\n      aliases: {', '.join(info.aliases) or '-'}; "
                    f"sets: {describe_overlay(info.overlay)}")
    rows.append("combine with '+': e.g. v2+v7+v8 applies v2, then v7, then v8")
    return "\n".join(rows)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    pairs = (("model.name", args.model), ("data.path", args.data), ("training.max_steps", args.max_steps),
             ("runtime.meter", args.meter), ("runtime.gpus", args.gpus), ("runtime.idle_s", args.idle_s))
    return {key: val for key, val in pairs if val is not None}


def _relaunch(argv: list[str], cfg, paths: RunPaths) -> int:
    """``--gpus N`` (N > 1) outside a launch: refuse here (with a failed result) or relaunch."""
    from training.launcher import relaunch

    try:
        plan(cfg, probe_hardware())
    except Refused as e:
        write_failed(paths, paths.variant, cfg, str(e))
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    sigterm_as_interrupt()
    try:
        return relaunch(argv, cfg.runtime.gpus)
    except KeyboardInterrupt:
        print(f"error: interrupted; checkpoints kept in {paths.checkpoints_dir} (rerun to resume)", file=sys.stderr)
        return EXIT_INTERRUPTED


def _final_line(variant: str, res: dict[str, Any], paths: RunPaths) -> str:
    ci = res.get("ci95", {}).get("f1")
    mci = res.get("ci95", {}).get("mcc")
    left_out = (f"; {len(res['excluded'])} flagged left out "
                f"({'; '.join(e['run_id'] + ': ' + ','.join(e['flags']) for e in res['excluded'])})"
                if res.get("excluded") else "")
    flagged = f"; flagged: {','.join(res['flags'])}" if res.get("flags") else ""
    return (f"{variant}: mean F1 {fmt(res['f1'])}"
            + (f" (95% CI {ci[0]:.3f}–{ci[1]:.3f})" if ci else "")
            + f", MCC {fmt(res.get('mcc'))}" + (f" (95% CI {mci[0]:.3f}–{mci[1]:.3f})" if mci else "")
            + (" at chance" if res.get("at_chance") else "")
            + f" over {res.get('n_used', res['n_repeats'])} of {res['n_repeats']} repeats"
            + left_out + flagged + f"; {paths.result}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    if args.list:
        print(list_variants())
        return 0
    try:
        cfg = resolve(args.variant, args.set, overrides=_overrides(args))
        if args.repeats < 1:
            raise ConfigError(f"--repeats must be ≥ 1, got {args.repeats}")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if args.print_config:
        out: dict[str, Any] = {"variant": args.variant, "config": cfg.to_dict()}
        try:
            out["plan"] = plan(cfg, probe_hardware()).to_dict()
        except Refused as e:
            out["plan"] = {"refused": str(e)}
        print(json.dumps(out, indent=2))
        return 0

    paths = RunPaths(args.variant, Paths.from_env(artifacts=args.artifacts_dir, results=args.results_dir))
    if cfg.runtime.gpus > 1 and os.environ.get(LAUNCHED_ENV) != "1":
        return _relaunch(argv, cfg, paths)

    sigterm_as_interrupt()
    try:
        with variant_lock(paths) if not (is_worker() and rank() != 0) else nullcontext():
            res = run_variant(args.variant, cfg, repeats=args.repeats, paths=paths,
                              include_flagged=args.include_flagged)
    except Busy as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except Refused as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print(f"error: interrupted; checkpoints kept in {paths.checkpoints_dir} (rerun to resume)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # failed before a repeat started (no meter, …); result.json says so
        log.debug("run failed", exc_info=True)
        print(f"error: {args.variant} failed: {describe_error(e)}", file=sys.stderr)
        return EXIT_FAILED
    if res.get("status") != "ok":
        print(f"error: {args.variant} failed: {res.get('failure_reason')}", file=sys.stderr)
        return EXIT_FAILED
    if res.get("n_repeats", 1) > 1 or res.get("excluded") or res.get("flags"):
        print(_final_line(args.variant, res, paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
