"""A *labelled estimate* of CPU power from measured CPU utilisation — never a measurement.

Model (linear in utilisation, per logical core)::

    P_machine = n_cores × (p_min + (p_max − p_min) × u)        u = busy CPU time / total CPU time
    P_pid     = n_cores × (p_max − p_min) × u_pid              u_pid = process CPU time / (Δt × n_cores)

Defaults are Cloud Carbon Footprint's published AWS per-vCPU coefficients (0.74 W at 0 %, 3.5 W
at 100 %; see :mod:`energy.config`), configurable via :class:`~energy.config.EstimateCoefficients`
or ``ENERGY_ESTIMATE_P_MIN_W``/``ENERGY_ESTIMATE_P_MAX_W``; they are written into every record.

Utilisation comes from ``psutil.cpu_times()`` deltas between two reads (not
``psutil.cpu_percent``, whose hidden global state other libraries such as CodeCarbon also
advance). Energy is integrated inside the meter between reads — P is linear in u, so
``P(mean u) × Δt`` is exact under the model — and reported as a cumulative ``energy_j`` beside
the interval's ``power_w``. Per-process devices (``pid:<n>``) carry only the *dynamic* power the
process adds (the idle floor belongs to the machine); they are attributions of the machine
figure and are never summed with it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from energy.base import MeterBase, Reading
from energy.config import EstimateCoefficients, MeterConfig

log = logging.getLogger(__name__)


def _busy_total(ct: Any) -> tuple[float, float]:
    """(busy, total) CPU seconds from a psutil cpu_times tuple (guest time is inside user)."""
    d = ct._asdict()
    total = sum(d.values()) - d.get("guest", 0.0) - d.get("guest_nice", 0.0)
    idle = d.get("idle", 0.0) + d.get("iowait", 0.0)
    return total - idle, total


def power_w(coeffs: EstimateCoefficients, n_cores: int, utilisation: float) -> float:
    """Machine power (W) of the linear model at ``utilisation`` in [0, 1] (clamped)."""
    u = min(1.0, max(0.0, utilisation))
    return n_cores * (coeffs.p_min_w_per_core + (coeffs.p_max_w_per_core - coeffs.p_min_w_per_core) * u)


class EstimateMeter(MeterBase, name="estimate", kind="estimated"):
    """Whole-machine CPU estimate (device ``cpu``) plus optional per-process devices."""

    @staticmethod
    def probe(config: MeterConfig) -> str | None:
        try:
            import psutil  # noqa: F401
        except ImportError:
            return "psutil is not installed (pip install psutil)"
        return None

    def __init__(self, config: MeterConfig | None = None) -> None:
        import psutil

        config = config or MeterConfig()
        self._psutil = psutil
        self.coeffs = config.estimate
        self.n_cores = self.coeffs.n_cores or psutil.cpu_count(logical=True) or 1
        self._energy_j = 0.0
        self._t = time.time()
        self._busy, self._total = _busy_total(psutil.cpu_times())
        self._procs: dict[int, dict[str, Any]] = {}
        for pid in config.pids:
            self._procs[pid] = {"energy_j": 0.0, "cpu_s": None, "proc": None, "lost": False}
            try:
                p = psutil.Process(pid)
                ct = p.cpu_times()
                self._procs[pid].update(proc=p, cpu_s=ct.user + ct.system)
            except psutil.Error as e:
                log.warning("estimate meter: pid %d cannot be watched (%s)", pid, e)
                self._procs[pid]["lost"] = True

    def read(self) -> list[Reading]:
        """Machine reading (W over the last interval, cumulative J) and one per watched pid."""
        t = time.time()
        busy, total = _busy_total(self._psutil.cpu_times())
        dt = t - self._t
        d_total = total - self._total
        u = (busy - self._busy) / d_total if d_total > 0 else 0.0
        p = power_w(self.coeffs, self.n_cores, u)
        if dt > 0:
            self._energy_j += p * dt
        self._t, self._busy, self._total = t, busy, total
        out = [Reading(t, "cpu", p, self._energy_j, self.source, self.kind)]
        dyn_w_per_core = self.coeffs.p_max_w_per_core - self.coeffs.p_min_w_per_core
        for pid, st in self._procs.items():
            dev = f"pid:{pid}"
            if st["lost"]:
                out.append(Reading(t, dev, None, None, self.source, self.kind, "gap"))
                continue
            try:
                ct = st["proc"].cpu_times()
            except self._psutil.Error as e:
                log.warning("estimate meter: pid %d went away (%s); its series stops here", pid, e)
                st["lost"] = True
                out.append(Reading(t, dev, None, None, self.source, self.kind, "gap"))
                continue
            cpu_s = ct.user + ct.system
            u_pid = (cpu_s - st["cpu_s"]) / (dt * self.n_cores) if dt > 0 else 0.0
            pp = self.n_cores * dyn_w_per_core * min(1.0, max(0.0, u_pid))
            if dt > 0:
                st["energy_j"] += pp * dt
            st["cpu_s"] = cpu_s
            out.append(Reading(t, dev, pp, st["energy_j"], self.source, self.kind))
        return out

    def devices(self) -> list[str]:
        return ["cpu", *(f"pid:{p}" for p in self._procs)]

    def details(self) -> dict[str, Any]:
        return {
            "model": "P = n_cores * (p_min_w_per_core + (p_max_w_per_core - p_min_w_per_core) * u)",
            "coefficients": {**self.coeffs.to_dict(), "n_cores": self.n_cores},
        }
