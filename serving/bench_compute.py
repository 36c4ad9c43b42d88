"""The compute side of the serving bench: what a request costs in FLOPs and what this machine
can do, so that every setup's throughput is also read as a share of a measured ceiling.

* :func:`modernbert_flops`: forward FLOPs of one ModernBERT sequence from its ``config.json``
  (matmuls only, a multiply-add = 2 FLOPs; layer norms, activations and the embedding lookup
  are left out — they are a few % and no matmul). Attention is counted dense (``L × L`` per
  layer, global or local): the CPU implementations here (eager/SDPA in PyTorch, the ONNX graph)
  compute the full score matrix and mask the sliding window, and at the bench's lengths
  (≤ ``local_attention``) the two counts are the same anyway.
* :func:`matmul_ceiling`: a short *sustained* fp32 matmul probe — ``torch.mm`` on square
  matrices for a few seconds at the bench's thread count — in GFLOP/s. It is the ceiling one
  engine could reach on this machine with that many threads; an engine's achieved rate is
  ``rows/s × FLOPs per request``, and ``achieved / ceiling`` says how much of the machine the
  engine turns into model compute (the rest: tokenisation, HTTP, Python, padding, small-matrix
  inefficiency). On a box shared with other work both sides move with the load: they are
  measured in the same run, a minute apart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def modernbert_flops(config: dict[str, Any], tokens: int) -> float:
    """Forward FLOPs of one sequence of ``tokens`` tokens through a ModernBERT classifier."""
    d = int(config["hidden_size"])
    inter = int(config["intermediate_size"])
    layers = int(config["num_hidden_layers"])
    labels = len(config.get("id2label") or {0: 0, 1: 1})
    n = int(tokens)
    per_layer = (
        2 * n * d * 3 * d  # Wqkv
        + 2 * n * n * d * 2  # Q·Kᵀ and softmax·V over all heads
        + 2 * n * d * d  # Wo
        + 2 * n * d * 2 * inter  # Wi (gated: 2 × intermediate)
        + 2 * n * inter * d  # MLP Wo
    )
    head = 2 * d * d + 2 * d * labels  # pooled vector: head dense + classifier
    return float(layers * per_layer + head)


def request_flops(model_dir: str | Path, token_counts: Sequence[int]) -> dict[str, Any]:
    """FLOPs per request (one row each) for the token counts the bench sends: mean and total,
    with the mean sequence length they rest on."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    flops = [modernbert_flops(config, n) for n in token_counts]
    return {
        "flops_per_request": sum(flops) / len(flops),
        "mean_tokens": sum(token_counts) / len(token_counts),
        "max_tokens": max(token_counts),
        "method": "analytic, matmuls only (serving.bench_compute.modernbert_flops), unpadded tokens",
    }


def token_counts(tokenizer_dir: str | Path, texts: Sequence[str], max_length: int) -> list[int]:
    """Tokens per text as the engines see them (special tokens included, truncated)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
    tok.enable_truncation(max_length=max_length)
    tok.no_padding()
    return [len(e.ids) for e in tok.encode_batch(list(texts))]


def matmul_ceiling(threads: int, seconds: float = 3.0, n: int = 1024) -> dict[str, Any]:
    """Sustained fp32 ``torch.mm`` GFLOP/s of ``n × n`` matrices on ``threads`` threads for
    ``seconds`` (after a short warm-up); ``best_window_gflops`` is the fastest 1/4 s."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        a = torch.randn(n, n, dtype=torch.float32)
        b = torch.randn(n, n, dtype=torch.float32)
        out = torch.empty(n, n, dtype=torch.float32)
        for _ in range(3):
            torch.mm(a, b, out=out)
        per = 2.0 * n**3
        calls, windows, start = 0, [], time.perf_counter()
        w_start, w_calls = start, 0
        while (now := time.perf_counter()) - start < seconds:
            torch.mm(a, b, out=out)
            calls += 1
            w_calls += 1
            if now - w_start >= 0.25:
                windows.append(w_calls * per / (now - w_start) / 1e9)
                w_start, w_calls = now, 0
        elapsed = time.perf_counter() - start
    finally:
        torch.set_num_threads(before)
    return {
        "gflops": calls * per / elapsed / 1e9,
        "best_window_gflops": max(windows) if windows else None,
        "threads": int(threads), "n": n, "seconds": round(elapsed, 2), "dtype": "float32",
        "by": f"torch.mm {n}x{n} (torch {torch.__version__})",
    }


def add_ceiling(rows: list[dict[str, Any]], flops_per_request: float, ceiling_gflops: float) -> None:
    """Per row: ``achieved_gflops`` = rows/s × FLOPs per request, and ``vs_ceiling`` = that ÷
    the measured matmul ceiling."""
    for r in rows:
        if r.get("rows_per_s") is None:
            r["achieved_gflops"] = r["vs_ceiling"] = None
            continue
        r["achieved_gflops"] = r["rows_per_s"] * flops_per_request / 1e9
        r["vs_ceiling"] = r["achieved_gflops"] / ceiling_gflops if ceiling_gflops > 0 else None
