"""Explore a served model with Locust's web UI: ``python -m loadtest.explore --help`` (``make locust``).

Starts, in this order, and stops again on Ctrl-C (or when Locust exits):

1. the engine's server (``python -m serving.serve``, the artifact trained/exported first when it
   is missing — :class:`loadtest.run.Server` and :func:`loadtest.run.prepare_artifacts`, the
   same as a measured run) on a free loopback port;
2. the power sidecar (:class:`energy.sidecar.Sidecar`) with ``--pid <server>``, so the Energy tab
   can show the server-attributed share beside the machine's figure (the estimate meter
   attributes it; a measured meter alone has no per-process series);
3. ``locust -f loadtest/locustfile.py --host <server> --power-csv <sidecar CSV> --server-pid
   <server>`` with its web UI on ``--web-host``:``--web-port`` (127.0.0.1:8089). Any argument this
   script does not know goes to Locust unchanged (``--headless -u 4 -t 30s``, ``--rps 10``, …).

Nothing here is a measured study (no idle baseline, no settle window, no repeats): use
``make load`` for that (docs/loadtest.md). The session's server log and power trace are in
``<results-dir>/<engine>__<variant>/session-<UTC>/``; each test started from the web UI writes
its own run directory beside it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from loadtest.live import DEFAULT_RESULTS_DIR, utc_run_id
from loadtest.run import (
    ENGINES,
    LOCUSTFILE,
    MODEL_NAME,
    RepeatFailed,
    RunConfig,
    Server,
    child_env,
    prepare_artifacts,
    stop_process,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.explore",
        description="Start ENGINE's server and a power sidecar, then Locust's web UI (Energy tab) "
        "against it; Ctrl-C stops everything. Unknown arguments go to Locust.",
    )
    p.add_argument("--engine", required=True, choices=ENGINES, help="serving engine")
    p.add_argument("--variant", default=os.environ.get("VARIANT", "v0"), help="variant (default v0)")
    p.add_argument("--format", default=None, help="export format (default: the engine's)")
    p.add_argument("--meter", default=os.environ.get("METER", "auto"),
                   help="power meter spec of the sidecar (auto, estimate, nvml, rapl, …)")
    p.add_argument("--interval-s", type=float, default=0.5, help="sidecar sampling period, s")
    p.add_argument("--web-host", default="127.0.0.1", help="web UI address (default loopback)")
    p.add_argument("--web-port", type=int, default=8089, help="web UI port (default 8089)")
    p.add_argument("--artifacts-dir", default=os.environ.get("ARTIFACTS", "artifacts"), help="artifacts root")
    p.add_argument("--results-dir", default=DEFAULT_RESULTS_DIR, help="results root (default results/locust)")
    p.add_argument("--model-name", default=MODEL_NAME, help="served model name")
    p.add_argument("--startup-timeout", type=float, default=600.0, help="server start-up limit, s")
    p.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for serving.serve (repeatable, e.g. --server-arg=--threads=2)")
    return p


def main(argv: list[str] | None = None) -> int:
    args, locust_args = build_parser().parse_known_args(argv)
    try:
        cfg = RunConfig(engine=args.engine, variant=args.variant, format=args.format, meter=args.meter,
                        artifacts_dir=args.artifacts_dir, model_name=args.model_name,
                        startup_timeout_s=args.startup_timeout, server_args=list(args.server_arg))
    except ValueError as e:
        print(f"loadtest.explore: {e}", file=sys.stderr)
        return 2
    from energy.sidecar import Sidecar

    session = Path(args.results_dir) / f"{cfg.engine}__{cfg.variant}" / f"session-{utc_run_id()}"
    session.mkdir(parents=True, exist_ok=True)
    server = Server(cfg, session)
    sidecar = None
    locust = None
    try:
        prepare_artifacts(cfg)
        print(f"[locust] starting {cfg.engine}/{cfg.variant} (log: {server.log_path})", file=sys.stderr)
        server.start()
        server.wait_ready(cfg.startup_timeout_s)
        pid = server.proc.pid if server.proc else None
        power = session / "power.csv"
        sidecar = Sidecar(power, interval_s=args.interval_s, meter=args.meter, pids=(pid,) if pid else ())
        cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", server.url,
               "--model", cfg.model_name, "--power-csv", str(power), "--results-dir", args.results_dir,
               "--artifacts-dir", args.artifacts_dir, "--web-host", args.web_host,
               "--web-port", str(args.web_port), *(["--server-pid", str(pid)] if pid else []), *locust_args]
        if "--headless" not in locust_args:
            print(f"[locust] web UI: http://{args.web_host}:{args.web_port} (server {server.url}, "
                  f"power {power}); Ctrl-C stops", file=sys.stderr)
        locust = subprocess.Popen(cmd, env=child_env(), cwd=os.getcwd())
        return locust.wait()
    except KeyboardInterrupt:
        return 130
    except (RepeatFailed, RuntimeError, TimeoutError, OSError) as e:
        print(f"loadtest.explore: {e}", file=sys.stderr)
        return 1
    finally:
        stop_process(locust, timeout_s=15, sig=signal.SIGINT)  # Locust writes its report on SIGINT
        if sidecar is not None:
            sidecar.stop()
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
