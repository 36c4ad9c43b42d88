"""Serving fixtures: an artifacts tree with an ONNX export, and real server processes.

``serving_root`` copies the shared tiny model (tests/conftest.py) into its own tree so that
exports made here never race another area's tests, then adds ``v0/onnx/model.onnx`` with
``serving.export`` (part of this package) or, while that is absent, ``torch.onnx.export``.
``serve_process`` starts ``python -m serving.serve …`` on a free loopback port through the
study's one launcher (:class:`study.process.Launched`) and stops it with SIGTERM, checking
that it exits cleanly.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from serving.engines.registry import facts
from study.process import Launched, NotReady, child_env, python_module
from tests.conftest import REPO_ROOT, free_port


def _torch_onnx_export(model_dir: Path, out_dir: Path) -> None:
    """Fallback export (TorchScript exporter) when ``serving.export`` itself fails."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from training.model import export_onnx

    torch.set_num_threads(1)
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    export_onnx(model, out_dir / "model.onnx", exporter="torchscript")
    AutoTokenizer.from_pretrained(str(model_dir)).save_pretrained(out_dir)


@pytest.fixture(scope="session")
def serving_root(tmp_path_factory, tiny_model_dir) -> Path:
    """An artifacts root with ``v0/model/`` and ``v0/onnx/model.onnx`` (+ tokenizer)."""
    root = tmp_path_factory.mktemp("serving_artifacts")
    shutil.copytree(tiny_model_dir, root / "v0" / "model")
    exported = False
    if importlib.util.find_spec("serving.export.__main__") is not None:
        proc = subprocess.run(
            [sys.executable, "-m", "serving.export", "--variant", "v0", "--format", "onnx",
             "--artifacts-dir", str(root),
             # Parity is the export's own test; the torchscript exporter is ~6x faster here.
             "--no-parity", "--meter", "estimate", "--onnx-exporter", "torchscript"],
            cwd=REPO_ROOT, timeout=300, capture_output=True, text=True,
        )
        exported = proc.returncode == 0 and (root / "v0" / "onnx" / "model.onnx").exists()
        if not exported:
            # The export has its own tests; here it only has to provide a model to serve.
            warnings.warn(f"serving.export failed, using torch.onnx.export: {proc.stderr[-500:]}",
                          stacklevel=1)
    if not exported:
        _torch_onnx_export(root / "v0" / "model", root / "v0" / "onnx")
    assert (root / "v0" / "onnx" / "model.onnx").exists()
    return root


class ServerProcess:
    """A ``python -m serving.serve`` process (:class:`study.process.Launched`, its own process
    group) on a free loopback port; ready when the engine's health URL (the registry's) answers."""

    def __init__(self, engine: str, root: Path, *extra: str, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.health_url = facts(engine).health_url("127.0.0.1", self.port)
        self.log_path = log_path
        cmd = python_module("serving.serve", "--engine", engine, "--artifacts-dir", str(root),
                            "--port", str(self.port), "--threads", "1", "--no-build", *extra)
        self.launched = Launched(cmd, name=f"{engine} server", log=log_path, cwd=REPO_ROOT,
                                 env=child_env({"OMP_NUM_THREADS": "1"})).start()
        self.proc = self.launched.proc

    def wait_ready(self, timeout_s: float = 120.0) -> ServerProcess:
        try:
            self.launched.wait_ready(url=self.health_url, timeout_s=timeout_s, poll_s=0.2)
        except NotReady as e:
            raise RuntimeError(f"{e}\n{self.log()}") from None
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM to its group, wait; returns the exit status (KILL if it hangs)."""
        return self.launched.stop(timeout_s=timeout_s)


@pytest.fixture(scope="module")
def serve_process(tmp_path_factory):
    """Factory: ``serve_process("onnxruntime", root, "--max-queue-size", "2")`` → a ready
    :class:`ServerProcess` (``wait=False``: started, call ``.wait_ready()`` yourself, so several
    servers load at once); everything started is stopped when the test module ends."""
    started: list[ServerProcess] = []
    tmp_path = tmp_path_factory.mktemp("server_logs")

    def start(engine: str, root: Path, *extra: str, wait: bool = True) -> ServerProcess:
        sp = ServerProcess(engine, root, *extra, log_path=tmp_path / f"{engine}-{len(started)}.log")
        started.append(sp)
        return sp.wait_ready() if wait else sp

    yield start
    for sp in started:
        sp.stop()
