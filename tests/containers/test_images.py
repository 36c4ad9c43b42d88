"""Where a Docker engine runs: build the CPU flavour of the Python images for real and run the
native CLIs inside them (skipped with a reason everywhere else, e.g. CI and this project's
development machines, which have no engine)."""

from __future__ import annotations

import subprocess

import pytest
from containers_support import REPO_ROOT, docker_engine_running

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.skipif(not docker_engine_running(), reason="needs a running Docker engine"),
]


def _docker(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=timeout)


@pytest.fixture(scope="module")
def sidecar_image() -> str:
    tag = "green-pipeline-study/sidecar:cpu-test"
    proc = _docker("build", "-f", "docker/sidecar.Dockerfile", "--build-arg", "FLAVOUR=cpu",
                   "-t", tag, ".")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return tag


def test_image_runs_as_non_root_and_starts_the_native_cli(sidecar_image):
    proc = _docker("run", "--rm", sidecar_image, "sh", "-c", "id -u && python -m energy.sidecar --help")
    assert proc.returncode == 0, proc.stderr
    uid, _, help_text = proc.stdout.partition("\n")
    assert uid.strip() == "1000"
    assert "--mark-host" in help_text


def test_guard_refuses_a_missing_model_in_one_line(sidecar_image):
    proc = _docker("run", "--rm", "-e", "GPS_REQUIRE=artifacts/v0/onnx/model.onnx", sidecar_image,
                   "python", "-c", "print('unreachable')")
    assert proc.returncode == 66
    assert proc.stderr.strip().count("\n") == 0
    assert "artifacts/v0/onnx/model.onnx" in proc.stderr
