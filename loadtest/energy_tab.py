"""The Energy tab of Locust's web UI (loadtest/locustfile.py): live power, energy so far, Wh per
1k requests since the test started (gross; server-attributed where the power trace carries the
server's ``pid:<n>`` series) and served accuracy, from a power sidecar's CSV through
:mod:`energy.trace` (the study's single integration path). Every figure carries its meter
(``source``) and ``kind``.

Plain functions and a class that tests call directly; Flask is imported only by
:func:`extend_web_ui`, when Locust has a web UI.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadtest.live import ServedTally

# Live power is the mean over this many seconds before the newest sample (one sample of an
# estimate or a 1 s-averaged NVML power is too jumpy to read).
LIVE_POWER_WINDOW_S = 2.0
# The power CSV is re-read at most this often, however often the web UI polls.
REFRESH_S = 1.0

COLUMNS = ("figure", "value", "unit", "meter", "kind", "covers")
TABLE_STRUCTURE = [{"key": k, "title": k.capitalize()} for k in COLUMNS]


def _fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4g}"


class EnergyView:
    """The Energy tab's figures since ``start(t0)``, from a power sidecar CSV.

    ``power_csv`` None means energy is off (``--meter off``): the figures say so. Power and
    energy come from :func:`energy.trace.record_from_readings` (the study's integration), so
    they are what ``make load`` would compute from the same trace over the same window.
    """

    def __init__(self, power_csv: str | os.PathLike[str] | None, *, server_pid: int | None = None,
                 meter_note: str = "") -> None:
        self.power_csv = Path(power_csv) if power_csv else None
        self.server_pid = server_pid
        self.meter_note = meter_note
        self.t0: float | None = None
        self._cache: tuple[float, list] | None = None

    def start(self, t0: float | None = None) -> None:
        self.t0 = time.time() if t0 is None else t0

    def _readings(self) -> list:
        from energy.trace import read_readings

        now = time.monotonic()
        if self._cache is not None and now - self._cache[0] < REFRESH_S:
            return self._cache[1]
        try:
            rs = read_readings(self.power_csv) if self.power_csv else []
        except (OSError, ValueError):
            rs = []
        self._cache = (now, rs)
        return rs

    def figures(self, tally: ServedTally) -> list[dict[str, Any]]:
        """Rows ``{key, figure, value, unit, meter, kind, covers}`` (``value`` None = n/a)."""
        from energy.trace import record_from_readings
        from loadtest.summary import energy_per_1k_wh

        rows: list[dict[str, Any]] = []

        def row(key: str, figure: str, value: float | None, unit: str, meter: str, kind: str,
                covers: str) -> None:
            rows.append({"key": key, "figure": figure, "value": value, "unit": unit,
                         "meter": meter, "kind": kind, "covers": covers})

        readings = self._readings()
        t_last = max((r.t_unix_s for r in readings), default=None)
        since = "since the test started" if self.t0 is not None else "no test started yet"
        if self.power_csv is None:
            for key, fig, unit in (("power", "Live power", "W"), ("energy", "Energy so far", "Wh"),
                                   ("per1k_gross", "Energy per 1k requests, gross", "Wh/1k")):
                row(key, fig, None, unit, "none", "not measured", self.meter_note or "energy is off")
        elif not readings or t_last is None:
            for key, fig, unit in (("power", "Live power", "W"), ("energy", "Energy so far", "Wh"),
                                   ("per1k_gross", "Energy per 1k requests, gross", "Wh/1k")):
                row(key, fig, None, unit, "none", "not measured",
                    f"no samples yet in {self.power_csv}")
        else:
            live = record_from_readings(readings, t_last - LIVE_POWER_WINDOW_S, t_last, name="live")
            row("power", "Live power", None if live.gross_j is None or live.duration_s <= 0
                else live.gross_j / live.duration_s, "W", live.source, live.kind,
                f"machine, mean of the last {LIVE_POWER_WINDOW_S:g} s")
            rec = None
            if self.t0 is not None and t_last > self.t0:
                rec = record_from_readings(readings, self.t0, t_last, name="so_far")
            src = rec.source if rec else live.source
            kind = rec.kind if rec else live.kind
            gross = rec.gross_j if rec else None
            flags = f"; {'; '.join(rec.flags)}" if rec and rec.flags else ""
            row("energy", "Energy so far", None if gross is None else gross / 3600.0, "Wh", src, kind,
                f"machine, {since}{flags}")
            row("per1k_gross", "Energy per 1k requests, gross",
                energy_per_1k_wh(gross, tally.ok), "Wh/1k", src, kind,
                f"machine energy ÷ {tally.ok} ok requests, {since}")
            server_key = f"pid:{self.server_pid}" if self.server_pid else None
            attributed = False
            for dev, cc in sorted((rec.cross_checks if rec else {}).items()):
                if dev.startswith("pid:"):
                    if server_key is not None and dev != server_key:
                        continue
                    attributed = True
                    row("per1k_server", "Energy per 1k requests, server-attributed",
                        energy_per_1k_wh(cc.get("energy_j"), tally.ok), "Wh/1k",
                        str(cc.get("source")), str(cc.get("kind")),
                        f"server process {dev[4:]}: the dynamic CPU power it adds, {since}")
                else:
                    row(f"per1k_{dev}", f"Energy per 1k requests, {dev} cross-check",
                        energy_per_1k_wh(cc.get("energy_j"), tally.ok), "Wh/1k",
                        str(cc.get("source")), str(cc.get("kind")),
                        f"independent series, never summed into gross, {since}")
            if not attributed:
                row("per1k_server", "Energy per 1k requests, server-attributed", None, "Wh/1k",
                    "none", "not measured",
                    "the power trace has no series of the server process (make locust starts the "
                    "sidecar with the server's pid; the estimate meter attributes it)")
        sc = tally.scores()
        n = sc.get("n_scored") or 0
        check = f"client check of {n} predictions against the true labels"
        row("accuracy", "Served accuracy so far", sc.get("accuracy"), "fraction", check, "measured",
            f"{tally.ok} ok, {tally.failed} failed requests, {since}")
        row("baseline", "Majority-class baseline accuracy", sc.get("majority_baseline_accuracy"),
            "fraction", check, "measured", "always predicting the commoner true label of the same requests")
        row("f1", "Served F1 (vulnerable = 1)", sc.get("f1"), "fraction", check, "measured", since)
        return rows

    def snapshot(self, tally: ServedTally, **meta: Any) -> dict[str, Any]:
        """The data endpoint's body: the rows plus when and what they cover."""
        return {"t_unix_s": time.time(), "test_start_unix_s": self.t0,
                "power_csv": str(self.power_csv) if self.power_csv else None,
                "requests": {"ok": tally.ok, "failed": tally.failed},
                **meta, "figures": self.figures(tally)}


def ui_rows(figures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for Locust's extended table (values formatted, ``n/a`` when unknown)."""
    return [{**{k: f[k] for k in COLUMNS}, "value": _fmt(f["value"])} for f in figures]


def figures_csv(figures: list[dict[str, Any]]) -> str:
    """The figures as CSV text (``figure,value,unit,meter,kind,covers``; empty value = n/a)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for f in figures:
        w.writerow([f["figure"], "" if f["value"] is None else repr(float(f["value"])), f["unit"],
                    f["meter"], f["kind"], f["covers"]])
    return buf.getvalue()


def figures_html(figures: list[dict[str, Any]]) -> str:
    """A self-contained ``<section>`` for Locust's HTML report (escaped, no script)."""
    head = "".join(f"<th style='text-align:left;padding:4px 8px'>{c.capitalize()}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>" + "".join(
            f"<td style='padding:4px 8px;border-top:1px solid #ccc'>"
            f"{html.escape(_fmt(f[c]) if c == 'value' else str(f[c]))}</td>" for c in COLUMNS
        ) + "</tr>"
        for f in figures
    )
    return ("<section id='gps-energy' style='font-family:sans-serif;max-width:1200px;margin:24px auto;"
            "padding:0 24px'><h2>Energy</h2><table style='border-collapse:collapse'><thead><tr>"
            f"{head}</tr></thead><tbody>{body}</tbody></table></section>")


def inject_html(report: str, figures: list[dict[str, Any]]) -> str:
    """``report`` (Locust's HTML report) with the Energy section before ``</body>``."""
    section = figures_html(figures)
    i = report.rfind("</body>")
    return report + section if i < 0 else report[:i] + section + report[i:]


def extend_web_ui(environment: Any, snapshot: Callable[[], dict[str, Any]]) -> None:
    """The Energy tab, as Locust's own ``extend_web_ui`` example does it: a tab and its table
    in the template arguments, its rows in ``extended_stats`` of ``/stats/requests``; also
    ``GET /energy`` (JSON), ``GET /energy/csv`` and the section in the HTML report. ``snapshot``
    returns :meth:`EnergyView.snapshot` of the current test."""
    from flask import Response, jsonify, request

    web_ui = environment.web_ui
    web_ui.template_args["extended_tabs"] = [{"title": "Energy", "key": "energy"}]
    web_ui.template_args["extended_tables"] = [{"key": "energy", "structure": TABLE_STRUCTURE}]
    web_ui.template_args["extended_csv_files"] = [
        {"href": "./energy/csv", "title": "Download energy figures CSV"}]

    @web_ui.app.after_request
    def _extend(response):
        if request.path.endswith("/stats/requests") and response.is_json:
            body = response.get_json()
            body["extended_stats"] = [{"key": "energy", "data": ui_rows(snapshot()["figures"])}]
            response.set_data(json.dumps(body))
        elif request.path.endswith("/stats/report") and response.mimetype == "text/html":
            response.set_data(inject_html(response.get_data(as_text=True),
                                               snapshot()["figures"]))
        return response

    @web_ui.app.route("/energy")
    def _energy():
        return jsonify(snapshot())

    @web_ui.app.route("/energy/csv")
    def _energy_csv():
        return Response(figures_csv(snapshot()["figures"]), mimetype="text/csv",
                        headers={"Content-Disposition": "attachment;filename=energy.csv"})
