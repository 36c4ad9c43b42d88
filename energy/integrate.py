"""Pure functions that turn :class:`~energy.base.Reading` samples into joules over a window.

This is the one integration path in the study: the in-process windows (:mod:`energy.window`)
and the power-CSV analysis (:mod:`energy.trace`) both call :func:`window_record`, so a trace
recorded by the sidecar and a window measured in-process give the same number for the same
samples.

Per device, over ``[t0, t1]``:

* **counter** (every valid sample has ``energy_j``): sum of counter deltas, each interval
  clipped to the window by linear interpolation of the counter (constant power inside one
  sampling interval). A negative delta, or a sample flagged ``"reset"``/``"wrap"`` by its meter,
  is a discontinuity: that interval is *never* summed through. If both ends carry ``power_w``
  the interval is bridged with the trapezoid of power instead, otherwise it is left out; either
  way the record's ``flags`` say so.
* **power** (no counter): trapezoidal integration of ``power_w``, clipped exactly to the window
  by interpolating power at the window edges.
* **gaps**: samples flagged ``"gap"`` (a failed read) carry no value and are skipped; the
  interval that spans them, or any interval longer than ``gap_threshold_s``, is bridged by
  interpolation (a counter delta across a gap is still exact) and reported in ``flags``.
* **edges**: when the first/last sample of a device lies inside the window by at most
  ``edge_tolerance_s``, the edge value is held constant over that sliver; beyond that the
  uncovered part is not invented — it is reported as partial coverage.

Devices whose ``source`` is ``codecarbon`` and per-process devices (``pid:<n>``) are
cross-checks / attributions of energy already counted by the machine-level devices, so they are
reported in ``EnergyRecord.cross_checks`` and never added to ``gross_j``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from energy.base import EnergyRecord, Reading, combine_kinds

GAP = "gap"
DISCONTINUITY_FLAGS = ("reset", "wrap")
CROSS_CHECK_SOURCES = ("codecarbon",)
CROSS_CHECK_DEVICES = ("codecarbon",)  # a replayed CodeCarbon series keeps its device name
PROCESS_DEVICE_PREFIX = "pid:"

# A sampling thread on a busy 2-core box easily stalls a few hundred ms; only longer holes are
# worth a flag. Scaled by the device's own median interval for slow meters.
MIN_GAP_THRESHOLD_S = 1.0
GAP_THRESHOLD_FACTOR = 5.0
MIN_EDGE_TOLERANCE_S = 0.05


@dataclass
class DeviceEnergy:
    """Energy of one device over one window, with how it was obtained."""

    device: str
    energy_j: float | None
    source: str
    kind: str
    method: str  # "counter" | "power" | "none"
    n_samples: int = 0
    covered_s: float = 0.0
    gap_s: float = 0.0
    flags: list[str] = field(default_factory=list)


def is_cross_check(device: str, source: str) -> bool:
    """True for series that must not be summed into a window's gross energy."""
    return (
        source in CROSS_CHECK_SOURCES
        or device in CROSS_CHECK_DEVICES
        or device.startswith(PROCESS_DEVICE_PREFIX)
    )


def group_by_device(readings: Iterable[Reading]) -> dict[str, list[Reading]]:
    """Split readings per device, each list sorted by time (stable for equal stamps)."""
    out: dict[str, list[Reading]] = {}
    for r in readings:
        out.setdefault(r.device, []).append(r)
    for rs in out.values():
        rs.sort(key=lambda r: r.t_unix_s)
    return out


def _median_dt(ts: Sequence[float]) -> float | None:
    dts = [b - a for a, b in zip(ts, ts[1:], strict=False) if b > a]
    return median(dts) if dts else None


def _lerp(t: float, ta: float, va: float, tb: float, vb: float) -> float:
    if tb == ta:
        return vb
    return va + (vb - va) * (t - ta) / (tb - ta)


def device_energy(
    readings: Sequence[Reading],
    t0: float,
    t1: float,
    *,
    gap_threshold_s: float | None = None,
    edge_tolerance_s: float | None = None,
) -> DeviceEnergy:
    """Joules of one device over ``[t0, t1]`` (``t*`` in Unix seconds).

    ``readings`` are the device's samples sorted by time (extra samples outside the window are
    fine and are used to interpolate at the edges). ``gap_threshold_s`` defaults to
    ``max(1 s, 5 × median sampling interval)``; ``edge_tolerance_s`` to
    ``max(0.05 s, 2 × median interval)``.
    """
    if t1 < t0:
        raise ValueError(f"window end {t1} is before its start {t0}")
    device = readings[0].device if readings else "?"
    valid = [r for r in readings if r.flag != GAP and (r.energy_j is not None or r.power_w is not None)]
    gaps_t = [r.t_unix_s for r in readings if r.flag == GAP]
    source = valid[0].source if valid else (readings[0].source if readings else "")
    kind = combine_kinds(r.kind for r in valid)
    res = DeviceEnergy(device=device, energy_j=None, source=source, kind=kind, method="none")
    if not valid:
        res.flags.append(f"{device}: no valid samples")
        return res

    use_counter = all(r.energy_j is not None for r in valid)
    pts = valid if use_counter else [r for r in valid if r.power_w is not None]
    if not pts:
        res.flags.append(f"{device}: neither energy counter nor power in samples")
        return res
    res.method = "counter" if use_counter else "power"
    srcs = sorted({r.source for r in pts})
    res.source = "+".join(srcs)

    ts = [r.t_unix_s for r in pts]
    mdt = _median_dt(ts)
    if gap_threshold_s is None:
        gap_threshold_s = max(MIN_GAP_THRESHOLD_S, GAP_THRESHOLD_FACTOR * (mdt or 0.0))
    if edge_tolerance_s is None:
        edge_tolerance_s = max(MIN_EDGE_TOLERANCE_S, 2.0 * (mdt or 0.0))

    total = 0.0
    n_resets = 0
    excluded_s = 0.0
    gi = 0  # index into gaps_t (sorted, since readings are)
    for a, b in zip(pts, pts[1:], strict=False):
        lo, hi = max(a.t_unix_s, t0), min(b.t_unix_s, t1)
        if hi <= lo:
            continue
        span = b.t_unix_s - a.t_unix_s
        overlap = hi - lo
        while gi < len(gaps_t) and gaps_t[gi] <= a.t_unix_s:
            gi += 1
        gap_inside = gi < len(gaps_t) and gaps_t[gi] < b.t_unix_s
        if gap_inside or span > gap_threshold_s:
            res.gap_s += overlap
        if use_counter:
            d = b.energy_j - a.energy_j  # type: ignore[operator]
            if d < 0 or b.flag in DISCONTINUITY_FLAGS:
                n_resets += 1
                if a.power_w is not None and b.power_w is not None:
                    pa = _lerp(lo, a.t_unix_s, a.power_w, b.t_unix_s, b.power_w)
                    pb = _lerp(hi, a.t_unix_s, a.power_w, b.t_unix_s, b.power_w)
                    total += 0.5 * (pa + pb) * overlap
                else:
                    excluded_s += overlap
                continue
            total += d * overlap / span
        else:
            pa = _lerp(lo, a.t_unix_s, a.power_w, b.t_unix_s, b.power_w)  # type: ignore[arg-type]
            pb = _lerp(hi, a.t_unix_s, a.power_w, b.t_unix_s, b.power_w)  # type: ignore[arg-type]
            total += 0.5 * (pa + pb) * overlap
        res.covered_s += overlap

    # Edges: hold the nearest value over a sliver, never invent a long stretch.
    first, last = pts[0], pts[-1]
    for uncovered, edge, neighbour in (
        (min(first.t_unix_s, t1) - t0, first, pts[1] if len(pts) > 1 else None),
        (t1 - max(last.t_unix_s, t0), last, pts[-2] if len(pts) > 1 else None),
    ):
        if uncovered <= 0:
            continue
        edge_w = _edge_power(edge, neighbour, use_counter)
        if uncovered <= edge_tolerance_s and edge_w is not None:
            total += edge_w * uncovered
            res.covered_s += uncovered
        else:
            res.flags.append(
                f"{device}: {uncovered:.3f} s of the window not covered by samples (not counted)"
            )

    res.n_samples = sum(1 for r in pts if t0 <= r.t_unix_s <= t1)
    if n_resets:
        how = "bridged with sampled power" if excluded_s == 0 else f"{excluded_s:.3f} s left out"
        res.flags.append(
            f"{device}: {n_resets} counter reset/wrap(s) not summed through ({how})"
        )
    if res.gap_s > 0:
        res.flags.append(f"{device}: {res.gap_s:.3f} s of gaps bridged by interpolation")
    if res.covered_s <= 0 and t1 > t0:
        res.flags.append(f"{device}: no samples in the window")
        return res
    res.energy_j = total
    return res


def _edge_power(edge: Reading, neighbour: Reading | None, use_counter: bool) -> float | None:
    """Power to hold over an uncovered edge sliver: the sample's own, else the counter slope."""
    if edge.power_w is not None:
        return edge.power_w
    if use_counter and neighbour is not None:
        early, late = sorted((edge, neighbour), key=lambda r: r.t_unix_s)
        d = late.energy_j - early.energy_j  # type: ignore[operator]
        dt = late.t_unix_s - early.t_unix_s
        if d >= 0 and dt > 0:
            return d / dt
    return None


def window_record(
    readings: Iterable[Reading],
    t0: float,
    t1: float,
    *,
    name: str,
    idle_w: float | None = None,
    idle_w_per_device: dict[str, float] | None = None,
    meter: dict[str, Any] | None = None,
    gap_threshold_s: float | None = None,
    edge_tolerance_s: float | None = None,
) -> EnergyRecord:
    """Build the :class:`EnergyRecord` of window ``name`` = ``[t0, t1]`` from raw readings.

    ``gross_j`` sums the machine-level devices. Net energy subtracts the idle baseline over the
    time each device was actually *covered* by samples, never over uncovered time (whose energy
    was not counted either): with ``idle_w_per_device`` (W per device, from the idle window's
    :func:`idle_power_per_device`) ``net_j = Σ_d (E_d − idle_d × covered_d)``; with a scalar
    ``idle_w`` the machine baseline is scaled by the devices' mean coverage. ``coverage`` is the
    smallest covered share of the window over the summed devices (1.0 = fully covered).
    Cross-check series (CodeCarbon, per-process estimates) go to
    ``cross_checks``. ``source`` joins the device sources (``"nvml-counter+rapl"``); ``kind`` is
    the weakest of the summed devices' kinds (:func:`~energy.base.combine_kinds`: any estimated
    → ``"estimated"``, else any replayed → ``"replayed"``, else ``"measured"``). When the readings hold only
    cross-check series (``meter="codecarbon"`` alone), CodeCarbon's series is the figure.
    """
    per_dev = group_by_device(readings)
    duration_s = max(0.0, t1 - t0)
    primary: list[DeviceEnergy] = []
    secondary: list[DeviceEnergy] = []
    flags: list[str] = []
    for dev in sorted(per_dev):
        de = device_energy(
            per_dev[dev], t0, t1, gap_threshold_s=gap_threshold_s, edge_tolerance_s=edge_tolerance_s
        )
        (secondary if is_cross_check(dev, de.source.split("+")[0]) else primary).append(de)
    if not primary:
        # CodeCarbon chosen on its own (meter="codecarbon"): its estimate is the only figure.
        promoted = [d for d in secondary if not d.device.startswith(PROCESS_DEVICE_PREFIX)]
        if promoted:
            primary = promoted
            secondary = [d for d in secondary if d not in promoted]
            flags.append("no machine-level meter: the cross-check series is the figure")
    for de in primary:
        flags.extend(de.flags)
    cross: dict[str, dict[str, Any]] = {
        d.device: {
            "energy_j": d.energy_j,
            "source": d.source,
            "kind": d.kind,
            "method": d.method,
            "n_samples": d.n_samples,
            "flags": d.flags,
        }
        for d in secondary
    }

    summed = [d for d in primary if d.energy_j is not None]
    gross_j = sum(d.energy_j for d in summed) if summed else None  # type: ignore[misc]
    if not primary:
        flags.append("no machine-level samples in the window")
    elif len(summed) < len(primary):
        missing = [d.device for d in primary if d.energy_j is None]
        flags.append(f"devices without energy in the window (not summed): {', '.join(missing)}")
    sources = sorted({s for d in primary for s in d.source.split("+") if s})
    kind = combine_kinds(d.kind for d in primary)  # none → estimated
    covered = {d.device: d.covered_s for d in summed}
    coverage = (min((covered.get(d.device, 0.0) for d in primary), default=0.0) / duration_s
                if duration_s > 0 else 1.0)
    net_j = None
    if gross_j is not None and idle_w_per_device:
        missing_idle = sorted(set(covered) - set(idle_w_per_device))
        if missing_idle:
            flags.append(f"no idle baseline for {', '.join(missing_idle)}: net not computed")
        else:
            net_j = sum(d.energy_j - idle_w_per_device[d.device] * d.covered_s for d in summed)  # type: ignore[operator]
            idle_w = sum(idle_w_per_device[d] for d in covered)
    elif gross_j is not None and idle_w is not None:
        mean_cov = (sum(covered.values()) / (len(covered) * duration_s)) if duration_s > 0 else 1.0
        net_j = gross_j - idle_w * duration_s * mean_cov
    rec = EnergyRecord(
        name=name,
        start_unix_s=t0,
        end_unix_s=t1,
        duration_s=duration_s,
        gross_j=gross_j,
        idle_w=idle_w,
        net_j=net_j,
        source="+".join(sources) if sources else "none",
        kind=kind,
        per_device_j={d.device: d.energy_j for d in summed},  # type: ignore[misc]
        per_device_covered_s=covered,
        coverage=min(1.0, coverage),
        n_samples=sum(d.n_samples for d in primary),
        flags=flags,
        meter=dict(meter or {}),
        cross_checks=cross,
    )
    return rec


def idle_power_per_device(record: EnergyRecord | None) -> dict[str, float] | None:
    """Mean power (W) of each summed device over the time it was covered in an idle window:
    ``E_d / covered_d`` — the baseline :func:`window_record` subtracts per device."""
    if record is None or not record.per_device_j:
        return None
    out = {}
    for dev, e in record.per_device_j.items():
        cov = record.per_device_covered_s.get(dev, 0.0)
        if e is None or cov <= 0:
            return None
        out[dev] = e / cov
    return out
