"""Compare serving engines at the same load in one run: ``python -m loadtest.bench --help``.

Runs :mod:`loadtest.run` once per engine (same variant, users or rate, duration, meter) and
prints energy per 1k requests (gross and net), throughput and p99 latency per engine, and the
ratios of each engine to the baseline engine (default ``pytorch``). Every energy figure is
labelled with its kind — on a CPU box without RAPL that is ``estimated``. Durations are short
by default: these are quick comparisons, not the study's repeated measurements (use
``make load … REPEATS=3`` for those). The table is also written to the results root's bench
directory (``study.paths.Paths.bench``) as ``loadtest-<id>.json``; each engine's run stays
under the load directory like any load test.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from loadtest.run import ENGINES, RunConfig, run, utc_run_id
from loadtest.shapes import specs_for
from study.io import write_json_atomic
from study.paths import Paths

DEFAULT_ENGINES = ("onnxruntime", "pytorch", "triton", "vllm")


def ratios(rows: list[dict[str, Any]], baseline: str) -> list[dict[str, Any]]:
    """Each row's energy/throughput/p99 divided by the baseline engine's (``None`` when either
    side is missing). Pure: rows are ``{"engine", "wh_per_1k_gross", "wh_per_1k_net",
    "throughput_rps", "p99_ms", …}``."""
    base = next((r for r in rows if r["engine"] == baseline and r.get("status") == "ok"), None)

    def div(a: Any, b: Any) -> float | None:
        if a is None or b is None or b == 0:
            return None
        return a / b

    out = []
    for r in rows:
        ok = r.get("status") == "ok" and base is not None
        out.append({
            **r,
            "energy_ratio_gross": div(r.get("wh_per_1k_gross"), base.get("wh_per_1k_gross")) if ok else None,
            "energy_ratio_net": div(r.get("wh_per_1k_net"), base.get("wh_per_1k_net")) if ok else None,
            "throughput_ratio": div(r.get("throughput_rps"), base.get("throughput_rps")) if ok else None,
            "p99_ratio": div(r.get("p99_ms"), base.get("p99_ms")) if ok else None,
            "server_cpu_ratio": div(r.get("server_cpu_ms_per_request"),
                                    base.get("server_cpu_ms_per_request")) if ok else None,
        })
    return out


def row_from_summary(engine: str, s: dict[str, Any], path: Path | None) -> dict[str, Any]:
    e = s.get("energy_per_1k_wh") or {}
    return {
        "engine": engine,
        "status": s.get("status"),
        "failure_reason": s.get("failure_reason"),
        "format": s.get("format"),
        "wh_per_1k_gross": e.get("gross"),
        "wh_per_1k_net": e.get("net"),
        "throughput_rps": s.get("throughput_rps"),
        "p99_ms": (s.get("latency_ms") or {}).get("p99"),
        "server_cpu_ms_per_request": (
            None if (s.get("server_cpu") or {}).get("cpu_s_per_request") is None
            else s["server_cpu"]["cpu_s_per_request"] * 1000.0
        ),
        "f1": (s.get("served") or {}).get("f1"),
        "requests_ok": (s.get("requests") or {}).get("ok"),
        "energy_kind": s.get("energy_kind"),
        "energy_source": s.get("energy_source"),
        "summary": None if path is None else str(path),
    }


def format_table(rows: list[dict[str, Any]], baseline: str) -> str:
    """The printed comparison (one line per engine, ratios to ``baseline``)."""

    def f(x: Any, fmt: str) -> str:
        return "—" if x is None else format(x, fmt)

    kinds = sorted({r["energy_kind"] for r in rows if r.get("energy_kind")})
    label = "/".join(kinds) if kinds else "no energy"
    lines = [
        f"Engines at the same load — energy per 1k requests ({label}); ratios vs {baseline}",
        f"{'engine':<12} {'Wh/1k gross':>12} {'Wh/1k net':>11} {'req/s':>8} {'p99 ms':>8} "
        f"{'E ratio':>8} {'E net ratio':>11} {'thr ratio':>9} {'cpu ms/req':>10} {'cpu ratio':>9}  status",
    ]
    for r in rows:
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r.get('failure_reason')}"
        lines.append(
            f"{r['engine']:<12} {f(r['wh_per_1k_gross'], '.4g'):>12} {f(r['wh_per_1k_net'], '.4g'):>11} "
            f"{f(r['throughput_rps'], '.1f'):>8} {f(r['p99_ms'], '.1f'):>8} "
            f"{f(r.get('energy_ratio_gross'), '.2f'):>8} {f(r.get('energy_ratio_net'), '.2f'):>11} "
            f"{f(r.get('throughput_ratio'), '.2f'):>9} {f(r.get('server_cpu_ms_per_request'), '.2f'):>10} "
            f"{f(r.get('server_cpu_ratio'), '.2f'):>9}  {status}"
        )
    busy = [r["engine"] for r in rows if r.get("wh_per_1k_gross") and r.get("wh_per_1k_net") is not None
            and abs(r["wh_per_1k_net"]) < 0.05 * r["wh_per_1k_gross"]]
    if busy:
        lines.append(f"(net ≈ 0 for {', '.join(busy)}: steady power ≈ idle power — the machine was "
                     "already busy with other work at idle, so net figures and their ratios say "
                     "nothing here; compare gross and server CPU per request)")
    if "replayed" in kinds:
        lines.append("(replayed: the figures are played back from a recorded power trace, not "
                     "measured during this run)")
    if "estimated" in kinds:
        lines.append("(estimated: no power meter here — the figures come from the labelled CPU-time "
                     "model, so ratios reflect CPU time, not measured watts)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.bench",
        description="Energy per 1k requests and throughput of several engines at the same load, as ratios.",
    )
    p.add_argument("--engines", default=",".join(DEFAULT_ENGINES),
                   help=f"comma-separated engines (default {','.join(DEFAULT_ENGINES)})")
    p.add_argument("--baseline", default="pytorch", help="engine the ratios are relative to")
    p.add_argument("--variant", default=os.environ.get("VARIANT", "v0"))
    load = p.add_mutually_exclusive_group()
    load.add_argument("--users", type=int, default=None, help="closed loop users (default 8)")
    load.add_argument("--rps", type=float, default=None, help="open loop rate instead of users")
    p.add_argument("--duration", type=float, default=10.0, help="steady window, s (default 10)")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up, s (default 3)")
    p.add_argument("--idle", type=float, default=3.0, help="idle baseline, s (default 3)")
    p.add_argument("--country", default=os.environ.get("COUNTRY", "FRA"))
    add_run_options(p)
    return p


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The options every multi-run check shares (this bench, :mod:`loadtest.overload`)."""
    p.add_argument("--meter", default=os.environ.get("METER", "auto"),
                   help="power meter spec (auto, estimate, nvml, rapl, replay:<csv>; default $METER, else auto)")
    p.add_argument("--artifacts-dir", default=None, help="artifacts root (default $ARTIFACTS)")
    p.add_argument("--results-dir", default=None, help="results root (default $RESULTS_DIR)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    bad = [e for e in engines if e not in ENGINES]
    if bad or not engines:
        print(f"bench: engines {bad or engines} invalid; allowed: {', '.join(ENGINES)}", file=sys.stderr)
        return 2
    try:
        specs = specs_for(users=args.users, rps=args.rps)
    except ValueError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    bench_id = utc_run_id()
    paths = Paths.from_env(artifacts=args.artifacts_dir, results=args.results_dir)
    rows = []
    for engine in engines:
        try:
            cfg = RunConfig(
                engine=engine, variant=args.variant, specs=specs, duration_s=args.duration,
                warmup_s=args.warmup, idle_s=args.idle, meter=args.meter, country=args.country,
                artifacts_dir=str(paths.artifacts), results_dir=str(paths.results),
                run_id=f"bench-{bench_id}", progress=not args.no_progress,
            )
        except ValueError as e:  # the same settings for every engine: one line, no run
            print(f"bench: {e}", file=sys.stderr)
            return 2
        try:
            (run_dir, s), = run(cfg)  # prepares (trains/exports) the artifact when missing
            rows.append(row_from_summary(engine, s, run_dir / "summary.json"))
        except (ValueError, OSError, RuntimeError) as e:
            rows.append(row_from_summary(engine, {"status": "failed", "failure_reason": str(e)}, None))
        except KeyboardInterrupt:  # one line, like loadtest.run; finished engines stay on disk
            print("bench: interrupted", file=sys.stderr)
            return 130
    table = ratios(rows, args.baseline)
    print(format_table(table, args.baseline))
    out = paths.bench / f"loadtest-{bench_id}.json"
    write_json_atomic(out, {"bench_id": bench_id, "baseline": args.baseline, "load": specs[0].to_dict(),
                            "duration_s": args.duration, "meter": args.meter, "rows": table})
    print(f"written: {out}")
    # One engine that cannot run here (no GPU, not installed) must not stop `make bench`'s other
    # scripts: the table says why; only a bench where nothing ran is an error.
    return 0 if any(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
