"""Random search over energy-saving knobs (seed green_screen), resumable after a kill.

``python -m analysis.sweep --n 3 [--seed 0] [--space analysis/search_space.yaml] [--serve]``

1. Sample ``N`` runs from the search space (YAML, see ``analysis/search_space.yaml``): a subset
   of variant overlays (``v2+v7``) and one value per ``--set`` knob. Run *i* depends only on
   ``(seed, i)``, so the same seed always gives the same list and ``--n 5`` extends ``--n 3``.
2. Each run gets ``<out>/<run_id>/`` with ``params.json`` (its resolved parameters and command),
   ``train/<variant>/result.json`` and ``artifacts/`` (``python -m training.train …
   --results-dir <run> --artifacts-dir <run>/artifacts``), ``power.csv`` (the energy sidecar's trace of the run), ``train.log`` and, when it
   finished, ``done.json``. With ``--serve`` it is also served and loaded (``python -m
   loadtest.run``, results in ``load/``).
3. After every run ``<out>/aggregate.csv`` is rewritten (atomically) from every finished run
   folder, and at the end ``<out>/best.json`` names the best-F1 run, the lowest-energy run, the
   best trade-off and the energy–F1 Pareto set.

Resuming: a folder with ``done.json`` (whose ``params.json`` matches) is finished and skipped; a
folder without it was interrupted and is deleted and redone. ``--retry-failed`` also redoes runs
that finished with status ``failed``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from analysis.io import as_float, get_path, read_json, write_json_atomic, write_table_atomic
from analysis.tradeoffs import Point, key_findings

SPACE_KEYS = {"base_variant", "overlays", "set", "fixed", "max_steps", "train_args", "serve", "compress"}
OVERLAY_KEYS = {"choices", "min", "max"}
SERVE_KEYS = {"engine", "duration_s", "warmup_s", "idle_s", "max_items"}
DEFAULT_SPACE = Path(__file__).with_name("search_space.yaml")
VARIANTS_DIR = Path(__file__).resolve().parent.parent / "training" / "variants"


class SpaceError(ValueError):
    """A search-space file that does not validate (names the file, the key and what is allowed)."""


@dataclass
class SearchSpace:
    """The declared search space (see ``analysis/search_space.yaml``)."""

    base_variant: str = "v0"
    overlays: list[str] = field(default_factory=list)
    min_overlays: int = 0
    max_overlays: int = 3
    set: dict[str, list[Any]] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    max_steps: int = 4
    train_args: list[str] = field(default_factory=list)
    serve: dict[str, Any] = field(default_factory=lambda: {"engine": "onnxruntime", "duration_s": 5,
                                                           "warmup_s": 2, "idle_s": 2, "max_items": 32})
    # compression methods to choose from after training ("none" = serve the trained model);
    # a chosen method runs `python -m training.compress` and the run serves <variant>@<method>
    compress: list[str] = field(default_factory=list)
    source: str = ""


def load_space(path: str | os.PathLike) -> SearchSpace:
    """Read and validate a search-space YAML; errors name the file, key and allowed values."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise SpaceError(f"{path}: cannot read search space: {e}") from e
    if not isinstance(raw, dict):
        raise SpaceError(f"{path}: top level must be a mapping with keys {sorted(SPACE_KEYS)}")
    unknown = set(raw) - SPACE_KEYS
    if unknown:
        raise SpaceError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(SPACE_KEYS)}")
    sp = SearchSpace(source=str(path))
    sp.base_variant = str(raw.get("base_variant", sp.base_variant))
    ov = raw.get("overlays", {}) or {}
    if not isinstance(ov, dict) or set(ov) - OVERLAY_KEYS:
        raise SpaceError(f"{path}: 'overlays' must be a mapping with keys {sorted(OVERLAY_KEYS)}")
    sp.overlays = [str(x) for x in ov.get("choices", [])]
    sp.min_overlays = int(ov.get("min", 0))
    sp.max_overlays = int(ov.get("max", min(3, len(sp.overlays))))
    if not 0 <= sp.min_overlays <= sp.max_overlays <= len(sp.overlays):
        raise SpaceError(f"{path}: overlays.min/max must satisfy 0 ≤ min ≤ max ≤ {len(sp.overlays)} "
                         f"(number of choices); got min={sp.min_overlays}, max={sp.max_overlays}")
    st = raw.get("set", {}) or {}
    if not isinstance(st, dict):
        raise SpaceError(f"{path}: 'set' must map 'section.key' to a list of values")
    for k, v in st.items():
        if "." not in str(k):
            raise SpaceError(f"{path}: set key {k!r} must be dotted 'section.key' (e.g. training.tiny_learning_rate)")
        if not isinstance(v, list) or not v:
            raise SpaceError(f"{path}: set.{k} must be a non-empty list of values, got {v!r}")
    sp.set = {str(k): list(v) for k, v in st.items()}
    fx = raw.get("fixed", {}) or {}
    if not isinstance(fx, dict) or any("." not in str(k) for k in fx):
        raise SpaceError(f"{path}: 'fixed' must map dotted 'section.key' to one value")
    both = set(map(str, fx)) & set(sp.set)
    if both:
        raise SpaceError(f"{path}: key(s) {sorted(both)} are in both 'set' and 'fixed'; keep one")
    sp.fixed = {str(k): v for k, v in fx.items()}
    sp.max_steps = int(raw.get("max_steps", sp.max_steps))
    sp.train_args = [str(a) for a in raw.get("train_args", []) or []]
    serve = raw.get("serve", {}) or {}
    if set(serve) - SERVE_KEYS:
        raise SpaceError(f"{path}: unknown serve key(s) {sorted(set(serve) - SERVE_KEYS)}; allowed: "
                         f"{sorted(SERVE_KEYS)}")
    sp.serve = {**sp.serve, **serve}
    comp = raw.get("compress", []) or []
    if not isinstance(comp, list):
        raise SpaceError(f"{path}: 'compress' must be a list of methods (or none), got {comp!r}")
    from training.compress.base import CompressError, parse_method

    for m in comp:
        if str(m) != "none":
            try:
                parse_method(str(m))
            except CompressError as e:
                raise SpaceError(f"{path}: compress: {e}") from None
    sp.compress = [str(m) for m in comp]
    return sp


def overlay_keys(variant: str, variants_dir: Path = VARIANTS_DIR) -> set[str]:
    """Dotted config keys an overlay YAML sets (empty when the file is not found)."""
    f = variants_dir / f"{variant}.yaml"
    if not f.is_file():
        return set()
    raw = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
    keys: set[str] = set()

    def walk(d: dict, prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                keys.add(f"{prefix}{k}")

    walk({k: v for k, v in raw.items() if isinstance(v, dict)}, "")
    return keys


@dataclass
class RunSpec:
    """One sampled configuration."""

    index: int
    seed: int
    variant: str
    overlays: list[str]
    set: dict[str, Any]
    overridden_by_overlay: list[str]
    max_steps: int
    run_id: str = ""
    compress: str | None = None  # a compression method applied after training (served as variant@method)

    @property
    def served_variant(self) -> str:
        return f"{self.variant}@{self.compress}" if self.compress else self.variant

    def params_hash(self) -> str:
        key: dict[str, Any] = {"variant": self.variant, "set": self.set, "max_steps": self.max_steps}
        if self.compress:  # only when used, so the ids of runs without compression never change
            key["compress"] = self.compress
        blob = json.dumps(key, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]


def sample(space: SearchSpace, n: int, seed: int, variants_dir: Path = VARIANTS_DIR) -> list[RunSpec]:
    """The first ``n`` runs for ``seed``; run ``i`` depends only on ``(seed, i)``."""
    specs = []
    for i in range(n):
        rng = random.Random(f"green-sweep:{seed}:{i}")  # str seeds hash deterministically (sha512)
        k = rng.randint(space.min_overlays, space.max_overlays)
        chosen = sorted(rng.sample(space.overlays, k), key=space.overlays.index)
        values = {key: rng.choice(choices) for key, choices in sorted(space.set.items())}
        values.update(space.fixed)  # after sampling, so adding a fixed key never shifts the draws
        taken: set[str] = set()
        for o in chosen:
            taken |= overlay_keys(o, variants_dir)
        dropped = sorted(k for k in values if k in taken)
        values = {k: v for k, v in values.items() if k not in taken}
        variant = "+".join(chosen) if chosen else space.base_variant
        method = rng.choice(space.compress) if space.compress else None  # drawn last: earlier draws keep
        spec = RunSpec(index=i, seed=seed, variant=variant, overlays=chosen, set=values,
                       overridden_by_overlay=dropped, max_steps=space.max_steps,
                       compress=None if method in (None, "none") else method)
        spec.run_id = f"s{seed}-{i:03d}-{spec.params_hash()}"
        specs.append(spec)
    return specs


def _set_value(v: Any) -> str:
    # The training CLI parses the right-hand side as YAML: JSON is valid YAML for lists/bools/null.
    if isinstance(v, str):
        return v
    return json.dumps(v)


def train_command(spec: RunSpec, run_dir: Path, space: SearchSpace, python: str = sys.executable,
                  meter: str | None = None) -> list[str]:
    """The ``python -m training.train`` command line of one run."""
    cmd = [python, "-m", "training.train", "--variant", spec.variant, "--max-steps", str(spec.max_steps),
           "--results-dir", str(run_dir), "--artifacts-dir", str(run_dir / "artifacts")]
    if meter:
        cmd += ["--meter", meter]
    for k, v in spec.set.items():
        cmd += ["--set", f"{k}={_set_value(v)}"]
    return cmd + list(space.train_args)


def load_command(spec: RunSpec, run_dir: Path, space: SearchSpace, python: str = sys.executable,
                 meter: str | None = None) -> list[str]:
    """The ``python -m loadtest.run`` command line (serve + load) of one run."""
    s = space.serve
    cmd = [python, "-m", "loadtest.run", "--engine", str(s["engine"]), "--variant", spec.served_variant,
           "--duration", str(s["duration_s"]), "--warmup", str(s["warmup_s"]), "--idle", str(s["idle_s"]),
           "--max-items", str(s["max_items"]), "--artifacts-dir", str(run_dir / "artifacts"),
           "--results-dir", str(run_dir / "load"), "--run-id", spec.run_id, "--no-progress"]
    if meter:
        cmd += ["--meter", meter]
    return cmd


def compress_command(spec: RunSpec, run_dir: Path, python: str = sys.executable,
                     meter: str | None = None) -> list[str]:
    """The ``python -m training.compress`` command line of a run that compresses its model."""
    cmd = [python, "-m", "training.compress", "--variant", spec.variant, "--method", str(spec.compress),
           "--results-dir", str(run_dir), "--artifacts-dir", str(run_dir / "artifacts"), "--idle-s", "0"]
    return cmd + (["--meter", meter] if meter else [])


# A runner executes one command, logging to ``log_path`` and, when ``power_csv`` is given,
# recording the run's power there; it returns the exit status. Tests inject a fake one.
Runner = Callable[[list[str], Path, "Path | None"], int]


def _die_with_parent() -> None:
    """preexec_fn: ask Linux to SIGTERM this child when the sweep dies, even by SIGKILL, so a
    killed sweep never leaves a training run or a sidecar behind (no-op where prctl is absent)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def subprocess_runner(meter: str | None = None, interval_s: float = 0.2) -> Runner:
    """The real runner: the command as a child process (own process group, so a Ctrl-C or kill
    of the sweep also stops it) with the energy sidecar recording ``power_csv`` beside it."""

    def run(cmd: list[str], log_path: Path, power_csv: Path | None) -> int:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            log.write(("$ " + " ".join(cmd) + "\n").encode())
            log.flush()
            child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent)
            side = None
            if power_csv is not None:
                side_cmd = [sys.executable, "-m", "energy.sidecar", "--out", str(power_csv),
                            "--interval-s", str(interval_s), "--pid", str(child.pid), "--log-level", "WARNING"]
                if meter:
                    side_cmd += ["--meter", meter]
                try:
                    side = subprocess.Popen(side_cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=_die_with_parent)
                except OSError as e:  # the run matters more than its power log; say so in the log
                    log.write(f"[sweep] power sidecar did not start: {e}\n".encode())
            try:
                return child.wait()
            except BaseException:
                os.killpg(child.pid, signal.SIGTERM)
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
                raise
            finally:
                if side is not None and side.poll() is None:
                    side.send_signal(signal.SIGTERM)
                    try:
                        side.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        side.kill()

    return run


# --------------------------------------------------------------------------- run folders


def params_of(spec: RunSpec, space: SearchSpace, commands: list[list[str]]) -> dict[str, Any]:
    """What goes into ``params.json``."""
    return {**asdict(spec), "space": space.source, "commands": commands}


def find_result(run_dir: Path, sub: str, name: str) -> Path | None:
    """The top-level result file under ``run_dir/sub`` (not a repeat's copy)."""
    root = run_dir / sub
    if not root.is_dir():
        return None
    hits = [p for p in root.rglob(name) if "runs" not in p.relative_to(root).parts
            and not any(part.startswith("repeat-") for part in p.relative_to(root).parts)]
    return sorted(hits)[0] if hits else None


def is_done(run_dir: Path, spec: RunSpec, retry_failed: bool = False) -> bool:
    """True when ``run_dir`` holds a finished run of exactly ``spec``."""
    done, params = run_dir / "done.json", run_dir / "params.json"
    if not done.is_file() or not params.is_file():
        return False
    try:
        d, p = read_json(done), read_json(params)
    except (OSError, ValueError):
        return False
    if p.get("run_id") != spec.run_id or p.get("variant") != spec.variant or p.get("set") != spec.set \
            or p.get("compress") != spec.compress:
        return False
    return not (retry_failed and d.get("status") != "ok")


def run_one(spec: RunSpec, out_dir: Path, space: SearchSpace, runner: Runner, serve: bool = False,
            python: str = sys.executable, meter: str | None = None) -> dict[str, Any]:
    """Run one configuration into a fresh folder and mark it done; returns its ``done.json``."""
    run_dir = out_dir / spec.run_id
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an interrupted run: start it again from nothing
    run_dir.mkdir(parents=True)
    cmds = [train_command(spec, run_dir, space, python, meter)]
    if spec.compress:
        cmds.append(compress_command(spec, run_dir, python, meter))
    if serve:
        cmds.append(load_command(spec, run_dir, space, python, meter))
    write_json_atomic(run_dir / "params.json", params_of(spec, space, cmds))
    t0 = time.time()
    rc = runner(cmds[0], run_dir / "train.log", run_dir / "power.csv")
    status, reason = "ok", None
    result = find_result(run_dir, "train", "result.json")
    if result is None:
        status, reason = "failed", f"training exited {rc} without a result.json (see train.log)"
    else:
        r = read_json(result)
        if r.get("status", "ok") != "ok":
            status, reason = "failed", r.get("failure_reason") or "training reported status failed"
        elif rc != 0:
            status, reason = "failed", f"training exited {rc}"
    if spec.compress and status == "ok":
        crc = runner(cmds[1], run_dir / "compress.log", None)  # measures its own energy window
        cres = find_result(run_dir, "compress", "result.json")
        if cres is None or read_json(cres).get("status") != "ok":
            status, reason = "failed", (read_json(cres).get("failure_reason") if cres else None) \
                or f"compression exited {crc} (see compress.log)"
    load_rc = None
    if serve and status == "ok":
        load_rc = runner(cmds[-1], run_dir / "load.log", None)  # loadtest runs its own sidecar
        if find_result(run_dir, "load", "summary.json") is None:
            reason = f"load test exited {load_rc} without a summary.json (see load.log)"
    done = {"run_id": spec.run_id, "status": status, "failure_reason": reason, "returncode": rc,
            "load_returncode": load_rc, "duration_s": time.time() - t0, "finished_unix_s": time.time()}
    write_json_atomic(run_dir / "done.json", done)
    return done


def row_of(run_dir: Path) -> dict[str, Any] | None:
    """One ``aggregate.csv`` row for a finished run folder (``None`` if it is not finished)."""
    try:
        p, d = read_json(run_dir / "params.json"), read_json(run_dir / "done.json")
    except (OSError, ValueError):
        return None
    row: dict[str, Any] = {"run_id": p["run_id"], "seed": p.get("seed"), "index": p.get("index"),
                           "status": d.get("status"), "variant": p.get("variant"),
                           "overlays": "+".join(p.get("overlays") or []), "max_steps": p.get("max_steps")}
    for k, v in (p.get("set") or {}).items():
        row[f"set.{k}"] = v
    row["overridden_by_overlay"] = ",".join(p.get("overridden_by_overlay") or [])
    res = find_result(run_dir, "train", "result.json")
    r = read_json(res) if res else {}
    for k in ("energy_kwh.training", "energy_kwh.total", "f1", "accuracy", "duration_s.total", "co2_kg"):
        row[k] = as_float(get_path(r, k))
    row["energy_kind"] = r.get("energy_kind")
    src = r.get("energy_source")
    row["energy_source"] = get_path(r, "energy_source.training") if isinstance(src, dict) else src
    if p.get("compress"):  # the compressed model's figures (the energy is the compression step's own)
        cres = find_result(run_dir, "compress", "result.json")
        c = read_json(cres) if cres else {}
        row["compress"] = p["compress"]
        for k in ("energy_kwh.compress", "accuracy", "f1", "mcc", "size_mb", "sparsity", "flops_per_request"):
            row[f"compress.{k}"] = as_float(get_path(c, k))
    ld = find_result(run_dir, "load", "summary.json")
    lr = read_json(ld) if ld else {}
    for k in ("energy_per_1k_wh.gross", "latency_ms.p99", "served.f1", "throughput_rps"):
        row[k] = as_float(get_path(lr, k))
    row["power_csv"] = str(run_dir / "power.csv") if (run_dir / "power.csv").exists() else ""
    row["failure_reason"] = d.get("failure_reason")
    row["duration_s"] = d.get("duration_s")
    return row


def write_aggregate(out_dir: Path) -> pd.DataFrame:
    """Rebuild ``aggregate.csv`` from every finished run folder under ``out_dir`` (atomic)."""
    rows = [r for d in sorted(out_dir.iterdir()) if d.is_dir() for r in [row_of(d)] if r]
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df.sort_values(["seed", "index"], kind="stable")
    write_table_atomic(df, out_dir / "aggregate.csv", parquet=False)
    return df


def best_of(df: pd.DataFrame, energy_metric: str = "energy_kwh.training") -> dict[str, Any]:
    """Best F1, lowest energy, best trade-off and the Pareto set over the ok runs."""
    if df.empty or energy_metric not in df.columns:
        return {"energy_metric": energy_metric, **key_findings([])}
    ok = df[(df["status"] == "ok") & df[energy_metric].notna() & df["f1"].notna()]
    pts = [Point(str(r["run_id"]), float(r[energy_metric]), float(r["f1"])) for _, r in ok.iterrows()]
    kf = key_findings(pts, energy_metric)
    by_id = {str(r["run_id"]): {k: (None if pd.isna(v) else v) for k, v in r.items()} for _, r in ok.iterrows()}
    for k in ("best_f1", "lowest_energy", "best_tradeoff"):
        if kf.get(k):
            kf[k]["run"] = by_id.get(kf[k]["id"])
    return {"energy_metric": energy_metric, **kf}


def run_sweep(space: SearchSpace, n: int, seed: int, out_dir: str | Path, runner: Runner,
              serve: bool = False, retry_failed: bool = False, python: str = sys.executable,
              meter: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Sample, run what is not done yet, keep ``aggregate.csv`` current, write ``best.json``."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = sample(space, n, seed)
    write_json_atomic(out_dir / f"plan-seed{seed}.json",
                      {"seed": seed, "n": n, "space": space.source, "runs": [asdict(s) for s in specs]})
    skipped = ran = 0
    bar = tqdm(specs, desc="sweep", unit="run", disable=not progress)
    for spec in bar:
        bar.set_postfix_str(f"{spec.run_id} {spec.variant}")
        if is_done(out_dir / spec.run_id, spec, retry_failed):
            skipped += 1
            continue
        run_one(spec, out_dir, space, runner, serve=serve, python=python, meter=meter)
        ran += 1
        write_aggregate(out_dir)  # after every run, so a kill loses nothing finished
    df = write_aggregate(out_dir)
    best = best_of(df)
    best.update({"seed": seed, "n": n, "ran": ran, "skipped_done": skipped})
    write_json_atomic(out_dir / "best.json", best)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.sweep",
                                 description="Random search over training knobs (variant overlays and --set "
                                             "values); resumable: rerun the same command to continue.")
    ap.add_argument("--n", type=int, required=True, help="number of sampled runs")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed (same seed → same runs)")
    ap.add_argument("--space", default=str(DEFAULT_SPACE), help="search-space YAML")
    ap.add_argument("--out", default="results/sweep", help="sweep folder (default results/sweep)")
    ap.add_argument("--max-steps", type=int, default=None, help="override the space's max_steps per run")
    ap.add_argument("--serve", action="store_true", help="also serve + load each trained run (slow)")
    ap.add_argument("--retry-failed", action="store_true", help="redo runs that finished as failed")
    ap.add_argument("--meter", default=os.environ.get("METER") or None, help="meter for training and sidecar")
    ap.add_argument("--dry-run", action="store_true", help="print the sampled runs and commands, run nothing")
    a = ap.parse_args(argv)
    if a.n < 1:
        ap.error("--n must be ≥ 1")
    try:
        space = load_space(a.space)
    except SpaceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.max_steps is not None:
        space.max_steps = a.max_steps
    if a.dry_run:
        for s in sample(space, a.n, a.seed):
            print(s.run_id, " ".join(train_command(s, Path(a.out) / s.run_id, space, meter=a.meter)))
        return 0
    def _term(signum, frame):  # SIGTERM (kill, CI timeout) → the same clean stop as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background by a shell
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        best = run_sweep(space, a.n, a.seed, a.out, subprocess_runner(a.meter), serve=a.serve,
                         retry_failed=a.retry_failed, meter=a.meter)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished runs are kept in {a.out}; rerun the same command to resume",
              file=sys.stderr)
        return 130
    out = Path(a.out)
    print(f"sweep: ran {best['ran']}, skipped {best['skipped_done']} already done; table: {out / 'aggregate.csv'}")
    for label, k in (("best F1", "best_f1"), ("lowest energy", "lowest_energy"), ("best trade-off", "best_tradeoff")):
        p = best.get(k)
        if p:
            run = p.get("run") or {}
            print(f"  {label:<15} {p['id']}  ({run.get('variant')})  F1 {p['f1']:.3f}  "
                  f"{best['energy_metric']} {p['energy']:.3g} "
                  f"({run.get('energy_kind') or 'unknown kind'} · {run.get('energy_source') or 'unknown meter'})")
    print(f"  Pareto set: {', '.join(best.get('pareto') or []) or 'none (no successful run)'}")
    print(f"  details: {out / 'best.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
