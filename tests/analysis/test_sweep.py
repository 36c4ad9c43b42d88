"""Random-search sweep: deterministic sampling, per-run folders, aggregate after every run, resume.

The training command is replaced by a fake runner (a named stand-in for ``python -m
training.train``) that writes a result.json where the real CLI would; the real runner is
exercised by ``make sweep N=3``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from analysis import sweep
from analysis.sweep import SearchSpace, SpaceError, load_space, run_sweep, sample

SPACE = SearchSpace(base_variant="v0", overlays=["v1", "v2", "v7", "v8"], min_overlays=0, max_overlays=2,
                    set={"training.tiny_learning_rate": [1e-4, 5e-4], "data.tiny_max_length": [128, 256]},
                    max_steps=2, source="test")


class FakeTrainer:
    """Writes a training result.json like ``python -m training.train --results-dir D`` would.

    ``kill_at``: raise KeyboardInterrupt (as a Ctrl-C / kill of the sweep would) on that call,
    after leaving a partial folder behind. ``fail_variants``: write a failed result for these.
    """

    def __init__(self, out_dir: Path, kill_at: int | None = None, fail_variants: tuple[str, ...] = ()):
        self.out_dir = out_dir
        self.calls: list[list[str]] = []
        self.kill_at = kill_at
        self.fail_variants = fail_variants
        self.aggregate_rows_seen: list[int] = []

    def __call__(self, cmd: list[str], log_path: Path, power_csv: Path | None) -> int:
        self.calls.append(cmd)
        agg = self.out_dir / "aggregate.csv"
        self.aggregate_rows_seen.append(len(pd.read_csv(agg)) if agg.exists() and agg.stat().st_size > 1 else 0)
        arg = {cmd[i]: cmd[i + 1] for i in range(len(cmd) - 1) if cmd[i].startswith("--")}
        variant, res_dir = arg["--variant"], Path(arg["--results-dir"])
        log_path.write_text("fake trainer\n")
        if power_csv is not None:
            power_csv.write_text("t_unix_s,device,power_w,energy_j,source,kind,flag\n1.0,cpu,5.0,,replay,estimated,\n")
        if self.kill_at is not None and len(self.calls) == self.kill_at:
            (res_dir / "train" / variant).mkdir(parents=True, exist_ok=True)  # partial: no result.json yet
            raise KeyboardInterrupt
        lr = float(next(c.split("=", 1)[1] for c in cmd if c.startswith("training.tiny_learning_rate=")) if any(
            c.startswith("training.tiny_learning_rate=") for c in cmd) else 5e-4)
        n_over = variant.count("+") + (0 if variant == "v0" else 1)
        result = {"status": "failed", "failure_reason": "fake failure", "variant": variant} \
            if variant in self.fail_variants else {
                "status": "ok", "variant": variant, "run_id": "fake",
                "energy_kwh": {"training": 1.0 / (1 + n_over), "total": 1.1 / (1 + n_over)},
                "energy_kind": "estimated", "energy_source": {"training": "replay"},
                "f1": 0.5 + lr * 100 - 0.01 * n_over, "accuracy": 0.6}
        # like the real CLI: <results-dir>/train/<variant>/result.json
        (res_dir / "train" / variant).mkdir(parents=True, exist_ok=True)
        (res_dir / "train" / variant / "result.json").write_text(json.dumps(result))
        return 0


def test_sampling_is_deterministic_and_prefix_stable():
    a = sample(SPACE, 6, seed=7)
    b = sample(SPACE, 6, seed=7)
    assert [s.run_id for s in a] == [s.run_id for s in b]
    assert [s.run_id for s in sample(SPACE, 3, seed=7)] == [s.run_id for s in a[:3]]
    assert [s.run_id for s in sample(SPACE, 6, seed=8)] != [s.run_id for s in a]
    for s in a:
        assert s.variant == ("+".join(s.overlays) or "v0")
        assert len(s.overlays) <= 2
        assert s.overlays == sorted(s.overlays, key=SPACE.overlays.index)  # overlay order kept


def test_overlay_owned_keys_are_not_overridden():
    # v8 sets data.tiny_max_length itself; a sampled value must not clobber it
    specs = sample(SPACE, 40, seed=1)
    with_v8 = [s for s in specs if "v8" in s.overlays]
    assert with_v8, "seed 1 should sample v8 at least once in 40 draws"
    for s in with_v8:
        assert "data.tiny_max_length" not in s.set
        assert "data.tiny_max_length" in s.overridden_by_overlay


def test_train_command_matches_the_training_cli_contract(tmp_path):
    s = sample(SPACE, 1, seed=0)[0]
    cmd = sweep.train_command(s, tmp_path / s.run_id, SPACE, python="python")
    assert cmd[:3] == ["python", "-m", "training.train"]
    assert cmd[cmd.index("--variant") + 1] == s.variant
    assert cmd[cmd.index("--max-steps") + 1] == "2"
    assert cmd[cmd.index("--results-dir") + 1] == str(tmp_path / s.run_id)
    assert cmd[cmd.index("--artifacts-dir") + 1] == str(tmp_path / s.run_id / "artifacts")
    sets = [cmd[i + 1] for i, c in enumerate(cmd) if c == "--set"]
    assert len(sets) == len(s.set) and all("=" in x for x in sets)


def test_full_sweep_writes_folders_aggregate_and_best(tmp_path):
    out = tmp_path / "sweep"
    runner = FakeTrainer(out)
    best = run_sweep(SPACE, 4, 3, out, runner, progress=False)
    specs = sample(SPACE, 4, 3)
    for s in specs:
        d = out / s.run_id
        p = json.loads((d / "params.json").read_text())
        assert p["variant"] == s.variant and p["set"] == s.set and p["commands"][0][2] == "training.train"
        assert (d / "power.csv").exists() and (d / "done.json").exists()
    # aggregate.csv was rewritten after every run: run i saw i finished rows
    assert runner.aggregate_rows_seen == [0, 1, 2, 3]
    df = pd.read_csv(out / "aggregate.csv")
    assert len(df) == 4 and set(df["status"]) == {"ok"}
    assert {"set.training.tiny_learning_rate", "energy_kwh.training", "f1", "power_csv"} <= set(df.columns)
    assert best["best_accuracy"]["id"] in set(df["run_id"]) and best["pareto"]
    assert json.loads((out / "best.json").read_text())["ran"] == 4


def test_resume_after_kill_redoes_only_unfinished(tmp_path):
    out = tmp_path / "sweep"
    specs = sample(SPACE, 4, 5)
    first = FakeTrainer(out, kill_at=3)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(SPACE, 4, 5, out, first, progress=False)
    assert (out / specs[2].run_id).exists() and not (out / specs[2].run_id / "done.json").exists()
    assert len(pd.read_csv(out / "aggregate.csv")) == 2  # the two finished runs survived the kill

    second = FakeTrainer(out)
    best = run_sweep(SPACE, 4, 5, out, second, progress=False)
    ran = [c[c.index("--results-dir") + 1] for c in second.calls]
    assert ran == [str(out / s.run_id) for s in specs[2:]]  # partial run redone, done runs skipped
    assert best["ran"] == 2 and best["skipped_done"] == 2
    assert len(pd.read_csv(out / "aggregate.csv")) == 4

    third = FakeTrainer(out)
    assert run_sweep(SPACE, 4, 5, out, third, progress=False)["ran"] == 0 and not third.calls


def test_failed_runs_are_done_unless_retry_failed(tmp_path):
    out = tmp_path / "sweep"
    specs = sample(SPACE, 3, 11)
    bad = specs[0].variant
    run_sweep(SPACE, 3, 11, out, FakeTrainer(out, fail_variants=(bad,)), progress=False)
    df = pd.read_csv(out / "aggregate.csv")
    n_failed = int((df["status"] == "failed").sum())
    assert n_failed >= 1
    assert "fake failure" in set(df["failure_reason"].dropna())
    again = FakeTrainer(out)
    assert run_sweep(SPACE, 3, 11, out, again, progress=False)["ran"] == 0
    retry = FakeTrainer(out)
    assert run_sweep(SPACE, 3, 11, out, retry, retry_failed=True, progress=False)["ran"] == n_failed


def test_runner_without_result_is_failed_with_reason(tmp_path):
    out = tmp_path / "sweep"

    def crash(cmd, log_path, power_csv):
        log_path.write_text("Traceback: boom\n")
        return 1

    run_sweep(SPACE, 1, 0, out, crash, progress=False)
    df = pd.read_csv(out / "aggregate.csv")
    assert df.loc[0, "status"] == "failed" and "exited 1" in df.loc[0, "failure_reason"]


def test_shipped_space_file_loads():
    sp = load_space(sweep.DEFAULT_SPACE)
    assert set(sp.overlays) <= {"v1", "v2", "v4", "v6", "v7", "v8", "v10", "v13"}
    assert sp.max_steps > 0 and sp.set


@pytest.mark.parametrize(("text", "msg"), [
    ("bogus: 1\n", "unknown key"),
    ("set:\n  lr: [1]\n", "must be dotted"),
    ("set:\n  training.lr: []\n", "non-empty list"),
    ("overlays:\n  choices: [v1]\n  max: 3\n", "min ≤ max"),
    ("serve:\n  port: 1\n", "unknown serve key"),
])
def test_bad_space_files_name_the_key(tmp_path, text, msg):
    p = tmp_path / "space.yaml"
    p.write_text(text)
    with pytest.raises(SpaceError, match=msg) as e:
        load_space(p)
    assert str(p) in str(e.value)


def test_cli_dry_run(capsys):
    assert sweep.main(["--n", "2", "--dry-run", "--out", "/nonexistent/sweep"]) == 0
    out = capsys.readouterr().out
    assert out.count("training.train") == 2


def test_fixed_values_apply_without_shifting_draws():
    with_fixed = SearchSpace(**{**SPACE.__dict__, "fixed": {"data.eval_limit": 16}})
    a, b = sample(SPACE, 5, 2), sample(with_fixed, 5, 2)
    for x, y in zip(a, b, strict=True):
        assert x.overlays == y.overlays
        assert y.set == {**x.set, "data.eval_limit": 16}
