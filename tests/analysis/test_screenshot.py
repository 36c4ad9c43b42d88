"""Render the report in headless Chromium: non-trivial screenshot and every section in the DOM."""

from __future__ import annotations

import pytest

from analysis import screenshot
from analysis.report import SECTION_IDS, build_report
from analysis.synthetic import write_tree

needs_chromium = pytest.mark.skipif(screenshot.find_chromium() is None,
                                    reason="no chromium on PATH (Debian: apt-get install chromium)")


@needs_chromium
def test_report_renders_in_headless_chromium(tmp_path):
    root = write_tree(tmp_path / "results")
    html = build_report(root, root / "report")["html"]
    png = screenshot.screenshot(html, root / "report" / "screenshot.png", timeout_s=180)
    stats = screenshot.png_stats(png)
    assert (stats["width"], stats["height"]) == (1280, 9000)
    assert screenshot.check_png(png) == [], stats
    dom = screenshot.dump_dom(html, timeout_s=180)
    assert set(SECTION_IDS) <= screenshot.section_ids_in(dom)


def test_check_png_flags_a_blank_image(tmp_path):
    from PIL import Image

    p = tmp_path / "blank.png"
    Image.new("RGB", (1280, 4000), "white").save(p)
    problems = screenshot.check_png(p)
    assert any("flat colour" in x for x in problems) and any("distinct colours" in x for x in problems)
