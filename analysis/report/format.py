"""Formatting for the report: numbers with confidence intervals, HTML and Markdown tables,
callouts, and :class:`Builder`, which writes one section's HTML and Markdown side by side."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis import plots
from analysis.io import write_bytes_atomic


@dataclass
class Section:
    id: str
    title: str
    html: str
    md: str



def fmt(x: Any, digits: int = 3) -> str:
    """Numbers to 3 significant-ish figures; None/NaN → an em dash."""
    if x is None or isinstance(x, bool):
        return "—" if x is None else str(x)
    if isinstance(x, (int, float)):
        f = float(x)
        if not math.isfinite(f):
            return "—"
        if f == 0:
            return "0"
        a = abs(f)
        if a >= 1000 or a < 1e-3:
            return f"{f:.{digits}g}" if a < 1e-3 else f"{f:,.0f}"
        return f"{f:.{max(0, digits - 1 - int(math.floor(math.log10(a))))}f}"
    return str(x)


def fmt_pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def fmt_ci(mean: float | None, ci: Sequence[float] | None, n: int | None = None, pct: bool = False) -> str:
    """``0.123 [0.110, 0.136]``; ``0.123 (n=1, no CI)`` when there is no interval."""
    f = fmt_pct if pct else fmt
    if mean is None:
        return "—"
    if ci:
        return f"{f(mean)} [{f(ci[0])}, {f(ci[1])}]"
    return f"{f(mean)} (n={n}, no CI)" if n is not None else f"{f(mean)} (no CI)"


def metric_ci(entry: dict[str, Any], metric: str, scale: float = 1.0) -> str:
    s = entry.get("metrics", {}).get(metric)
    if not s or s.get("mean") is None:
        return "—"
    ci = s.get("ci95")
    if not ci:  # the table's n column already says why there is no interval
        return fmt(s["mean"] * scale)
    return fmt_ci(s["mean"] * scale, [c * scale for c in ci], s.get("n"))


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def html_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], highlight: set[int] | None = None) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for i, r in enumerate(rows):
        cls = ' class="hl"' if highlight and i in highlight else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>")
    return f'<div class="tw"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def md_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def note(text: str, kind: str = "info") -> tuple[str, str]:
    """A callout box (HTML) and its Markdown equivalent."""
    return f'<p class="note {kind}">{esc(text)}</p>', f"> {text}"


class Builder:
    """Accumulates one section's HTML and Markdown side by side."""

    def __init__(self, fig_dir: Path, sec_id: str):
        self.h: list[str] = []
        self.m: list[str] = []
        self.fig_dir = fig_dir
        self.sec_id = sec_id
        self._n = 0

    def p(self, text: str) -> None:
        self.h.append(f"<p>{esc(text)}</p>")
        self.m.append(text)

    def raw(self, h: str, m: str) -> None:
        self.h.append(h)
        self.m.append(m)

    def note(self, text: str, kind: str = "info") -> None:
        self.raw(*note(text, kind))

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], highlight: set[int] | None = None) -> None:
        self.raw(html_table(columns, rows, highlight), md_table(columns, rows))

    def figure(self, fig, caption: str) -> None:
        png = plots.to_png(fig)
        self._n += 1
        name = f"{self.sec_id}-{self._n}.png"
        write_bytes_atomic(self.fig_dir / name, png)
        b64 = base64.b64encode(png).decode("ascii")
        self.h.append(f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{b64}">'
                      f"<figcaption>{esc(caption)}</figcaption></figure>")
        self.m.append(f"![{caption}](figures/{name})\n\n*{caption}*")
