"""The report's sections in order (their stable ids), and the page around them: HTML with
embedded CSS, and Markdown."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from analysis import compression
from analysis.aggregate import Aggregate
from analysis.report.analyses import ReportOptions
from analysis.report.format import Builder, Section, esc
from analysis.report.sections_findings import (
    sec_failed,
    sec_findings,
    sec_lifecycle,
    sec_methods,
    sec_power_timeline,
    sec_stacking,
    sec_sweep,
)
from analysis.report.sections_results import (
    sec_energy_f1,
    sec_latency,
    sec_overview,
    sec_serving_energy,
    sec_training_energy,
)

SECTION_IDS = (
    "overview",
    "training-energy",
    "energy-f1",
    "serving-energy",
    "latency",
    "power-timeline",
    "stacking",
    "lifecycle",
    "findings",
    "compression",
    "sweep",
    "failed",
    "methods",
)


SECTIONS: tuple[tuple[str, str, Callable], ...] = (
    ("overview", "Overview", sec_overview),
    ("training-energy", "Training energy per stage", sec_training_energy),
    ("energy-f1", "Energy vs accuracy and the Pareto front", sec_energy_f1),
    ("serving-energy", "Serving energy per 1k requests", sec_serving_energy),
    ("latency", "Latency percentiles", sec_latency),
    ("power-timeline", "Power timeline of a load run", sec_power_timeline),
    ("stacking", "Do savings stack?", sec_stacking),
    ("lifecycle", "Lifecycle projection: a year of serving", sec_lifecycle),
    ("findings", "SLO-constrained choice and key findings", sec_findings),
    ("compression", "Compression: size, accuracy, energy and break-even", compression.section),
    ("sweep", "Sweep (Optuna study)", sec_sweep),
    ("failed", "Failed and incomplete runs", sec_failed),
    ("methods", "Methods and honesty note", sec_methods),
)
assert tuple(s[0] for s in SECTIONS) == SECTION_IDS


CSS = """
:root{--fg:#1d2430;--muted:#5b6675;--bg:#f6f7f9;--card:#fff;--acc:#1b6ca8;--ok:#2a9d5c;--warn:#c77c02;--err:#c0392b}
*{box-sizing:border-box}body{margin:0;font:15px/1.5 -apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:var(--fg);background:var(--bg)}header{background:linear-gradient(120deg,#0b3d2e,#1b6ca8);color:#fff;
padding:28px 40px}header h1{margin:0 0 4px;font-size:26px}header p{margin:0;opacity:.85}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #e3e6ea;padding:8px 40px;z-index:2;
display:flex;flex-wrap:wrap;gap:6px 16px;font-size:13px}nav a{color:var(--acc);text-decoration:none}
main{max-width:1180px;margin:0 auto;padding:20px 40px 60px}section{background:var(--card);border-radius:10px;
box-shadow:0 1px 3px rgba(0,0,0,.08);padding:18px 24px;margin:18px 0}section h2{margin:0 0 10px;font-size:20px;
border-bottom:2px solid #eef1f4;padding-bottom:6px}h3{font-size:16px;margin:16px 0 6px}
figure{margin:10px 0;text-align:center}figure img{max-width:100%;height:auto;border:1px solid #eef1f4;border-radius:6px}
figcaption{font-size:13px;color:var(--muted);margin-top:4px}.tw{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0}th,td{padding:5px 8px;border-bottom:1px solid #eceff2;
text-align:left;vertical-align:top}th{background:#f1f4f7;font-weight:600}tr.hl td{background:#e8f6ee;font-weight:600}
tbody tr:hover td{background:#f8fafc}.note{padding:8px 12px;border-radius:6px;border-left:4px solid var(--acc);background:#eef5fb}
.note.warn{border-color:var(--warn);background:#fdf5e6}.note.ok{border-color:var(--ok);background:#e8f6ee}
.note.err{border-color:var(--err);background:#fbeaea}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:6px 0 12px}
.card{flex:1 1 170px;background:#f6f9fc;border:1px solid #e3e9ef;border-radius:8px;padding:10px 14px}
.card .k{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}.card .v{font-size:20px;font-weight:700}
.banner{background:#c0392b;color:#fff;text-align:center;padding:8px;font-weight:700;letter-spacing:.05em}
pre{white-space:pre-wrap;font-size:12px;background:#f4f4f4;padding:8px;border-radius:6px}
footer{color:var(--muted);font-size:12px;text-align:center;padding:20px}
"""


def build_sections(agg: Aggregate, an: dict[str, Any], opts: ReportOptions, fig_dir: Path) -> list[Section]:
    """Build every section; an exception inside one section becomes an error note in it."""
    out = []
    for sid, title, fn in SECTIONS:
        b = Builder(fig_dir, sid)
        try:
            fn(b, agg, an, opts)
        except Exception as e:  # a broken section must not take the whole report down
            tb = traceback.format_exc(limit=3)
            b.note(f"This section could not be built: {type(e).__name__}: {e}", "err")
            b.raw(f"<pre>{esc(tb)}</pre>", f"```\n{tb}\n```")
        out.append(Section(sid, title, "\n".join(b.h), "\n\n".join(b.m)))
    return out


def render_html(sections: list[Section], synthetic: bool, generated: str) -> str:
    nav = " ".join(f'<a href="#{s.id}">{esc(s.title)}</a>' for s in sections)
    body = "\n".join(f'<section id="{s.id}"><h2>{esc(s.title)}</h2>\n{s.html}\n</section>' for s in sections)
    banner = ('<div class="banner">SYNTHETIC DATA — these results come from a generated fixture, '
              "not from a measurement</div>") if synthetic else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>green-pipeline-study — report</title>
<style>{CSS}</style></head>
<body>{banner}
<header><h1>green-pipeline-study — what do energy-saving techniques really save?</h1>
<p>ModernBERT vulnerability detector (BigVul): training and serving energy, latency and F1 per technique
and serving stack. Generated {esc(generated)}.</p></header>
<nav>{nav}</nav>
<main>
{body}
</main>
<footer>Self-contained report: figures are embedded; no network access needed.</footer>
</body></html>
"""


def render_md(sections: list[Section], synthetic: bool, generated: str) -> str:
    parts = ["# green-pipeline-study — report", "", f"Generated {generated}."]
    if synthetic:
        parts += ["", "> **SYNTHETIC DATA** — these results come from a generated fixture, not from a measurement."]
    for s in sections:
        parts += ["", f'<a id="{s.id}"></a>', "", f"## {s.title}", "", s.md]
    return "\n".join(parts) + "\n"

