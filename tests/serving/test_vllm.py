"""vllm engine: the ``vllm serve`` command line, the classify request/response adapters, and the
one-line reason on a machine without vLLM/GPU."""

from __future__ import annotations

import numpy as np
import pytest

from serving.engines.base import EngineSettings, EngineUnavailable
from serving.engines.vllm import (
    Engine,
    classify_request,
    find_vllm,
    parse_classify_response,
    vllm_command,
)


def test_command_line():
    s = EngineSettings(engine="vllm", port=8123, max_batch_size=64, max_length=384, dtype="float16")
    cmd = vllm_command(s, "/art/v2/pytorch")
    assert cmd[:3] == ["vllm", "serve", "/art/v2/pytorch"]
    joined = " ".join(cmd)
    assert "--runner pooling --convert classify" in joined
    assert "--served-model-name bigvul-modernbert" in joined
    assert "--host 127.0.0.1 --port 8123" in joined
    assert "--max-model-len 384" in joined and "--max-num-seqs 64" in joined
    assert "--dtype float16" in joined
    legacy = vllm_command(s, "/m", legacy_task=True, extra=["--enforce-eager"])
    assert "--task classify" in " ".join(legacy) and "--runner" not in legacy
    assert legacy[-1] == "--enforce-eager"


def test_classify_request_and_response_adapters():
    path, body = classify_request(["int a;", "char *p;"])
    assert path == "/classify"
    assert body == {"model": "bigvul-modernbert", "input": ["int a;", "char *p;"]}
    response = {  # vLLM's ClassificationResponse shape; rows may come back in any order
        "id": "classify-1", "object": "list", "model": "bigvul-modernbert",
        "data": [
            {"index": 1, "label": "vulnerable", "probs": [0.2, 0.8], "num_classes": 2},
            {"index": 0, "label": "safe", "probs": [0.9, 0.1], "num_classes": 2},
        ],
        "usage": {"prompt_tokens": 10, "total_tokens": 10},
    }
    logits, labels = parse_classify_response(response, n_expected=2)
    assert labels.tolist() == [0, 1] and labels.dtype == np.int64
    assert logits.dtype == np.float32 and logits.shape == (2, 2)
    np.testing.assert_allclose(np.exp(logits), [[0.9, 0.1], [0.2, 0.8]], rtol=1e-6)


def test_malformed_responses_name_the_problem():
    with pytest.raises(ValueError, match="no 'data' list"):
        parse_classify_response({"error": "boom"})
    with pytest.raises(ValueError, match=r"expected \[n, 2\]"):
        parse_classify_response({"data": [{"index": 0, "probs": [1.0]}]})
    with pytest.raises(ValueError, match="disagrees"):
        parse_classify_response({"data": [{"index": 0, "label": "safe", "probs": [0.1, 0.9]}]})
    with pytest.raises(ValueError, match="1 rows for 2 inputs"):
        parse_classify_response({"data": [{"index": 0, "probs": [0.1, 0.9]}]}, n_expected=2)
    with pytest.raises(ValueError, match="no 'data' list"):  # rows that are not objects
        parse_classify_response({"data": [[0.1, 0.9]]})
    with pytest.raises(ValueError, match="at least one text"):
        classify_request([])


@pytest.mark.skipif(find_vllm() is not None, reason="vLLM is installed here")
def test_engine_unavailable_here_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("VLLM_BIN", str(tmp_path / "no-such-vllm"))
    engine = Engine()
    s = EngineSettings(engine="vllm", artifacts_dir=str(tmp_path))
    with pytest.raises(EngineUnavailable) as info:
        engine.check(s)
    assert "\n" not in str(info.value) and "vLLM" in str(info.value)
    with pytest.raises(EngineUnavailable):
        engine.serve(s)
    with pytest.raises(ValueError, match="format 'onnx'"):
        engine.check(EngineSettings(engine="vllm", format="onnx"))
