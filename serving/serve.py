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
import sys
import threading
import time

from serving.engines import ENGINES, FACTS, EngineUnavailable, get_engine
from serving.engines.config import DEVICES, DTYPES, FORMATS, LOG_LEVELS, PROVIDERS, EngineSettings
from study.paths import Paths
from study.process import Launched, http_get, python_module

log = logging.getLogger("serving.serve")
EXIT_UNAVAILABLE = 2
DESCRIPTION = ("Serve a trained variant over the Open Inference Protocol v2 (model 'bigvul-modernbert': TEXT "
               "BYTES [batch,1] → LOGITS FP32 [batch,2], LABEL INT64 [batch]). Builds the model/export "
               "first when missing; Ctrl-C stops it.")
_DEFAULT_FORMATS = ", ".join(f"{n}→{f.default_format}" for n, f in FACTS.items())
#: ``--option`` help, one ``field: text`` line per EngineSettings field; type and default come
#: from the dataclass itself, so the CLI cannot drift from the settings.
HELP = f"""
engine: serving stack
variant: variant (<artifacts>/<variant>/)
format: export to serve (default: the engine's: {_DEFAULT_FORMATS})
host: bind address (loopback by default)
port: TCP port
artifacts_dir: artifacts root (default $ARTIFACTS, else artifacts/)
model_name: served model name
max_batch_size: rows per executed batch (and per request)
max_queue_delay_ms: longest a request waits for its batch to fill
max_queue_size: requests waiting beyond this get 503
max_queue_wait_ms: admission by deadline: a request that does not fit in the next batch gets 503 + \
Retry-After when its expected queue wait exceeds this, and a batch holds at most the rows that run in \
half of it (0 = off; onnxruntime/pytorch engines)
max_body_bytes: larger request bodies get 413
threads: intra-op threads (ORT intra_op_num_threads / torch.set_num_threads); default: library's
inter_op_threads: inter-op threads
provider: onnxruntime execution provider
device: pytorch device
dtype: pytorch weights dtype
max_length: tokenizer truncation (tokens)
max_batch_tokens: padded tokens per model call: a batch's rows are sorted by length and split into calls \
of at most this (rows x longest row); default: the backend's (onnxruntime 512, pytorch 1024)
batch_delay_ms: diagnostics only: sleep this long per batch (simulates a slow model)
log_level: log level
"""
CHOICES = {"engine": tuple(sorted(ENGINES)), "format": FORMATS, "provider": PROVIDERS, "device": DEVICES,
           "dtype": DTYPES, "log_level": LOG_LEVELS}
_TYPES = {"int": int, "float": float}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m serving.serve", description=DESCRIPTION)
    defaults = EngineSettings()
    helps = dict(line.split(": ", 1) for line in HELP.strip().splitlines())
    for f in dataclasses.fields(EngineSettings):
        kind = _TYPES.get(str(f.type).split("|")[0].strip())
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, choices=CHOICES.get(f.name),
                       help=helps[f.name], default=getattr(defaults, f.name))
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
    """Run a build step in the foreground (its own process group, stopped with this one on
    Ctrl-C); ``RuntimeError`` when it fails."""
    print(f"[serve] building: {' '.join(cmd)}", file=sys.stderr, flush=True)
    with Launched(cmd, name=cmd[2] if len(cmd) > 2 else cmd[0]) as step:
        rc = step.wait()
    if rc != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed with exit status {rc}")


def ensure_artifacts(engine, settings: EngineSettings) -> None:
    """Train and/or export when the engine's artifact is missing."""
    needed = engine.artifact_path(settings)
    if needed.exists():
        return
    artifacts = ["--artifacts-dir", str(settings.root)]
    if not (settings.model_dir() / "config.json").exists():
        from training.config import split_compressed

        parent, method = split_compressed(settings.variant)
        if method is not None:  # <parent>@<method>: train the parent if needed, then compress it
            if not (Paths.from_env(settings.root).model_dir(parent) / "config.json").exists():
                _run(python_module("training.train", "--variant", parent, *artifacts))
            _run(python_module("training.compress", "--variant", parent, "--method", method, *artifacts))
        else:
            _run(python_module("training.train", "--variant", settings.variant, *artifacts))
    needed = engine.artifact_path(settings)  # the pytorch engine may now serve model/
    if needed.exists():
        return
    _run(python_module("serving.export", "--variant", settings.variant, "--format", settings.format, *artifacts))
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
        if http_get(health_url)[0] == 200:
            print(f"ready: {url}  ({what}; Ctrl-C stops)", flush=True)
            return
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
