"""The sweep as an Optuna study: trial sampling, objectives, user attributes, the Pareto set
from ``study.best_trials``, failures, interrupted and killed workers, resuming.

Most tests replace the training command with ``FakeTrainer`` (a named stand-in for ``python -m
training.train`` that writes a result.json where the real CLI would) so they take seconds; the
study itself is real (Optuna on a SQLite file). ``test_killed_worker_*`` runs the real CLI with
real training of the tiny model, kills the worker with SIGKILL and resumes; the PostgreSQL test
(two workers on one study) is in test_sweep_postgres.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from analysis import sweep
from analysis.sweep import (
    SearchSpace,
    SpaceError,
    SweepConfig,
    SweepError,
    load_space,
    run_worker,
    suggest,
)
from study.paths import Paths

SPACE = SearchSpace(base_variant="v0", overlays=["v1", "v2", "v7", "v8"], min_overlays=0, max_overlays=2,
                    set={"training.tiny_learning_rate": [1e-4, 5e-4], "data.tiny_max_length": [128, 256]},
                    max_steps=2, source="test")
REPO = Path(__file__).resolve().parents[2]


def _args(cmd: list[str]) -> dict[str, str]:
    return {cmd[i]: cmd[i + 1] for i in range(len(cmd) - 1) if cmd[i].startswith("--")}


class FakeTrainer:
    """Stand-in for ``python -m training.train`` (and ``loadtest.run`` with ``--serve``): writes
    the result files the real CLIs write, with energy and accuracy that depend on the knobs.

    ``kill_at``: raise KeyboardInterrupt (a Ctrl-C / SIGTERM of the worker) on that call, after
    leaving a partial folder. ``fail_variants``: write a failed result for these. ``mcc``: also
    report MCC (as issue 11's training results do).
    """

    def __init__(self, kill_at: int | None = None, fail_variants: tuple[str, ...] = (), mcc: bool = True):
        self.calls: list[list[str]] = []
        self.kill_at = kill_at
        self.fail_variants = fail_variants
        self.mcc = mcc

    def __call__(self, cmd: list[str], log_path: Path, power_csv: Path | None) -> int:
        self.calls.append(cmd)
        arg = _args(cmd)
        variant = arg["--variant"]
        log_path.write_text("fake trainer\n")
        if cmd[2] == "loadtest.run":
            # --results-dir is the trial's results root; the load test writes below its load/
            d = Paths(Path(arg["--artifacts-dir"]), Path(arg["--results-dir"])).load_run("onnxruntime", variant,
                                                                                         arg["--run-id"])
            d.mkdir(parents=True)
            n = variant.count("+") + (variant != "v0")
            (d / "summary.json").write_text(json.dumps({
                "energy_per_1k_wh": {"gross": 2.0 / (1 + n), "net": 1.5 / (1 + n), "server": 1.0 / (1 + n)},
                "energy": {"kind": "estimated"}, "served": {"f1": 0.5}}))
            return 0
        res_dir = Path(arg["--results-dir"])
        if power_csv is not None:
            power_csv.write_text("t_unix_s,device,power_w,energy_j,source,kind,flag\n1.0,cpu,5.0,,replay,estimated,\n")
        if self.kill_at is not None and len(self.calls) == self.kill_at:
            (res_dir / "train" / variant).mkdir(parents=True, exist_ok=True)  # partial: no result.json yet
            raise KeyboardInterrupt
        sets = dict(c.split("=", 1) for c in cmd if "=" in c and not c.startswith("--"))
        lr = float(sets.get("training.tiny_learning_rate", 5e-4))
        n_over = variant.count("+") + (0 if variant == "v0" else 1)
        if variant in self.fail_variants:
            result = {"status": "failed", "failure_reason": "fake failure", "variant": variant}
        else:
            result = {"status": "ok", "variant": variant, "run_id": "fake",
                      "energy_kwh": {"training": 1.0 / (1 + n_over), "total": 1.1 / (1 + n_over)},
                      "energy_kind": "estimated", "energy_source": {"training": "replay"},
                      "f1": 0.5 + lr * 100 - 0.01 * n_over, "accuracy": 0.6,
                      "config": {"training": {"tiny_learning_rate": lr}}}
            if self.mcc:
                result["mcc"] = 0.1 + lr * 100 - 0.02 * n_over
        (res_dir / "train" / variant).mkdir(parents=True, exist_ok=True)
        (res_dir / "train" / variant / "result.json").write_text(json.dumps(result))
        return 0

    def trained_dirs(self) -> list[str]:
        return [_args(c)["--results-dir"] for c in self.calls if c[2] == "training.train"]


def _cfg(tmp_path: Path, n: int = 4, **kw) -> SweepConfig:
    return SweepConfig(space=kw.pop("space", SPACE), n=n, out_dir=tmp_path / "sweep", heartbeat_s=1, poll_s=0.2, **kw)


def _study(cfg: SweepConfig) -> optuna.Study:
    return optuna.load_study(study_name=cfg.study_name, storage=cfg.storage)


def _hand_pareto(trials) -> set[int]:
    """Non-dominated complete trials (energy ↓, accuracy ↑), computed without Optuna."""
    pts = [(t.number, t.values[0], t.values[1]) for t in trials if t.state.name == "COMPLETE"]
    return {a for a, ea, aa in pts
            if not any((eb <= ea and ab >= aa) and (eb < ea or ab > aa) for b, eb, ab in pts if b != a)}


def test_trial_draws_depend_only_on_seed_and_number():
    def draws(seed: int, n: int) -> list[dict]:
        st = optuna.create_study(directions=["minimize", "maximize"], sampler=sweep.make_sampler("random", seed))
        return [suggest(st.ask(), SPACE, seed).__dict__ for _ in range(n)]

    a, b = draws(7, 6), draws(7, 6)
    assert a == b and draws(7, 3) == a[:3]
    assert [x["variant"] for x in draws(8, 6)] != [x["variant"] for x in a] or \
        [x["set"] for x in draws(8, 6)] != [x["set"] for x in a]
    for s in a:
        assert s["variant"] == ("+".join(s["overlays"]) or "v0") and len(s["overlays"]) <= 2
        assert s["overlays"] == sorted(s["overlays"], key=SPACE.overlays.index)
        assert s["run_id"].startswith(f"t{s['index']:04d}-")


def test_variant_choices_are_every_allowed_subset():
    ch = sweep.variant_choices(SPACE)
    assert ch[0] == "v0" and "v1+v2" in ch and "v2+v1" not in ch
    assert len(ch) == 1 + 4 + 6 and all(c.count("+") <= 1 for c in ch)


def test_overlay_owned_keys_are_not_overridden():
    st = optuna.create_study(directions=["minimize", "maximize"], sampler=sweep.make_sampler("random", 1))
    specs = [suggest(st.ask(), SPACE, 1) for _ in range(40)]
    with_v8 = [s for s in specs if "v8" in s.overlays]
    assert with_v8, "40 draws should include v8"
    for s in with_v8:  # v8 sets data.tiny_max_length itself; the sampled value must not clobber it
        assert "data.tiny_max_length" not in s.set and "data.tiny_max_length" in s.overridden_by_overlay


def test_train_command_matches_the_training_cli_contract(tmp_path):
    st = optuna.create_study(directions=["minimize", "maximize"])
    s = suggest(st.ask(), SPACE)
    cmd = sweep.train_command(s, tmp_path / s.run_id, SPACE, python="python")
    assert cmd[:3] == ["python", "-m", "training.train"]
    assert cmd[cmd.index("--variant") + 1] == s.variant and cmd[cmd.index("--max-steps") + 1] == "2"
    assert cmd[cmd.index("--results-dir") + 1] == str(tmp_path / s.run_id)
    assert cmd[cmd.index("--artifacts-dir") + 1] == str(tmp_path / s.run_id / "artifacts")
    assert len([c for c in cmd if c == "--set"]) == len(s.set)
    # the load test gets the trial's results root (it writes <root>/load/<engine>__<variant>/<run_id>/)
    load = sweep.load_command(s, tmp_path / s.run_id, SPACE, python="python")
    assert load[load.index("--results-dir") + 1] == str(tmp_path / s.run_id)
    assert load[load.index("--artifacts-dir") + 1] == str(tmp_path / s.run_id / "artifacts")


def test_study_has_n_trials_with_attributes_and_the_pareto_set(tmp_path):
    cfg = _cfg(tmp_path, n=5)
    runner = FakeTrainer()
    best = run_worker(cfg, runner)
    assert cfg.storage == f"sqlite:///{tmp_path / 'sweep' / 'study.db'}"
    study = _study(cfg)  # read back with Optuna's own API
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == 5 == len(study.trials) == len(runner.calls)
    assert study.metric_names == ["train.energy_kwh.training", "train.mcc"]
    for t in done:
        ua = t.user_attrs
        assert ua["energy"] == t.values[0] and ua["accuracy"] == t.values[1]
        assert ua["train.energy_kwh.training"] == t.values[0] and ua["train.mcc"] == t.values[1]
        assert "train.f1" in ua and "train.accuracy" in ua and not any(k.startswith("train.config") for k in ua)
        assert Path(ua["path.train_result"]).is_file() and Path(ua["path.power_csv"]).is_file()
        assert Path(ua["run_dir"]).name == ua["run_id"] and ua["host"] == socket.gethostname()
        assert json.loads((Path(ua["run_dir"]) / "done.json").read_text())["status"] == "ok"
    hand = _hand_pareto(study.trials)
    assert {t.number for t in study.best_trials} == hand
    by_num = {t.number: t.user_attrs["run_id"] for t in study.trials}
    assert set(best["pareto"]) == {by_num[i] for i in hand}
    assert json.loads((cfg.out_dir / "best.json").read_text())["pareto"] == best["pareto"]
    df = pd.read_csv(cfg.out_dir / "aggregate.csv")
    assert len(df) == 5 and set(df["state"]) == {"COMPLETE"}
    assert {"set.training.tiny_learning_rate", "energy", "accuracy", "train.f1", "path.power_csv"} <= set(df.columns)
    # a rerun continues: nothing more to do, nothing repeated
    again = FakeTrainer()
    assert run_worker(cfg, again)["ran"] == 0 and not again.calls


def test_accuracy_falls_back_to_f1_and_metric_is_configurable(tmp_path):
    cfg = _cfg(tmp_path, n=2)
    run_worker(cfg, FakeTrainer(mcc=False))
    assert _study(cfg).metric_names == ["train.energy_kwh.training", "train.f1"]
    cfg2 = _cfg(tmp_path / "b", n=2, accuracy_metric="accuracy", energy_metric="energy_kwh.total")
    run_worker(cfg2, FakeTrainer())
    assert _study(cfg2).metric_names == ["train.energy_kwh.total", "train.accuracy"]


def test_serving_trials_minimise_the_server_attributed_energy(tmp_path):
    cfg = _cfg(tmp_path, n=2, serve=True)
    runner = FakeTrainer()
    run_worker(cfg, runner)
    st = _study(cfg)
    assert st.metric_names[0] == "load.energy_per_1k_wh.server"
    t = st.trials[0]
    assert t.values[0] == t.user_attrs["load.energy_per_1k_wh.server"] != t.user_attrs["load.energy_per_1k_wh.gross"]
    assert Path(t.user_attrs["path.load_summary"]).is_file()
    assert [c[2] for c in runner.calls] == ["training.train", "loadtest.run"] * 2


def test_interrupted_trial_ends_fail_with_partial_results_and_rerun_completes(tmp_path):
    cfg = _cfg(tmp_path, n=4)
    with pytest.raises(KeyboardInterrupt):
        run_worker(cfg, FakeTrainer(kill_at=3))
    st = _study(cfg)
    states = [t.state.name for t in st.trials]
    assert states == ["COMPLETE", "COMPLETE", "FAIL"]
    killed = st.trials[2].user_attrs
    done = json.loads((Path(killed["run_dir"]) / "done.json").read_text())
    assert done["status"] == "failed" and "interrupted" in done["failure_reason"]
    assert (Path(killed["run_dir"]) / "train").is_dir()  # the partial folder is kept
    assert len(pd.read_csv(cfg.out_dir / "aggregate.csv")) == 2  # exported after each finished trial

    second = FakeTrainer()
    run_worker(cfg, second)
    st = _study(cfg)
    assert len(st.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 4
    first_two = {st.trials[0].user_attrs["run_dir"], st.trials[1].user_attrs["run_dir"]}
    assert len(second.calls) == 2 and not first_two & set(second.trained_dirs())  # no finished trial repeated
    df = pd.read_csv(cfg.out_dir / "aggregate.csv")
    assert list(df["state"]).count("COMPLETE") == 4 and list(df["state"]).count("FAIL") == 1


def test_stale_trial_of_a_dead_worker_is_failed_marked_and_retried(tmp_path):
    cfg = _cfg(tmp_path, n=2)
    study = sweep.open_study(cfg)
    # A worker that died mid-trial: its trial is RUNNING, has a folder and one old heartbeat.
    dead = study.ask()
    spec = suggest(dead, SPACE)
    run_dir = cfg.out_dir / spec.run_id
    (run_dir / "train").mkdir(parents=True)
    for k, v in {"run_id": spec.run_id, "run_dir": str(run_dir), "host": socket.gethostname()}.items():
        dead.set_user_attr(k, v)
    study._storage.record_heartbeat(dead._trial_id)
    time.sleep(3.2)  # past grace_period (3 × 1 s)
    runner = FakeTrainer()
    run_worker(cfg, runner)
    st = _study(cfg)
    assert st.trials[0].state.name == "FAIL"
    marked = json.loads((run_dir / "done.json").read_text())
    assert marked["status"] == "failed" and marked["partial"] and "heart" in marked["failure_reason"]
    retry = [t for t in st.trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and retry[0].params == st.trials[0].params
    assert retry[0].user_attrs["run_id"] != spec.run_id and retry[0].user_attrs["retry_of"] == 0
    assert len(st.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 2 and len(runner.calls) == 2


def test_failed_trials_are_recorded_and_bounded(tmp_path):
    space = SearchSpace(**{**SPACE.__dict__, "overlays": [], "max_overlays": 0})  # every trial is v0
    cfg = _cfg(tmp_path, n=2, space=space, max_failed=2)
    with pytest.raises(SweepError, match="2 trials failed"):
        run_worker(cfg, FakeTrainer(fail_variants=("v0",)))
    st = _study(cfg)
    assert [t.state.name for t in st.trials] == ["FAIL", "FAIL"]
    assert st.trials[0].user_attrs["failure_reason"] == "fake failure"
    df = pd.read_csv(cfg.out_dir / "aggregate.csv")
    assert set(df["failure_reason"]) == {"fake failure"}


def test_runner_without_result_is_a_failed_trial(tmp_path):
    def crash(cmd, log_path, power_csv):
        log_path.write_text("Traceback: boom\n")
        return 1

    cfg = _cfg(tmp_path, n=1, max_failed=1)
    with pytest.raises(SweepError):
        run_worker(cfg, crash)
    t = _study(cfg).trials[0]
    assert t.state.name == "FAIL" and "exited 1" in t.user_attrs["failure_reason"]


def test_a_changed_search_space_is_refused(tmp_path):
    run_worker(_cfg(tmp_path, n=1), FakeTrainer())
    other = SearchSpace(**{**SPACE.__dict__, "set": {"training.tiny_learning_rate": [1e-3]}})
    with pytest.raises(SweepError, match="space_fingerprint"):
        sweep.open_study(_cfg(tmp_path, n=1, space=other))


@pytest.mark.parametrize(("kw", "msg"), [({"sampler": "grid"}, "allowed random, tpe, nsga2"),
                                         ({"storage": "mysql://x/y"}, "allowed sqlite"),
                                         ({"n": 0}, "--n must be")])
def test_bad_options_name_the_allowed_values(tmp_path, kw, msg):
    with pytest.raises(SweepError, match=msg):
        sweep.open_study(_cfg(tmp_path, **{"n": 1, **kw}))


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_adaptive_samplers_run(tmp_path, sampler):
    cfg = _cfg(tmp_path, n=3, sampler=sampler)
    run_worker(cfg, FakeTrainer())
    assert len(_study(cfg).best_trials) >= 1


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


def test_cli_dry_run_and_bad_sampler(capsys):
    assert sweep.main(["--n", "2", "--dry-run", "--out", "/nonexistent/sweep"]) == 0
    assert capsys.readouterr().out.count("training.train") == 2
    with pytest.raises(SystemExit):
        sweep.main(["--n", "2", "--sampler", "grid"])
    assert "invalid choice: 'grid'" in capsys.readouterr().err


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.mark.slow
def test_killed_worker_real_training_resumes_to_exactly_n(tmp_path):
    """Real CLI, real tiny-model training: SIGKILL the worker mid-trial, rerun, N complete."""
    out, space = tmp_path / "sweep", tmp_path / "space.yaml"
    space.write_text("overlays: {choices: [], min: 0, max: 0}\nset: {training.tiny_learning_rate: [5.0e-4]}\n"
                     "fixed: {data.eval_limit: 16}\nmax_steps: 1\n")
    cmd = [sys.executable, "-m", "analysis.sweep", "--n", "1", "--out", str(out), "--space", str(space),
           "--meter", "estimate", "--heartbeat-s", "1", "--grace-s", "2"]
    log = open(tmp_path / "worker.log", "w")
    w = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    storage = f"sqlite:///{out / 'study.db'}"
    deadline = time.time() + 120
    while time.time() < deadline:  # until the trial is running and training has started
        time.sleep(0.5)
        if not (out / "study.db").exists():
            continue
        try:
            st = optuna.load_study(study_name="green-sweep", storage=storage)
            if st.trials and st.trials[0].state.name == "RUNNING" and \
                    (out / st.trials[0].user_attrs.get("run_id", "-") / "train.log").exists():
                break
        except (KeyError, Exception):
            continue
    else:
        w.kill()
        pytest.fail(f"the worker never started a trial: {(tmp_path / 'worker.log').read_text()[-3000:]}")
    os.kill(w.pid, signal.SIGKILL)  # the worker only: its training child dies with it (PDEATHSIG)
    w.wait(timeout=30)
    killed = optuna.load_study(study_name="green-sweep", storage=storage).trials[0]
    assert killed.state.name == "RUNNING"  # nobody told the database
    r = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    st = optuna.load_study(study_name="green-sweep", storage=storage)
    assert [t.state.name for t in st.trials] == ["FAIL", "COMPLETE"]
    assert st.trials[1].system_attrs["failed_trial"] == 0
    done = json.loads((Path(killed.user_attrs["run_dir"]) / "done.json").read_text())
    assert done["status"] == "failed" and done["partial"]
    ua = st.trials[1].user_attrs
    assert ua["energy_metric"] == "train.energy_kwh.training" and ua["energy"] > 0
    assert ua["accuracy_metric"] in ("train.mcc", "train.f1") and ua["energy_kind"] in ("estimated", "measured")
