"""One repeat of a load test as a list of named phases (STYLE.md §14)::

    PHASES = [system, settle, idle, warmup, steady]

Each phase is a small function of the repeat's :class:`Repeat` state; the driver
(:func:`run_repeat`) runs them in order, writes ``state.json`` before each, stops at the first
failure, always stops the server and the sidecar, and then turns what was recorded (sidecar
power CSV + marks, the client's per-request CSVs, CPU times) into the repeat's summary:

* **system** — power sidecar up, ``system_start`` → server start → ready (deployment energy);
* **settle** — ``--settle`` seconds after ready, not measured (start-up tails die down);
* **idle** — the idle baseline with the server up; its two halves must agree within 10 %
  (else ``idle_not_stationary``);
* **warmup** — Locust for ``--warmup`` seconds, excluded from every figure;
* **steady** — Locust for ``--duration`` (or, with ``--stable``, sub-windows until stable),
  with the server's, the client's and the machine's CPU time sampled for attribution.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from energy.attribution import attribute
from energy.base import EnergyRecord
from energy.carbon import grid_intensity_info
from energy.integrate import idle_power_per_device
from loadtest.config import INTERRUPTED, RECORDS_SUBDIR, RepeatFailed, RunConfig
from loadtest.cpu import CpuAccountant
from loadtest.launch import LocustPhase, Server, _count_rows, run_locust, scrape_count
from loadtest.records import in_window, read_request_records, request_span
from loadtest.shapes import LoadSpec
from loadtest.stability import StabilityMonitor
from loadtest.summary import compose_repeat_summary, latency_summary
from study.environment import capture
from study.io import write_json_atomic, write_text_atomic
from study.process import tail_line, tree_pids

# The idle baseline's two halves may differ by this much (relative to their mean) before the
# baseline is flagged ``idle_not_stationary``.
IDLE_STATIONARITY_TOLERANCE = 0.10


@dataclass
class Repeat:
    """Everything one repeat accumulates as its phases run."""

    cfg: RunConfig
    spec: LoadSpec
    rep_dir: Path
    requests_file: Path
    server: Server
    power: Path
    marks: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    sidecar: Any = None
    steady: LocustPhase | None = None
    server_failure: str | None = None
    server_counted: float | None = None
    accountant: CpuAccountant | None = None
    monitor: StabilityMonitor | None = None
    idle_w_per_device: dict[str, float] | None = None

    def mark(self, name: str, t_unix_s: float | None = None) -> float:
        """Send a mark to the sidecar; returns its time. A sidecar that stopped answering
        costs a warning in the summary, not the run."""
        t = time.time() if t_unix_s is None else t_unix_s
        self.marks[name] = t
        try:
            self.sidecar.mark(name, t_unix_s=t)
        except Exception as e:
            self.marks.setdefault("_mark_errors", []).append(f"{name}: {type(e).__name__}: {e}")
        return t

    def record(self, name: str, t0: float | None, t1: float | None,
               idle: bool = True) -> EnergyRecord | None:
        """The energy of ``[t0, t1]`` in this repeat's power CSV (net against the idle
        baseline per device when ``idle``); ``None`` when it cannot be computed."""
        if t0 is None or t1 is None or not self.power.exists():
            return None
        from energy.trace import record_from_csv

        try:
            return record_from_csv(self.power, t0, t1, name=name,
                                   idle_w_per_device=self.idle_w_per_device if idle else None)
        except (ValueError, OSError):
            return None

    def steady_records(self):
        return read_request_records(sorted((self.rep_dir / RECORDS_SUBDIR).glob("requests-steady-*.csv")))


# --------------------------------------------------------------------------- the phases


def system(r: Repeat) -> None:
    from energy.sidecar import Sidecar

    r.sidecar = Sidecar(r.power, interval_s=r.cfg.interval_s, meter=r.cfg.meter, gpus=r.cfg.gpus)
    # The system window must start after the first sample, or its start is uncovered.
    t_wait = time.monotonic() + 30
    while _count_rows([r.power]) < 2 and time.monotonic() < t_wait:
        time.sleep(0.05)
    r.mark("system_start")
    r.server.start()
    r.server.wait_ready(r.cfg.startup_timeout_s)
    r.mark("ready")
    log = r.server.log_path
    if "[serve] building" in (log.read_text(errors="replace") if log.exists() else ""):
        r.warnings.append("the server built a missing artifact during start-up: the system "
                          "window includes that build")


def settle(r: Repeat) -> None:
    if r.cfg.settle_s > 0:
        r.mark("settle_start")
        time.sleep(r.cfg.settle_s)
        r.mark("settle_end")


def idle(r: Repeat) -> None:
    r.mark("idle_start")
    time.sleep(r.cfg.idle_s)
    r.mark("idle_end")
    # Known now (not only after the run), so the stability monitor can compute J/request.
    r.idle_w_per_device = idle_power_per_device(
        r.record("idle", r.marks["idle_start"], r.marks["idle_end"], idle=False))


def warmup(r: Repeat) -> None:
    if r.cfg.warmup_s <= 0:
        return
    r.mark("warmup_start")
    wu = run_locust(r.cfg, r.spec, url=r.server.url, phase="warmup", run_s=r.cfg.warmup_s,
                    rep_dir=r.rep_dir, requests_file=r.requests_file, server_alive=r.server.failure)
    r.mark("warmup_end")
    if wu.server_failure:
        r.server_failure = wu.server_failure.replace("steady window", "warm-up")
        raise RepeatFailed(r.server_failure)


def steady(r: Repeat) -> None:
    cfg = r.cfg
    before = scrape_count(r.server.metrics_url, cfg.engine, cfg.model_name)
    client_pids: list[int] = []
    server_pid = r.server.pid
    r.accountant = CpuAccountant({"server": lambda: tree_pids(server_pid),
                                  "client": lambda: list(client_pids)})
    if cfg.stable:
        r.monitor = StabilityMonitor(measure=lambda a, b: _sub_window(r, a, b),
                                     first_request=lambda: _first_send(r),
                                     window_s=cfg.stable_window_s, max_windows=cfg.max_windows)
    run_s = cfg.duration_s
    if cfg.requests is not None:
        run_s = max(cfg.duration_s, 3600.0)
    elif cfg.stable:
        run_s = cfg.stable_window_s * cfg.max_windows + 5.0
    with r.accountant:
        r.steady = run_locust(
            cfg, r.spec, url=r.server.url, phase="steady", run_s=run_s, rep_dir=r.rep_dir,
            requests_file=r.requests_file, server_alive=r.server.failure,
            max_requests=cfg.requests, progress=cfg.progress, client_pids=client_pids,
            stop_when=r.monitor.check if r.monitor is not None else None,
        )
    r.steady.client_cpu = r.accountant.client_result()
    r.server_failure = r.steady.server_failure
    after = scrape_count(r.server.metrics_url, cfg.engine, cfg.model_name) if not r.server_failure else None
    if before is not None and after is not None:
        r.server_counted = after - before
    elif not r.server_failure:
        r.warnings.append(f"server metrics unreadable at {r.server.metrics_url}: server_counted is null")
    early = r.steady.stopped_early
    if early and not r.server_failure and cfg.requests is None and r.monitor is None:
        r.warnings.append(f"steady phase ended early: {early}")


PHASES = (("system", system), ("settle", settle), ("idle", idle), ("warmup", warmup),
          ("steady", steady))


def _first_send(r: Repeat) -> float | None:
    recs = r.steady_records()
    return min((x.t_start_unix_s for x in recs), default=None)


def _sub_window(r: Repeat, t0: float, t1: float) -> dict[str, Any]:
    """Throughput, p50 and J/request of one sub-window, from what has been written so far."""
    ok = [x for x in in_window(r.steady_records(), t0, t1) if x.ok]
    rec = r.record("sub-window", t0, t1)
    j = None if rec is None or rec.gross_j is None or not ok else rec.gross_j / len(ok)
    return {"n_ok": len(ok), "throughput_rps": len(ok) / (t1 - t0),
            "p50_ms": latency_summary([x.latency_ms for x in ok])["p50"], "j_per_request": j}


# --------------------------------------------------------------------------- the driver


def run_repeat(cfg: RunConfig, spec: LoadSpec, run_dir: Path, k: int, requests_file: Path,
               run_id: str) -> dict[str, Any]:
    """Run :data:`PHASES`, stop everything, and write this repeat's ``summary.json``."""
    from energy.trace import marks_path

    rep_dir = run_dir / f"repeat-{k}"
    rep_dir.mkdir(parents=True, exist_ok=True)
    power = rep_dir / "power.csv"
    # A reused --run-id reruns this repeat: its raw files start afresh. The per-request CSVs are
    # named by pid and the sidecar appends, so an earlier run's rows would otherwise be counted
    # (and an old sample would pass for the first one before system_start).
    for old in [power, marks_path(power), *(rep_dir / RECORDS_SUBDIR).glob("requests-*.csv")]:
        old.unlink(missing_ok=True)
    r = Repeat(cfg=cfg, spec=spec, rep_dir=rep_dir, requests_file=requests_file,
               server=Server(cfg, rep_dir), power=power)

    def state(phase: str) -> None:
        write_json_atomic(rep_dir / "state.json", {
            "phase": phase, "server_pid": r.server.pid,
            "url": r.server.url, "t_unix_s": time.time(),
        })

    setup_failure: str | None = None
    try:
        for name, phase in PHASES:
            state(name)
            phase(r)
    except RepeatFailed as e:
        setup_failure = None if r.server_failure else str(e)
    except KeyboardInterrupt:
        setup_failure = INTERRUPTED
    except Exception as e:  # any other breakage: one line on the console, the traceback in a file
        setup_failure = f"{type(e).__name__}: {e}"
        write_text_atomic(rep_dir / "error.log", traceback.format_exc())
    finally:
        state("stopping")
        r.server.stop()
        if r.sidecar is not None:
            r.mark("server_stopped")
    summary = _summarise(r, k, run_id, setup_failure)
    write_json_atomic(rep_dir / "summary.json", summary)
    state("done")
    return summary


def _server_max_length(server_args: list[str]) -> int | None:
    """``--max-length N`` among the server's extra arguments (``None``: the model's own)."""
    for i, a in enumerate(server_args):
        if a.startswith("--max-length="):
            return int(a.split("=", 1)[1])
        if a == "--max-length" and i + 1 < len(server_args):
            return int(server_args[i + 1])
    return None


def _idle_flags(r: Repeat) -> list[str]:
    """``idle_not_stationary`` when the idle window's halves differ by more than 10 %."""
    a, b = r.marks.get("idle_start"), r.marks.get("idle_end")
    if a is None or b is None or b - a < 1.0:
        return []
    mid = (a + b) / 2
    first, second = r.record("idle-1", a, mid, idle=False), r.record("idle-2", mid, b, idle=False)
    if first is None or second is None or first.gross_j is None or second.gross_j is None:
        return []
    p1, p2 = first.gross_j / first.duration_s, second.gross_j / second.duration_s
    m = (p1 + p2) / 2
    if m > 0 and abs(p1 - p2) > IDLE_STATIONARITY_TOLERANCE * m:
        r.warnings.append(f"idle_not_stationary: the idle baseline's halves drew {p1:.2f} W and "
                          f"{p2:.2f} W (> ±{IDLE_STATIONARITY_TOLERANCE:.0%}); net figures are uncertain")
        return ["idle_not_stationary"]
    return []


def _summarise(r: Repeat, k: int, run_id: str, setup_failure: str | None) -> dict[str, Any]:
    """The repeat's summary from everything on disk, even when it was cut short (Ctrl-C, an
    error): partial data is kept and counted."""
    cfg = r.cfg
    records = r.steady_records()
    steady = r.steady
    if steady is not None and not records and steady.exit_code not in (0, None) \
            and not (r.server_failure or setup_failure):
        setup_failure = (f"Locust exited with code {steady.exit_code}: "
                         f"{tail_line(r.rep_dir / 'locust-steady.log', 1) or tail_line(r.rep_dir / 'locust-steady.out', 1)}")
    span = (r.monitor.window if r.monitor is not None else None) or request_span(records)
    if span is not None and r.sidecar is not None:
        # The steady window as the load client's own timestamps (or the stable sub-windows) bound it.
        r.mark("steady_start", span[0])
        r.mark("steady_end", span[1])
    if r.sidecar is not None:
        try:
            r.sidecar.stop()
        except Exception as e:
            r.warnings.append(f"sidecar stop: {type(e).__name__}: {e}")
    if "_mark_errors" in r.marks:
        r.warnings.append("marks not delivered to the sidecar: " + "; ".join(r.marks.pop("_mark_errors")))
    m = r.marks
    if "idle_end" in m:  # from the finished trace (the one taken during the run lacked its last samples)
        r.idle_w_per_device = idle_power_per_device(r.record("idle", m["idle_start"], m["idle_end"], idle=False))
    flags = _idle_flags(r)
    energy = {
        "system": None if cfg.url else r.record("system", m.get("system_start"), m.get("ready")),
        "idle": r.record("idle", m.get("idle_start"), m.get("idle_end")),
        "inference": r.record("inference", *(span or (None, None))),
        "warmup": r.record("warmup", m.get("warmup_start"), m.get("warmup_end")),
    }
    if cfg.url:
        r.warnings.append("attached to a running server: no system-stage energy")
    inf = energy["inference"]
    cpu = r.accountant.cpu_times(*span) if r.accountant is not None and span else None
    if cfg.url and cpu is not None:
        r.warnings.append("attached to a running server: its CPU time is not known here, so the "
                          "server-attributed figure is null")
        cpu = None
    devices = (inf.meter.get("devices") or {}) if inf is not None else {}
    attribution = attribute(inf, cpu, r.idle_w_per_device,
                            {d: v.get("source", "") for d, v in devices.items()})
    attribution.affinity = {"server": cfg.server_cpus, "client": cfg.client_cpus}
    n_ok = sum(x.ok for x in in_window(records, *span)) if span else 0
    load = {
        **r.spec.to_dict(), "duration_s": cfg.duration_s, "requests_target": cfg.requests,
        "workers": cfg.workers, "warmup_s": cfg.warmup_s, "idle_s": cfg.idle_s,
        "settle_s": cfg.settle_s, "protocol": cfg.protocol, "stable": cfg.stable,
        "max_length": _server_max_length(cfg.server_args),
    }
    grid = grid_intensity_info(cfg.country)
    server_cpu_s = attribution.server_cpu_s
    return compose_repeat_summary(
        meta={"run_id": run_id, "engine": cfg.engine, "variant": cfg.variant, "format": cfg.format,
              "model": cfg.model_name},
        load=load,
        records=records,
        window=span,
        energy=energy,
        server_counted=r.server_counted,
        client_cpu=steady.client_cpu if steady else None,
        environment=capture(),
        country=cfg.country,
        grid_gco2_per_kwh=grid["g_per_kwh"],
        max_error_rate=cfg.max_error_rate,
        server_failure=r.server_failure,
        setup_failure=setup_failure,
        late_threshold_ms=cfg.late_threshold_ms,
        warnings=r.warnings,
        flags=flags,
        attribution=attribution.to_dict(),
        stability=r.monitor.to_dict() if r.monitor is not None else None,
        extra={
            "repeat": k,
            "marks": {n: t for n, t in r.marks.items() if not n.startswith("_")},
            "meter": {"spec": cfg.meter, "interval_s": cfg.interval_s},
            "grid": {"source": grid["source"], "year": grid.get("year")},  # of grid_gco2_per_kwh
            # The server's own CPU time over the steady window (process tree, psutil): a figure
            # other tenants of a shared machine cannot inflate, unlike the machine-level power.
            "server_cpu": {
                "cpu_s": server_cpu_s,
                "mean_percent": (server_cpu_s / (span[1] - span[0]) * 100.0)
                if server_cpu_s is not None and span and span[1] > span[0] else None,
                "cpu_s_per_request": (server_cpu_s / n_ok) if server_cpu_s is not None and n_ok else None,
            },
            "url": r.server.url,
        },
    )
