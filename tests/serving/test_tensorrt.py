"""TensorRT export: profile and trtexec command construction (pure, any box), the clear error
where TensorRT/GPU is absent, and a real build where both are present (marked gpu)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from serving.export.base import ExportUnavailable
from serving.export.tensorrt import (
    build_profile,
    trtexec_command,
    validate_options,
)


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401

        return True
    except ImportError:
        return shutil.which("trtexec") is not None


def test_profile_covers_batch_and_sequence_ranges():
    p = build_profile(max_batch=32, max_length=512, opt_batch=8, opt_length=128)
    assert p.min_shape == (1, 1) and p.opt_shape == (8, 128) and p.max_shape == (32, 512)
    assert set(p.shapes()) == {"input_ids", "attention_mask"}
    assert all(v == ((1, 1), (8, 128), (32, 512)) for v in p.shapes().values())
    # opt is clamped into [min, max]
    small = build_profile(max_batch=4, max_length=64, opt_batch=8, opt_length=128)
    assert small.opt_shape == (4, 64)
    with pytest.raises(ValueError, match="max_batch=0; allowed: an integer >= 1"):
        build_profile(max_batch=0, max_length=512)


def test_trtexec_command_line():
    p = build_profile(max_batch=16, max_length=256, opt_batch=4, opt_length=64)
    cmd = trtexec_command(Path("/a/model.onnx"), Path("/b/model.plan"), p, fp16=True, workspace_mb=2048)
    assert cmd[0] == "trtexec"
    assert "--onnx=/a/model.onnx" in cmd and "--saveEngine=/b/model.plan" in cmd
    assert "--minShapes=input_ids:1x1,attention_mask:1x1" in cmd
    assert "--optShapes=input_ids:4x64,attention_mask:4x64" in cmd
    assert "--maxShapes=input_ids:16x256,attention_mask:16x256" in cmd
    assert "--memPoolSize=workspace:2048M" in cmd and "--fp16" in cmd
    assert "--fp16" not in trtexec_command("m.onnx", "m.plan", p, fp16=False)


def test_options_are_validated():
    assert validate_options({})["fp16"] is True
    with pytest.raises(ValueError, match="builder='cuda'; allowed: auto, python, trtexec"):
        validate_options({"builder": "cuda"})
    with pytest.raises(ValueError, match="unknown tensorrt export options"):
        validate_options({"int8": True})


@pytest.mark.skipif(_has_tensorrt(), reason="TensorRT is installed here")
def test_export_without_tensorrt_raises_one_clear_error(tmp_path, tiny_model_dir):
    from serving.export import run_export

    shutil.copytree(tiny_model_dir, tmp_path / "v0" / "model")
    with pytest.raises(ExportUnavailable, match="TensorRT export needs an NVIDIA GPU with TensorRT"):
        run_export("v0", "tensorrt", artifacts_dir=tmp_path)
    assert not (tmp_path / "v0" / "tensorrt").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not _has_tensorrt(), reason="needs TensorRT (python package or trtexec) and an NVIDIA GPU")
def test_real_tensorrt_build_and_parity(tmp_path, tiny_model_dir):
    from serving.export import run_export

    shutil.copytree(tiny_model_dir, tmp_path / "v0" / "model")
    res = run_export("v0", "tensorrt", artifacts_dir=tmp_path, max_length=256,
                     options={"max_batch": 16, "opt_batch": 4, "opt_length": 128})
    assert (tmp_path / "v0" / "tensorrt" / "model.plan").stat().st_size > 0
    assert res.parity["label_agreement"] >= 0.98
