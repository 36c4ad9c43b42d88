"""Split a window's energy between the server, the load client and the rest of the machine.

On one box the load client (Locust) runs on the same cores as the server, so the machine's
energy over the steady window is *not* the server's. The split uses the CPU time each
process tree used in the window (psutil), priced per core-second from the window's own energy:

* every core-second costs the idle power per core, ``idle_w_d × covered_d / (n_cores × T)``
  (an idle core draws that much too, so idle core-seconds carry it to ``rest``);
* every *busy* core-second also costs the window's dynamic energy per busy core-second,
  ``max(0, E_d − idle_w_d × covered_d) / busy_cpu_s``.

So ``server_j = server_cpu_s × (idle price + dynamic price)``, the same for the client, and
``rest_j = gross_j − server_j − client_j`` (other processes' busy time plus the idle cores):
the three always add up to ``gross_j``. Under the estimate meter's linear model this is exact
(a busy core-second costs ``p_max``, an idle one ``p_min``); for RAPL it is the usual
CPU-time-proportional attribution. GPU devices (NVML) belong wholly to the server — the load
client never touches the GPU. CodeCarbon stays a cross-check (its series is split by the same
shares in the summary, labelled as such).
"""

from __future__ import annotations

from dataclasses import dataclass

from energy.base import EnergyRecord
from study.schema import Attribution

METHOD = ("cpu-time: idle power per core-second + dynamic energy per busy core-second, "
          "by process-tree CPU time (psutil); GPU (NVML) energy to the server")


@dataclass(frozen=True)
class CpuTimes:
    """CPU seconds used over one window (user + system), and the cores they ran on."""

    server_cpu_s: float
    client_cpu_s: float
    busy_cpu_s: float  # the whole machine's busy CPU time (every process)
    n_cores: int


def is_gpu_device(device: str, source: str = "") -> bool:
    return source.startswith("nvml") or device.startswith("gpu")


def attribute(record: EnergyRecord | None, cpu: CpuTimes | None,
              idle_w_per_device: dict[str, float] | None,
              device_sources: dict[str, str] | None = None) -> Attribution:
    """The server/client/rest split of ``record`` (see the module docstring).

    ``idle_w_per_device``: the idle window's power per device; ``device_sources``: device →
    source (from the record's meter description), to tell GPU from CPU devices. Everything is
    ``None`` (with a flag saying why) when the record or the CPU times are missing.
    """
    out = Attribution(METHOD, None, None, None, None, None, None, None)
    if record is None or record.gross_j is None:
        out.flags.append("no energy in the window: nothing to attribute")
        return out
    if cpu is None:
        out.flags.append("no CPU times for the window: not attributed")
        return out
    busy = cpu.busy_cpu_s
    if busy < cpu.server_cpu_s + cpu.client_cpu_s:
        # Machine and process counters are read a few ms apart; never let "other" go negative.
        busy = cpu.server_cpu_s + cpu.client_cpu_s
    out.server_cpu_s, out.client_cpu_s = cpu.server_cpu_s, cpu.client_cpu_s
    out.other_cpu_s = busy - cpu.server_cpu_s - cpu.client_cpu_s
    T = record.duration_s
    sources = device_sources or {}
    server_j = client_j = 0.0
    for dev, e in record.per_device_j.items():
        if is_gpu_device(dev, sources.get(dev, "")):
            server_j += e
            out.per_device[dev] = {"server_j": e, "client_j": 0.0}
            continue
        cov = record.per_device_covered_s.get(dev, T)
        idle_w = (idle_w_per_device or {}).get(dev)
        if idle_w is None:
            # No baseline for this device: price busy core-seconds at the window's mean only.
            out.flags.append(f"{dev}: no idle baseline; priced by busy CPU time only")
            idle_part, dyn = 0.0, e
        else:
            idle_part = idle_w * cov
            dyn = e - idle_part
            if dyn < 0:
                out.flags.append(f"{dev}: energy below the idle baseline; dynamic part taken as 0")
                dyn = 0.0
        core_s = cpu.n_cores * T
        price = (idle_part / core_s if core_s > 0 else 0.0) + (dyn / busy if busy > 0 else 0.0)
        s_j, c_j = cpu.server_cpu_s * price, cpu.client_cpu_s * price
        server_j += s_j
        client_j += c_j
        out.per_device[dev] = {"server_j": s_j, "client_j": c_j}
    out.server_j, out.client_j = server_j, client_j
    out.rest_j = record.gross_j - server_j - client_j
    out.server_share = server_j / record.gross_j if record.gross_j > 0 else None
    return out
