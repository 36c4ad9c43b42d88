"""Small command line over the meter layer: ``python -m energy <command> --help``.

Commands: ``meters`` (which meters can run here and why not), ``idle`` (measure idle power),
``trace`` (energy of a window in a sidecar power CSV), ``carbon`` (grid intensity / CO₂),
``env`` (the environment block written into result files).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _t(s: str) -> float | str:
    try:
        return float(s)
    except ValueError:
        return s  # a mark name


def cmd_meters(args: argparse.Namespace) -> int:
    from energy.config import MeterConfig
    from energy.registry import METERS, probe

    cfg = MeterConfig.from_env(gpus=args.gpus)
    rows = {}
    for name in METERS:
        if name == "replay":
            rows[name] = "needs a trace: replay:<power.csv>"
            continue
        reason = probe(name, cfg)
        rows[name] = "available" if reason is None else f"unavailable: {reason}"
    _print(rows)
    return 0


def cmd_idle(args: argparse.Namespace) -> int:
    from energy.window import open_meters
    from study.io import write_json_atomic

    with open_meters(args.meter, args.interval_s, country=args.country, gpus=args.gpus) as meters:
        idle_w = meters.measure_idle(args.seconds)
        rec = meters.records["idle"]
    out = {"idle_w": idle_w, "record": rec.to_dict()}
    if args.out:
        write_json_atomic(args.out, out)
    print(f"idle power: {idle_w:.3f} W over {rec.duration_s:.1f} s "
          f"(source {rec.source}, kind {rec.kind})" + (f" -> {args.out}" if args.out else ""))
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    from energy.trace import read_marks, record_from_csv
    from study.io import write_json_atomic

    if args.marks:
        _print([{"name": n, "t_unix_s": t} for n, t in read_marks(args.power_csv)])
        return 0
    if args.start is None or args.end is None:
        print("energy trace: --start and --end are required (Unix seconds or mark names), or --marks",
              file=sys.stderr)
        return 2
    rec = record_from_csv(args.power_csv, _t(args.start), _t(args.end), name=args.name, idle_w=args.idle_w)
    if args.json:
        write_json_atomic(args.json, rec)
    _print(rec.to_dict())
    return 0


def cmd_carbon(args: argparse.Namespace) -> int:
    from energy.carbon import co2_kg, grid_intensity_info

    info = grid_intensity_info(args.country)
    if args.kwh is not None:
        info["kwh"] = args.kwh
        info["co2_kg"] = co2_kg(args.kwh, args.country)
    _print(info)
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    from study.environment import capture

    _print(capture())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m energy", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    gpus_help = ("GPUs the nvml meter reads, as in CUDA_VISIBLE_DEVICES (0,2 | GPU-<uuid> | MIG-<uuid>, "
                 "prefixes allowed) or all | none (default: $CUDA_VISIBLE_DEVICES, else all)")
    s = sub.add_parser("meters", help="list meters and whether they can run here")
    s.add_argument("--gpus", default=None, help=gpus_help)
    s.set_defaults(fn=cmd_meters)
    s = sub.add_parser("idle", help="measure idle power (W) for N seconds")
    s.add_argument("--seconds", type=float, default=10.0, help="how long to measure (default 10)")
    s.add_argument("--meter", default=None, help="meter spec (default $METER or auto)")
    s.add_argument("--interval-s", type=float, default=0.1, help="sampling period (default 0.1 s)")
    s.add_argument("--country", default=None, help="ISO-3 code for CodeCarbon (default $COUNTRY or FRA)")
    s.add_argument("--gpus", default=None, help=gpus_help)
    s.add_argument("--out", default=None, help="write {idle_w, record} JSON here (atomically)")
    s.set_defaults(fn=cmd_idle)
    s = sub.add_parser("trace", help="energy of [start, end] in a sidecar power CSV")
    s.add_argument("power_csv")
    s.add_argument("--start", help="Unix seconds or a mark name")
    s.add_argument("--end", help="Unix seconds or a mark name")
    s.add_argument("--name", default="window")
    s.add_argument("--idle-w", type=float, default=None, help="idle baseline (W) for net_j")
    s.add_argument("--marks", action="store_true", help="only list the marks")
    s.add_argument("--json", default=None, help="also write the record here")
    s.set_defaults(fn=cmd_trace)
    s = sub.add_parser("carbon", help="grid carbon intensity (gCO2e/kWh) of a country")
    s.add_argument("--country", default="FRA", help="ISO-3 code (default FRA)")
    s.add_argument("--kwh", type=float, default=None, help="also convert this many kWh to kg CO2e")
    s.set_defaults(fn=cmd_carbon)
    s = sub.add_parser("env", help="print the captured environment")
    s.set_defaults(fn=cmd_env)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    try:
        return args.fn(args)
    except (ValueError, KeyError, OSError, RuntimeError) as e:
        print(f"energy {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
