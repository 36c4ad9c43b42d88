"""study.paths: the one module that spells the artifacts/ and results/ layout."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from study.paths import REPO_ROOT, Paths, artifacts_root, results_root, setting_name

# The names of the layout below the two roots; joined onto a path (``x / "train"``) or spelt
# as a root ("results", "artifacts/…") they belong in study/paths.py only.
LAYOUT_NAMES = {"artifacts", "results", "train", "runs", "checkpoints", "compress", "load", "locust",
                "bench", "sweep", "power", "tables", "report", "model", "triton", "gpu-validation",
                "aggregated_metrics.json"}
ROOTS = ("artifacts", "results")
PACKAGES = ("study", "energy", "training", "serving", "loadtest", "analysis")


def test_roots_come_from_the_argument_then_the_environment_then_the_default(monkeypatch, tmp_path):
    monkeypatch.delenv("ARTIFACTS", raising=False)
    monkeypatch.delenv("RESULTS_DIR", raising=False)
    assert artifacts_root() == REPO_ROOT / "artifacts"
    assert results_root() == REPO_ROOT / "results"
    monkeypatch.setenv("ARTIFACTS", str(tmp_path / "a"))
    monkeypatch.setenv("RESULTS_DIR", "elsewhere")
    assert artifacts_root() == tmp_path / "a"
    assert results_root() == REPO_ROOT / "elsewhere"  # relative: from the repo root
    assert results_root(tmp_path / "r") == tmp_path / "r"


def test_every_directory_of_the_layout(tmp_path):
    p = Paths(tmp_path / "art", tmp_path / "res")
    assert p.model_dir("v2+v8") == tmp_path / "art" / "v2+v8" / "model"
    assert p.format_dir("v0", "onnx-int8") == tmp_path / "art" / "v0" / "onnx-int8"
    assert p.train_run("v0", "r1") == tmp_path / "res" / "train" / "v0" / "runs" / "r1"
    assert p.train_result("v0") == tmp_path / "res" / "train" / "v0" / "result.json"
    assert p.compress("v0@qat") == tmp_path / "res" / "compress" / "v0@qat"
    assert p.load_run("triton", "v0", "x") == tmp_path / "res" / "load" / "triton__v0" / "x"
    assert p.locust_run("vllm", "v1", "x") == tmp_path / "res" / "locust" / setting_name("vllm", "v1") / "x"
    assert p.report.parent == p.tables.parent == p.sweep.parent == p.bench.parent == tmp_path / "res"
    trial = Paths.for_trial(tmp_path / "trial-3")
    assert trial.results == tmp_path / "trial-3" and trial.model_dir("v0").is_relative_to(trial.results)


def test_variants_with_model_lists_trained_models_only(tmp_path):
    p = Paths(tmp_path / "art", tmp_path / "res")
    assert p.variants_with_model() == []
    (p.model_dir("v2")).mkdir(parents=True)
    (p.model_dir("v2") / "config.json").write_text("{}")
    p.format_dir("v0", "onnx").mkdir(parents=True)
    assert p.variants_with_model() == ["v2"]


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _layout_spellings(path: Path) -> list[str]:
    """Where ``path`` spells the layout: a root as a string ("results", "artifacts/v0/…") or a
    layout name joined onto a path with ``/``. Docstrings and help text are prose, not paths."""
    tree = ast.parse(path.read_text(), str(path))
    docs = _docstring_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            right = node.right
            if isinstance(right, ast.Constant) and right.value in LAYOUT_NAMES:
                found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: / {right.value!r}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            v = node.value
            if v in ROOTS or any(v.startswith(r + "/") for r in ROOTS):
                found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {v!r}")
    return found


def test_only_the_paths_module_spells_the_layout():
    offenders = []
    for pkg in PACKAGES:
        for f in sorted((REPO_ROOT / pkg).rglob("*.py")):
            if f == REPO_ROOT / "study" / "paths.py":
                continue
            offenders += _layout_spellings(f)
    assert not offenders, "the artifacts/results layout is spelt outside study/paths.py:\n" + "\n".join(offenders)


def test_the_grep_catches_what_it_is_for(tmp_path):
    bad = REPO_ROOT / "study" / "_layout_probe_test_only.py"
    bad.write_text('from pathlib import Path\nroot = Path("results")\nx = root / "train" / "v0"\n')
    try:
        found = _layout_spellings(bad)
    finally:
        bad.unlink()
    assert len(found) == 2, found


def test_the_packages_import_without_pythonpath(tmp_path):
    """`make venv` installs the checkout editable: no PYTHONPATH needed, from any directory."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = "import study.paths, energy, training, serving, loadtest, analysis; print(study.paths.REPO_ROOT)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, f"not importable without PYTHONPATH (run `make venv`): {proc.stderr[-2000:]}"
    assert Path(proc.stdout.strip()) == REPO_ROOT
