"""The one process launcher of the study.

Every child process the study starts — the server under test, Locust master and workers, the
power sidecar, the serving bench's servers, the sweep's trials and workers, the test fixtures —
goes through :class:`Launched`:

* it leads its own process group (``start_new_session``), so stopping it stops everything it
  started (PyTriton's tritonserver, vLLM's engine core), even after a SIGKILL of the leader;
* readiness is a health URL answering 200 (:meth:`Launched.wait_ready` with ``url=``), a line in
  its log (``line=``), or a file appearing (``path=``); a child that exits first fails with the
  tail of its log;
* :meth:`Launched.stop` sends SIGTERM to the group, waits, then SIGKILLs the group;
* :meth:`Launched.cpu_seconds` is the CPU time of its whole process tree (psutil).

``stop_process`` is the same stop for a bare :class:`subprocess.Popen`.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from study.paths import REPO_ROOT


class NotReady(RuntimeError):
    """A launched process exited, or did not become ready in time."""


def stop_process(proc: subprocess.Popen | None, timeout_s: float = 15.0, *, sig: int = signal.SIGTERM,
                 group: bool = False) -> int | None:
    """Send ``sig`` (to the process group ``proc`` leads when ``group``), wait ``timeout_s``,
    then SIGKILL; returns the exit code (``None`` for no process)."""
    if proc is None:
        return None
    if proc.poll() is None:

        def send(s: int) -> None:
            if group:
                os.killpg(proc.pid, s)
            else:
                proc.send_signal(s)

        try:
            send(sig)
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            try:
                send(signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        except ProcessLookupError:
            pass
    return proc.returncode


def kill_group(pgid: int, grace_s: float = 1.0) -> None:
    """TERM, then KILL, whatever is left of process group ``pgid`` (no error when it is gone)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.05)


def free_port(consecutive: int = 1) -> int:
    """A loopback TCP port that is free now, together with the ``consecutive - 1`` after it
    (Triton takes HTTP on ``port``, gRPC on ``port + 1``, metrics on ``port + 2``)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + consecutive > 65535:
            continue
        try:
            for q in range(port + 1, port + consecutive):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", q))
        except OSError:
            continue
        return port
    raise OSError(f"no {consecutive} consecutive free loopback ports found")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every child process: this repo importable, offline, few threads."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.update(extra or {})
    return env


def http_get(url: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
    """(status, body) of a GET; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except (urllib.error.URLError, OSError, ValueError):
        return 0, b""


def tail_line(path: Path | None, n: int = 3) -> str:
    """The last non-empty lines of a log, joined, for one-line error messages."""
    if path is None:
        return ""
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])


def tree_pids(root: int | None) -> list[int]:
    """``root`` and all its descendants that are alive now (empty when ``root`` is gone)."""
    if root is None:
        return []
    import psutil

    try:
        p = psutil.Process(root)
        return [root, *(c.pid for c in p.children(recursive=True))]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def tree_cpu_seconds(root: int | None) -> float:
    """User + system CPU seconds of ``root``'s live process tree (exited children that were
    waited for are included in their parent's ``children_*`` times)."""
    import psutil

    total = 0.0
    for pid in tree_pids(root):
        try:
            ct = psutil.Process(pid).cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += ct.user + ct.system + getattr(ct, "children_user", 0.0) + getattr(ct, "children_system", 0.0)
    return total


class Launched:
    """One child process of the study, in its own process group.

    ``log`` is a path (appended to; stdout and stderr both go there), an open binary file, or
    None (inherit the parent's streams). ``preexec`` runs in the child before exec (e.g. CPU
    pinning, :func:`loadtest.cpu.affinity_preexec`). Use as a context manager to be sure it is
    stopped.
    """

    def __init__(self, cmd: Sequence[str], *, name: str = "process", log: Path | IO[bytes] | None = None,
                 env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None,
                 preexec: Callable[[], None] | None = None, new_group: bool = True) -> None:
        self.cmd = [str(c) for c in cmd]
        self.name = name
        self.log_path: Path | None = Path(log) if isinstance(log, (str, os.PathLike)) else None
        self._log_arg = log
        self._log_fh: IO[bytes] | None = None
        self.env = env if env is not None else child_env()
        self.cwd = str(cwd) if cwd is not None else str(REPO_ROOT)
        self.preexec = preexec
        self.new_group = new_group
        self.proc: subprocess.Popen | None = None

    # -- life cycle --------------------------------------------------------------------------
    def start(self) -> Launched:
        out: Any = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_fh = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
            out = self._log_fh
        elif self._log_arg is not None:
            out = self._log_arg
        try:
            self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=self.cwd, stdout=out,
                                         stderr=subprocess.STDOUT if out is not None else None,
                                         start_new_session=self.new_group, preexec_fn=self.preexec)
        except BaseException:
            self._close_log()
            raise
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Wait for the process to exit by itself; its exit code (None on timeout)."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def wait_ready(self, *, url: str | None = None, line: str | None = None, path: Path | None = None,
                   timeout_s: float = 60.0, poll_s: float = 0.1) -> None:
        """Block until ``url`` answers 200, the log contains a line matching the regex ``line``,
        or ``path`` exists; :class:`NotReady` (with the log's tail) if the process exits first
        or ``timeout_s`` passes."""
        if url is None and line is None and path is None:
            raise ValueError("wait_ready needs url=, line= or path=")
        pattern = re.compile(line) if line is not None else None
        deadline = time.monotonic() + timeout_s
        while True:
            rc = self.returncode
            if rc is not None:
                raise NotReady(f"{self.name} exited with code {rc} before it was ready: "
                               f"{tail_line(self.log_path)}" + (f" (see {self.log_path})" if self.log_path else ""))
            if url is not None and http_get(url)[0] == 200:
                return
            if path is not None and Path(path).exists():
                return
            if pattern is not None and self.log_path is not None:
                try:
                    if pattern.search(self.log_path.read_text(errors="replace")):
                        return
                except OSError:
                    pass
            if time.monotonic() > deadline:
                where = url or (f"a line matching {line!r}" if line else str(path))
                raise NotReady(f"{self.name} not ready after {timeout_s:.0f} s (waited for {where})"
                               + (f"; see {self.log_path}" if self.log_path else ""))
            time.sleep(poll_s)

    def stop(self, timeout_s: float = 15.0, *, sig: int = signal.SIGTERM) -> int | None:
        """``sig`` (SIGTERM) to the group, wait ``timeout_s``, SIGKILL; then make sure nothing of
        the group is left (children must not outlive their leader). Returns the exit code."""
        if self.proc is None:
            self._close_log()
            return None
        rc = stop_process(self.proc, timeout_s=timeout_s, sig=sig, group=self.new_group)
        if self.new_group:
            kill_group(self.proc.pid)
        self._close_log()
        return rc

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process (its group when it leads one)."""
        if self.alive():
            assert self.proc is not None
            try:
                if self.new_group:
                    os.killpg(self.proc.pid, sig)
                else:
                    self.proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def cpu_seconds(self) -> float:
        """CPU seconds of the live process tree (0 once it has exited)."""
        return tree_cpu_seconds(self.pid)

    def _close_log(self) -> None:
        if self._log_fh is not None and not self._log_fh.closed:
            self._log_fh.close()

    def __enter__(self) -> Launched:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def python_module(module: str, *args: str, python: str | None = None) -> list[str]:
    """``[python, -m, module, *args]`` with this interpreter by default."""
    return [python or sys.executable, "-m", module, *args]
