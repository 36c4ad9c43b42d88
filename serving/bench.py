"""Serving throughput in one run: engine servers vs the model in-process, against a measured
compute ceiling. ``python -m serving.bench --variant v0`` (``make bench``);
``python -m serving.bench --model bench`` (``make bench MODEL=bench``).

Every setup gets the same inputs (rows of the test split, repeated to ``--requests``), the same
concurrency, ``--max-length``, batch settings and thread count:

- *in-process* (pytorch and onnxruntime runners), no HTTP, no JSON, no queue: once with
  ``--concurrency`` rows per ``predict`` call and once one row per call (the reference of the
  server-overhead ratio);
- *servers* (:mod:`serving.bench_run`): each engine's ``python -m serving.serve`` on free
  loopback ports, one after the other, warmed up, then driven by ``--concurrency`` closed-loop
  clients sending one row per request.

Two models: the variant's own (default: the tiny v0, where HTTP and Python dominate, so the
server ÷ in-process ratio measures the serving overhead), and ``--model bench``, a random-init
ModernBERT-base-shaped model (:mod:`training.bench_model`, built when missing) where compute
dominates and all four engines (onnxruntime, pytorch eager, Triton, vLLM) are compared. Every
row is also read against a ceiling (:mod:`serving.bench_compute`): a short sustained fp32 matmul
probe of this machine at the bench's thread count, and the model's FLOPs per request at the
lengths sent — ``achieved GFLOP/s ÷ ceiling``.

Printed as a table, and written atomically under the results root's bench directory as
``serving__<variant>.json`` and ``serving__<variant>.md`` (the Markdown table with the machine
it ran on; ``--docs docs/serving.md`` also puts it into that file's Benchmarks section). On a
shared 2-core box the client competes with the server for CPU: the comparison is fair (same
client for every server), the absolute numbers are not a capacity figure.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from serving.bench_run import bench_in_process, bench_server, failed_row, load_texts
from serving.engines.config import EngineSettings
from study.paths import Paths

#: per model: the defaults of the options left unset (the bench model is ~30 GFLOP a request)
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"requests": 256, "concurrency": 16, "max_length": 256, "max_batch_size": 16,
             "engines": "onnxruntime,pytorch"},
    "bench": {"requests": 24, "concurrency": 4, "max_length": 128, "max_batch_size": 4,
              "engines": "onnxruntime,pytorch,triton,vllm"},
}
IN_PROCESS = ("pytorch", "onnxruntime")
#: the in-process runner each server's overhead ratio is taken against (Triton runs the
#: onnxruntime runner inside; vLLM is its own PyTorch model code)
BACKEND = {"onnxruntime": "onnxruntime", "pytorch": "pytorch", "triton": "onnxruntime", "vllm": "pytorch"}
DOCS_START = "<!-- serving-bench:{variant} start -->"
DOCS_END = "<!-- serving-bench:{variant} end -->"


def add_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``vs_pytorch_server`` = rows/s ÷ the pytorch server's; for a server, ``vs_in_process`` =
    rows/s ÷ its backend in-process at the same concurrency (rows per call) and
    ``vs_in_process_b1`` = ÷ its backend in-process one row per call."""
    ok = {r["setup"]: r for r in rows if r.get("rows_per_s")}
    base = ok.get("pytorch server")

    def div(r: dict[str, Any], ref: dict[str, Any] | None) -> float | None:
        return r["rows_per_s"] / ref["rows_per_s"] if ref and r.get("rows_per_s") else None

    for r in rows:
        r["vs_pytorch_server"] = div(r, base)
        backend = BACKEND.get(r["engine"], r["engine"])
        server = r["kind"] == "server"
        r["vs_in_process"] = div(r, ok.get(f"{backend} in-process")) if server else None
        r["vs_in_process_b1"] = div(r, ok.get(f"{backend} in-process b1")) if server else None
    return rows


def _f(x: Any, spec: str) -> str:
    return "—" if x is None else format(x, spec)


COLUMNS = (  # (header, key or callable, format)
    ("rows/s", "rows_per_s", ".1f"),
    ("p50 ms", lambda r: (r.get("latency_ms") or {}).get("p50"), ".0f"),
    ("p95 ms", lambda r: (r.get("latency_ms") or {}).get("p95"), ".0f"),
    ("batch", lambda r: r.get("mean_batch_rows", r.get("batch_rows")), ".1f"),
    ("srv CPU ms/row", "server_cpu_ms_per_row", ".1f"),
    ("client CPU ms/row", "client_cpu_ms_per_row", ".1f"),
    ("÷ pytorch srv", "vs_pytorch_server", ".2f"),
    ("÷ in-proc", "vs_in_process", ".2f"),
    ("÷ in-proc 1 row", "vs_in_process_b1", ".2f"),
    ("GFLOP/s", "achieved_gflops", ".2f"),
    ("÷ ceiling", "vs_ceiling", ".3f"),
)


def _cells(r: dict[str, Any]) -> list[str]:
    out = []
    for _, key, spec in COLUMNS:
        out.append(_f(key(r) if callable(key) else r.get(key), spec))
    return out


def format_table(rows: list[dict[str, Any]]) -> str:
    """The printed table (fixed-width)."""
    widths = [max(len(h), 7) + 1 for h, _, _ in COLUMNS]
    lines = [f"{'setup':<26}" + "".join(f"{h:>{w}}" for (h, _, _), w in zip(COLUMNS, widths, strict=True))]
    for r in rows:
        if r.get("status") != "ok":
            lines.append(f"{r['setup']:<26}  failed: {r.get('failure_reason')}")
            continue
        lines.append(f"{r['setup']:<26}" + "".join(f"{c:>{w}}" for c, w in zip(_cells(r), widths, strict=True)))
    return "\n".join(lines)


def machine_line(env: dict[str, Any], load: tuple[tuple[float, ...], tuple[float, ...]]) -> str:
    cpu = env.get("cpu") or {}
    parts = [str(cpu.get("model") or "unknown CPU"),
             f"{cpu.get('usable_cores', cpu.get('logical_cores'))} usable cores",
             f"{cpu.get('memory_gib')} GiB", f"host {env.get('hostname')}",
             f"load average {load[0][0]:.1f} before / {load[1][0]:.1f} after",
             f"git {str(env.get('git_sha'))[:10]}{' (dirty)' if env.get('git_dirty') else ''}"]
    return ", ".join(parts)


def format_markdown(result: dict[str, Any]) -> str:
    """The bench as a Markdown block: what ran, on which machine, the table, how to read it."""
    s, c, rows = result["settings"], result.get("compute") or {}, result["rows"]
    ceiling = c.get("ceiling") or {}
    flops = c.get("flops") or {}
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(result["finished_unix_s"]))
    head = [
        f"`python -m serving.bench {result['command']}` — model **{s['model']}** "
        f"(variant `{s['variant']}`), {when}.",
        f"Machine: {result['machine']}.",
        f"Settings: {s['requests']} requests of the test split, concurrency {s['concurrency']}, "
        f"threads {s['threads']}, max_length {s['max_length']}, server max_batch_size "
        f"{s['max_batch_size']}, max_queue_delay_ms {s['max_queue_delay_ms']:g}.",
    ]
    if ceiling:
        head.append(
            f"Ceiling: {ceiling['gflops']:.1f} GFLOP/s sustained fp32 ({ceiling['by']}, "
            f"{ceiling['threads']} thread(s), {ceiling['seconds']} s; best ¼ s "
            f"{_f(ceiling.get('best_window_gflops'), '.1f')}); model "
            f"{flops['flops_per_request'] / 1e9:.2f} GFLOP per request at "
            f"{flops['mean_tokens']:.0f} tokens mean ({flops['method']}).")
    table = ["| setup | " + " | ".join(h for h, _, _ in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    for r in rows:
        if r.get("status") != "ok":
            table.append(f"| {r['setup']} | failed: {r.get('failure_reason')} |" + " |" * (len(COLUMNS) - 1))
        else:
            table.append(f"| {r['setup']} | " + " | ".join(_cells(r)) + " |")
    notes = ("Measured once on a shared machine (other jobs running; see the load average): "
             "expect ±30 % between runs. CPU ms/row: process-tree CPU of the server, and of the "
             "client (this process), per request during the measured window.")
    return "\n\n".join(["\n".join(head), "\n".join(table), notes]) + "\n"


def update_docs(doc: Path, variant: str, block: str) -> bool:
    """Replace the text between ``DOCS_START``/``DOCS_END`` markers for ``variant`` in ``doc``;
    False (nothing written) when the markers are not there."""
    from study.io import write_text_atomic

    text = doc.read_text(encoding="utf-8")
    start, end = DOCS_START.format(variant=variant), DOCS_END.format(variant=variant)
    if start not in text or end not in text:
        return False
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    write_text_atomic(doc, f"{before}{start}\n{block}{end}{after}")
    return True


def build_parser() -> argparse.ArgumentParser:
    d = EngineSettings()
    p = argparse.ArgumentParser(
        prog="python -m serving.bench",
        description="Throughput of engine servers vs the model in-process at equal settings, "
        "each against a measured compute ceiling, in one run (table + JSON + Markdown).",
    )
    p.add_argument("--model", choices=sorted(PRESETS), default="tiny",
                   help="tiny: the variant's own model (default); bench: the random-init "
                   "ModernBERT-base-shaped model (variant 'bench', built when missing)")
    p.add_argument("--variant", default=d.variant, help="variant to serve (ignored with --model bench)")
    p.add_argument("--artifacts-dir", default=None, help="artifacts root (default $ARTIFACTS)")
    p.add_argument("--results-dir", default=None, help="results root (default $RESULTS_DIR)")
    p.add_argument("--model-name", default=d.model_name)
    p.add_argument("--engines", default=None,
                   help="servers to bench, comma-separated (default: tiny onnxruntime,pytorch; "
                   "bench onnxruntime,pytorch,triton,vllm)")
    p.add_argument("--requests", type=int, default=None, help="rows sent to each setup (tiny 256, bench 24)")
    p.add_argument("--concurrency", type=int, default=None,
                   help="closed-loop clients (servers) = rows per call (in-process) (tiny 16, bench 4)")
    # 1 by default: with as many OpenMP threads as cores, a box shared with the load client
    # (and other work) makes torch collapse (~6x slower measured on 2 busy cores).
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for every setup (default 1)")
    p.add_argument("--inter-op-threads", type=int, default=1)
    p.add_argument("--max-length", type=int, default=None, help="tokenizer truncation (tiny 256, bench 128)")
    p.add_argument("--max-batch-size", type=int, default=None, help="server batch cap, rows (tiny 16, bench 4)")
    p.add_argument("--max-queue-delay-ms", type=float, default=5.0)
    p.add_argument("--ceiling-s", type=float, default=3.0,
                   help="seconds of the fp32 matmul ceiling probe (0: no ceiling)")
    p.add_argument("--ready-timeout-s", type=float, default=600.0, help="server start-up limit")
    p.add_argument("--data", default=None, help="BigVul CSV (default: $DATA or the sample)")
    p.add_argument("--out", default=None, help="JSON output (default <results>/bench/serving__<variant>.json)")
    p.add_argument("--docs", default=None, help="also put the Markdown table into this file "
                   "between its serving-bench:<variant> markers (e.g. docs/serving.md)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _resolve(args: argparse.Namespace) -> None:
    for key, value in PRESETS[args.model].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.model == "bench":
        from training.bench_model import BENCH_VARIANT

        args.variant = BENCH_VARIANT
    args.paths = Paths.from_env(artifacts=args.artifacts_dir, results=args.results_dir)


def _prepare(args: argparse.Namespace, engines: list[str]) -> dict[str, Path]:
    """Build/export what every setup needs, outside any measurement; runner paths in-process."""
    from serving.engines import EngineUnavailable, get_engine
    from serving.serve import ensure_artifacts

    if args.model == "bench":
        from training.bench_model import build

        build(args.paths, data=args.data)
    runner_paths = {}
    for engine in dict.fromkeys([*IN_PROCESS, *engines]):
        try:
            eng = get_engine(engine)
            s = EngineSettings(engine=engine, variant=args.variant, artifacts_dir=str(args.paths.artifacts),
                               format=eng.default_format)
            ensure_artifacts(eng, s)
        except EngineUnavailable:
            continue  # its row says why
        if engine in IN_PROCESS:
            runner_paths[engine] = Path(eng.artifact_path(s))
    return runner_paths


def _compute(args: argparse.Namespace, texts: list[str], rows: list[dict[str, Any]]) -> dict[str, Any]:
    from serving.bench_compute import add_ceiling, matmul_ceiling, request_flops, token_counts

    model_dir = args.paths.model_dir(args.variant)
    flops = request_flops(model_dir, token_counts(model_dir, texts, args.max_length))
    if args.ceiling_s <= 0:
        return {"flops": flops, "ceiling": None}
    ceiling = matmul_ceiling(args.threads, args.ceiling_s)
    add_ceiling(rows, flops["flops_per_request"], ceiling["gflops"])
    return {"flops": flops, "ceiling": ceiling}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _resolve(args)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    from serving.engines import ENGINES

    bad = [e for e in engines if e not in ENGINES]
    if args.requests < 1 or args.concurrency < 1 or bad or not engines:
        print(f"bench: --requests and --concurrency must be >= 1 and --engines from "
              f"{sorted(ENGINES)} (got {args.engines!r})", file=sys.stderr)
        return 1
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from study.environment import capture
    from study.io import write_json_atomic, write_text_atomic
    from study.process import NotReady

    load0 = os.getloadavg()
    runner_paths = _prepare(args, engines)
    texts = load_texts(args.requests, args.data, args.paths.model_dir(args.variant))
    rows = []
    for batch in (args.concurrency, 1):
        for engine in IN_PROCESS:
            rows.append(bench_in_process(engine, runner_paths[engine], texts, batch, args))
    for engine in engines:
        try:
            rows.append(bench_server(engine, texts, args))
        except (NotReady, RuntimeError, OSError) as e:
            rows.append(failed_row(engine, "server", str(e)))
    add_ratios(rows)
    compute = _compute(args, texts, rows)
    env = capture()
    result = {
        "variant": args.variant, "command": " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "no_progress", "paths", "docs")},
        "rows": rows, "compute": compute, "environment": env, "finished_unix_s": time.time(),
        "machine": machine_line(env, (load0, os.getloadavg())),
    }
    markdown = format_markdown(result)
    print()
    print(f"serving throughput — model {args.model}, variant {args.variant}, {args.requests} rows, "
          f"concurrency {args.concurrency}, threads {args.threads}, max_length {args.max_length}, "
          f"server max_batch_size {args.max_batch_size}")
    print(format_table(rows))
    if compute.get("ceiling"):
        print(f"ceiling {compute['ceiling']['gflops']:.1f} GFLOP/s fp32 ({args.threads} thread(s)); "
              f"{compute['flops']['flops_per_request'] / 1e9:.3f} GFLOP per request")
    out = Path(args.out) if args.out else args.paths.bench / f"serving__{args.variant}.json"
    write_json_atomic(out, result)
    md = write_text_atomic(out.with_suffix(".md"), markdown)
    print(f"written: {out} and {md}")
    if args.docs and not update_docs(Path(args.docs), args.variant, markdown):
        print(f"bench: no serving-bench:{args.variant} markers in {args.docs}; not updated", file=sys.stderr)
    return 0 if any(r.get("status") == "ok" and r["kind"] == "server" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
