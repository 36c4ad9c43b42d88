"""serving.export: every CPU format from the tiny fixture, parity against PyTorch on real
test-split rows, and the recorded export.json.

The three CPU exports are built once per module (in-process, one meter session, ~20 s on two
cores); the tests then read what they wrote.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

PARITY_N = 32


@pytest.fixture(scope="module")
def export_root(tmp_path_factory, tiny_model_dir) -> Path:
    """An artifacts root with v0/model and its pytorch, onnx and onnx-int8 exports."""
    import torch

    from energy import open_meters
    from serving.export import run_export

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("export_artifacts")
    shutil.copytree(tiny_model_dir, root / "v0" / "model")
    with open_meters("estimate") as meters:
        for fmt in ("pytorch", "onnx", "onnx-int8"):
            run_export("v0", fmt, artifacts_dir=root, meters=meters, parity_n=PARITY_N)
    return root


def _record(root: Path, fmt: str) -> dict:
    return json.loads((root / "v0" / fmt / "export.json").read_text())


@pytest.mark.parametrize("fmt", ["pytorch", "onnx", "onnx-int8"])
def test_export_json_records_size_time_energy_parity(export_root, fmt):
    rec = _record(export_root, fmt)
    out = export_root / "v0" / fmt
    assert rec["status"] == "ok" and rec["failure_reason"] is None
    assert rec["variant"] == "v0" and rec["format"] == fmt
    assert (out / rec["model_file"]).is_file()
    on_disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and p.name != "export.json")
    assert rec["size_bytes"] == on_disk and rec["size_mb"] == pytest.approx(on_disk / 1e6)
    assert rec["export_time_s"] > 0
    energy = rec["energy"]
    assert energy["source"] == rec["energy_source"] == "estimate"
    assert energy["kind"] == rec["energy_kind"] == "estimated"
    assert energy["gross_j"] is not None and energy["gross_j"] >= 0
    assert energy["duration_s"] > 0
    parity = rec["parity"]
    assert parity["passed"] is True
    assert parity["n_samples"] == PARITY_N and "test split" in parity["inputs"]
    assert "git_sha" in rec["environment"]
    # A server needs only this folder: tokenizer and config beside the model.
    assert (out / "tokenizer.json").exists() and (out / "config.json").exists()
    # Servers in containers run as another uid: every file must be readable by others.
    assert all(p.stat().st_mode & 0o004 for p in out.rglob("*") if p.is_file())


def test_pytorch_export_is_merged_safetensors(export_root):
    rec = _record(export_root, "pytorch")
    out = export_root / "v0" / "pytorch"
    assert rec["parity"]["max_abs_diff"] <= 1e-5
    assert rec["details"]["peft_leftovers"] == []
    assert list(out.glob("*.safetensors")) and not list(out.glob("*.bin"))
    assert not (out / "adapter_config.json").exists()


def test_onnx_export_parity_and_dynamic_axes(export_root, test_split):
    import onnx

    from serving.runners import OnnxRunner, TorchRunner

    rec = _record(export_root, "onnx")
    assert rec["parity"]["max_abs_diff"] < 1e-4
    assert rec["parity"]["label_agreement"] == 1.0
    assert rec["details"]["opset"] >= 17
    assert rec["details"]["graph_optimization"]["level"] == "basic"
    model = onnx.load(str(export_root / "v0" / "onnx" / "model.onnx"))
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}  # portable: standard ops only
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        assert len(dims) == 2 and all(d.dim_param for d in dims), inp  # batch and sequence symbolic
    # Batch sizes and lengths the export was not traced with (1 row; short + long rows).
    onnx_runner = OnnxRunner(export_root / "v0" / "onnx", intra_op_threads=1)
    torch_runner = TorchRunner(export_root / "v0" / "model", threads=1)
    for texts in (["int x;"], ["int x;", test_split["text"].iloc[0], "a b c " * 50]):
        got, got_labels = onnx_runner.predict(texts)
        want, want_labels = torch_runner.predict(texts)
        assert np.abs(got - want).max() < 1e-4
        assert (got_labels == want_labels).all()


def test_int8_export_is_smaller_and_agrees(export_root):
    rec = _record(export_root, "onnx-int8")
    fp32 = _record(export_root, "onnx")
    assert rec["parity"]["label_agreement"] >= 0.9
    assert rec["parity"]["tolerance"]["max_abs_diff"] is None  # int8 is judged on labels
    assert rec["details"]["quantized_nodes"] > 0
    assert (export_root / "v0" / "onnx-int8" / "model.onnx").stat().st_size < \
        (export_root / "v0" / "onnx" / "model.onnx").stat().st_size
    assert rec["size_bytes"] < fp32["size_bytes"]


def test_missing_model_names_the_fix(tmp_path):
    from serving.export import run_export

    with pytest.raises(FileNotFoundError, match="make train VARIANT=v9"):
        run_export("v9", "onnx", artifacts_dir=tmp_path)


def test_bad_format_and_options_name_the_allowed_values(export_root):
    from serving.export import run_export

    with pytest.raises(ValueError, match="allowed: pytorch, onnx, onnx-int8, tensorrt"):
        run_export("v0", "onnx-fp8", artifacts_dir=export_root)
    with pytest.raises(ValueError, match="exporter.*allowed: dynamo, torchscript"):
        run_export("v0", "onnx", artifacts_dir=export_root, options={"exporter": "magic"})
    with pytest.raises(ValueError, match="unknown onnx export options"):
        run_export("v0", "onnx", artifacts_dir=export_root, options={"opset_version": 18})


def test_parity_compare_on_known_arrays():
    from serving.export.parity import compare

    ref = np.array([[0.0, 1.0], [2.0, 0.0], [0.5, 0.4]], dtype=np.float32)
    same = compare(ref, ref + 5e-5, "onnx")
    assert same.passed and same.max_abs_diff == pytest.approx(5e-5, rel=1e-2)
    assert same.label_agreement == 1.0 and same.mismatched_rows == []
    too_far = compare(ref, ref + 2e-4, "onnx")
    assert not too_far.passed
    flipped = ref.copy()
    flipped[2] = [0.3, 0.6]  # one label of three changes
    int8 = compare(ref, flipped, "onnx-int8")
    assert int8.label_agreement == pytest.approx(2 / 3) and int8.mismatched_rows == [2]
    assert not int8.passed  # 0.67 < 0.9
    nan = compare(ref, np.full_like(ref, np.nan), "onnx-int8")
    assert not nan.passed
    with pytest.raises(ValueError, match="shape mismatch"):
        compare(ref, ref[:2], "onnx")


def test_peft_leftovers_are_detected_and_merge_clears_them(tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from serving.export.pytorch import peft_leftovers

    torch.set_num_threads(1)
    base = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir))
    assert peft_leftovers(base) == []
    wrapped = get_peft_model(base, LoraConfig(r=2, target_modules=["Wqkv"], task_type="SEQ_CLS"))
    assert peft_leftovers(wrapped)
    assert peft_leftovers(wrapped.merge_and_unload()) == []


def test_cli_help_and_tensorrt_one_line_reason(export_root):
    help_out = subprocess.run([sys.executable, "-m", "serving.export", "--help"], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=60, check=True).stdout
    assert "--format" in help_out and "onnx-int8" in help_out
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here; the unavailable path cannot be exercised")
    except ImportError:
        pass
    if shutil.which("trtexec"):
        pytest.skip("trtexec is on PATH here")
    proc = subprocess.run(
        [sys.executable, "-m", "serving.export", "--variant", "v0", "--format", "tensorrt",
         "--artifacts-dir", str(export_root), "--meter", "estimate"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and "TensorRT" in err, err
    assert not (export_root / "v0" / "tensorrt").exists()  # nothing half-written


def test_cli_all_exports_every_cpu_format_and_skips_tensorrt(tmp_path, tiny_model_dir):
    shutil.copytree(tiny_model_dir, tmp_path / "v0" / "model")
    proc = subprocess.run(
        [sys.executable, "-m", "serving.export", "--variant", "v0", "--format", "all",
         "--artifacts-dir", str(tmp_path), "--meter", "estimate", "--onnx-exporter", "torchscript",
         "--parity-n", "8"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for fmt in ("pytorch", "onnx", "onnx-int8"):
        rec = _record(tmp_path, fmt)
        assert rec["status"] == "ok" and rec["parity"]["n_samples"] == 8
        assert f"{fmt}: ok" in proc.stdout + proc.stderr
    assert _record(tmp_path, "onnx")["details"]["exporter"] == "torchscript"
    if not (tmp_path / "v0" / "tensorrt").exists():  # no TensorRT here: skipped with its reason
        assert "tensorrt: unavailable here" in proc.stderr


def test_unmerged_adapter_is_refused_with_the_fix(tmp_path, tiny_model_dir):
    from serving.export import run_export

    shutil.copytree(tiny_model_dir, tmp_path / "v0" / "model")
    (tmp_path / "v0" / "model" / "adapter_config.json").write_text("{}")
    with pytest.raises(RuntimeError, match="un-merged PEFT adapter.*merge_and_unload"):
        run_export("v0", "pytorch", artifacts_dir=tmp_path, meter="estimate")
    rec = _record(tmp_path, "pytorch")
    assert rec["status"] == "failed" and "un-merged" in rec["failure_reason"]
