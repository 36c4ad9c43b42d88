"""The setups of the serving bench (:mod:`serving.bench`): a runner called in-process, or an
engine's real server driven over loopback HTTP by closed-loop clients.

Every server is a ``python -m serving.serve`` child started through
:class:`study.process.Launched` (its own process group, ready when the engine's health path
answers 200, TERM then KILL), on free loopback ports, one after the other. Request bodies are
encoded once, before the clock starts (the OIP JSON of :func:`serving.protocol.make_request`,
vLLM's classify JSON for vLLM), so the client spends its CPU on HTTP, not on JSON; the client's
own CPU time and the server's process-tree CPU time are recorded per request.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from study.paths import Paths

MODEL_PATH = "/v2/models/{model}/infer"


def load_texts(n: int, data: str | None = None, model_dir: Path | None = None) -> list[str]:
    """``n`` rows of the artifact's test split (cycled when the split is shorter)."""
    from training.data import load_split_for_artifact

    texts = list(load_split_for_artifact("test", model_dir, data_path=data)["text"])
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
    cpu0, start = time.process_time(), time.perf_counter()
    for chunk in tqdm(chunks, desc=f"in-process {engine}", unit="batch", disable=args.no_progress):
        runner.predict(chunk)
    elapsed_s = time.perf_counter() - start
    cpu_s = time.process_time() - cpu0
    suffix = "" if batch == args.concurrency else f" b{batch}"
    return {"setup": f"{engine} in-process{suffix}", "engine": engine, "kind": "in-process",
            "status": "ok", "rows": len(texts), "duration_s": elapsed_s,
            "rows_per_s": len(texts) / elapsed_s, "batch_rows": batch,
            "server_cpu_ms_per_row": cpu_s * 1000 / len(texts)}


def request_bodies(engine: str, texts: list[str], model: str) -> tuple[str, list[bytes], dict[str, str]]:
    """(path, one body per text, headers) in the protocol ``engine`` speaks."""
    import orjson

    if engine == "vllm":
        from serving.engines.vllm import classify_request

        bodies = []
        for t in texts:
            path, body = classify_request([t], model)
            bodies.append(orjson.dumps(body))
        return path, bodies, {"content-type": "application/json"}
    from serving.protocol import make_request

    headers: dict[str, str] = {}
    bodies = []
    for t in texts:
        body, headers = make_request([t])
        bodies.append(body)
    return MODEL_PATH.format(model=model), bodies, headers


async def drive(url: str, path: str, bodies: list[bytes], headers: dict[str, str], concurrency: int,
                progress=None) -> list[float]:
    """Closed loop: ``concurrency`` clients, one pre-encoded body per request; latencies (ms)."""
    next_i = 0
    latencies_ms: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600, headers=headers) as client:

        async def worker() -> None:
            nonlocal next_i
            while next_i < len(bodies):
                i = next_i
                next_i += 1
                t0 = time.perf_counter()
                r = await client.post(path, content=bodies[i])
                if r.status_code != 200:
                    raise RuntimeError(f"request {i} failed: {r.status_code} {r.text[:200]}")
                latencies_ms.append((time.perf_counter() - t0) * 1000)
                if progress is not None:
                    progress.update(1)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies_ms


def server_command(engine: str, port: int, args) -> list[str]:
    """``python -m serving.serve`` for ``engine`` with the bench's equal settings."""
    cmd = [sys.executable, "-m", "serving.serve", "--engine", engine, "--variant", args.variant,
           "--artifacts-dir", str(args.paths.artifacts), "--port", str(port), "--no-build",
           "--max-length", str(args.max_length), "--max-batch-size", str(args.max_batch_size),
           "--max-queue-delay-ms", str(args.max_queue_delay_ms),
           # Closed loop at a fixed concurrency: nothing to shed, and Triton/vLLM have no such
           # bound, so admission by deadline is off for every engine (equal settings).
           "--max-queue-wait-ms", "0"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.inter_op_threads:
        cmd += ["--inter-op-threads", str(args.inter_op_threads)]
    return cmd


def _batch_metrics(url: str) -> tuple[float | None, float | None]:
    from study.prometheus import scrape_sum

    return (scrape_sum(url + "/metrics", ("inference_batch_size_count",)),
            scrape_sum(url + "/metrics", ("inference_batch_size_sum",)))


def bench_server(engine: str, texts: list[str], args) -> dict[str, Any]:
    """Start ``engine``'s server, warm it up, drive it, stop it: rows/s, latency, CPU."""
    from tqdm import tqdm

    from serving.engines import get_engine
    from study.process import Launched, child_env, free_port
    from study.stats import percentiles

    paths: Paths = args.paths
    eng = get_engine(engine)
    port = free_port(3)  # Triton also binds port+1 (gRPC) and port+2 (metrics)
    url = f"http://127.0.0.1:{port}"
    log = paths.bench / f"serving__{args.variant}__{engine}.log"
    log.unlink(missing_ok=True)
    # The same intra-op budget for engines that take no --threads: vLLM-CPU binds one OpenMP
    # thread per core unless told "nobind", then honours OMP_NUM_THREADS (measured: without it
    # the vLLM server used 2 cores while the others had 1).
    extra = {"OMP_NUM_THREADS": str(args.threads), "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    env = child_env(extra if args.threads else None)
    path, bodies, headers = request_bodies(engine, texts, args.model_name)
    with Launched(server_command(engine, port, args), name=f"{engine} server", log=log, env=env) as srv:
        srv.wait_ready(url=url + eng.health_path, timeout_s=args.ready_timeout_s)
        warm = bodies[: max(args.concurrency * 2, 4)]
        asyncio.run(drive(url, path, warm, headers, args.concurrency))
        batches0, rows0 = _batch_metrics(url)
        with tqdm(total=len(bodies), desc=f"{engine} server", unit="req", disable=args.no_progress) as bar:
            srv_cpu0, cpu0, start = srv.cpu_seconds(), time.process_time(), time.perf_counter()
            lat = asyncio.run(drive(url, path, bodies, headers, args.concurrency, bar))
            elapsed_s = time.perf_counter() - start
            client_cpu_s, srv_cpu_s = time.process_time() - cpu0, srv.cpu_seconds() - srv_cpu0
        batches1, rows1 = _batch_metrics(url)
    mean_batch = None
    if None not in (batches0, batches1, rows0, rows1) and batches1 > batches0:
        mean_batch = (rows1 - rows0) / (batches1 - batches0)
    return {"setup": f"{engine} server", "engine": engine, "kind": "server", "status": "ok",
            "rows": len(texts), "duration_s": elapsed_s, "rows_per_s": len(texts) / elapsed_s,
            "latency_ms": {"mean": statistics.fmean(lat), **percentiles(lat, (50, 95))},
            "mean_batch_rows": mean_batch,
            "server_cpu_ms_per_row": srv_cpu_s * 1000 / len(texts),
            "client_cpu_ms_per_row": client_cpu_s * 1000 / len(texts), "log": str(log)}


def failed_row(engine: str, kind: str, reason: str) -> dict[str, Any]:
    """A setup that could not run here (engine unavailable, server died): the table says why."""
    setup = f"{engine} server" if kind == "server" else f"{engine} in-process"
    return {"setup": setup, "engine": engine, "kind": kind, "status": "failed",
            "failure_reason": reason.strip().splitlines()[-1][:300] if reason.strip() else "failed",
            "rows": 0, "rows_per_s": None}
