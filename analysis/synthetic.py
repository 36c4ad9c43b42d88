"""A synthetic results tree for tests and for previewing the report — never a measurement.

``python -m analysis.synthetic --out /tmp/synth-results`` writes training ``result.json`` files
(with repeats), load ``summary.json`` files (with ``repeat-<k>/`` folders and ``power.csv``
traces), one failed training variant, one failed load run and incomplete folders, all following
docs/interfaces.md. Every file carries ``"environment": {"synthetic": true}`` and model name
``synthetic-fixture`` so the report shows a SYNTHETIC banner; energies are labelled
``estimated`` with source ``replay`` (a replayed synthetic trace).

The numbers are built to have known answers: v2 saves 20 % and v7 30 % of training energy, so
the multiplicative prediction for v2+v7 is 44 % and its measured saving is set to 44 %
(multiplicative); v2+v7+v8 is set to compound.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path
from typing import Any

from analysis.io import write_json_atomic, write_text_atomic
from energy.base import J_PER_KWH, J_PER_WH
from study.paths import Paths
from study.schema import LoadSummary, TrainingResult

T0 = 1_764_000_000.0  # a fixed epoch so files are reproducible

# fraction of baseline training energy each variant uses (1 − saving)
TRAIN_FACTOR = {"v0": 1.0, "v2": 0.8, "v7": 0.7, "v8": 0.85, "v2+v7": 0.56, "v2+v7+v8": 0.40, "v1": 0.9}
TRAIN_F1 = {"v0": 0.62, "v2": 0.60, "v7": 0.615, "v8": 0.58, "v2+v7": 0.59, "v2+v7+v8": 0.55, "v1": 0.62}
SERVE_FACTOR = {"v0": 1.0, "v2": 0.95, "v7": 0.6, "v2+v7": 0.57}
ENGINE_FACTOR = {"onnxruntime": 1.0, "pytorch": 1.6, "triton": 1.2}
ENGINE_FORMAT = {"onnxruntime": "onnx", "pytorch": "pytorch", "triton": "onnx"}


def _record(name: str, start: float, end: float, power_w: float, idle_w: float | None) -> dict[str, Any]:
    dur = end - start
    gross = power_w * dur
    net = None if idle_w is None else gross - idle_w * dur
    return {"name": name, "start_unix_s": start, "end_unix_s": end, "duration_s": dur, "gross_j": gross,
            "idle_w": idle_w, "net_j": net, "source": "replay", "kind": "estimated",
            "per_device_j": {"cpu": gross}, "n_samples": int(dur * 10), "flags": [],
            "meter": {"replay": "synthetic"}, "gross_kwh": gross / J_PER_KWH,
            "net_kwh": None if net is None else net / J_PER_KWH}


def train_result(variant: str, run_id: str, rng: random.Random, repeats: list[str] | None = None) -> dict[str, Any]:
    """One synthetic training result (1 % noise on energies)."""
    base_kwh = 2.0e-3
    f = TRAIN_FACTOR[variant] * (1.0 + rng.gauss(0, 0.01))
    stages = {"data": 1.0e-5 * (1 + rng.gauss(0, 0.02)), "architecture": 2.0e-6,
              "training": base_kwh * f, "system": 5.0e-5, "inference": 1.0e-4 * f}
    stages["total"] = math.fsum(stages.values())
    out = {
        "status": "ok", "failure_reason": None, "variant": variant, "run_id": run_id,
        "energy_kwh": stages,
        "energy_source": {s: "replay" for s in ("data", "architecture", "training", "system", "inference")},
        "energy_kind": "estimated", "co2_kg": stages["total"] * 0.056, "grid_gco2_per_kwh": 56.0,
        "country": "FRA", "accuracy": TRAIN_F1[variant] + 0.1, "f1": TRAIN_F1[variant] + rng.gauss(0, 0.003),
        "precision": 0.6, "recall": 0.6, "latency_ms": 3.0 * f,
        # v0's MCC sits at chance (the report must say so); the others are a little better
        "mcc": (0.01 if variant == "v0" else 0.12) + rng.gauss(0, 0.005), "balanced_accuracy": 0.55,
        "roc_auc": 0.58, "baseline_f1": 2 / 3, "pair_accuracy": 0.56 + rng.gauss(0, 0.005),
        "duration_s": {"training": 30.0 * f, "total": 40.0 * f},
        "model": {"name": "synthetic-fixture", "params": 1_000_000, "trainable_params": 1_000_000,
                  "size_mb": 4.0},
        "config": {"variant": variant}, "environment": {"synthetic": True}, "n_repeats": 1,
    }
    if repeats:
        out["n_repeats"] = len(repeats)
        out["runs"] = repeats
    return TrainingResult.from_dict(out).to_dict()  # built through the schema the stages write


def write_power_csv(path: Path, windows: dict[str, tuple[float, float]], rng: random.Random, steady_w: float) -> None:
    """A 10 Hz synthetic power trace: ramp during system start, idle, warm-up, steady load."""
    t_start, t_end = windows["system"][0], windows["inference"][1] + 1.0
    lines = ["t_unix_s,device,power_w,energy_j,source,kind,flag"]
    energy = 0.0
    t = t_start
    while t <= t_end:
        if t < windows["idle"][0]:
            p = 15.0 + 10.0 * math.sin((t - t_start) * 1.3) ** 2
        elif t < windows["idle"][1]:
            p = 10.0
        elif t < windows["inference"][0]:
            p = steady_w * 0.8
        elif t < windows["inference"][1]:
            p = steady_w
        else:
            p = 10.0
        p = max(0.0, p + rng.gauss(0, 0.6))
        energy += p * 0.1
        lines.append(f"{t:.6f},cpu,{p:.4f},{energy:.6f},replay,estimated,")
        t += 0.1
    write_text_atomic(path, "\n".join(lines) + "\n")


SERVER_SHARE = 0.6  # of the steady window's gross energy, in every synthetic repeat


def load_summary(engine: str, variant: str, run_id: str, k: int, rng: random.Random, t0: float) -> tuple[dict, dict]:
    """One synthetic repeat summary and its window bounds."""
    windows = {"system": (t0, t0 + 6.0), "idle": (t0 + 6.0, t0 + 9.0), "inference": (t0 + 11.0, t0 + 31.0)}
    idle_w = 10.0
    steady_w = 20.0 * ENGINE_FACTOR[engine] * SERVE_FACTOR[variant] + 10.0
    steady_w *= 1.0 + rng.gauss(0, 0.01)
    n_ok = 800
    inf = _record("inference", *windows["inference"], steady_w, idle_w)
    p50 = 8.0 * ENGINE_FACTOR[engine] * SERVE_FACTOR[variant] * (1 + rng.gauss(0, 0.02))
    s = {
        "status": "ok", "failure_reason": None, "run_id": run_id, "engine": engine, "variant": variant,
        "format": ENGINE_FORMAT[engine], "model": "bigvul-modernbert",
        "load": {"model": "closed", "users": 8, "rps": None, "duration_s": 20, "workers": 0, "warmup_s": 2},
        "requests": {"ok": n_ok, "failed": 0, "errors": {}, "server_counted": n_ok, "client_counted": n_ok},
        "throughput_rps": n_ok / 20.0, "latency_ms": {"mean": p50 * 1.1, "p50": p50, "p90": p50 * 1.6,
                                                     "p95": p50 * 1.9, "p99": p50 * 2.6},
        "served": {"accuracy": 0.7, "f1": TRAIN_F1[variant] - 0.01, "precision": 0.6, "recall": 0.6, "n_scored": 200,
                   "mcc": 0.01 if variant == "v0" else 0.12, "balanced_accuracy": 0.55, "roc_auc": 0.58,
                   "baseline_f1": 2 / 3, "pair_accuracy": 0.56},
        "energy": {"system": _record("system", *windows["system"], 20.0, None),
                   "idle": _record("idle", *windows["idle"], idle_w, None), "inference": inf},
        "energy_per_1k_wh": {"gross": inf["gross_j"] / n_ok * 1000 / J_PER_WH,
                             "net": inf["net_j"] / n_ok * 1000 / J_PER_WH,
                             "server": inf["gross_j"] * SERVER_SHARE / n_ok * 1000 / J_PER_WH},
        "j_per_request": {"gross": inf["gross_j"] / n_ok, "net": inf["net_j"] / n_ok,
                          "server": inf["gross_j"] * SERVER_SHARE / n_ok},
        "attribution": {"method": "synthetic fixture: a fixed share", "server_share": SERVER_SHARE,
                        "server_cpu_s": 20.0, "client_cpu_s": 8.0, "other_cpu_s": 2.0,
                        "server_j": inf["gross_j"] * SERVER_SHARE, "client_j": inf["gross_j"] * 0.3,
                        "rest_j": inf["gross_j"] * (0.7 - SERVER_SHARE)},
        "flags": [],
        "co2_per_1k_g": {"gross": inf["gross_j"] / n_ok * 1000 / J_PER_KWH * 56.0,
                         "net": inf["net_j"] / n_ok * 1000 / J_PER_KWH * 56.0},
        "country": "FRA", "grid_gco2_per_kwh": 56.0, "energy_source": "replay", "energy_kind": "estimated",
        "client_cpu": {"mean_percent": 40.0, "max_percent": 70.0}, "environment": {"synthetic": True},
        "n_repeats": 1, "repeat": k,
    }
    return LoadSummary.from_dict(s).to_dict(), windows


def write_tree(out: str | Path, seed: int = 0) -> Path:
    """Write the synthetic tree under the results root ``out`` (laid out by
    :class:`study.paths.Paths`, as the real stages write it) and return the root."""
    paths = Paths.from_env(results=out)
    rng = random.Random(seed)
    # training: three repeats for most variants
    for v in ("v0", "v2", "v7", "v8", "v2+v7", "v2+v7+v8"):
        ids = [f"{v.replace('+', '_')}-r{i}" for i in range(1, 4)]
        reps = [train_result(v, rid, rng) for rid in ids]
        for rid, r in zip(ids, reps, strict=True):
            write_json_atomic(paths.train_run(v, rid) / "result.json", r)
        mean = train_result(v, ids[-1], rng, repeats=ids)
        for k in mean["energy_kwh"]:
            mean["energy_kwh"][k] = sum(r["energy_kwh"][k] for r in reps) / len(reps)
        mean["f1"] = sum(r["f1"] for r in reps) / len(reps)
        write_json_atomic(paths.train_result(v), mean)
    # one variant with a single run and no runs/ folder → n = 1, no CI
    write_json_atomic(paths.train_result("v1"), train_result("v1", "v1-only", rng))
    # a failed variant
    write_json_atomic(paths.train_result("v13"), {
        "status": "failed", "failure_reason": "RuntimeError: synthetic failure (layer pruning)",
        "variant": "v13", "run_id": "v13-r1", "environment": {"synthetic": True}})
    # a repeat folder without a result (killed run)
    paths.train_run("v0", "v0-killed").mkdir(parents=True, exist_ok=True)

    # load runs
    t = T0
    for engine, variants in (("onnxruntime", ("v0", "v2", "v7", "v2+v7")), ("pytorch", ("v0", "v2+v7"))):
        for v in variants:
            run_id = f"{engine}-{v.replace('+', '_')}-run1"
            run_dir = paths.load_run(engine, v, run_id)
            reps = []
            for k in (1, 2, 3):
                s, windows = load_summary(engine, v, run_id, k, rng, t)
                t += 60.0
                write_json_atomic(run_dir / f"repeat-{k}" / "summary.json", s)
                write_power_csv(run_dir / f"repeat-{k}" / "power.csv", windows, rng,
                                s["energy"]["inference"]["gross_j"] / 20.0)
                reps.append(s)
            top = dict(reps[0])
            top["n_repeats"] = 3
            top["repeats"] = reps
            top["energy_per_1k_wh"] = {g: sum(r["energy_per_1k_wh"][g] for r in reps) / 3 for g in ("gross", "net")}
            write_json_atomic(run_dir / "summary.json", top)
    # a failed load run and an incomplete one
    write_json_atomic(paths.load_run("triton", "v0", "triton-v0-run1") / "summary.json", {
        "status": "failed", "failure_reason": "server did not become ready within 60 s (synthetic)",
        "run_id": "triton-v0-run1", "engine": "triton", "variant": "v0", "format": "onnx",
        "environment": {"synthetic": True}})
    paths.load_run("onnxruntime", "v0", "killed-run").mkdir(parents=True, exist_ok=True)
    return paths.results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.synthetic",
                                 description="Write a SYNTHETIC results tree (for tests and report previews).")
    ap.add_argument("--out", required=True, help="directory to create the tree in (e.g. /tmp/synth-results)")
    ap.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    args = ap.parse_args(argv)
    print(f"wrote synthetic results tree to {write_tree(args.out, args.seed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
