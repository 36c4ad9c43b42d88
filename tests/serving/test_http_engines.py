"""The engine registry and settings: lazy resolution, validation messages (no server)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from serving.engines import ENGINES, EngineUnavailable, get_engine
from serving.engines.config import EngineSettings
from tests.conftest import REPO_ROOT


def test_choosing_an_engine_imports_no_other():
    code = (
        "import sys; from serving.engines import get_engine; e = get_engine('onnxruntime'); "
        "print(e.default_format, sorted(m for m in sys.modules if m.startswith('serving.engines.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True, timeout=120).stdout
    assert out.startswith("onnx ")
    assert "serving.engines.onnxruntime" in out
    for other in ("triton", "vllm", "pytorch"):
        assert f"serving.engines.{other}'" not in out


def test_default_formats():
    assert {name: get_engine(name).default_format for name in ("onnxruntime", "pytorch")} == {
        "onnxruntime": "onnx", "pytorch": "pytorch"}
    assert set(ENGINES) == {"onnxruntime", "pytorch", "triton", "vllm"}


def test_unknown_engine_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown engine 'tgi'; valid: \['onnxruntime'"):
        get_engine("tgi")


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"max_batch_size": 0}, "max_batch_size=0 is invalid; allowed: >= 1"),
        ({"provider": "OpenVINOExecutionProvider"}, "provider='OpenVINOExecutionProvider'"),
        ({"format": "gguf"}, "format='gguf' is invalid"),
        ({"threads": "many"}, "threads='many': expected int"),
        ({"batch_size": 8}, "unknown engine settings ['batch_size']"),
    ],
)
def test_settings_validation_names_key_and_allowed(values, needle):
    with pytest.raises(ValueError) as e:
        EngineSettings.from_dict(values)
    assert needle in str(e.value)


def test_settings_from_strings_and_paths(tmp_path):
    s = EngineSettings.from_dict({"port": "8123", "max_queue_delay_ms": "2.5", "threads": None,
                                  "artifacts_dir": str(tmp_path)})
    assert (s.port, s.max_queue_delay_ms, s.threads) == (8123, 2.5, None)
    assert s.format_dir("onnx") == tmp_path / "v0" / "onnx"
    assert s.url == "http://127.0.0.1:8123"


def test_missing_provider_is_engine_unavailable(tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has CUDA; nothing to refuse")
    engine = get_engine("onnxruntime")
    with pytest.raises(EngineUnavailable, match="CUDAExecutionProvider is not available"):
        engine.check(EngineSettings(provider="CUDAExecutionProvider", artifacts_dir=str(tmp_path)))


def test_ensure_artifacts_rechecks_the_path_after_training(monkeypatch, tmp_path):
    """The pytorch engine serves model/ once training wrote it: no export is run then."""
    from serving import serve

    settings = EngineSettings(engine="pytorch", format="pytorch", artifacts_dir=str(tmp_path))
    ran: list[str] = []

    def fake_run(cmd):
        ran.append(cmd[2])
        if cmd[2] == "training.train":
            settings.model_dir().mkdir(parents=True)
            (settings.model_dir() / "config.json").write_text("{}")

    monkeypatch.setattr(serve, "_run", fake_run)
    serve.ensure_artifacts(get_engine("pytorch"), settings)
    assert ran == ["training.train"]
