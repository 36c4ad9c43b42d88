"""serving.bench: ratio and FLOP arithmetic on known inputs (the FLOP count checked against
PyTorch's own counter), the ceiling probe, the Markdown/docs output, and one small real run (two
servers + runners)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from serving.bench import add_ratios, format_markdown, format_table, update_docs
from serving.bench_compute import add_ceiling, matmul_ceiling, modernbert_flops
from tests.conftest import REPO_ROOT

ROWS = [
    {"setup": "pytorch in-process", "engine": "pytorch", "kind": "in-process", "status": "ok", "rows_per_s": 50.0},
    {"setup": "onnxruntime in-process", "engine": "onnxruntime", "kind": "in-process", "status": "ok",
     "rows_per_s": 200.0},
    {"setup": "onnxruntime in-process b1", "engine": "onnxruntime", "kind": "in-process", "status": "ok",
     "rows_per_s": 125.0},
    {"setup": "pytorch server", "engine": "pytorch", "kind": "server", "status": "ok", "rows_per_s": 40.0},
    {"setup": "onnxruntime server", "engine": "onnxruntime", "kind": "server", "status": "ok", "rows_per_s": 100.0},
    {"setup": "triton server", "engine": "triton", "kind": "server", "status": "ok", "rows_per_s": 80.0},
    {"setup": "vllm server", "engine": "vllm", "kind": "server", "status": "failed", "rows_per_s": None,
     "failure_reason": "vllm is not installed"},
]


def test_ratios_on_known_rows():
    rows = add_ratios([dict(r) for r in ROWS])
    by = {r["setup"]: r for r in rows}
    assert by["onnxruntime server"]["vs_pytorch_server"] == pytest.approx(2.5)
    assert by["onnxruntime server"]["vs_in_process"] == pytest.approx(0.5)
    assert by["onnxruntime server"]["vs_in_process_b1"] == pytest.approx(0.8)
    assert by["pytorch server"]["vs_in_process"] == pytest.approx(0.8)
    assert by["pytorch server"]["vs_in_process_b1"] is None  # no pytorch b1 row
    assert by["triton server"]["vs_in_process_b1"] == pytest.approx(0.64)  # Triton runs the ORT runner
    assert by["pytorch in-process"]["vs_in_process"] is None
    assert by["vllm server"]["vs_pytorch_server"] is None
    add_ceiling(rows, flops_per_request=2e9, ceiling_gflops=400.0)
    assert by["onnxruntime server"]["achieved_gflops"] == pytest.approx(200.0)
    assert by["onnxruntime server"]["vs_ceiling"] == pytest.approx(0.5)
    assert by["vllm server"]["vs_ceiling"] is None
    table = format_table(rows)
    assert "onnxruntime server" in table and "2.50" in table and "0.80" in table
    assert "vllm server" in table and "failed: vllm is not installed" in table


def test_flops_equal_pytorch_flop_counter():
    """The analytic count equals torch's FlopCounterMode on a real ModernBERT (eager attention,
    which like every CPU path here computes the dense score matrix), below and above the
    sliding window."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import ModernBertConfig, ModernBertForSequenceClassification

    cfg = ModernBertConfig(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
                           vocab_size=500, max_position_embeddings=256, global_attn_every_n_layers=3,
                           local_attention=32, num_labels=2, classifier_pooling="mean", pad_token_id=0,
                           bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2)
    cfg._attn_implementation = "eager"
    model = ModernBertForSequenceClassification(cfg).eval()
    for n in (16, 100):
        ids = torch.randint(5, 500, (1, n))
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
        assert modernbert_flops(cfg.to_dict(), n) == counter.get_total_flops()


def test_flops_of_the_bench_shape():
    from training.bench_model import BENCH_SHAPE

    # ModernBERT-base at 128 tokens: 22 × (2·128·5,013,504 weights + 4·128²·768) + head ≈ 29.3 GFLOP
    assert modernbert_flops(BENCH_SHAPE, 128) / 1e9 == pytest.approx(29.34, abs=0.01)


def test_ceiling_probe_measures_something():
    c = matmul_ceiling(threads=1, seconds=0.3, n=256)
    assert c["gflops"] > 0 and c["threads"] == 1 and c["dtype"] == "float32" and "torch.mm" in c["by"]


def test_markdown_and_the_docs_block(tmp_path):
    rows = add_ratios([dict(r) for r in ROWS])
    add_ceiling(rows, 2e9, 400.0)
    result = {
        "command": "--model bench", "finished_unix_s": 0.0, "machine": "Test CPU, 2 usable cores", "rows": rows,
        "settings": {"model": "bench", "variant": "bench", "requests": 24, "concurrency": 4, "threads": 1,
                     "max_length": 128, "max_batch_size": 4, "max_queue_delay_ms": 5.0},
        "compute": {"ceiling": {"gflops": 400.0, "best_window_gflops": 410.0, "by": "torch.mm", "threads": 1,
                                "seconds": 3.0},
                    "flops": {"flops_per_request": 2e9, "mean_tokens": 128.0, "method": "analytic"}},
    }
    md = format_markdown(result)
    assert "Machine: Test CPU, 2 usable cores." in md and "Ceiling: 400.0 GFLOP/s" in md
    assert "| onnxruntime server | 100.0 |" in md and "| vllm server | failed: vllm is not installed |" in md
    doc = tmp_path / "doc.md"
    doc.write_text("# x\n<!-- serving-bench:bench start -->\nold\n<!-- serving-bench:bench end -->\ntail\n")
    assert update_docs(doc, "bench", md)
    text = doc.read_text()
    assert "old" not in text and md in text and text.endswith("tail\n")
    assert not update_docs(doc, "v0", md)  # no markers for v0: untouched


def test_bench_runs_end_to_end(serving_root, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "serving.bench", "--artifacts-dir", str(serving_root),
         "--results-dir", str(tmp_path), "--requests", "24", "--concurrency", "4", "--max-length", "64",
         "--out", str(out), "--ceiling-s", "0.5", "--no-progress"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "onnxruntime server" in proc.stdout and "÷ in-proc 1 row" in proc.stdout
    result = json.loads(out.read_text())
    setups = [r["setup"] for r in result["rows"]]
    assert setups == ["pytorch in-process", "onnxruntime in-process", "pytorch in-process b1",
                      "onnxruntime in-process b1", "onnxruntime server", "pytorch server"]
    assert all(r["rows"] == 24 and r["rows_per_s"] > 0 and r["vs_ceiling"] > 0 for r in result["rows"])
    assert result["settings"]["threads"] == 1 and result["environment"]
    servers = [r for r in result["rows"] if r["kind"] == "server"]
    assert all(r["server_cpu_ms_per_row"] > 0 and r["client_cpu_ms_per_row"] > 0 for r in servers)
    md = out.with_suffix(".md").read_text()
    assert "| onnxruntime server |" in md and "Machine: " in md
