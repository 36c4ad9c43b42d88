"""Stopping a child process the one way the study does it: a signal (to the process or its
whole group), a bounded wait, then SIGKILL. Used by the load test's launchers, the sweep's
workers and the plain-Locust explorer."""

from __future__ import annotations

import os
import signal
import subprocess


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
