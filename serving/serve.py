"""Start one serving engine in the foreground: ``python -m serving.serve --engine onnxruntime``.

Builds what it needs first: ``artifacts/<variant>/model/`` (by running training) and the
engine's export (by running ``serving.export``) when they are missing. Then it serves, prints
the URL once ``GET <health_path>`` answers 200, and stops cleanly on Ctrl-C / SIGTERM.

An engine that cannot run here (GPU-only, separate environment, missing execution provider)
prints one line saying why and exits with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from serving.engines import ENGINES, EngineUnavailable, get_engine
from serving.engines.config import DEVICES, DTYPES, FORMATS, PROVIDERS, EngineSettings

log = logging.getLogger("serving.serve")
EXIT_UNAVAILABLE = 2


def build_parser() -> argparse.ArgumentParser:
    d = EngineSettings()
    p = argparse.ArgumentParser(
        prog="python -m serving.serve",
        description="Serve a trained variant over the Open Inference Protocol v2 "
        "(model 'bigvul-modernbert': TEXT BYTES [batch,1] → LOGITS FP32 [batch,2], LABEL INT64 "
        "[batch]). Builds the model/export first when missing; Ctrl-C stops it.",
    )
    p.add_argument("--engine", default=d.engine, choices=sorted(ENGINES), help="serving stack")
    p.add_argument("--variant", default=d.variant, help="variant (artifacts/<variant>/)")
    p.add_argument("--format", default=None, choices=FORMATS,
                   help="export to serve (default: the engine's: onnxruntime→onnx, pytorch→pytorch, triton→onnx)")
    p.add_argument("--host", default=d.host, help="bind address (loopback by default)")
    p.add_argument("--port", type=int, default=d.port, help="TCP port")
    p.add_argument("--artifacts-dir", default=d.artifacts_dir, help="artifacts root")
    p.add_argument("--model-name", default=d.model_name, help="served model name")
    p.add_argument("--max-batch-size", type=int, default=d.max_batch_size,
                   help="rows per executed batch (and per request)")
    p.add_argument("--max-queue-delay-ms", type=float, default=d.max_queue_delay_ms,
                   help="longest a request waits for its batch to fill")
    p.add_argument("--max-queue-size", type=int, default=d.max_queue_size,
                   help="requests waiting beyond this get 503")
    p.add_argument("--max-queue-wait-ms", type=float, default=d.max_queue_wait_ms,
                   help="admission by deadline: a request that does not fit in the next batch gets "
                   "503 + Retry-After when its expected queue wait exceeds this (0 = off; "
                   "onnxruntime/pytorch engines)")
    p.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes,
                   help="larger request bodies get 413")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="intra-op threads (ORT intra_op_num_threads / torch.set_num_threads); default: library's")
    p.add_argument("--inter-op-threads", type=int, default=d.inter_op_threads, help="inter-op threads")
    p.add_argument("--provider", default=d.provider, choices=PROVIDERS,
                   help="onnxruntime execution provider")
    p.add_argument("--device", default=d.device, choices=DEVICES, help="pytorch device")
    p.add_argument("--dtype", default=d.dtype, choices=DTYPES, help="pytorch weights dtype")
    p.add_argument("--max-length", type=int, default=d.max_length, help="tokenizer truncation (tokens)")
    p.add_argument("--max-batch-tokens", type=int, default=d.max_batch_tokens,
                   help="padded tokens per model call: a batch's rows are sorted by length and "
                   "split into calls of at most this (rows x longest row); default: the "
                   "backend's (onnxruntime 512, pytorch 1024)")
    p.add_argument("--batch-delay-ms", type=float, default=d.batch_delay_ms,
                   help="diagnostics only: sleep this long per batch (simulates a slow model)")
    p.add_argument("--log-level", default=d.log_level,
                   choices=["critical", "error", "warning", "info", "debug"])
    build = p.add_mutually_exclusive_group()
    build.add_argument("--no-build", action="store_true",
                       help="fail instead of training/exporting when an artifact is missing")
    build.add_argument("--build-only", action="store_true",
                       help="train/export what the engine needs, then exit without serving "
                       "(the load test uses this so a build never lands in a measured window)")
    return p


def settings_from_args(args: argparse.Namespace) -> EngineSettings:
    names = {f.name for f in dataclasses.fields(EngineSettings)}
    return EngineSettings.from_dict({k: v for k, v in vars(args).items() if k in names})


def _run(cmd: list[str]) -> None:
    print(f"[serve] building: {' '.join(cmd)}", file=sys.stderr, flush=True)
    rc = subprocess.call(cmd)
    if rc != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed with exit status {rc}")


def ensure_artifacts(engine, settings: EngineSettings) -> None:
    """Train and/or export when the engine's artifact is missing."""
    needed = Path(engine.artifact_path(settings))
    if needed.exists():
        return
    artifacts = ["--artifacts-dir", str(settings.root)]
    if not (settings.model_dir() / "config.json").exists():
        from training.config import split_compressed

        parent, method = split_compressed(settings.variant)
        if method is not None:  # <parent>@<method>: train the parent if needed, then compress it
            if not (settings.root / parent / "model" / "config.json").exists():
                _run([sys.executable, "-m", "training.train", "--variant", parent, *artifacts])
            _run([sys.executable, "-m", "training.compress", "--variant", parent, "--method", method, *artifacts])
        else:
            _run([sys.executable, "-m", "training.train", "--variant", settings.variant, *artifacts])
    needed = Path(engine.artifact_path(settings))  # the pytorch engine may now serve model/
    if needed.exists():
        return
    _run([sys.executable, "-m", "serving.export", "--variant", settings.variant,
          "--format", settings.format, *artifacts])
    if not needed.exists():
        raise RuntimeError(f"export finished but {needed} is still missing")


def port_in_use(host: str, port: int) -> bool:
    """True when ``host:port`` cannot be bound right now (another server holds it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


class Terminated(Exception):
    """SIGTERM arrived: stop like Ctrl-C and exit 0."""


def _on_sigterm(signum, frame) -> None:
    # uvicorn captures SIGTERM while it serves and re-raises it after its graceful shutdown;
    # turning it into an exception lets `main` report and exit 0 instead of dying by signal.
    raise Terminated()


def _announce_when_ready(url: str, health_url: str, stop: threading.Event, what: str) -> None:
    while not stop.is_set():
        try:
            with urllib.request.urlopen(health_url, timeout=2) as r:
                if r.status == 200:
                    print(f"ready: {url}  ({what}; Ctrl-C stops)", flush=True)
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        stop.wait(0.2)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        settings = settings_from_args(args)
        engine = get_engine(settings.engine)
        if settings.format is None:
            settings.format = engine.default_format
        engine.check(settings)
        # Fail before a long build/model load, and never announce someone else's server as ours.
        # Every port the engine binds (Triton also takes port+1 for gRPC and port+2 for metrics).
        if not args.build_only:
            ports = engine.ports(settings)
            busy = [p for p in ports if port_in_use(settings.host, p)]
            if busy:
                raise RuntimeError(
                    f"port(s) {busy} on {settings.host} already in use (engine {settings.engine} "
                    f"binds {ports}); pick another with --port"
                )
        if not args.no_build:
            ensure_artifacts(engine, settings)
        if args.build_only:
            return 0
    except EngineUnavailable as e:
        print(f"serve: engine {args.engine} unavailable here: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"serve: {e}", file=sys.stderr)
        return 1

    stop = threading.Event()
    what = f"engine={settings.engine} variant={settings.variant} format={settings.format} model={settings.model_name}"
    watcher = threading.Thread(
        target=_announce_when_ready,
        args=(settings.url, settings.url + engine.health_path, stop, what),
        daemon=True,
    )
    watcher.start()
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        engine.serve(settings)
    except EngineUnavailable as e:
        print(f"serve: engine {args.engine} unavailable here: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        # e.g. an engine's server process that died on start-up: one line, not a traceback
        print(f"serve: {e}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Terminated):
        pass
    finally:
        stop.set()
    print(f"stopped after {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
