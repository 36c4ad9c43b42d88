"""Pure metric functions of a load run: energy per 1k requests, latency percentiles, served
accuracy/F1, failure rules, and the mean + 95 % CI across repeats.

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

import csv
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from energy import stats
from energy.base import J_PER_WH, EnergyRecord, combine_kinds
from energy.stats import get_path, percentile

PERCENTILES = (50, 90, 95, 99)
DEFAULT_MAX_ERROR_RATE = 0.05
# An open-loop arrival that starts more than this after its scheduled time counts as "late".
DEFAULT_LATE_THRESHOLD_MS = 10.0

# Per-request CSV written by every Locust process (loadtest/locustfile.py).
RECORD_COLUMNS = (
    "t_start_unix_s",  # when the request was sent
    "t_end_unix_s",  # when its response (or error) was complete
    "latency_ms",
    "ok",  # 1/0: status 200 and a well-formed response
    "error",  # short reason when ok == 0 ("" otherwise)
    "n_items",  # functions in the request (batch size)
    "true",  # true labels, space-separated
    "pred",  # predicted labels, space-separated ("" when the response had none)
    "target_unix_s",  # open loop: the scheduled arrival time ("" for closed loop)
)

# Metrics that get a 95 % CI across repeats (dotted paths into a repeat summary).
CI_METRICS = (
    "energy_per_1k_wh.gross",
    "energy_per_1k_wh.net",
    "j_per_request.gross",
    "j_per_request.net",
    "co2_per_1k_g.gross",
    "co2_per_1k_g.net",
    "throughput_rps",
    "latency_ms.mean",
    "latency_ms.p50",
    "latency_ms.p90",
    "latency_ms.p95",
    "latency_ms.p99",
    "served.accuracy",
    "served.f1",
    "energy.inference.gross_j",
    "energy.inference.net_j",
    "energy.idle.idle_w",
    "energy.system.gross_j",
    "client_cpu.mean_percent",
)


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

    return {"gross": g(per_1k_wh.get("gross")), "net": g(per_1k_wh.get("net"))}


def idle_power_w(record: EnergyRecord | None) -> float | None:
    """Mean power (W) of an idle-baseline window: ``gross_j / duration_s``."""
    if record is None or record.gross_j is None or record.duration_s <= 0:
        return None
    return record.gross_j / record.duration_s


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


def classification_scores(pairs: Iterable[tuple[int, int]]) -> dict[str, float | int | None]:
    """Accuracy, F1, precision, recall (positive class 1) and ``n_scored`` of (true, pred) pairs.

    Precision/recall/F1 are 0.0 when their denominator is zero (sklearn's ``zero_division=0``);
    everything is ``None`` when nothing was scored.
    """
    tp = fp = fn = tn = 0
    for t, p in pairs:
        if t == 1 and p == 1:
            tp += 1
        elif t == 0 and p == 1:
            fp += 1
        elif t == 1:
            fn += 1
        else:
            tn += 1
    n = tp + fp + fn + tn
    if n == 0:
        return {"accuracy": None, "f1": None, "precision": None, "recall": None, "n_scored": 0}
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / n,
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "n_scored": n,
    }


# --------------------------------------------------------------------------- request records


@dataclass(frozen=True)
class RequestRecord:
    """One request as the load client saw it (times in Unix seconds, this machine's clock)."""

    t_start_unix_s: float
    t_end_unix_s: float
    ok: bool
    error: str = ""
    n_items: int = 1
    true: tuple[int, ...] = ()
    pred: tuple[int, ...] = ()
    target_unix_s: float | None = None

    @property
    def latency_ms(self) -> float:
        return (self.t_end_unix_s - self.t_start_unix_s) * 1000.0

    @property
    def lateness_ms(self) -> float | None:
        """Open loop: how long after its scheduled arrival the request was actually sent."""
        if self.target_unix_s is None:
            return None
        return (self.t_start_unix_s - self.target_unix_s) * 1000.0

    @property
    def latency_from_intended_ms(self) -> float | None:
        """Open loop: response time measured from the scheduled arrival (coordinated-omission
        corrected: a request the client sent late still pays for the wait)."""
        if self.target_unix_s is None:
            return None
        return (self.t_end_unix_s - self.target_unix_s) * 1000.0


def _labels(s: str) -> tuple[int, ...]:
    return tuple(int(x) for x in s.split()) if s.strip() else ()


def read_request_records(paths: Iterable[str | os.PathLike[str]]) -> list[RequestRecord]:
    """All records of the per-process request CSVs, sorted by completion time.

    A torn last line (a process killed while writing) is skipped, never fatal.
    """
    out: list[RequestRecord] = []
    for path in paths:
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if any(v is None for v in row.values()):
                    continue  # torn: fewer fields than the header (restval None)
                try:
                    target = row.get("target_unix_s") or ""
                    out.append(
                        RequestRecord(
                            t_start_unix_s=float(row["t_start_unix_s"]),
                            t_end_unix_s=float(row["t_end_unix_s"]),
                            ok=row["ok"] == "1",
                            error=row.get("error") or "",
                            n_items=int(row.get("n_items") or 1),
                            true=_labels(row.get("true") or ""),
                            pred=_labels(row.get("pred") or ""),
                            target_unix_s=float(target) if target else None,
                        )
                    )
                except (KeyError, TypeError, ValueError):
                    continue
    out.sort(key=lambda r: r.t_end_unix_s)
    return out


def write_request_records(path: str | os.PathLike[str], records: Iterable[RequestRecord]) -> Path:
    """Write records in the locustfile's CSV format (used by tests and for merged copies)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(RECORD_COLUMNS)
        for r in records:
            w.writerow(record_row(r))
    return p


def record_row(r: RequestRecord) -> list[str]:
    """One CSV row (in :data:`RECORD_COLUMNS` order) for a record."""
    return [
        f"{r.t_start_unix_s:.6f}",
        f"{r.t_end_unix_s:.6f}",
        f"{r.latency_ms:.3f}",
        "1" if r.ok else "0",
        r.error,
        str(r.n_items),
        " ".join(str(x) for x in r.true),
        " ".join(str(x) for x in r.pred),
        "" if r.target_unix_s is None else f"{r.target_unix_s:.6f}",
    ]


def in_window(records: Iterable[RequestRecord], t0: float, t1: float) -> list[RequestRecord]:
    """Records that completed inside ``[t0, t1]``."""
    return [r for r in records if t0 <= r.t_end_unix_s <= t1]


def request_span(records: Sequence[RequestRecord]) -> tuple[float, float] | None:
    """``(first send, last completion)`` of a set of records — the steady window as the load
    client's own timestamps bound it."""
    if not records:
        return None
    return min(r.t_start_unix_s for r in records), max(r.t_end_unix_s for r in records)


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
    pairs = [
        (t, p) for r in ok if len(r.pred) == len(r.true) for t, p in zip(r.true, r.pred, strict=True)
    ]
    out: dict[str, Any] = {
        "requests": {"ok": len(ok), "failed": len(failed), "errors": dict(sorted(errors.items()))},
        "items_ok": sum(r.n_items for r in ok),
        "throughput_rps": (len(ok) / duration_s) if duration_s > 0 else None,
        "latency_ms": latency_summary([r.latency_ms for r in ok]),
        "served": classification_scores(pairs),
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


# --------------------------------------------------------------------------- repeats


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _mean_tree(items: list[Any]) -> Any:
    """Element-wise mean of numeric leaves of same-shaped trees; other leaves from the first.

    Keys ending in ``_unix_s`` and the ``marks`` dict hold instants, not quantities: they are
    taken from the first tree (a mean of Unix times is no time of anything).
    """
    first = items[0]
    if isinstance(first, dict):
        out = {}
        for k, v in first.items():
            if k.endswith("_unix_s") or k == "marks":
                out[k] = v
                continue
            out[k] = _mean_tree([it.get(k) if isinstance(it, dict) else None for it in items])
        return out
    if _is_num(first):
        if all(x == first for x in items):
            return first  # identical settings/counts stay as they are (8 users, not 8.0)
        nums = [x for x in items if _is_num(x)]
        if len(nums) == len(items):
            return sum(nums) / len(nums)
        return None
    return first


def aggregate_repeats(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """The top level of a multi-repeat ``summary.json``: the mean of every numeric field over
    the **ok** repeats, ``ci95`` for :data:`CI_METRICS`, and every repeat (failed ones too) under
    ``repeats``.

    ``status`` is ``"ok"`` only when every repeat is ok; a failed repeat is never averaged in —
    it is listed under ``repeats`` with its reason, counted in ``n_failed_repeats``, and named in
    the top-level ``failure_reason``. When no repeat is ok the numeric fields are ``None``.
    """
    if not repeats:
        raise ValueError("aggregate_repeats needs at least one repeat summary")
    ok = [r for r in repeats if r.get("status") == "ok"]
    failed = [(i + 1, r) for i, r in enumerate(repeats) if r.get("status") != "ok"]
    if ok:
        top = _mean_tree(ok)
    else:
        top = _blank_numbers(repeats[0])
    # Error breakdowns differ in keys between repeats: the mean per ok repeat, a reason absent
    # from a repeat counting 0 there (an element-wise mean would give None for it).
    if ok:
        errs: Counter[str] = Counter()
        for r in ok:
            errs.update(get_path(r, "requests.errors") or {})
        top["requests"]["errors"] = {k: v / len(ok) for k, v in sorted(errs.items())}
    # A mean over repeats measured by different meters is labelled by all of them, and takes the
    # weakest kind among them (estimated > replayed > measured: never a mixed mean passed off as
    # measured).
    kinds = sorted({r.get("energy_kind") for r in ok if r.get("energy_kind")})
    sources = sorted({r.get("energy_source") for r in ok if r.get("energy_source")})
    if len(kinds) > 1 or len(sources) > 1:
        top["energy_kind"] = combine_kinds(kinds)
        top["energy_source"] = "+".join(sources)
        top["warnings"] = [*(top.get("warnings") or []),
                           f"repeats were measured differently ({', '.join(sources)}; {', '.join(kinds)})"]
    top.pop("repeat", None)  # a repeat's index; the top level is no repeat (its mean is no index)
    top["ci95"] = {m: mean_ci95([get_path(r, m) for r in ok if _is_num(get_path(r, m))])[1]
                   for m in CI_METRICS}
    top["n_repeats"] = len(repeats)
    top["n_ok_repeats"] = len(ok)
    top["n_failed_repeats"] = len(failed)
    if failed:
        top["status"] = "failed"
        top["failure_reason"] = "; ".join(
            f"repeat {k}: {r.get('failure_reason') or 'failed'}" for k, r in failed
        )
    else:
        top["status"] = "ok"
        top["failure_reason"] = None
    top["repeats"] = repeats
    return top


def _blank_numbers(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _blank_numbers(v) for k, v in tree.items()}
    if _is_num(tree):
        return None
    return tree


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
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``summary.json`` of one repeat (docs/interfaces.md's schema, every field present).

    ``meta`` holds run_id, engine, variant, format, model; ``load`` the load description;
    ``records`` the steady-phase requests; ``window`` the steady window ``(t0, t1)`` in Unix
    seconds (the requests that completed inside it are counted); ``energy`` the records named
    ``system``, ``idle``, ``inference`` (and optionally ``warmup``). ``setup_failure`` marks a
    repeat that never reached its steady window (server never ready, sidecar down, …).
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
    per_1k = energy_per_1k(inf, n_ok)
    warns = list(warnings)
    client_counted = rs["requests"]["ok"] + rs["requests"]["failed"]
    if server_counted is not None and server_counted != client_counted:
        warns.append(
            f"client counted {client_counted} requests, the server's metrics {server_counted:g}"
        )
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
    out: dict[str, Any] = {
        "status": "failed" if reason else "ok",
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
        "latency_from_intended_ms": rs["latency_from_intended_ms"],
        "open_loop": rs["open_loop"],
        "served": rs["served"],
        "energy": {k: (None if v is None else v.to_dict()) for k, v in energy.items()},
        "energy_per_1k_wh": per_1k,
        # Independent series beside the primary meter (CodeCarbon, per-process attributions),
        # never summed into it: Wh per 1k ok requests of each, for comparison, each labelled
        # with its own source and kind like every other energy figure.
        "cross_checks_per_1k_wh": {
            dev: {"wh": energy_per_1k_wh(cc.get("energy_j"), n_ok),
                  "source": cc.get("source"), "kind": cc.get("kind")}
            for dev, cc in (inf.cross_checks if inf is not None else {}).items()
        },
        "j_per_request": j_per_request(inf, n_ok),
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
    return out
