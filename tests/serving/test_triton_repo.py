"""The generated Triton model repository: structure (every config.pbtxt parses as Triton's
ModelConfig protobuf, inputs/outputs match, the ensemble is wired consistently, version dirs
hold the model files) and a real run of the ensemble in PyTriton's bundled tritonserver."""

from __future__ import annotations

import concurrent.futures as cf
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from serving.triton_repo import (
    ENSEMBLE,
    MODEL_ONNX,
    MODEL_TRT,
    POSTPROCESS,
    TOKENIZER,
    RepoSettings,
    bundled_tritonserver,
    check_repository,
    generate,
    parse_pbtxt,
)
from study.process import Launched
from tests.conftest import free_port


@pytest.fixture(scope="module")
def repo(serving_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("triton") / "repo"
    return generate(RepoSettings(variant="v0", artifacts_dir=str(serving_root), out=str(out),
                                 max_batch_size=16, preferred_batch_sizes=[4, 8, 16]))


def test_every_model_has_a_valid_config_and_version_dir(repo):
    models = sorted(p.name for p in repo.iterdir() if p.is_dir())
    assert models == sorted([ENSEMBLE, TOKENIZER, MODEL_ONNX, POSTPROCESS])
    for name in models:
        cfg = parse_pbtxt(repo / name / "config.pbtxt")  # strict protobuf text parse
        assert cfg.name == name
        assert (repo / name / "1").is_dir()
        assert cfg.max_batch_size == 16
        for t in [*cfg.input, *cfg.output]:
            assert len(t.dims) >= 1
        if cfg.platform != "ensemble":
            assert cfg.dynamic_batching.max_queue_delay_microseconds == 5000
            assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8, 16]
    assert (repo / MODEL_ONNX / "1" / "model.onnx").is_file()
    assert (repo / TOKENIZER / "1" / "model.py").is_file()
    assert (repo / TOKENIZER / "1" / "tokenizer" / "tokenizer.json").is_file()
    assert (repo / POSTPROCESS / "1" / "model.py").is_file()
    assert list((repo / ENSEMBLE / "1").iterdir()) == []


def test_model_configs_declare_the_contract(repo):
    from tritonclient.grpc import model_config_pb2 as pb

    ens = parse_pbtxt(repo / ENSEMBLE / "config.pbtxt")
    assert ens.platform == "ensemble"
    assert [(t.name, t.data_type, list(t.dims)) for t in ens.input] == [("TEXT", pb.TYPE_STRING, [1])]
    assert [(t.name, t.data_type, list(t.dims)) for t in ens.output] == [
        ("LOGITS", pb.TYPE_FP32, [2]), ("LABEL", pb.TYPE_INT64, [1])]
    model = parse_pbtxt(repo / MODEL_ONNX / "config.pbtxt")
    assert model.platform == "onnxruntime_onnx" and model.backend == "onnxruntime"
    assert [t.name for t in model.input] == ["input_ids", "attention_mask"]
    assert all(list(t.dims) == [-1] and t.data_type == pb.TYPE_INT64 for t in model.input)
    assert model.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    tok = parse_pbtxt(repo / TOKENIZER / "config.pbtxt")
    assert tok.backend == "python" and tok.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU
    assert tok.parameters["max_length"].string_value == "512"


def test_ensemble_wiring_is_consistent(repo):
    assert check_repository(repo) == []
    ens = parse_pbtxt(repo / ENSEMBLE / "config.pbtxt")
    known = {t.name for t in ens.input}
    for step in ens.ensemble_scheduling.step:
        sub = parse_pbtxt(repo / step.model_name / "config.pbtxt")
        sub_in, sub_out = {t.name for t in sub.input}, {t.name for t in sub.output}
        assert set(step.input_map) == sub_in  # every step input fed …
        assert set(step.input_map.values()) <= known  # … from a tensor that exists by then
        assert set(step.output_map) <= sub_out
        known |= set(step.output_map.values())
    assert {t.name for t in ens.output} <= known


def test_check_repository_finds_broken_wiring(repo, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(repo, broken)
    cfg = broken / ENSEMBLE / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace('key: "logits"', 'key: "scores"'))
    (broken / MODEL_ONNX / "1" / "model.onnx").unlink()
    problems = check_repository(broken)
    assert any("'scores' is not an output of bigvul-modernbert-onnx" in p for p in problems), problems
    assert any("1/model.onnx is missing" in p for p in problems), problems
    assert any("output 'LOGITS' is produced 0 times" in p for p in problems), problems
    (broken / TOKENIZER / "config.pbtxt").write_text("name: 'bigvul-tokenizer'\nmax_batch_size: x\n")
    assert any("does not parse" in p for p in check_repository(broken))


def test_tensorrt_backend_repository_uses_the_plan(serving_root, tmp_path):
    from tritonclient.grpc import model_config_pb2 as pb

    # A stand-in plan file: this checks the repository layout and config, not TensorRT.
    root = tmp_path / "artifacts"
    shutil.copytree(serving_root / "v0", root / "v0")
    (root / "v0" / "tensorrt").mkdir()
    (root / "v0" / "tensorrt" / "model.plan").write_bytes(b"\0" * 16)
    out = generate(RepoSettings(variant="v0", artifacts_dir=str(root), backend="tensorrt", kind="gpu",
                                instances=2))
    assert out == root / "v0" / "triton"
    assert check_repository(out) == []
    trt = parse_pbtxt(out / MODEL_TRT / "config.pbtxt")
    assert trt.platform == "tensorrt_plan"
    assert trt.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU and trt.instance_group[0].count == 2
    assert (out / MODEL_TRT / "1" / "model.plan").is_file()
    steps = [s.model_name for s in parse_pbtxt(out / ENSEMBLE / "config.pbtxt").ensemble_scheduling.step]
    assert steps == [TOKENIZER, MODEL_TRT, POSTPROCESS]
    # The repository's limits must fit the plan's optimisation profile.
    (root / "v0" / "tensorrt" / "export.json").write_text(
        '{"details": {"profile": {"max_shape": [16, 512]}}}')
    with pytest.raises(ValueError, match="max_batch_size=32 exceeds the TensorRT profile's max batch 16"):
        generate(RepoSettings(variant="v0", artifacts_dir=str(root), backend="tensorrt"))


def test_settings_are_validated():
    with pytest.raises(ValueError, match="backend='tensorflow' is invalid; allowed: onnxruntime, tensorrt"):
        RepoSettings(backend="tensorflow")
    with pytest.raises(ValueError, match="preferred_batch_sizes"):
        RepoSettings(max_batch_size=8, preferred_batch_sizes=[16])
    with pytest.raises(ValueError, match="kind"):
        RepoSettings(backend="python-onnxruntime", kind="gpu")


def test_ensemble_runs_in_bundled_tritonserver(serving_root, tmp_path, test_split):
    """The repository (python-onnxruntime model step) loaded by a real tritonserver: TEXT in,
    LOGITS/LABEL out, equal to the in-process ONNX Runtime runner."""
    import tritonclient.http as th

    from serving.runners import OnnxRunner

    repo = generate(RepoSettings(variant="v0", artifacts_dir=str(serving_root), out=str(tmp_path / "repo"),
                                 backend="python-onnxruntime", kind="cpu", intra_op_threads=1,
                                 max_queue_delay_us=20000))
    http, grpc, metrics = free_port(), free_port(), free_port()
    argv, env = bundled_tritonserver(repo, tmp_path / "work", http_port=http, grpc_port=grpc,
                                     metrics_port=metrics)
    with Launched(argv, name="tritonserver", log=tmp_path / "tritonserver.log", env=env) as server:
        url = f"127.0.0.1:{http}"
        server.wait_ready(url=f"http://{url}/v2/health/ready", timeout_s=120, poll_s=0.3)
        texts = [str(t) for t in test_split["text"].iloc[:6]] + ["int x;"]

        def infer(rows):
            client = th.InferenceServerClient(url)
            inp = th.InferInput("TEXT", [len(rows), 1], "BYTES")
            inp.set_data_from_numpy(np.array([[t.encode()] for t in rows], dtype=object))
            res = client.infer(ENSEMBLE, [inp])
            return res.as_numpy("LOGITS"), res.as_numpy("LABEL")

        logits, labels = infer(texts)
        want_logits, want_labels = OnnxRunner(serving_root / "v0" / "onnx", intra_op_threads=1).predict(texts)
        assert logits.shape == (len(texts), 2) and labels.shape == (len(texts),)
        assert labels.dtype == np.int64
        assert (labels == want_labels).all()
        assert np.abs(logits - want_logits).max() < 1e-4
        # Concurrent requests of different lengths all come back with their own answers.
        with cf.ThreadPoolExecutor(8) as ex:
            results = list(ex.map(lambda t: infer([t]), texts))
        for (lg, lb), want_lg, want_lb in zip(results, want_logits, want_labels, strict=True):
            assert lb.tolist() == [want_lb] and np.abs(lg[0] - want_lg).max() < 1e-4
        index = httpx.post(f"http://{url}/v2/repository/index", timeout=5).json()
        assert {m["name"] for m in index if m.get("state") == "READY"} >= {ENSEMBLE, TOKENIZER, MODEL_ONNX, POSTPROCESS}
