"""The layering of docs/interfaces.md: study ← energy ← training ← serving ← loadtest ← analysis.

A package imports only the packages below it (at module level or inside a function alike):
study imports none of them, and no stage imports a later one.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["study", "energy", "training", "serving", "loadtest", "analysis"]


def _imported_packages(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


def test_no_package_imports_one_above_it():
    wrong = []
    for rank, pkg in enumerate(LAYERS):
        above = set(LAYERS[rank + 1:])
        for f in sorted((REPO_ROOT / pkg).rglob("*.py")):
            for line, name in _imported_packages(f):
                if name in above:
                    wrong.append(f"{f.relative_to(REPO_ROOT)}:{line} imports {name} (a later stage than {pkg})")
    assert not wrong, "\n".join(wrong)
