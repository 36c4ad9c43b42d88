"""Two sweep workers on one Optuna study in a real PostgreSQL server.

The server is Debian's ``postgresql`` (``make system-deps`` installs it), started here with
``initdb``/``pg_ctl`` in a temporary directory, listening on a Unix socket only (no TCP port).
``initdb`` refuses to run as root, so as root the cluster is made and run as ``nobody`` through
``runuser``. Each worker is a separate ``python -m analysis.sweep`` process with its own
``--out`` (as two machines would be), training the tiny model for real.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

REPO = Path(__file__).resolve().parents[2]


def _pg_bin(name: str) -> str | None:
    hits = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return hits[-1] if hits else shutil.which(name)


@pytest.fixture
def postgres_url():
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: `make system-deps` installs "
                    "Debian's postgresql (needs root + apt-get)")
    as_user: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="sweep-pg-", dir="/tmp"))
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as an unprivileged user
        runuser = shutil.which("runuser")
        if not runuser:
            shutil.rmtree(base)
            pytest.skip("running as root and runuser is missing, so initdb cannot run as an unprivileged user")
        nobody = pwd.getpwnam("nobody")
        os.chown(base, nobody.pw_uid, nobody.pw_gid)
        as_user = [runuser, "-u", "nobody", "--"]
    os.chmod(base, 0o700)
    data = base / "data"
    try:
        subprocess.run([*as_user, initdb, "-D", str(data), "-U", "sweep", "--auth=trust", "-E", "UTF8", "--no-sync"],
                       cwd=base, check=True, capture_output=True, text=True, timeout=120)
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(base / "server.log"), "-w", "-t", "60",
                        "-o", f"-k {base} -c listen_addresses='' -c fsync=off -c max_connections=40", "start"],
                       cwd=base, check=True, capture_output=True, text=True, timeout=90)
    except subprocess.CalledProcessError as e:
        log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {e.stderr or e.stdout}\n{log[-2000:]}")
    try:
        yield f"postgresql+psycopg2://sweep@/postgres?host={base}"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], cwd=base,
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def _hand_pareto(trials) -> set[int]:
    pts = [(t.number, t.values[0], t.values[1]) for t in trials if t.state.name == "COMPLETE"]
    return {a for a, ea, aa in pts
            if not any((eb <= ea and ab >= aa) and (eb < ea or ab > aa) for b, eb, ab in pts if b != a)}


@pytest.mark.slow
def test_two_workers_on_one_postgres_study(postgres_url, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("overlays: {choices: [], min: 0, max: 0}\n"
                     "set: {training.tiny_learning_rate: [1.0e-4, 5.0e-4, 1.0e-3, 2.0e-3]}\n"
                     "fixed: {data.eval_limit: 16}\nmax_steps: 1\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    n = 2  # one trial each, in parallel; the first to finish waits for the other (N complete-or-running)

    def cmd(out: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "analysis.sweep", "--n", str(n), "--storage", postgres_url, "--space",
                str(space), "--out", str(out), "--meter", "estimate", "--heartbeat-s", "2", *extra]

    # The study exists before the workers start (as `make sweep-worker` expects after the first).
    outs = [tmp_path / "machine-a", tmp_path / "machine-b"]
    t0 = time.time()
    workers = [subprocess.Popen(cmd(o), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True) for o in outs]
    logs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n".join(x[-2000:] for x in logs)
    elapsed = time.time() - t0

    study = optuna.load_study(study_name="green-sweep", storage=postgres_url)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == n, [t.state.name for t in study.trials]
    # Nothing lost or run twice: every trial folder on either machine belongs to exactly one
    # trial, every complete trial's folder holds its finished run, and no trial failed.
    assert not [t for t in study.trials if t.state.name == "FAIL"]
    folders = sorted(p.name for o in outs if o.exists() for p in o.iterdir() if (p / "params.json").exists())
    run_ids = [t.user_attrs["run_id"] for t in study.trials if "run_id" in t.user_attrs]
    assert sorted(run_ids) == folders and len(set(run_ids)) == len(run_ids)
    for t in complete:
        d = Path(t.user_attrs["run_dir"])
        assert json.loads((d / "done.json").read_text())["status"] == "ok"
        assert json.loads((d / "params.json").read_text())["trial"] == t.number
        assert t.user_attrs["energy"] == t.values[0] > 0 and t.user_attrs["accuracy"] == t.values[1]
    assert len({t.user_attrs["pid"] for t in complete}) == 2, "both workers should have run trials"
    # The Pareto set from the study equals the one computed by hand from the trials.
    hand = _hand_pareto(study.trials)
    assert {t.number for t in study.best_trials} == hand
    r = subprocess.run(cmd(tmp_path / "export", "--export-only"), cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    best = json.loads((tmp_path / "export" / "best.json").read_text())
    by_num = {t.number: t.user_attrs["run_id"] for t in study.trials}
    assert set(best["pareto"]) == {by_num[i] for i in hand} and "sweep@" in best["storage"]
    print(f"two workers, {n} trials on PostgreSQL in {elapsed:.0f} s")
