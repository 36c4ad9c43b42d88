"""The real CLI in subprocesses: help, errors, failure results, multi-GPU refusal, kill + resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training.runtime import launch_command

REPO = Path(__file__).resolve().parents[2]


def _cli(args, env, timeout=240):
    return subprocess.run([sys.executable, "-m", "training.train", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _tiny_args(tmp_path: Path, tiny_sets) -> list[str]:
    out = ["--results-dir", str(tmp_path / "results"), "--artifacts-dir", str(tmp_path / "artifacts")]
    for s in tiny_sets:
        out += ["--set", s]
    return out


def test_help_and_list(cli_env):
    r = _cli(["--help"], cli_env())
    assert r.returncode == 0 and "--variant" in r.stdout and "--repeats" in r.stdout and "--set" in r.stdout
    r = _cli(["--list"], cli_env())
    assert r.returncode == 0 and "v13" in r.stdout and "prune-20-bottom" in r.stdout and "v2+v7+v8" in r.stdout


def test_unknown_variant_and_key_fail_in_one_line(cli_env, tmp_path):
    r = _cli(["--variant", "v42", "--results-dir", str(tmp_path)], cli_env())
    assert r.returncode == 2 and "unknown variant 'v42'" in r.stderr and "Traceback" not in r.stderr
    r = _cli(["--variant", "v0", "--set", "training.nope=1"], cli_env())
    assert r.returncode == 2 and "allowed keys in training" in r.stderr and "Traceback" not in r.stderr


def test_failed_run_writes_failed_result_without_traceback(cli_env, tmp_path, tiny_sets):
    r = _cli(["--variant", "v0", "--data", str(tmp_path / "missing.csv"), *_tiny_args(tmp_path, tiny_sets)], cli_env())
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "BigVul CSV not found" in r.stderr
    res = json.loads((tmp_path / "results" / "train" / "v0" / "result.json").read_text())
    assert res["status"] == "failed" and "BigVul CSV not found" in res["failure_reason"]


def test_multi_gpu_command_line_and_refusal(cli_env, tmp_path):
    cmd = launch_command(["--variant", "v2", "--gpus", "4"], 4, python="/py")
    assert cmd[:3] == ["/py", "-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--num_processes") + 1] == "4" and "--multi_gpu" in cmd
    assert cmd[cmd.index("--module") + 1:] == ["training.train", "--variant", "v2", "--gpus", "4"]
    with pytest.raises(ValueError):
        launch_command([], 1)
    r = _cli(["--variant", "v0", "--gpus", "2", "--results-dir", str(tmp_path)], cli_env())
    assert r.returncode == 3 and "GPUS=2 needs 2 CUDA devices" in r.stderr
    res = json.loads((tmp_path / "train" / "v0" / "result.json").read_text())
    assert res["status"] == "failed" and "GPUS=2" in res["failure_reason"]


def test_sigkill_mid_training_then_rerun_resumes(cli_env, tmp_path, tiny_sets):
    sets = [s for s in tiny_sets if not s.startswith("training.max_steps")]
    args = ["--variant", "v0", "--max-steps", "8", "--set", "training.save_steps=2",
            *_tiny_args(tmp_path, sets)]
    ckpts = tmp_path / "results" / "train" / "v0" / "checkpoints" / "seed-42"
    result = tmp_path / "results" / "train" / "v0" / "result.json"
    proc = subprocess.Popen([sys.executable, "-m", "training.train", *args], cwd=REPO,
                            env=cli_env(GPS_TRAIN_STEP_DELAY_S="0.5"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            done = [p for p in ckpts.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
            if done:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "training finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    if result.exists():  # never truncated: either absent or whole JSON
        json.loads(result.read_text())
    marker = json.loads((ckpts / "run.json").read_text())

    r = _cli(args, cli_env())
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(result.read_text())
    assert res["status"] == "ok" and res["run_id"] == marker["run_id"]
    assert res["training"]["resumed_from"].startswith("checkpoint-")
    assert res["training"]["global_step"] == 8
    assert any("resumed from" in n for n in res["notes"])
    step = int(res["training"]["resumed_from"].split("-")[-1])
    assert f"resumed_from_step_{step}" in res["flags"]  # its energy is not a whole run's
    assert "tokenisation_cache_hit" in res["flags"]  # the resumed repeat reuses the killed one's tokenisation
    assert any("every ok repeat is flagged" in n for n in res["notes"])
    run = json.loads((result.parent / "runs" / res["run_id"] / "result.json").read_text())
    assert run["flags"] == res["flags"]
    assert not ckpts.exists(), "checkpoints are removed after a successful run"


def test_second_concurrent_run_of_a_variant_is_refused(cli_env, tmp_path):
    from study.paths import Paths
    from training.workspace import RunPaths, variant_lock

    paths = RunPaths("v0", Paths(artifacts=tmp_path / "artifacts", results=tmp_path / "results"))
    with variant_lock(paths):
        r = _cli(["--variant", "v0", "--results-dir", str(tmp_path / "results")], cli_env())
    assert r.returncode == 1 and "another training run of v0" in r.stderr and f"pid {os.getpid()}" in r.stderr
    assert not paths.result.exists(), "the running one owns result.json"


def test_unavailable_meter_fails_in_one_line_with_a_result(cli_env, tmp_path):
    r = _cli(["--variant", "v0", "--meter", f"replay:{tmp_path / 'missing.csv'}", "--results-dir",
              str(tmp_path)], cli_env())
    assert r.returncode == 1 and "Traceback" not in r.stderr and "not available here" in r.stderr
    res = json.loads((tmp_path / "train" / "v0" / "result.json").read_text())
    assert res["status"] == "failed" and res["failure_reason"].startswith("energy meter:")
