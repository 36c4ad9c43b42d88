"""The ``--gpus N`` relaunch (training.launcher) with a stand-in command in place of
``accelerate launch`` (no GPUs here): the exit code and GPS_LAUNCHED reach through, and an
interrupted parent stops the launch's whole process group."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import psutil

from study.process import Launched, child_env

# Replaces training.runtime.launch_command in a child interpreter: the "launch" writes what it
# sees, starts a grandchild (an accelerate worker's stand-in) and either exits or sleeps.
_PARENT = """
import sys
import training.launcher as launcher
from training.cli import sigterm_as_interrupt

out, mode = sys.argv[1], sys.argv[2]
child = (
    "import os, subprocess, sys, time\\n"
    "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\\n"
    "open(sys.argv[1], 'w').write(f\\"{os.environ.get('GPS_LAUNCHED')} {p.pid} {' '.join(sys.argv[2:])}\\")\\n"
    "if sys.argv[2] == 'exit':\\n"
    "    p.kill(); sys.exit(7)\\n"
    "time.sleep(120)\\n"
)
launcher.launch_command = lambda argv, gpus: [sys.executable, "-c", child, out, *argv, str(gpus)]
sigterm_as_interrupt()
try:
    rc = launcher.relaunch([mode], 2)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
print(f"rc={rc}", flush=True)
"""


def _start(tmp_path: Path, mode: str) -> tuple[Launched, Path]:
    out = tmp_path / "seen.txt"
    script = tmp_path / "parent.py"
    script.write_text(_PARENT)
    proc = Launched([sys.executable, str(script), str(out), mode], name="relaunch parent",
                    log=tmp_path / "parent.log", env=child_env()).start()
    if mode == "sleep":
        proc.wait_ready(path=out, timeout_s=60)
        time.sleep(0.2)  # the file is written in one call; let it land
    return proc, out


def _gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_relaunch_passes_the_exit_code_and_marks_the_workers(tmp_path):
    proc, out = _start(tmp_path, "exit")
    try:
        assert proc.wait(timeout_s=60) == 0
        launched_env, _worker, *argv = out.read_text().split()
        assert launched_env == "1" and argv == ["exit", "2"]  # GPS_LAUNCHED=1; the command line; the GPUs
        assert "rc=7" in (tmp_path / "parent.log").read_text()
    finally:
        proc.stop()


def test_sigterm_of_the_parent_stops_the_whole_launch(tmp_path):
    proc, out = _start(tmp_path, "sleep")
    try:
        worker = int(out.read_text().split()[1])
        assert psutil.pid_exists(worker)
        proc.signal(signal.SIGTERM)  # the parent's group only: the launch leads its own
        assert proc.wait(timeout_s=90) == 130
        assert "interrupted" in (tmp_path / "parent.log").read_text()
        assert _gone(worker), "the launch's worker outlived an interrupted parent"
    finally:
        proc.stop()
