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

from analysis.report.analyses import ReportOptions, analyse, chance_flag
from analysis.report.cli import build_report, main
from analysis.report.format import Builder, Section, fmt, fmt_ci, fmt_pct
from analysis.report.render import SECTION_IDS, SECTIONS
from analysis.report.sections_results import serving_plot_points

__all__ = ["SECTIONS", "SECTION_IDS", "Builder", "ReportOptions", "Section", "analyse", "build_report", "chance_flag",
           "fmt", "fmt_ci", "fmt_pct", "main", "serving_plot_points"]
