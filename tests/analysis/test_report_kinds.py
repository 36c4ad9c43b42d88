"""A results tree whose energy is replayed is reported as replayed, never as measured."""

from __future__ import annotations

import re

from analysis.report import build_report
from analysis.synthetic import write_tree


def test_replayed_figures_are_labelled_replayed(tmp_path):
    root = write_tree(tmp_path / "results")
    for f in root.rglob("*.json"):  # the synthetic tree, as if its trace had been a replayed NVML one
        text = f.read_text()
        f.write_text(re.sub(r'"(energy_kind|kind)": "estimated"', r'"\1": "replayed"', text))
    html = build_report(root, root / "report")["html"].read_text()
    methods = re.search(r'<section id="methods">(.*?)</section>', html, re.S).group(1)
    assert "replayed · replay" in methods
    assert "REPLAYED" in methods and "not measured during this run" in methods
    assert "measured · replay" not in html
