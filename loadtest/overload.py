"""Does a server keep its promises under overload? ``python -m loadtest.overload --help``.

Three load tests of one engine in one run (each a normal :mod:`loadtest.run` level, kept under
the load directory): the closed-loop **capacity** (``--capacity-users``, default 16), the
**light-load** p99 (``--light-users``, default 4), then an **open loop** at ``--factor`` ×
that capacity (default 4) over a pool of ``--pool`` users (default 1,000) for ``--duration``
seconds (default 60). It prints the figures side by side, each target as met or not met:

* goodput ≥ ``--min-goodput`` × capacity (default 0.8): the server still serves under overload;
* accepted p99 ≤ ``--max-p99-ratio`` × the light-load p99 (default 3), from the **intended**
  send time (coordinated omission corrected; the p99 from the actual send is shown beside it);
* client count = server count: every request the client sent, the server counted;
* server alive: the run is not failed and no request ended in a connection error or timeout.

These are issue 15's acceptance targets (docs/serving.md, "Overhead and overload"). Nothing is
hard-coded about the machine: the rate comes from the capacity measured in the same run. The
result is written to the results root's bench directory as ``overload__<engine>__<variant>``
(``.json`` and ``.md``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from loadtest.bench import add_run_options
from loadtest.run import ENGINES, RunConfig, run, utc_run_id
from loadtest.shapes import LoadSpec
from loadtest.summary import DEFAULT_MAX_ERROR_RATE
from serving.bench import machine_line
from study.environment import capture as capture_environment
from study.io import write_json_atomic, write_text_atomic
from study.paths import Paths


def verdict(capacity: dict[str, Any], light: dict[str, Any], flood: dict[str, Any], *,
            min_goodput: float, max_p99_ratio: float) -> list[dict[str, Any]]:
    """The targets as rows ``{"target", "value", "bound", "met"}`` from the three summaries
    (pure; ``met`` is ``None`` when a figure is missing)."""
    cap = capacity.get("throughput_rps")
    light_p99 = (light.get("latency_ms") or {}).get("p99")
    ol = flood.get("open_loop") or {}
    goodput = ol.get("goodput_rps", flood.get("throughput_rps"))
    p99 = (flood.get("latency_ms") or {}).get("p99")
    req = flood.get("requests") or {}
    sent = (req.get("ok") or 0) + (req.get("failed") or 0)
    counted = req.get("server_counted")
    broken = {k: v for k, v in (req.get("errors") or {}).items() if not k.startswith("http ")}

    def ratio(a: Any, b: Any) -> float | None:
        return None if a is None or not b else a / b

    g, r = ratio(goodput, cap), ratio(p99, light_p99)
    return [
        {"target": "goodput ÷ capacity", "value": g, "bound": f">= {min_goodput:g}",
         "met": None if g is None else g >= min_goodput},
        {"target": "accepted p99 ÷ light-load p99", "value": r, "bound": f"<= {max_p99_ratio:g}",
         "met": None if r is None else r <= max_p99_ratio},
        {"target": "client count = server count",
         "value": f"{sent} vs {'—' if counted is None else int(counted)}",
         "bound": "equal", "met": None if counted is None else int(counted) == sent},
        {"target": "server alive", "value": flood.get("status") if not broken else broken,
         "bound": "not failed, no connection errors",
         "met": flood.get("status") in ("ok", "degraded") and not broken},
    ]


def _fmt(x: Any, spec: str = ".1f") -> str:
    return "—" if x is None else format(x, spec) if isinstance(x, (int, float)) else str(x)


def format_report(result: dict[str, Any]) -> str:
    """The Markdown printed and written: the three runs, then the targets."""
    runs = result["runs"]
    lines = [
        f"Overload check — engine **{result['engine']}**, variant `{result['variant']}`, "
        f"{result['created_utc']}.",
        f"Machine: {result['machine']}; the load client on the same machine.",
        f"Open loop at {result['factor']:g} × capacity = {_fmt(result['target_rps'])} req/s, pool "
        f"{result['pool']}, {result['duration_s']:g} s; p50/p99 from the intended send (open loop).",
        "",
        "| run | load | req/s ok | p50 ms | p99 ms | p99 from send ms | 503s | status |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, s in runs.items():
        lat, sent_lat = s.get("latency_ms") or {}, s.get("latency_from_sent_ms") or {}
        load = s.get("load") or {}
        shape = (f"{round(load['rps'], 1):g} req/s open" if load.get("rps")
                 else f"{load.get('users')} users")
        errors = (s.get("requests") or {}).get("errors") or {}
        lines.append(
            f"| {name} | {shape} | {_fmt(s.get('throughput_rps'))} | {_fmt(lat.get('p50'))} | "
            f"{_fmt(lat.get('p99'))} | {_fmt(sent_lat.get('p99'))} | "
            f"{int(errors.get('http 503', 0))} | {s.get('status')} |"
        )
    lines += ["", "| target | value | bound | |", "|---|---:|---|---|"]
    for row in result["targets"]:
        mark = {True: "met", False: "**NOT met**", None: "not measured"}[row["met"]]
        value = _fmt(row["value"], ".2f")
        lines.append(f"| {row['target']} | {value} | {row['bound']} | {mark} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.overload",
        description="Capacity, light-load p99, then an open loop at N × capacity: goodput, "
                    "accepted p99, counts and liveness against their targets.",
    )
    p.add_argument("--engine", choices=ENGINES, default=os.environ.get("ENGINE", "onnxruntime"))
    p.add_argument("--variant", default=os.environ.get("VARIANT", "v0"))
    p.add_argument("--capacity-users", type=int, default=16, help="closed-loop users for capacity (16)")
    p.add_argument("--light-users", type=int, default=4, help="closed-loop users for the light-load p99 (4)")
    p.add_argument("--factor", type=float, default=4.0, help="open-loop rate ÷ capacity (4)")
    p.add_argument("--pool", type=int, default=1000, help="open-loop users the rate is spread over (1000)")
    p.add_argument("--duration", type=float, default=60.0, help="open-loop steady window, s (60)")
    p.add_argument("--closed-duration", type=float, default=30.0,
                   help="steady window of the two closed-loop runs, s (30)")
    p.add_argument("--warmup", type=float, default=5.0, help="warm-up before each steady window, s (5)")
    p.add_argument("--idle", type=float, default=5.0, help="idle baseline of each run, s (5)")
    p.add_argument("--min-goodput", type=float, default=0.8, help="target: goodput ÷ capacity (0.8)")
    p.add_argument("--max-p99-ratio", type=float, default=3.0,
                   help="target: accepted p99 ÷ light-load p99 (3)")
    p.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for serving.serve (repeatable)")
    add_run_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("capacity_users", "light_users", "pool"):
        if getattr(args, name) < 1:
            print(f"overload: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    if args.factor <= 0 or args.duration <= 0 or args.closed_duration <= 0:
        print("overload: --factor, --duration and --closed-duration must be > 0", file=sys.stderr)
        return 2
    paths = Paths.from_env(artifacts=args.artifacts_dir, results=args.results_dir)
    run_id = f"overload-{utc_run_id()}"
    load_before = os.getloadavg()

    def level(name: str, spec: LoadSpec, duration: float,
              max_error_rate: float = DEFAULT_MAX_ERROR_RATE) -> dict[str, Any]:
        cfg = RunConfig(
            engine=args.engine, variant=args.variant, specs=[spec], duration_s=duration,
            warmup_s=args.warmup, idle_s=args.idle, meter=args.meter,
            artifacts_dir=str(paths.artifacts), results_dir=str(paths.results),
            run_id=f"{run_id}-{name}", progress=not args.no_progress,
            server_args=list(args.server_arg), max_error_rate=max_error_rate,
        )
        (run_dir, s), = run(cfg)
        print(f"overload: {name}: {s.get('status')}, {_fmt(s.get('throughput_rps'))} req/s ok, "
              f"p99 {_fmt((s.get('latency_ms') or {}).get('p99'))} ms ({run_dir})", file=sys.stderr)
        return s

    try:
        capacity = level("capacity", LoadSpec(users=args.capacity_users), args.closed_duration)
        light = level("light", LoadSpec(users=args.light_users), args.closed_duration)
        cap = capacity.get("throughput_rps")
        if capacity.get("status") == "failed" or not cap:
            print(f"overload: the capacity run failed ({capacity.get('failure_reason')}); "
                  "nothing to overload", file=sys.stderr)
            return 1
        rate = args.factor * cap
        # 503s are the point of an overload: the error threshold must not fail the run.
        flood = level("open", LoadSpec(rps=rate, pool=args.pool), args.duration, max_error_rate=1.0)
    except ValueError as e:
        print(f"overload: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("overload: interrupted", file=sys.stderr)
        return 130
    machine = machine_line(capture_environment(), (load_before, os.getloadavg()))
    result = {
        "engine": args.engine, "variant": args.variant, "created_utc": run_id.split("-", 1)[1],
        "factor": args.factor, "target_rps": rate, "pool": args.pool, "duration_s": args.duration,
        "machine": machine,
        "targets": verdict(capacity, light, flood, min_goodput=args.min_goodput,
                           max_p99_ratio=args.max_p99_ratio),
        "runs": {"capacity": capacity, "light": light, "open": flood},
    }
    report = format_report(result)
    print(report)
    stem = paths.bench / f"overload__{args.engine}__{args.variant}"
    write_json_atomic(stem.with_suffix(".json"), result)
    write_text_atomic(stem.with_suffix(".md"), report + "\n")
    print(f"written: {stem}.json, {stem}.md")
    return 0 if all(r["met"] for r in result["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
