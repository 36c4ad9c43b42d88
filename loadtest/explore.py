"""Explore a served model with Locust's web UI: ``python -m loadtest.explore --help`` (``make locust``).

Starts, in this order, and stops again on Ctrl-C (or when Locust exits):

1. the engine's server (``python -m serving.serve``, the artifact trained/exported first when it
   is missing — :class:`loadtest.launch.Server` and :func:`loadtest.run.prepare_artifacts`, the
   same as a measured run) on a free loopback port;
2. the power sidecar (:class:`energy.sidecar.Sidecar`) with ``--pid <server>``, so the Energy tab
   can show the server-attributed share beside the machine's figure (the estimate meter
   attributes it; a measured meter alone has no per-process series);
3. ``locust -f loadtest/locustfile.py --host <server> --power-csv <sidecar CSV> --server-pid
   <server>`` with its web UI on ``--web-host``:``--web-port`` (127.0.0.1:8089). Any argument this
   script does not know goes to Locust unchanged (``--headless -u 4 -t 30s``, ``--rps 10``, …).

Nothing here is a measured study (no idle baseline, no settle window, no repeats): use
``make load`` for that (docs/loadtest.md). ``--results-dir`` is the results root: the session's
server log and power trace are in ``<results>/locust/<engine>__<variant>/session-<UTC>/``; each
test started from the web UI writes its own run directory beside it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from loadtest.config import LOCUSTFILE, RepeatFailed, RunConfig, server_parser
from loadtest.launch import Server
from loadtest.live import utc_run_id
from loadtest.run import prepare_artifacts
from study.process import Launched, NotReady


def build_parser() -> argparse.ArgumentParser:
    p = server_parser("python -m loadtest.explore", "Start ENGINE's server and a power sidecar, then "
                      "Locust's web UI (Energy tab) against it; Ctrl-C stops everything. Unknown "
                      "arguments go to Locust.", interval_s=0.5)
    p.add_argument("--web-host", default="127.0.0.1", help="web UI address (default loopback)")
    p.add_argument("--web-port", type=int, default=8089, help="web UI port (default 8089)")
    return p


def main(argv: list[str] | None = None) -> int:
    args, locust_args = build_parser().parse_known_args(argv)
    try:
        cfg = RunConfig(engine=args.engine, variant=args.variant, format=args.format, meter=args.meter,
                        artifacts_dir=args.artifacts_dir, results_dir=args.results_dir,
                        model_name=args.model_name, startup_timeout_s=args.startup_timeout,
                        server_args=list(args.server_arg))
    except ValueError as e:
        print(f"loadtest.explore: {e}", file=sys.stderr)
        return 2
    from energy.sidecar import Sidecar

    session = cfg.paths.locust_run(cfg.engine, cfg.variant, f"session-{utc_run_id()}")
    session.mkdir(parents=True, exist_ok=True)
    server = Server(cfg, session)
    sidecar = None
    locust: Launched | None = None
    try:
        prepare_artifacts(cfg)
        print(f"[locust] starting {cfg.engine}/{cfg.variant} (log: {server.log_path})", file=sys.stderr)
        server.start()
        server.wait_ready(cfg.startup_timeout_s)
        pid = server.pid
        power = session / "power.csv"
        sidecar = Sidecar(power, interval_s=args.interval_s, meter=args.meter, pids=(pid,) if pid else ())
        cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", server.url,
               "--model", cfg.model_name, "--power-csv", str(power), "--results-dir", cfg.results_dir,
               "--artifacts-dir", cfg.artifacts_dir, "--web-host", args.web_host,
               "--web-port", str(args.web_port), *(["--server-pid", str(pid)] if pid else []), *locust_args]
        if "--headless" not in locust_args:
            print(f"[locust] web UI: http://{args.web_host}:{args.web_port} (server {server.url}, "
                  f"power {power}); Ctrl-C stops", file=sys.stderr)
        # Locust's output stays on this terminal; its own group, so Ctrl-C reaches it once
        # (from the finally below, as SIGINT: Locust writes its report then).
        locust = Launched(cmd, name="Locust", cwd=os.getcwd()).start()
        rc = locust.wait()
        return 1 if rc is None else rc
    except KeyboardInterrupt:
        return 130
    except (RepeatFailed, RuntimeError, TimeoutError, OSError, NotReady) as e:
        print(f"loadtest.explore: {e}", file=sys.stderr)
        return 1
    finally:
        if locust is not None:
            locust.stop(timeout_s=15, sig=signal.SIGINT)  # Locust writes its report on SIGINT
        if sidecar is not None:
            sidecar.stop()
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
