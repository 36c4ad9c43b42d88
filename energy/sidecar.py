"""The power sidecar: a separate process that samples meters and appends a power CSV.

::

    python -m energy.sidecar --out power.csv --interval-s 0.1 [--meter auto] [--gpus 0,2]
        [--mark-port 0 --port-file port.txt] [--mark-file marks.txt] [--pid P …]

Every ``--interval-s`` it reads every selected meter and appends one row per device
(``t_unix_s,device,power_w,energy_j,source,kind,flag``, see :mod:`energy.trace`), flushing
after each batch, so SIGKILL loses at most the batch in flight. A meter read that fails is
logged and written as a ``gap`` row; sampling goes on. SIGTERM/SIGINT stop it cleanly.

The GPUs it reads are ``--gpus`` or else its ``$CUDA_VISIBLE_DEVICES`` (:mod:`energy.nvml`): start
it with the server's environment and it measures the server's GPUs. What the meters are (spec,
sources, GPU UUIDs and names) is written once at start to ``<stem>.meters.json`` beside the
output, where :func:`energy.trace.record_from_csv` puts it into every record cut from the trace.

Marks (named instants that analysis cuts windows at) are stored in ``<stem>.marks.csv`` beside
the output, where :func:`energy.trace.read_marks` finds them. They arrive by

* HTTP on loopback: ``POST http://127.0.0.1:<port>/mark`` with ``{"name": "steady_start"}``
  (optional ``"t_unix_s"``); ``--mark-port 0`` picks a free port, printed on stdout and written
  to ``--port-file``. ``GET /marks`` lists them, ``GET /health`` answers ``{"ok": true, …}``.
* a mark file: lines appended to ``--mark-file`` as ``name`` or ``t_unix_s,name``; a line
  without a time is stamped when the sidecar sees it (≤ one interval late).

From Python, :class:`Sidecar` starts and stops one, and :func:`post_mark` sends a mark.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import signal
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from energy.config import MeterConfig
from energy.trace import MARK_COLUMNS, TraceWriter, marks_path, meters_path
from energy.window import read_meters
from study.io import write_json_atomic, write_text_atomic

log = logging.getLogger("energy.sidecar")

MAX_MARK_NAME = 200


class MarkStore:
    """Appends marks to ``<stem>.marks.csv`` (thread-safe; flushed per mark)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        new = not path.exists() or path.stat().st_size == 0
        self._fh = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._w = csv.writer(self._fh)
        self._lock = threading.Lock()
        self.marks: list[tuple[str, float]] = []
        if new:
            self._w.writerow(MARK_COLUMNS)
            self._fh.flush()

    def add(self, name: str, t_unix_s: float | None = None) -> tuple[str, float]:
        """Record mark ``name`` at ``t_unix_s`` (default: now); validates the name."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError("mark 'name' must be a non-empty string")
        name = name.strip()
        if len(name) > MAX_MARK_NAME or "\n" in name or "\r" in name:
            raise ValueError(f"mark 'name' must be one line of at most {MAX_MARK_NAME} characters")
        t = time.time() if t_unix_s is None else float(t_unix_s)
        if not math.isfinite(t):
            raise ValueError(f"mark 't_unix_s' must be a finite number of Unix seconds, got {t_unix_s!r}")
        with self._lock:
            self._w.writerow([f"{t:.6f}", name])
            self._fh.flush()
            self.marks.append((name, t))
        log.info("mark %r at %.3f", name, t)
        return name, t

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.close()


class MarkFileTail:
    """Reads complete new lines appended to a mark file (``name`` or ``t_unix_s,name``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pos = 0

    def poll(self, store: MarkStore) -> int:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._pos)
                data = fh.read()
        except FileNotFoundError:
            return 0
        end = data.rfind(b"\n")
        if end < 0:
            return 0  # no complete line yet
        self._pos += end + 1
        n = 0
        for raw in data[: end + 1].decode("utf-8", "replace").splitlines():
            line = raw.strip()
            if not line:
                continue
            t: float | None = None
            head, sep, tail = line.partition(",")
            if sep:
                try:
                    t, line = float(head), tail.strip()
                except ValueError:
                    t = None  # a name that contains a comma
            try:
                store.add(line, t)
                n += 1
            except ValueError as e:
                log.warning("mark file %s: ignored line %r (%s)", self.path, raw, e)
        return n


def _handler(store: MarkStore, status: dict[str, Any]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "energy-sidecar"

        def _send(self, code: int, obj: Any) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            if self.path == "/health":
                self._send(200, {"ok": True, **status})
            elif self.path == "/marks":
                self._send(200, [{"name": n, "t_unix_s": t} for n, t in store.marks])
            else:
                self._send(404, {"error": f"unknown path {self.path!r}; use POST /mark, GET /marks, GET /health"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/mark":
                self._send(404, {"error": f"unknown path {self.path!r}; use POST /mark"})
                return
            try:
                n = int(self.headers.get("Content-Length") or 0)
                if n > 64 * 1024:
                    raise ValueError("body too large")
                body = json.loads(self.rfile.read(n) or b"{}")
                if not isinstance(body, dict):
                    raise ValueError('body must be a JSON object like {"name": "steady_start"}')
                name, t = store.add(body.get("name"), body.get("t_unix_s"))
            except (ValueError, TypeError) as e:
                self._send(400, {"error": str(e)})
                return
            self._send(200, {"name": name, "t_unix_s": t})

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("http: " + fmt, *args)

    return Handler


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m energy.sidecar",
        description="Sample power/energy meters into a CSV until SIGTERM/SIGINT; accept marks over "
        "loopback HTTP or a mark file (stored in <stem>.marks.csv beside --out).",
    )
    p.add_argument("--out", required=True, help="power CSV to append to (created with a header)")
    p.add_argument("--interval-s", type=float, default=0.1, help="sampling period in seconds (default 0.1)")
    p.add_argument("--meter", default=None,
                   help="meter spec: auto | nvml | rapl | estimate | codecarbon | replay:<csv>, joined "
                   "with '+' (default: $METER or auto)")
    p.add_argument("--gpus", default=None,
                   help="GPUs the nvml meter reads, as in CUDA_VISIBLE_DEVICES (0,2 | GPU-<uuid> | MIG-<uuid>, "
                   "prefixes allowed) or all | none (default: $CUDA_VISIBLE_DEVICES, else all)")
    p.add_argument("--mark-port", type=int, default=None,
                   help="serve POST /mark on 127.0.0.1:<port>; 0 picks a free port (printed, see --port-file)")
    p.add_argument("--mark-host", default="127.0.0.1", help="address of the mark endpoint (default loopback)")
    p.add_argument("--port-file", default=None, help="write the mark port here (atomically) once listening")
    p.add_argument("--mark-file", default=None, help="also take marks from lines appended to this file")
    p.add_argument("--pid", type=int, action="append", default=[],
                   help="also attribute estimated CPU power to this process (repeatable)")
    p.add_argument("--country", default=None, help="ISO-3 country for CodeCarbon (default $COUNTRY or FRA)")
    p.add_argument("--duration-s", type=float, default=None, help="stop by itself after this many seconds")
    p.add_argument("--fsync", action="store_true", help="fsync after every batch (survives power loss too)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from energy.registry import MeterUnavailable, resolve

    spec = args.meter or os.environ.get("METER") or "auto"
    try:
        cfg = MeterConfig.from_env(interval_s=args.interval_s, country_iso_code=args.country, pids=args.pid,
                                   gpus=args.gpus)
        meters = resolve(spec, cfg)
    except (ValueError, MeterUnavailable) as e:
        print(f"energy.sidecar: {e}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    out = Path(args.out)
    status: dict[str, Any] = {"rows": 0, "out": str(out), "meter": spec}
    writer: TraceWriter | None = None
    store: MarkStore | None = None
    server: ThreadingHTTPServer | None = None
    tail = MarkFileTail(Path(args.mark_file)) if args.mark_file else None
    errors: dict[int, int] = {}
    try:
        try:  # an unwritable --out or a mark port in use: one line, exit 2, meters released
            writer = TraceWriter(out, fsync=args.fsync)
            write_json_atomic(meters_path(out), {"spec": spec, "meters": [m.describe() for m in meters]})
            store = MarkStore(marks_path(out))
            if args.mark_port is not None:
                server = ThreadingHTTPServer((args.mark_host, args.mark_port), _handler(store, status))
                server.daemon_threads = True
                port = server.server_address[1]
                threading.Thread(target=server.serve_forever, name="mark-http", daemon=True).start()
                if args.port_file:
                    write_text_atomic(args.port_file, f"{port}\n")
                print(f"energy.sidecar: marks at http://{args.mark_host}:{port}/mark", flush=True)
        except OSError as e:
            print(f"energy.sidecar: {e}", file=sys.stderr)
            return 2
        print(f"energy.sidecar: writing {out} every {args.interval_s} s from "
              + ", ".join(f"{getattr(m, 'name', '?')} ({m.source}, {m.kind})" for m in meters), flush=True)
        t_end = None if args.duration_s is None else time.monotonic() + args.duration_s
        next_t = time.monotonic()
        while not stop.is_set():
            batch = read_meters(meters, errors)
            try:
                status["rows"] += writer.write(batch)
            except OSError as e:  # disk full etc.: keep sampling, the hole shows in the trace
                log.warning("write to %s failed: %s", out, e)
            if tail is not None:
                tail.poll(store)
            if t_end is not None and time.monotonic() >= t_end:
                break
            next_t += args.interval_s
            if next_t < time.monotonic():
                next_t = time.monotonic() + args.interval_s
            stop.wait(max(0.0, next_t - time.monotonic()))
        if tail is not None:
            tail.poll(store)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        for m in meters:
            try:
                m.close()
            except Exception as e:
                log.warning("closing %s failed: %s", getattr(m, "name", m), e)
        if writer is not None:
            writer.close()
        if store is not None:
            store.close()
    print(f"energy.sidecar: stopped; {status['rows']} rows, {len(store.marks)} marks", flush=True)
    return 0


def post_mark(name: str, *, port: int, host: str = "127.0.0.1", t_unix_s: float | None = None,
              timeout_s: float = 2.0) -> dict[str, Any]:
    """Send mark ``name`` to a sidecar's HTTP endpoint; returns its answer ``{name, t_unix_s}``."""
    body: dict[str, Any] = {"name": name}
    if t_unix_s is not None:
        body["t_unix_s"] = t_unix_s
    req = urllib.request.Request(
        f"http://{host}:{port}/mark", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        return json.loads(resp.read())


class Sidecar:
    """Run ``python -m energy.sidecar`` as a child process (context manager), through the study's
    launcher (:class:`study.process.Launched`): ready when its port file appears.

    ``Sidecar(out, interval_s=0.1, meter="auto", gpus=None)`` starts it with an HTTP mark endpoint
    on a free loopback port (``gpus``: ``--gpus``; ``None`` = the inherited
    ``CUDA_VISIBLE_DEVICES``); :meth:`mark` sends a mark; :meth:`stop` sends SIGTERM and waits
    (SIGKILL after the timeout). It stays in its parent's process group (it starts no children),
    so a Ctrl-C of the terminal stops it with its parent.
    """

    def __init__(self, out: str | os.PathLike[str], *, interval_s: float = 0.1, meter: str | None = None,
                 pids: tuple[int, ...] = (), gpus: str | None = None, extra_args: tuple[str, ...] = (),
                 start_timeout_s: float = 60.0, python: str = sys.executable) -> None:
        from study.process import Launched, child_env

        self.out = Path(out)
        self.port_file = self.out.with_name(self.out.stem + ".port")
        self.port_file.unlink(missing_ok=True)
        cmd = [python, "-m", "energy.sidecar", "--out", str(self.out), "--interval-s", str(interval_s),
               "--mark-port", "0", "--port-file", str(self.port_file), *extra_args]
        if meter:
            cmd += ["--meter", meter]
        if gpus is not None:
            cmd += ["--gpus", gpus]
        for p in pids:
            cmd += ["--pid", str(p)]
        self.log_path = self.out.with_name(self.out.stem + ".sidecar.log")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.launched = Launched(cmd, name="power sidecar", log=self.log_path, env=child_env(),
                                 cwd=os.getcwd(), new_group=False).start()
        self.proc = self.launched.proc
        try:
            self.launched.wait_ready(path=self.port_file, timeout_s=start_timeout_s, poll_s=0.05)
        except BaseException:
            self.stop()
            raise
        self.port = int(self.port_file.read_text())

    def mark(self, name: str, t_unix_s: float | None = None) -> dict[str, Any]:
        """Record mark ``name`` (now, or at ``t_unix_s``)."""
        return post_mark(name, port=self.port, t_unix_s=t_unix_s)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, wait (SIGKILL after ``timeout_s``); returns the exit code."""
        return self.launched.stop(timeout_s=timeout_s)

    def __enter__(self) -> Sidecar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
