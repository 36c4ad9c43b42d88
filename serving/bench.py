"""Serving throughput in one run: onnxruntime server vs pytorch server vs the model in-process.

``python -m serving.bench --variant v0`` (``make bench``). Every setup gets the same inputs
(rows of the test split, repeated to ``--requests``), the same concurrency, the same
``--max-length`` and the same thread count:

- *in-process* (pytorch and onnxruntime runners), no HTTP, no JSON, no queue: once with
  ``--concurrency`` rows per ``predict`` call (the equal-concurrency reference for the ratios)
  and once one row per call. A batch pads every row to its longest, so a big in-process batch
  is not automatically faster than a server whose adaptive batches stay small;
- *servers*: ``python -m serving.serve`` subprocesses on free loopback ports, one after the
  other (never both at once), driven by ``--concurrency`` closed-loop clients that each send one
  row per request (JSON), after a warm-up.

Printed as a table with ratios (to the pytorch server, and server ÷ in-process for the same
backend) and written atomically to ``results/bench/serving__<variant>.json``. Throughput only:
energy per 1k requests comes from ``loadtest.bench`` (also run by ``make bench``). On a shared
2-core box the client competes with the server for CPU; the comparison is fair (same client
for both), the absolute numbers are not a capacity figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from serving.engines.config import EngineSettings
from serving.export.base import REPO_ROOT

MODEL_PATH = "/v2/models/{model}/infer"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_texts(n: int, data: str | None = None) -> list[str]:
    """``n`` rows of the test split (cycled when the split is shorter)."""
    from training.data import load_split

    texts = list(load_split("test", data_path=data)["text"])
    if not texts:
        raise RuntimeError("the test split is empty")
    return [texts[i % len(texts)] for i in range(n)]


def bench_in_process(engine: str, path: Path, texts: list[str], batch: int, args) -> dict[str, Any]:
    """Rows/s of a runner called directly, ``batch`` rows per call (after one warm-up call)."""
    from tqdm import tqdm

    from serving.runners import make_runner

    runner = make_runner(engine, path, max_length=args.max_length, threads=args.threads,
                         inter_op_threads=args.inter_op_threads)
    runner.predict(texts[:batch])
    chunks = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    start = time.perf_counter()
    for chunk in tqdm(chunks, desc=f"in-process {engine}", unit="batch", disable=args.no_progress):
        runner.predict(chunk)
    elapsed_s = time.perf_counter() - start
    suffix = "" if batch == args.concurrency else f" b{batch}"
    return {"setup": f"{engine} in-process{suffix}", "engine": engine, "kind": "in-process",
            "rows": len(texts), "duration_s": elapsed_s, "rows_per_s": len(texts) / elapsed_s,
            "batch_rows": batch}


async def _drive(url: str, model: str, texts: list[str], concurrency: int, progress) -> list[float]:
    """Closed loop: ``concurrency`` clients, one row per request; returns latencies (ms)."""
    path = MODEL_PATH.format(model=model)
    next_i = 0
    latencies_ms: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def worker() -> None:
            nonlocal next_i
            while next_i < len(texts):
                i = next_i
                next_i += 1
                body = {"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES",
                                    "data": [texts[i]]}]}
                t0 = time.perf_counter()
                r = await client.post(path, json=body)
                if r.status_code != 200:
                    raise RuntimeError(f"request {i} failed: {r.status_code} {r.text[:200]}")
                latencies_ms.append((time.perf_counter() - t0) * 1000)
                if progress is not None:
                    progress.update(1)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies_ms


def _metric(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def bench_server(engine: str, texts: list[str], args) -> dict[str, Any]:
    """Start ``engine``'s server, warm it up, drive it, stop it; rows/s and latency."""
    from tqdm import tqdm

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "serving.serve", "--engine", engine, "--variant", args.variant,
           "--artifacts-dir", args.artifacts_dir, "--port", str(port), "--no-build",
           "--max-length", str(args.max_length), "--max-batch-size", str(args.max_batch_size),
           "--max-queue-delay-ms", str(args.max_queue_delay_ms)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.inter_op_threads:
        cmd += ["--inter-op-threads", str(args.inter_op_threads)]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"{engine} server exited: {log.read().decode()[-2000:]}")
                try:
                    if httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{engine} server not ready after 180 s")
                time.sleep(0.2)
            asyncio.run(_drive(url, args.model_name, texts[: args.concurrency * 2],
                               args.concurrency, None))
            batches0 = _metric(url, "inference_batch_size_count")
            rows0 = _metric(url, "inference_batch_size_sum")
            with tqdm(total=len(texts), desc=f"{engine} server", unit="req",
                      disable=args.no_progress) as bar:
                start = time.perf_counter()
                lat = asyncio.run(_drive(url, args.model_name, texts, args.concurrency, bar))
                elapsed_s = time.perf_counter() - start
            batches = _metric(url, "inference_batch_size_count") - batches0
            rows = _metric(url, "inference_batch_size_sum") - rows0
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    from study.stats import percentiles

    return {"setup": f"{engine} server", "engine": engine, "kind": "server", "rows": len(texts),
            "duration_s": elapsed_s, "rows_per_s": len(texts) / elapsed_s,
            "latency_ms": {"mean": statistics.fmean(lat), **percentiles(lat, (50, 95))},
            "mean_batch_rows": rows / batches if batches else None}


def add_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``vs_pytorch_server`` = rows/s ÷ the pytorch server's; ``vs_in_process`` = a server's
    rows/s ÷ its own backend in-process at the same concurrency (rows per call)."""
    by_setup = {r["setup"]: r for r in rows}
    base = by_setup.get("pytorch server")
    for r in rows:
        r["vs_pytorch_server"] = r["rows_per_s"] / base["rows_per_s"] if base else None
        inproc = by_setup.get(f"{r['engine']} in-process")
        r["vs_in_process"] = (r["rows_per_s"] / inproc["rows_per_s"]
                              if r["kind"] == "server" and inproc else None)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    def f(x: Any, spec: str) -> str:
        return "—" if x is None else format(x, spec)

    lines = [f"{'setup':<24}{'rows/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'batch':>7}"
             f"{'÷ pytorch srv':>15}{'÷ in-process':>14}"]
    for r in rows:
        lat = r.get("latency_ms") or {}
        batch = r.get("mean_batch_rows", r.get("batch_rows"))
        lines.append(
            f"{r['setup']:<24}{r['rows_per_s']:>10.1f}{f(lat.get('p50'), '.1f'):>9}"
            f"{f(lat.get('p95'), '.1f'):>9}{f(batch, '.1f'):>7}"
            f"{f(r['vs_pytorch_server'], '.2f'):>15}{f(r['vs_in_process'], '.2f'):>14}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    d = EngineSettings()
    p = argparse.ArgumentParser(
        prog="python -m serving.bench",
        description="Throughput of the onnxruntime server vs the pytorch server vs the model "
        "in-process, at equal settings, in one run (table with ratios + JSON).",
    )
    p.add_argument("--variant", default=d.variant)
    p.add_argument("--artifacts-dir", default=d.artifacts_dir)
    p.add_argument("--model-name", default=d.model_name)
    p.add_argument("--requests", type=int, default=256, help="rows sent to each setup")
    p.add_argument("--concurrency", type=int, default=16,
                   help="closed-loop clients (servers) = rows per call (in-process)")
    # 1 by default: with as many OpenMP threads as cores, a box shared with the load client
    # (and other work) makes torch collapse (~6x slower measured on 2 busy cores).
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads for every setup (default 1)")
    p.add_argument("--inter-op-threads", type=int, default=1)
    p.add_argument("--max-length", type=int, default=256, help="tokenizer truncation (tokens)")
    p.add_argument("--max-batch-size", type=int, default=16, help="server batch cap (rows)")
    p.add_argument("--max-queue-delay-ms", type=float, default=5.0)
    p.add_argument("--data", default=None, help="BigVul CSV (default: $DATA or the sample)")
    p.add_argument("--out", default=None,
                   help="JSON output (default results/bench/serving__<variant>.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.requests < 1 or args.concurrency < 1:
        print("bench: --requests and --concurrency must be >= 1", file=sys.stderr)
        return 1
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    settings = EngineSettings(variant=args.variant, artifacts_dir=args.artifacts_dir)
    args.artifacts_dir = str(settings.root)

    from serving.engines import get_engine
    from serving.serve import ensure_artifacts
    from study.environment import capture
    from study.io import write_json_atomic

    paths = {}
    for engine in ("onnxruntime", "pytorch"):
        eng = get_engine(engine)
        s = EngineSettings(engine=engine, variant=args.variant, artifacts_dir=args.artifacts_dir,
                           format=eng.default_format)
        ensure_artifacts(eng, s)  # train/export first, outside any measurement
        paths[engine] = Path(eng.artifact_path(s))

    texts = load_texts(args.requests, args.data)
    rows = [
        bench_in_process("pytorch", paths["pytorch"], texts, args.concurrency, args),
        bench_in_process("onnxruntime", paths["onnxruntime"], texts, args.concurrency, args),
        bench_in_process("pytorch", paths["pytorch"], texts, 1, args),
        bench_in_process("onnxruntime", paths["onnxruntime"], texts, 1, args),
        bench_server("pytorch", texts, args),
        bench_server("onnxruntime", texts, args),
    ]
    add_ratios(rows)
    print()
    print(f"serving throughput — variant {args.variant}, {args.requests} rows of the test split, "
          f"concurrency {args.concurrency}, threads {args.threads}, max_length {args.max_length}, "
          f"server max_batch_size {args.max_batch_size}")
    print(format_table(rows))
    out = Path(args.out) if args.out else REPO_ROOT / "results" / "bench" / f"serving__{args.variant}.json"
    write_json_atomic(out, {
        "variant": args.variant,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "no_progress")},
        "rows": rows,
        "environment": capture(),
    })
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
