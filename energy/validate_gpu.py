"""Validate the NVML meter on a real GPU: energy counter vs integrated sampled power.

::

    python -m energy.validate_gpu --seconds 60 --out results/gpu-validation

Runs the ``nvml`` meter for ``--seconds`` on an idle GPU, then for ``--seconds`` under a
back-to-back bf16 matmul load, and for each window compares the energy from
``nvmlDeviceGetTotalEnergyConsumption`` deltas with the trapezoid of sampled
``nvmlDeviceGetPowerUsage`` — the same samples through :mod:`energy.integrate` both ways. Writes
``validation.json``, the raw ``power.csv`` and a Markdown table (``validation.md``) for
``docs/gpu-validation.md``. Needs an NVIDIA GPU with NVML and a CUDA build of torch; elsewhere it
exits 2 saying so.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from energy.base import Reading
from energy.integrate import device_energy, group_by_device


def compare_counter_vs_power(readings: Iterable[Reading], t0: float, t1: float) -> dict[str, dict[str, Any]]:
    """Per GPU: energy over ``[t0, t1]`` from the counter and from sampled power (J), their
    relative difference (power vs counter) and mean powers (W)."""
    out: dict[str, dict[str, Any]] = {}
    for dev, rs in group_by_device(readings).items():
        counter = device_energy(rs, t0, t1)
        power_only = [dataclasses.replace(r, energy_j=None) for r in rs]
        power = device_energy(power_only, t0, t1)
        dur = t1 - t0
        rel = None
        if counter.energy_j and power.energy_j is not None and counter.method == "counter":
            rel = (power.energy_j - counter.energy_j) / counter.energy_j
        out[dev] = {
            "counter_j": counter.energy_j if counter.method == "counter" else None,
            "power_integrated_j": power.energy_j,
            "rel_diff_power_vs_counter": rel,
            "mean_w_counter": counter.energy_j / dur if counter.energy_j and dur > 0 and counter.method == "counter" else None,
            "mean_w_power": power.energy_j / dur if power.energy_j and dur > 0 else None,
            "n_samples": power.n_samples,
            "flags": counter.flags + power.flags,
        }
    return out


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        f"GPU: {result['gpu']} — driver {result['driver']} — interval {result['interval_s']} s — "
        f"{result['seconds']} s per window — {time.strftime('%Y-%m-%d', time.gmtime(result['t_unix_s']))}",
        "",
        "| window | device | counter J | integrated power J | power vs counter | mean W (counter) | samples |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for win, devs in result["windows"].items():
        for dev, d in devs.items():
            def f(x: Any, fmt: str) -> str:
                return "—" if x is None else format(x, fmt)
            lines.append(
                f"| {win} | {dev} | {f(d['counter_j'], '.1f')} | {f(d['power_integrated_j'], '.1f')} | "
                f"{f(None if d['rel_diff_power_vs_counter'] is None else 100 * d['rel_diff_power_vs_counter'], '+.2f')} % | "
                f"{f(d['mean_w_counter'], '.1f')} | {d['n_samples']} |"
            )
    if result.get("load_tflops") is not None:
        lines += ["", f"Load: bf16 matmul {result['matmul_n']}², {result['load_tflops']:.1f} TFLOP/s sustained."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m energy.validate_gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="length of each window (default 60)")
    p.add_argument("--interval-s", type=float, default=0.1, help="sampling period (default 0.1)")
    p.add_argument("--matmul-n", type=int, default=8192, help="square matmul size for the load")
    p.add_argument("--out", default=None,
                   help="output directory (default <results root>/gpu-validation: $RESULTS_DIR, else results)")
    args = p.parse_args(argv)
    if args.out is None:
        from study.paths import Paths

        args.out = str(Paths.from_env().gpu_validation)

    from energy.registry import MeterUnavailable
    from energy.window import open_meters
    from study.environment import gpu_info
    from study.io import write_json_atomic, write_text_atomic

    try:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        from energy.nvml import cuda_devices_spec

        # the board the matmul runs on (cuda:0), mapped by UUID — not every board in the box
        meters = open_meters("nvml", args.interval_s, trace_path=Path(args.out) / "power.csv",
                             gpus=cuda_devices_spec(1))
    except (ImportError, RuntimeError, ValueError, MeterUnavailable) as e:
        print(f"energy.validate_gpu: needs an NVIDIA GPU with NVML and CUDA torch: {e}", file=sys.stderr)
        return 2

    from tqdm import tqdm

    n = args.matmul_n
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    windows: dict[str, tuple[float, float]] = {}
    with meters:
        time.sleep(2.0)  # let the allocation settle before the idle window
        with meters.window("idle") as w:
            for _ in tqdm(range(int(args.seconds)), desc="idle", unit="s"):
                time.sleep(1.0)
        windows["idle"] = (w.record.start_unix_s, w.record.end_unix_s)
        iters = 0
        with meters.window("load") as w:
            t_end = time.monotonic() + args.seconds
            with tqdm(total=int(args.seconds), desc="matmul load", unit="s") as bar:
                last = time.monotonic()
                while time.monotonic() < t_end:
                    for _ in range(10):
                        a @ b
                    torch.cuda.synchronize()
                    iters += 10
                    if time.monotonic() - last >= 1.0:
                        bar.update(1)
                        last = time.monotonic()
        windows["load"] = (w.record.start_unix_s, w.record.end_unix_s)
        describe = meters.describe()
    # The session keeps only recent samples in memory; the full trace is in power.csv.
    from energy.trace import read_readings

    readings = read_readings(Path(args.out) / "power.csv")
    load_s = windows["load"][1] - windows["load"][0]
    gi = gpu_info() or {}
    result = {
        "t_unix_s": time.time(),
        "gpu": ", ".join(d["name"] for d in gi.get("devices", [])) or None,
        "driver": gi.get("driver"),
        "interval_s": args.interval_s,
        "seconds": args.seconds,
        "matmul_n": n,
        "load_tflops": 2 * n**3 * iters / load_s / 1e12 if load_s > 0 else None,
        "windows": {k: compare_counter_vs_power(readings, *v) for k, v in windows.items()},
        "meter": describe,
    }
    out = Path(args.out)
    write_json_atomic(out / "validation.json", result)
    md = _markdown(result)
    write_text_atomic(out / "validation.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
