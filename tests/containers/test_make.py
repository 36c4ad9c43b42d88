"""mk/containers.mk: how RUNTIME=docker maps onto compose, and what happens without an engine."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from containers_support import REPO_ROOT, docker_engine_running

MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def _dry_run(target: str, *assignments: str) -> str:
    """The recipe `make -n` would run (nothing is executed)."""
    proc = subprocess.run([MAKE, "-n", "--no-print-directory", target, *assignments],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_train_maps_onto_the_train_service_with_its_knobs():
    out = _dry_run("docker-train", "VARIANT=v2+v7", "MODEL=models/ModernBERT-base", "FLAVOUR=gpu")
    assert "VARIANT=v2+v7" in out and "MODEL=models/ModernBERT-base" in out
    assert "docker compose -p green-pipeline-study -f compose/compose.yaml -f compose/compose.gpu.yaml run --rm train" in out


def test_cpu_flavour_uses_the_base_file_only():
    out = _dry_run("docker-train", "FLAVOUR=cpu")
    assert "-f compose/compose.yaml run --rm train" in out
    assert "compose.gpu.yaml" not in out


def test_serve_starts_the_engine_profile_in_the_foreground():
    out = _dry_run("docker-serve", "ENGINE=triton", "FLAVOUR=gpu", "PORT=9000")
    assert "PORT=9000" in out
    assert "--profile serve-triton up triton" in out


def test_load_waits_for_a_healthy_server_then_runs_the_orchestrator():
    out = _dry_run("docker-load", "ENGINE=vllm", "USERS=16", "DURATION=30", "FLAVOUR=gpu")
    assert "USERS=16" in out and "DURATION=30" in out
    assert "--profile serve-vllm up -d --wait --no-deps vllm" in out
    assert "run --rm load" in out
    # vLLM serves the merged HF directory and exposes /metrics on its API port.
    assert "FORMAT=pytorch" in out and "METRICS_URL=http://server:8000/metrics" in out


def test_load_on_triton_reads_tritons_metrics_port():
    out = _dry_run("docker-load", "ENGINE=triton", "FLAVOUR=gpu")
    assert "FORMAT=onnx" in out and "METRICS_URL=http://server:8002/metrics" in out
    # The repository is generated first, then only the long-running server is waited on.
    assert out.index("run --rm triton-repo") < out.index("--profile serve-triton up -d --wait --no-deps triton")


@pytest.mark.parametrize("bad", ["RUNTIME=kubernetes", "FLAVOUR=tpu"])
def test_bad_knobs_fail_with_the_allowed_values(bad):
    proc = subprocess.run([MAKE, "-n", "docker-train", bad], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=60)
    assert proc.returncode != 0
    key = bad.split("=")[0]
    assert f"{bad} is invalid; allowed:" in proc.stderr, proc.stderr
    assert key in proc.stderr


@pytest.mark.parametrize("target", ["docker-train", "docker-serve", "docker-load", "docker-build"])
def test_without_an_engine_each_target_says_so_in_one_line(target):
    if docker_engine_running():
        pytest.skip("a Docker engine runs here; this checks the message where none does")
    proc = subprocess.run([MAKE, "-s", target], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=120)
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if not line.startswith("make")]
    assert len(ours) == 1, proc.stderr
    assert ours[0].startswith("RUNTIME=docker needs a running Docker engine")
