"""One sweep trial on disk: its command lines, the runner that executes them, its folder.

A trial is a small study of its own (:meth:`study.paths.Paths.for_trial`): training writes
``<run_dir>/train/…`` and ``<run_dir>/artifacts/…``, the compression ``<run_dir>/compress/…``, the
load test ``<run_dir>/load/<engine>__<variant>/<run_id>/``; beside them ``params.json``,
``train.log``, ``power.csv`` (the energy sidecar), ``compress.log``, ``load.log`` and ``done.json``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from analysis.io import read_json, write_json_atomic
from analysis.sweep.space import RunSpec, SearchSpace
from study.paths import Paths
from study.process import Launched, python_module


def _set_value(v: Any) -> str:
    # The training CLI parses the right-hand side as YAML: JSON is valid YAML for lists/bools/null.
    if isinstance(v, str):
        return v
    return json.dumps(v)


def _roots(run_dir: Path) -> list[str]:
    """``--results-dir``/``--artifacts-dir`` of a trial: both roots inside its folder."""
    p = Paths.for_trial(run_dir)
    return ["--results-dir", str(p.results), "--artifacts-dir", str(p.artifacts)]


def train_command(spec: RunSpec, run_dir: Path, space: SearchSpace, python: str = sys.executable,
                  meter: str | None = None) -> list[str]:
    """The ``python -m training.train`` command line of one run."""
    cmd = python_module("training.train", "--variant", spec.variant, "--max-steps", str(spec.max_steps),
                        *_roots(run_dir), python=python)
    if meter:
        cmd += ["--meter", meter]
    for k, v in spec.set.items():
        cmd += ["--set", f"{k}={_set_value(v)}"]
    return cmd + list(space.train_args)


def load_command(spec: RunSpec, run_dir: Path, space: SearchSpace, python: str = sys.executable,
                 meter: str | None = None) -> list[str]:
    """The ``python -m loadtest.run`` command line (serve + load) of one run; the load test
    writes ``<run_dir>/load/<engine>__<variant>/<run_id>/`` below the trial's results root."""
    s = space.serve
    p = Paths.for_trial(run_dir)
    cmd = python_module("loadtest.run", "--engine", str(s["engine"]), "--variant", spec.served_variant,
                        "--duration", str(s["duration_s"]), "--warmup", str(s["warmup_s"]), "--idle",
                        str(s["idle_s"]), "--max-items", str(s["max_items"]), "--artifacts-dir", str(p.artifacts),
                        "--results-dir", str(p.results), "--run-id", spec.run_id, "--no-progress", python=python)
    if meter:
        cmd += ["--meter", meter]
    return cmd


def compress_command(spec: RunSpec, run_dir: Path, python: str = sys.executable,
                     meter: str | None = None) -> list[str]:
    """The ``python -m training.compress`` command line of a trial that compresses its model
    (reads ``run_dir/artifacts/<variant>``, writes ``<variant>@<method>`` beside it and
    ``run_dir/compress/<variant>@<method>/result.json`` with the step's own energy)."""
    cmd = python_module("training.compress", "--variant", spec.variant, "--method", str(spec.compress),
                        *_roots(run_dir), "--idle-s", "0", python=python)
    return cmd + (["--meter", meter] if meter else [])


# A runner executes one command, logging to ``log_path`` and, when ``power_csv`` is given,
# recording the run's power there; it returns the exit status. Tests inject a fake one.
Runner = Callable[[list[str], Path, "Path | None"], int]


def die_with_parent() -> None:
    """preexec: ask Linux to SIGTERM this child when the sweep dies, even by SIGKILL, so a
    killed sweep never leaves a training run, a sidecar or a worker behind (no-op where prctl
    is absent)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def subprocess_runner(meter: str | None = None, interval_s: float = 0.2) -> Runner:
    """The real runner: the command as a :class:`~study.process.Launched` child (own process
    group, dies with the sweep; a Ctrl-C or kill of the sweep also stops its group) with the
    energy sidecar recording ``power_csv`` beside it. Children run in the sweep's working
    directory, so relative paths in the space's ``train_args`` mean what they meant."""

    def run(cmd: list[str], log_path: Path, power_csv: Path | None) -> int:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            log.write(("$ " + " ".join(cmd) + "\n").encode())
            log.flush()
            child = Launched(cmd, name=cmd[2] if len(cmd) > 2 else "trial", log=log, cwd=os.getcwd(),
                             preexec=die_with_parent).start()
            side = None
            if power_csv is not None:
                side_cmd = python_module("energy.sidecar", "--out", str(power_csv), "--interval-s", str(interval_s),
                                         "--pid", str(child.pid), "--log-level", "WARNING")
                if meter:
                    side_cmd += ["--meter", meter]
                try:
                    side = Launched(side_cmd, name="power sidecar", log=log, cwd=os.getcwd(),
                                    preexec=die_with_parent).start()
                except OSError as e:  # the run matters more than its power log; say so in the log
                    log.write(f"[sweep] power sidecar did not start: {e}\n".encode())
            try:
                rc = child.wait()
                return -1 if rc is None else rc
            finally:  # also after a normal exit: nothing the trial started outlives it
                child.stop(timeout_s=10)
                if side is not None:
                    side.stop(timeout_s=10)

    return run


def params_of(spec: RunSpec, space: SearchSpace, commands: list[list[str]]) -> dict[str, Any]:
    """What goes into ``params.json``."""
    return {**asdict(spec), "served_variant": spec.served_variant, "space": space.source, "commands": commands}


def find_result(root: Path, name: str) -> Path | None:
    """The top-level result file ``name`` under ``root`` (a stage's folder of a trial, e.g.
    ``Paths.for_trial(run_dir).train_root``), not a repeat's copy."""
    if not root.is_dir():
        return None
    hits = [p for p in root.rglob(name) if "runs" not in p.relative_to(root).parts
            and not any(part.startswith("repeat-") for part in p.relative_to(root).parts)]
    return sorted(hits)[0] if hits else None


def run_one(spec: RunSpec, run_dir: Path, space: SearchSpace, runner: Runner,
            cmds: list[list[str]]) -> dict[str, Any]:
    """Run one trial's commands in ``run_dir`` (training, then the compression when
    ``spec.compress``, then the load test when a command for it follows) and write its
    ``done.json`` (also when stopped: an interrupted run is marked failed and keeps what it had)."""
    t0 = time.time()
    p = Paths.for_trial(run_dir)
    rc = load_rc = compress_rc = None
    rest = list(cmds[1:])
    compress_cmd = rest.pop(0) if spec.compress else None
    status, reason = "failed", "interrupted before training finished"
    try:
        rc = runner(cmds[0], run_dir / "train.log", run_dir / "power.csv")
        status, reason = "ok", None
        result = find_result(p.train_root, "result.json")
        if result is None:
            status, reason = "failed", f"training exited {rc} without a result.json (see train.log)"
        else:
            r = read_json(result)
            if r.get("status", "ok") != "ok":
                status, reason = "failed", r.get("failure_reason") or "training reported status failed"
            elif rc != 0:
                status, reason = "failed", f"training exited {rc}"
        if compress_cmd and status == "ok":
            status, reason = "failed", "interrupted during the compression"
            compress_rc = runner(compress_cmd, run_dir / "compress.log", None)  # measures its own energy window
            cres = find_result(p.compress_root, "result.json")
            c = read_json(cres) if cres else {}
            if cres is None:
                reason = f"compression exited {compress_rc} without a result.json (see compress.log)"
            elif c.get("status") != "ok":
                reason = c.get("failure_reason") or f"compression exited {compress_rc} (see compress.log)"
            elif compress_rc != 0:
                reason = f"compression exited {compress_rc} (see compress.log)"
            else:
                status, reason = "ok", None
        if rest and status == "ok":
            status, reason = "failed", "interrupted during the load test"
            load_rc = runner(rest[0], run_dir / "load.log", None)  # loadtest runs its own sidecar
            status, reason = "ok", None
            if find_result(p.load_root, "summary.json") is None:
                status, reason = "failed", f"load test exited {load_rc} without a summary.json (see load.log)"
    finally:
        done = {"run_id": spec.run_id, "status": status, "failure_reason": reason, "returncode": rc,
                "compress_returncode": compress_rc, "load_returncode": load_rc, "duration_s": time.time() - t0,
                "finished_unix_s": time.time()}
        write_json_atomic(run_dir / "done.json", done)
    return done

