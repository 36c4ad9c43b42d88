"""The report builds from full, partial and empty results trees and has every section."""

from __future__ import annotations

import re
import shutil

import pytest

from analysis.report import (
    SECTION_IDS,
    ReportOptions,
    build_report,
    fmt,
    fmt_ci,
    serving_plot_points,
)
from analysis.synthetic import write_tree


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = write_tree(tmp_path_factory.mktemp("results"))
    paths = build_report(root, root / "report")
    return root, paths


def _section(html: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', html, re.S)
    assert m, f"section {sid} missing"
    return m.group(1)


def test_every_section_present_in_html_and_md(built):
    _, paths = built
    html = paths["html"].read_text()
    md = paths["md"].read_text()
    for sid in SECTION_IDS:
        assert f'<section id="{sid}">' in html
        assert f'<a id="{sid}"></a>' in md


def test_self_contained_and_labelled(built):
    root, paths = built
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") == 5  # stages, energy-F1, serving, latency, timeline (no sweep)
    assert not re.search(r'(src|href)="https?://', html)  # no network fetches
    assert "<link" not in html and "<script" not in html
    assert "SYNTHETIC DATA" in html  # fixture data is never passed off as a measurement
    assert len(list((root / "report" / "figures").glob("*.png"))) == 5
    assert "estimated · replay" in _section(html, "methods")


def test_stacking_and_findings_content(built):
    _, paths = built
    html = paths["html"].read_text()
    stack = _section(html, "stacking")
    assert "v2+v7+v8" in stack and "compounding" in stack and "multiplicative" in stack
    findings = _section(html, "findings")
    assert "Choice:" in findings and "lowest energy" in findings
    # every energy figure in these tables says measured/estimated and by which meter
    assert "energy (kind · meter)" in stack and "estimated · replay" in stack
    assert findings.count("estimated · replay") >= 2
    failed = _section(html, "failed")
    assert "v13" in failed and "synthetic failure" in failed and "incomplete" in failed


def test_lifecycle_matches_energy_carbon(built):
    root, _ = built
    import json

    from energy import carbon

    an = json.loads((root / "report" / "analysis.json").read_text())
    rows = an["lifecycle"]
    assert {r["country"] for r in rows} == {"DEU", "FIN", "FRA", "USA"}
    r = next(r for r in rows if r["country"] == "DEU")
    kwh = r["requests_per_day"] * r["days"] * r["j_per_request"] / 3.6e6
    assert r["serving_kwh"] == pytest.approx(kwh)
    assert r["serving_co2_kg"] == pytest.approx(kwh * carbon.grid_intensity("DEU") / 1000)


@pytest.mark.parametrize("keep", ["nothing", "train", "load"])
def test_partial_results_say_what_is_missing(tmp_path, built, keep):
    src, _ = built
    root = tmp_path / "r"
    root.mkdir()
    if keep != "nothing":
        shutil.copytree(src / keep, root / keep)
    paths = build_report(root, root / "report")
    html = paths["html"].read_text()
    for sid in SECTION_IDS:
        body = _section(html, sid)
        assert "could not be built" not in body, f"{sid} crashed: {body[:400]}"
    if keep != "load":
        assert "No successful load runs" in _section(html, "serving-energy")
        assert "No load run has a power.csv" in _section(html, "power-timeline")
    if keep != "train":
        assert "No successful training results" in _section(html, "training-energy")
    assert "No combination variant" in _section(html, "stacking") or keep != "nothing"


def test_unknown_region_is_reported_in_section(tmp_path, built):
    src, _ = built
    root = tmp_path / "r"
    shutil.copytree(src / "load", root / "load")
    paths = build_report(root, root / "report", ReportOptions(countries=["XXX"]))
    body = _section(paths["html"].read_text(), "lifecycle")
    assert "unknown country code" in body


def test_formatting_helpers():
    assert fmt(None) == "—" and fmt(float("nan")) == "—"
    assert fmt(0.12345) == "0.123" and fmt(12.345) == "12.3" and fmt(12345.0) == "12,345"
    assert fmt_ci(1.0, None, 1) == "1.00 (n=1, no CI)"
    assert fmt_ci(1.0, [0.5, 1.5]) == "1.00 [0.500, 1.50]"


def test_sweep_section_shows_the_studys_pareto_set(tmp_path):
    import optuna

    from analysis.sweep import export_study

    study = optuna.create_study(directions=["minimize", "maximize"], storage=f"sqlite:///{tmp_path / 'study.db'}")
    study.set_metric_names(["train.energy_kwh.training", "train.mcc"])
    for rid, e, acc in (("t0000-a", 2e-5, 0.60), ("t0001-b", 1e-5, 0.40), ("t0002-c", 3e-5, 0.55)):
        study.add_trial(optuna.create_trial(values=[e, acc], user_attrs={
            "run_id": rid, "variant": "v2+v7", "set": {"training.tiny_learning_rate": 0.001},
            "energy_kind": "estimated", "energy_source": "estimate", "host": "box"}))
    study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={
        "run_id": "t0003-d", "variant": "v13", "failure_reason": "boom"}))
    best = export_study(study, tmp_path / "sweep", f"sqlite:///{tmp_path / 'study.db'}")
    assert set(best["pareto"]) == {"t0000-a", "t0001-b"}  # c is dominated by a
    html = build_report(tmp_path, tmp_path / "report")["html"].read_text()
    body = _section(html, "sweep")
    assert "t0003-d" in body and "boom" in body and "train.mcc" in body
    assert "Pareto set (study.best_trials): t0001-b, t0000-a" in body
    assert "data:image/png;base64," in body
    assert body.count('class="hl"') == 2  # the Pareto trials a and b are highlighted


def test_clis_run_on_a_tree(tmp_path, built, capsys):
    from analysis import aggregate as agg_mod
    from analysis import report as report_mod

    src, _ = built
    root = tmp_path / "r"
    shutil.copytree(src / "train", root / "train")
    assert agg_mod.main(["--results-dir", str(root)]) == 0
    assert report_mod.main(["--results-dir", str(root), "--out", str(tmp_path / "rep"), "--countries", "fra,deu",
                            "--p99-max-ms", "50", "--f1-min", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "report:" in out and (tmp_path / "rep" / "index.html").exists()
    with pytest.raises(SystemExit):
        report_mod.main(["--train-energy-metric", "energy_kwh.bogus"])


def test_serving_plot_points_are_unique_per_setting():
    # same engine and variant in two formats: the dominated int8 point must not share the front's id
    cands = [{"engine": "onnxruntime", "variant": "v0", "format": f, "load": "closed-u4",
              "energy_per_1k_wh": e, "accuracy": f1} for f, e, f1 in (("onnx", 0.006, 0.63), ("onnx-int8", 0.005, 0.61))]
    cands.append({**cands[0], "format": "onnx", "load": "closed-u8"})
    ids = [p.id for p in serving_plot_points(cands)]
    assert len(set(ids)) == 3 and "v0·onnxruntime·onnx-int8·closed-u4" in ids
