"""Every Make default is defined once, and no mk/*.mk depends on the order the files are read."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
MAKE = shutil.which("make")
ASSIGN = re.compile(r"^(?:export\s+|override\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*(?:\?|:|::)?=")


def _make_files() -> list[Path]:
    return [REPO_ROOT / "Makefile", *sorted((REPO_ROOT / "mk").glob("*.mk"))]


def test_each_variable_is_assigned_in_one_file_only():
    where: dict[str, set[str]] = defaultdict(set)
    for f in _make_files():
        for line in f.read_text().splitlines():
            m = ASSIGN.match(line)
            if m:
                where[m.group(1)].add(f.name)
    twice = {v: sorted(fs) for v, fs in where.items() if len(fs) > 1}
    assert not twice, f"Make variables defined in more than one file: {twice}"


def test_the_shared_roots_are_the_two_documented_variables():
    text = "\n".join(f.read_text() for f in _make_files())
    assert "ARTIFACTS_DIR" not in text, "the artifacts root is $(ARTIFACTS), never ARTIFACTS_DIR"
    assert re.search(r"^ARTIFACTS\s*\?=", (REPO_ROOT / "Makefile").read_text(), re.M)
    assert re.search(r"^RESULTS_DIR\s*\?=", (REPO_ROOT / "Makefile").read_text(), re.M)


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
@pytest.mark.parametrize("target", ["help", "train", "load", "serve", "report", "bench", "sweep", "compress"])
def test_reading_the_mk_files_in_reverse_order_changes_nothing(tmp_path, target):
    """The recipe ``make -n <target>`` prints is the same whichever order mk/*.mk are read in."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "-include mk/*.mk" in makefile
    mks = " ".join(f"mk/{p.name}" for p in sorted((REPO_ROOT / "mk").glob("*.mk"), reverse=True))
    reversed_mf = tmp_path / "Makefile.reversed"
    reversed_mf.write_text(makefile.replace("-include mk/*.mk", f"-include {mks}"))

    def dry(*extra: str) -> str:
        dry_run = [] if target == "help" else ["-n"]  # help's output is the check itself
        proc = subprocess.run([MAKE, *dry_run, "--no-print-directory", *extra, target, "METHOD=ptq-dynamic"],
                              capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert dry("-f", str(reversed_mf)) == dry()
