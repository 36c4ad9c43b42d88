"""Pure metric functions of a load run: energy per 1k requests, latency percentiles, served
accuracy/F1, failure rules and one repeat's ``summary.json`` (the request records are
:mod:`loadtest.records`; the mean + 95 % CI across repeats :mod:`loadtest.repeats`).

Everything here is a plain function of plain numbers, request records and
:class:`~energy.base.EnergyRecord` objects — no processes, no sockets — so each can be tested on
hand-made inputs with a known answer (STYLE.md §8): a constant 200 W trace for 10 s with 500
successful requests is 2000 J → 4000 J per 1k → 1.111 Wh per 1k gross; with a 50 W idle
baseline the net is 1500 J → 0.833 Wh per 1k.

Definitions (docs/loadtest.md explains the choices):

* A request belongs to a window when it *completed* inside it (``t0 <= t_end_unix_s <= t1``).
* ``energy_per_1k_wh = energy_j(window) / n_ok × 1000 / 3600`` — gross and net
  (``net_j = gross_j − idle_w × duration_s``, DESIGN.md's energy record).
* Percentiles interpolate linearly between order statistics (numpy's default).
* A mean's 95 % CI uses Student's t with ``n − 1`` degrees of freedom; one value has no CI.
* Served metrics treat label 1 (vulnerable) as the positive class.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from energy.base import J_PER_WH, EnergyRecord, combine_kinds
from loadtest.records import RequestRecord, in_window
from study import stats
from study.metrics import classification_metrics
from study.schema import LoadSummary
from study.stats import percentile

PERCENTILES = (50, 90, 95, 99)
# A steady window whose samples cover less than this share is degraded (kept, never averaged
# with ok repeats); so is one that drew less than its idle baseline.
DEGRADED_COVERAGE = 0.95
DEGRADED_FLAGS = ("partial_coverage", "negative_net")
# Open loop: answering less than this share of the offered rate is a warning.
TARGET_RATE_FRACTION = 0.95
DEFAULT_MAX_ERROR_RATE = 0.05
# An open-loop arrival that starts more than this after its scheduled time counts as "late".
DEFAULT_LATE_THRESHOLD_MS = 10.0




# --------------------------------------------------------------------------- energy


def energy_per_1k_wh(energy_j: float | None, n_ok: int) -> float | None:
    """Wh per 1,000 successful requests: ``energy_j / n_ok × 1000 / 3600``.

    ``None`` when the energy is unknown or no request succeeded (never a division by zero
    presented as a number).
    """
    if energy_j is None or n_ok <= 0:
        return None
    return energy_j / n_ok * 1000.0 / J_PER_WH


def energy_per_1k(record: EnergyRecord | None, n_ok: int) -> dict[str, float | None]:
    """``{"gross": Wh, "net": Wh}`` per 1k successful requests from a window's record."""
    if record is None:
        return {"gross": None, "net": None}
    return {
        "gross": energy_per_1k_wh(record.gross_j, n_ok),
        "net": energy_per_1k_wh(record.net_j, n_ok),
    }


def j_per_request(record: EnergyRecord | None, n_ok: int) -> dict[str, float | None]:
    """``{"gross": J, "net": J}`` per successful request."""
    if record is None or n_ok <= 0:
        return {"gross": None, "net": None}
    return {
        "gross": None if record.gross_j is None else record.gross_j / n_ok,
        "net": None if record.net_j is None else record.net_j / n_ok,
    }


def co2_per_1k_g(
    per_1k_wh: dict[str, float | None], grid_gco2_per_kwh: float | None
) -> dict[str, float | None]:
    """grams CO₂ per 1k requests: ``Wh / 1000 × gCO₂/kWh`` for gross and net."""

    def g(wh: float | None) -> float | None:
        if wh is None or grid_gco2_per_kwh is None:
            return None
        return wh / 1000.0 * grid_gco2_per_kwh

    return {k: g(per_1k_wh.get(k)) for k in ("gross", "net", *(k for k in per_1k_wh if k not in ("gross", "net")))}


# --------------------------------------------------------------------------- statistics


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float | None]:
    """``{"mean", "p50", "p90", "p95", "p99"}`` in ms (``None`` each when there are none)."""
    out: dict[str, float | None] = {
        "mean": (sum(latencies_ms) / len(latencies_ms)) if latencies_ms else None
    }
    for p in PERCENTILES:
        out[f"p{p}"] = percentile(latencies_ms, p)
    return out


def mean_ci95(values: Sequence[float]) -> tuple[float | None, list[float] | None]:
    """Mean and its t-based 95 % CI ``[lo, hi]``; the CI is ``None`` for fewer than 2 values."""
    s = stats.mean_ci95(values)
    return s.mean, None if s.ci95 is None else list(s.ci95)


def served_scores(records: Iterable[RequestRecord]) -> dict[str, Any]:
    """Served accuracy of the successful requests: :func:`study.metrics.classification_metrics`
    (the same function that scores training), with ROC-AUC and pair accuracy when every item
    also has a score.

    When every item carries its example id (``pair`` + true label identify one BigVul example),
    each distinct function counts **once** (its last prediction and score): a load test sends
    the split round-robin, so a time window covers some functions more often than others, and
    two engines serving the same model would otherwise report different accuracies for the
    share of the split their window happened to cover. ``n_requests_scored`` counts every
    scored item; ``n_scored`` the distinct ones. Without ids every item counts.
    """
    items: list[tuple[int, int, float | None, str | None]] = []
    for r in records:
        if not r.ok or len(r.pred) != len(r.true):
            continue
        scores = r.scores if len(r.scores) == len(r.true) else (None,) * len(r.true)
        pairs = r.pairs if len(r.pairs) == len(r.true) else (None,) * len(r.true)
        items.extend(zip(r.true, r.pred, scores, (None if x in (None, "-") else x for x in pairs),
                         strict=True))
    n_requests = len(items)
    if items and all(pr is not None for *_, pr in items):
        items = list({(pr, t): (t, p, sc, pr) for t, p, sc, pr in items}.values())
    y = [t for t, *_ in items]
    p = [q for _, q, _, _ in items]
    s = [sc for _, _, sc, _ in items]
    full = bool(items) and all(x is not None for x in s)
    out = classification_metrics(y, p, s if full else None,
                                 [pr for *_, pr in items] if full else None)
    out["n_requests_scored"] = n_requests
    return out


def request_stats(
    records: Sequence[RequestRecord],
    duration_s: float,
    *,
    late_threshold_ms: float = DEFAULT_LATE_THRESHOLD_MS,
) -> dict[str, Any]:
    """Counts, error breakdown, throughput, latency and served scores of a window's records.

    Latency percentiles are over *successful* requests (a refused connection answers in
    microseconds and would flatter them); throughput is successful requests per second.
    Open-loop records (with a scheduled arrival) add ``open_loop`` lateness figures and
    ``latency_from_intended_ms``.
    """
    ok = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok]
    errors = Counter(r.error or "unknown" for r in failed)
    out: dict[str, Any] = {
        "requests": {"ok": len(ok), "failed": len(failed), "errors": dict(sorted(errors.items()))},
        "items_ok": sum(r.n_items for r in ok),
        "throughput_rps": (len(ok) / duration_s) if duration_s > 0 else None,
        "latency_ms": latency_summary([r.latency_ms for r in ok]),
        "served": served_scores(ok),
        "latency_from_intended_ms": None,
        "open_loop": None,
    }
    scheduled = [r for r in records if r.target_unix_s is not None]
    if scheduled:
        lateness = [r.lateness_ms for r in scheduled]
        late = [x for x in lateness if x is not None and x > late_threshold_ms]
        out["latency_from_intended_ms"] = latency_summary(
            [r.latency_from_intended_ms for r in ok if r.latency_from_intended_ms is not None]
        )
        out["open_loop"] = {
            "achieved_rps": (len(scheduled) / duration_s) if duration_s > 0 else None,
            "n_arrivals": len(scheduled),
            "n_late": len(late),
            "late_fraction": len(late) / len(scheduled),
            "late_threshold_ms": late_threshold_ms,
            "lateness_ms": latency_summary([x for x in lateness if x is not None]),
        }
    return out


# --------------------------------------------------------------------------- failure rules


def failure_reason(
    *,
    n_ok: int,
    n_failed: int,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    server_failure: str | None = None,
    inference_energy_j: float | None = 0.0,
    errors: dict[str, int] | None = None,
) -> str | None:
    """Why a repeat must be marked failed, or ``None`` when it is fine.

    Rules, first match wins: the server failed during the run (``server_failure`` says how,
    e.g. "server exited with code -9 during the steady window"); no successful request; error
    rate ``n_failed / (n_ok + n_failed)`` above ``max_error_rate``; no energy for the inference
    window (the headline figure would be missing).
    """
    if not 0 <= max_error_rate <= 1:
        raise ValueError(f"max_error_rate={max_error_rate} is invalid; allowed: 0..1")
    top = ""
    if errors:
        reason, n = max(errors.items(), key=lambda kv: kv[1])
        top = f" (most common error: {reason!r} ×{n})"
    if server_failure:
        return f"{server_failure}{top}"
    if n_ok == 0:
        return f"no successful request in the steady window ({n_failed} failed){top}"
    rate = n_failed / (n_ok + n_failed)
    if rate > max_error_rate:
        return f"error rate {rate:.1%} exceeds the {max_error_rate:.1%} threshold{top}"
    if inference_energy_j is None:
        return "no energy for the inference window (see energy.inference.flags)"
    return None


# --------------------------------------------------------------------------- one repeat


def compose_repeat_summary(
    *,
    meta: dict[str, Any],
    load: dict[str, Any],
    records: Sequence[RequestRecord],
    window: tuple[float, float] | None,
    energy: dict[str, EnergyRecord | None],
    server_counted: float | None = None,
    client_cpu: dict[str, Any] | None = None,
    environment: dict[str, Any] | None = None,
    country: str | None = None,
    grid_gco2_per_kwh: float | None = None,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    server_failure: str | None = None,
    setup_failure: str | None = None,
    late_threshold_ms: float = DEFAULT_LATE_THRESHOLD_MS,
    warnings: Sequence[str] = (),
    flags: Sequence[str] = (),
    attribution: dict[str, Any] | None = None,
    stability: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``summary.json`` of one repeat (docs/interfaces.md's schema, every field present).

    ``meta`` holds run_id, engine, variant, format, model; ``load`` the load description;
    ``records`` the steady-phase requests; ``window`` the steady window ``(t0, t1)`` in Unix
    seconds (the requests that completed inside it are counted); ``energy`` the records named
    ``system``, ``idle``, ``inference`` (and optionally ``warmup``). ``setup_failure`` marks a
    repeat that never reached its steady window (server never ready, sidecar down, …).
    ``attribution`` is :class:`energy.attribution.Attribution` as a dict (its ``server_j``
    gives ``energy_per_1k_wh.server``); ``stability`` the ``--stable`` monitor's block.

    ``flags`` (machine-readable codes; each also explained in ``warnings``) gain
    ``partial_coverage`` / ``negative_net`` (→ status ``degraded``: kept and shown, never
    averaged with ok repeats), ``not_stable``, ``target_rate_not_achieved``,
    ``count_mismatch`` and ``client_saturated`` as they apply.
    """
    if window is not None:
        t0, t1 = window
        recs = in_window(records, t0, t1)
        duration_s = max(0.0, t1 - t0)
    else:
        recs, duration_s = list(records), 0.0
    rs = request_stats(recs, duration_s, late_threshold_ms=late_threshold_ms)
    n_ok = rs["requests"]["ok"]
    inf = energy.get("inference")
    attribution = attribution or {}
    server_j = attribution.get("server_j")
    per_1k = {**energy_per_1k(inf, n_ok), "server": energy_per_1k_wh(server_j, n_ok)}
    warns = list(warnings)
    flag_list = list(flags)
    # The server counts every request of the steady phase; so does the client, over all its
    # records (with --stable the measured window is only the last sub-windows of the phase).
    client_counted = len(records)
    if server_counted is not None and server_counted != client_counted:
        flag_list.append("count_mismatch")
        warns.append(
            f"count_mismatch: client counted {client_counted} requests, the server's metrics {server_counted:g}"
        )
    if inf is not None and inf.gross_j is not None:
        if inf.coverage < DEGRADED_COVERAGE:
            flag_list.append("partial_coverage")
            warns.append(f"partial_coverage: samples cover {inf.coverage:.0%} of the steady window "
                         f"(< {DEGRADED_COVERAGE:.0%}): the repeat is degraded")
        if inf.net_j is not None and inf.net_j < 0:
            flag_list.append("negative_net")
            warns.append("negative_net: the steady window drew less than the idle baseline: the "
                         "repeat is degraded")
    if stability is not None and not stability.get("stable"):
        flag_list.append("not_stable")
        warns.append(f"not_stable: no 3 consecutive sub-windows agreed within ±10 % in "
                     f"{len(stability.get('windows') or [])} sub-windows")
    target = load.get("rps")
    if target and rs["open_loop"] is not None:
        achieved = rs["throughput_rps"] or 0.0
        rs["open_loop"].update(target_rps=target, goodput_rps=achieved,
                               achieved_fraction=achieved / target)
        if achieved < TARGET_RATE_FRACTION * target:
            flag_list.append("target_rate_not_achieved")
            warns.append(f"target_rate_not_achieved: {achieved:.1f} req/s answered of {target:g} "
                         f"req/s offered ({achieved / target:.0%}; {rs['open_loop']['late_fraction']:.0%} "
                         f"of arrivals late)")
    if client_cpu and client_cpu.get("saturated"):
        flag_list.append("client_saturated")
        warns.append("a Locust process was near 100 % CPU: the client may be the bottleneck "
                     "(use --workers)")
    # Open loop: latency as the user meets it, from the intended send time (coordinated
    # omission corrected); the service time from the actual send stays beside it.
    latency_basis = "sent"
    latency_from_sent = None
    if rs["latency_from_intended_ms"] is not None:
        latency_basis = "intended"
        latency_from_sent = rs["latency_ms"]
        rs["latency_ms"] = rs["latency_from_intended_ms"]
    reason = setup_failure or failure_reason(
        n_ok=n_ok,
        n_failed=rs["requests"]["failed"],
        max_error_rate=max_error_rate,
        server_failure=server_failure,
        inference_energy_j=None if inf is None else inf.gross_j,
        errors=rs["requests"]["errors"],
    )
    sources = sorted({r.source for r in energy.values() if r is not None and r.source != "none"})
    kinds = {r.kind for r in energy.values() if r is not None}
    degraded = [f for f in flag_list if f in DEGRADED_FLAGS]
    out: dict[str, Any] = {
        "status": "failed" if reason else ("degraded" if degraded else "ok"),
        "failure_reason": reason,
        "run_id": meta.get("run_id"),
        "engine": meta.get("engine"),
        "variant": meta.get("variant"),
        "format": meta.get("format"),
        "model": meta.get("model"),
        "load": dict(load),
        "requests": {**rs["requests"], "server_counted": server_counted,
                     "client_counted": client_counted},
        "items_ok": rs["items_ok"],
        "throughput_rps": rs["throughput_rps"],
        "latency_ms": rs["latency_ms"],
        "latency_basis": latency_basis,
        "latency_from_sent_ms": latency_from_sent,
        "latency_from_intended_ms": rs["latency_from_intended_ms"],
        "open_loop": rs["open_loop"],
        "served": rs["served"],
        "energy": {k: (None if v is None else v.to_dict()) for k, v in energy.items()},
        "energy_per_1k_wh": per_1k,
        "energy_scope": {
            "gross": "whole machine over the steady window (server + load client + everything else)",
            "net": "gross minus the idle baseline over the covered time (server + client load)",
            "server": "the server's process tree by CPU time (+ all GPU energy); see attribution",
        },
        "attribution": {k: attribution.get(k) for k in (
            "method", "server_cpu_s", "client_cpu_s", "other_cpu_s", "server_share", "server_j",
            "client_j", "rest_j", "per_device", "flags", "affinity")} if attribution else None,
        "stability": stability,
        "flags": sorted(set(flag_list)),
        # Independent series beside the primary meter (CodeCarbon, per-process attributions),
        # never summed into it: Wh per 1k ok requests of each, for comparison, each labelled
        # with its own source and kind like every other energy figure.
        "cross_checks_per_1k_wh": {
            dev: {"wh": energy_per_1k_wh(cc.get("energy_j"), n_ok),
                  # the same server share applied to the cross-check's own series
                  "server_wh": energy_per_1k_wh(
                      None if cc.get("energy_j") is None or attribution.get("server_share") is None
                      else cc["energy_j"] * attribution["server_share"], n_ok),
                  "source": cc.get("source"), "kind": cc.get("kind")}
            for dev, cc in (inf.cross_checks if inf is not None else {}).items()
        },
        "j_per_request": {**j_per_request(inf, n_ok),
                          "server": None if server_j is None or n_ok <= 0 else server_j / n_ok},
        "co2_per_1k_g": co2_per_1k_g(per_1k, grid_gco2_per_kwh),
        "country": country,
        "grid_gco2_per_kwh": grid_gco2_per_kwh,
        "energy_source": (inf.source if inf is not None else "+".join(sources) or None),
        "energy_kind": (inf.kind if inf is not None
                        else (combine_kinds(kinds) if kinds else None)),
        "client_cpu": client_cpu or {"mean_percent": None, "max_percent": None},
        "environment": environment or {},
        "window": {
            "start_unix_s": None if window is None else window[0],
            "end_unix_s": None if window is None else window[1],
            "duration_s": duration_s,
        },
        "warnings": warns,
        "n_repeats": 1,
        "ci95": {},
    }
    for k in ("system", "idle", "inference"):
        out["energy"].setdefault(k, None)
    if extra:
        out.update(extra)
    return LoadSummary.from_dict(out).to_dict()  # written through the one schema
