"""The study report: one self-contained HTML page (plots embedded, no network) plus Markdown.

``python -m analysis.report [--results-dir ROOT] [--out DIR]`` (ROOT: the results root,
default ``$RESULTS_DIR``, else ``results``; DIR: default ``<ROOT>/report``) runs the
aggregation, the stacking / trade-off / lifecycle analyses and the plots, and writes
``index.html``, ``report.md``, ``figures/*.png`` and ``analysis.json`` under ``--out``.

Every section has a stable ``id`` (see :data:`SECTION_IDS`). A section whose data is missing
says so in place; a section that fails to build shows the error instead of breaking the report.

Modules: :mod:`~analysis.report.analyses` (options and the analyses), :mod:`~analysis.report.format`
(numbers, tables, :class:`Builder`), :mod:`~analysis.report.sections_results` and
:mod:`~analysis.report.sections_findings` (the sections), :mod:`~analysis.report.render` (their
order, the HTML page and the Markdown), :mod:`~analysis.report.cli` (``build_report``, ``main``).
"""

from analysis.report.analyses import (
    ACCURACY_FLOOR,
    SERVE_METRIC_LABEL,
    ReportOptions,
    accuracy_floor,
    analyse,
    chance_flag,
    effective_serve_metric,
)
from analysis.report.cli import build_report, main
from analysis.report.format import (
    Builder,
    Section,
    esc,
    fmt,
    fmt_ci,
    fmt_pct,
    html_table,
    md_table,
    metric_ci,
    note,
)
from analysis.report.render import (
    CSS,
    SECTION_IDS,
    SECTIONS,
    build_sections,
    render_html,
    render_md,
)
from analysis.report.sections_results import serving_plot_points

__all__ = [
    "ACCURACY_FLOOR", "CSS", "SECTIONS", "SECTION_IDS", "SERVE_METRIC_LABEL", "Builder", "ReportOptions", "Section",
    "accuracy_floor", "analyse", "build_report", "build_sections", "chance_flag", "effective_serve_metric", "esc",
    "fmt", "fmt_ci", "fmt_pct", "html_table", "main", "md_table", "metric_ci", "note", "render_html", "render_md",
    "serving_plot_points",
]
