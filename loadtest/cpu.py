"""CPU time of the processes in a load test: the server's tree, the Locust client's processes
and the whole machine, sampled together so any window's CPU seconds can be read off afterwards.

:class:`CpuAccountant` samples every ``interval_s`` in a thread: per group (``server``,
``client``) the cumulative user + system CPU seconds of every process it has seen (a process
that exits keeps its last value, so a group's total never drops), and the machine's busy CPU
seconds (``psutil.cpu_times``). :meth:`CpuAccountant.cpu_times` interpolates the three at a
window's edges → :class:`energy.attribution.CpuTimes`. The client group also yields Locust's
saturation figures (a gevent loop near 100 % of a core is a client bottleneck).

CPU affinity (``--server-cpus`` / ``--client-cpus``) is parsed and checked here too.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from energy.attribution import CpuTimes


def _busy_s(ct: Any) -> float:
    d = ct._asdict()
    total = sum(d.values()) - d.get("guest", 0.0) - d.get("guest_nice", 0.0)
    return total - d.get("idle", 0.0) - d.get("iowait", 0.0)


class CpuAccountant:
    """Background sampler of per-group and machine CPU time (see the module docstring).

    ``groups`` maps a name to a callable giving that group's current pids.
    """

    def __init__(self, groups: dict[str, Callable[[], Iterable[int]]], interval_s: float = 0.25) -> None:
        import psutil

        self._psutil = psutil
        self._groups = groups
        self._interval_s = interval_s
        self._procs: dict[int, Any] = {}
        self._last: dict[str, dict[int, float]] = {g: {} for g in groups}
        self._pct: dict[int, list[float]] = {}  # client processes' % of one core per interval
        self._prev: dict[int, tuple[float, float]] = {}
        self.t: list[float] = []
        self.busy: list[float] = []
        self.cum: dict[str, list[float]] = {g: [] for g in groups}
        self.n_cores = psutil.cpu_count(logical=True) or 1
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-accountant", daemon=True)

    def __enter__(self) -> CpuAccountant:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.sample()

    def _cpu_s(self, pid: int) -> float | None:
        try:
            p = self._procs.get(pid)
            if p is None:
                p = self._procs[pid] = self._psutil.Process(pid)
            ct = p.cpu_times()
            return ct.user + ct.system
        except self._psutil.Error:
            return None

    def sample(self) -> None:
        """Take one sample of every group and the machine now."""
        with self._lock:
            now = time.time()
            busy = _busy_s(self._psutil.cpu_times())
            for g, pids in self._groups.items():
                last = self._last[g]
                for pid in list(pids()):
                    v = self._cpu_s(pid)
                    if v is None:
                        continue
                    last[pid] = max(v, last.get(pid, 0.0))
                    if g == "client":
                        prev = self._prev.get(pid)
                        if prev is not None and now > prev[0]:
                            self._pct.setdefault(pid, []).append((v - prev[1]) / (now - prev[0]) * 100.0)
                        self._prev[pid] = (now, v)
                self.cum[g].append(sum(last.values()))
            self.t.append(now)
            self.busy.append(busy)

    def _at(self, series: list[float], t: float) -> float:
        ts = self.t
        if not ts:
            return 0.0
        if t <= ts[0]:
            return series[0]
        if t >= ts[-1]:
            return series[-1]
        i = bisect.bisect_right(ts, t)
        ta, tb = ts[i - 1], ts[i]
        va, vb = series[i - 1], series[i]
        return va + (vb - va) * (t - ta) / (tb - ta) if tb > ta else vb

    def group_cpu_s(self, group: str, t0: float, t1: float) -> float:
        """CPU seconds ``group`` used in ``[t0, t1]`` (linear between samples)."""
        with self._lock:
            return max(0.0, self._at(self.cum[group], t1) - self._at(self.cum[group], t0))

    def cpu_times(self, t0: float, t1: float) -> CpuTimes:
        """Server, client and machine-busy CPU seconds in ``[t0, t1]``."""
        with self._lock:
            busy = self._at(self.busy, t1) - self._at(self.busy, t0)
        return CpuTimes(
            server_cpu_s=self.group_cpu_s("server", t0, t1) if "server" in self.cum else 0.0,
            client_cpu_s=self.group_cpu_s("client", t0, t1) if "client" in self.cum else 0.0,
            busy_cpu_s=max(0.0, busy),
            n_cores=self.n_cores,
        )

    def client_result(self) -> dict[str, Any]:
        """Locust's CPU use: summed % of one core over its processes (100 = one busy core),
        the busiest process's mean, and ``saturated`` when that one is above 90 %."""
        with self._lock:
            per = {pid: v for pid, v in self._pct.items() if v}
            n = max((len(v) for v in per.values()), default=0)
            totals = [sum(v[i] for v in per.values() if i < len(v)) for i in range(n)]
        per_mean = [sum(v) / len(v) for v in per.values()]
        return {
            "mean_percent": sum(totals) / len(totals) if totals else None,
            "max_percent": max(totals) if totals else None,
            "n_processes": len(per),
            "n_samples": len(totals),
            "max_process_mean_percent": max(per_mean) if per_mean else None,
            "machine_cpus": self.n_cores,
            "saturated": bool(per_mean and max(per_mean) > 90.0),
        }


def parse_cpus(spec: str | None, option: str) -> list[int] | None:
    """``"0-1,3"`` → ``[0, 1, 3]``, checked against the CPUs this process may use
    (``ValueError`` naming the option and the allowed CPUs). ``None``/``""`` → ``None``."""
    if spec is None or str(spec).strip() == "":
        return None
    allowed = sorted(os.sched_getaffinity(0))
    out: set[int] = set()
    try:
        for part in str(spec).split(","):
            part = part.strip()
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                if b < a:
                    raise ValueError
                out.update(range(a, b + 1))
            else:
                out.add(int(part))
    except ValueError:
        raise ValueError(f"{option}={spec!r} is invalid; allowed: CPU lists like 0 or 0-1,3 "
                         f"from {allowed}") from None
    bad = sorted(out - set(allowed))
    if bad:
        raise ValueError(f"{option}={spec!r} names CPUs {bad} this process cannot use; allowed: {allowed}")
    return sorted(out)


def affinity_preexec(cpus: list[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` pinning the child (and everything it starts) to ``cpus``."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)
