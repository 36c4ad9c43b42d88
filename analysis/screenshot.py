"""Render the report in headless Chromium: a screenshot plus a DOM check of every section.

``python -m analysis.screenshot results/report/index.html --out results/report/screenshot.png``
exits 0 when the screenshot is a non-trivial image (not one flat colour) and every section id of
:data:`analysis.report.SECTION_IDS` is in the rendered DOM; otherwise it says what is wrong and
exits 1 (2 when no Chromium is installed).

Chromium runs with a fresh temporary profile and every background network feature off, so it
touches nothing but the local file.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from study.paths import Paths

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary on PATH (Debian's ``/usr/bin/chromium`` first)."""
    for name in CANDIDATES:
        p = shutil.which(name)
        if p:
            return p
    return None


def _base_args(binary: str, profile: str) -> list[str]:
    return [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
        f"--user-data-dir={profile}",
    ]


def _run(args: list[str], timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, check=False)


def screenshot(html: str | Path, out: str | Path, width: int = 1280, height: int = 9000,
               timeout_s: float = 120.0, binary: str | None = None) -> Path:
    """Screenshot ``html`` (a local file) into ``out`` (PNG). Raises RuntimeError on failure."""
    binary = binary or find_chromium()
    if not binary:
        raise FileNotFoundError("no chromium binary on PATH (Debian: apt-get install chromium)")
    html = Path(html).resolve()
    if not html.is_file():
        raise FileNotFoundError(f"report not found: {html}")
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_png = out.with_name(f".{out.name}.tmp.png")  # chromium writes directly; move into place after
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        args = _base_args(binary, profile) + [f"--screenshot={tmp_png}", f"--window-size={width},{height}",
                                              "--virtual-time-budget=3000", html.as_uri()]
        p = _run(args, timeout_s)
    if not tmp_png.exists() or tmp_png.stat().st_size == 0:
        tmp_png.unlink(missing_ok=True)
        raise RuntimeError(f"chromium wrote no screenshot (rc={p.returncode}): {p.stderr.strip()[-800:]}")
    tmp_png.replace(out)
    return out


def dump_dom(html: str | Path, timeout_s: float = 120.0, binary: str | None = None) -> str:
    """The DOM of ``html`` after Chromium has rendered it (``--dump-dom``)."""
    binary = binary or find_chromium()
    if not binary:
        raise FileNotFoundError("no chromium binary on PATH (Debian: apt-get install chromium)")
    html = Path(html).resolve()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        p = _run(_base_args(binary, profile) + ["--dump-dom", html.as_uri()], timeout_s)
    if p.returncode != 0 or "<html" not in p.stdout.lower():
        raise RuntimeError(f"chromium --dump-dom failed (rc={p.returncode}): {p.stderr.strip()[-800:]}")
    return p.stdout


def section_ids_in(dom: str) -> set[str]:
    """The ids of every ``<section id="…">`` in a DOM string."""
    return set(re.findall(r"<section[^>]*\bid=\"([^\"]+)\"", dom))


def png_stats(path: str | Path) -> dict[str, Any]:
    """Size, dimensions, colour count and pixel standard deviation of a PNG (via Pillow)."""
    from PIL import Image, ImageStat

    with Image.open(path) as im:
        rgb = im.convert("RGB")
        small = rgb.resize((max(1, rgb.width // 4), max(1, rgb.height // 4)))
        colors = small.getcolors(maxcolors=1 << 20)
        stat = ImageStat.Stat(rgb)
        return {
            "bytes": Path(path).stat().st_size,
            "width": rgb.width,
            "height": rgb.height,
            "n_colors": len(colors) if colors is not None else 1 << 20,
            "std": sum(stat.stddev) / 3.0,
        }


def check_png(path: str | Path, min_bytes: int = 20_000, min_std: float = 5.0, min_colors: int = 16) -> list[str]:
    """Problems that make the screenshot trivial (empty list when it looks like a real page)."""
    s = png_stats(path)
    problems = []
    if s["bytes"] < min_bytes:
        problems.append(f"screenshot only {s['bytes']} bytes (< {min_bytes})")
    if s["std"] < min_std:
        problems.append(f"pixel standard deviation {s['std']:.2f} < {min_std}: nearly one flat colour")
    if s["n_colors"] < min_colors:
        problems.append(f"only {s['n_colors']} distinct colours (< {min_colors})")
    return problems


def main(argv: list[str] | None = None) -> int:
    from analysis.report import SECTION_IDS

    ap = argparse.ArgumentParser(prog="python -m analysis.screenshot",
                                 description="Render the HTML report in headless Chromium, save a screenshot "
                                             "and check that every report section is present.")
    ap.add_argument("html", nargs="?", default=None,
                    help="report to render (default: index.html in <results root>/report; the results root is "
                         "$RESULTS_DIR, else results)")
    ap.add_argument("--out", default=None, help="PNG path (default: screenshot.png beside the report)")
    ap.add_argument("--width", type=int, default=1280, help="window width [px]")
    ap.add_argument("--height", type=int, default=9000, help="window height [px] (tall enough for the whole report)")
    ap.add_argument("--timeout-s", type=float, default=120.0, help="per Chromium call")
    a = ap.parse_args(argv)
    if a.html is None:
        a.html = str(Paths.from_env().report / "index.html")
    out = Path(a.out) if a.out else Path(a.html).with_name("screenshot.png")
    if not find_chromium():
        print("no chromium on PATH: install it (Debian: apt-get install chromium) to check the report",
              file=sys.stderr)
        return 2
    try:
        png = screenshot(a.html, out, a.width, a.height, a.timeout_s)
        problems = check_png(png)
        dom = dump_dom(a.html, a.timeout_s)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as e:  # one line, not a traceback
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    missing = [s for s in SECTION_IDS if s not in section_ids_in(dom)]
    if missing:
        problems.append("sections missing from the rendered DOM: " + ", ".join(missing))
    s = png_stats(png)
    print(f"screenshot: {png} ({s['width']}×{s['height']} px, {s['bytes']} bytes, {s['n_colors']} colours)")
    if problems:
        for p in problems:
            print(f"FAIL: {p}", file=sys.stderr)
        return 1
    print(f"ok: all {len(SECTION_IDS)} sections present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
