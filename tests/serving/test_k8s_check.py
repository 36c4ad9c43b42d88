"""``make k8s-check``: the Kubernetes manifests render (kubectl kustomize) and validate offline,
and a broken manifest fails with its file and field named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from serving import k8s_check

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None,
                                reason="kubectl (which ships Kustomize) is not installed")


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "kubernetes", tmp_path / "kubernetes")
    return tmp_path / "kubernetes"


def _crds() -> str | None:
    crds, where = k8s_check.load_crds(None)
    return where if crds else None


def test_shipped_manifests_validate(capsys):
    assert k8s_check.main([]) == 0
    out = capsys.readouterr().out
    assert "overlay(s) (cpu, gpu)" in out and "OK" in out


def test_overlays_render_what_the_study_needs():
    kinds = {o: {(d["kind"], d["metadata"]["name"]) for d in k8s_check.render(REPO / "kubernetes" / "overlays" / o)}
             for o in ("cpu", "gpu")}
    for o in ("cpu", "gpu"):
        assert {("InferenceService", "onnxruntime"), ("InferenceService", "pytorch"), ("InferenceService", "triton"),
                ("ServingRuntime", "green-triton"), ("Job", "train"), ("Job", "export"), ("Job", "locust-master"),
                ("Deployment", "locust-worker"), ("PersistentVolumeClaim", "artifacts")} <= kinds[o]
    assert ("DaemonSet", "power-sidecar") in kinds["gpu"] - kinds["cpu"]
    assert ("InferenceService", "vllm") in kinds["gpu"] - kinds["cpu"]
    gpu = {(d["kind"], d["metadata"]["name"]): d for d in k8s_check.render(REPO / "kubernetes" / "overlays" / "gpu")}
    pred = gpu[("InferenceService", "onnxruntime")]["spec"]["predictor"]["containers"][0]
    assert pred["resources"]["limits"]["nvidia.com/gpu"] == "1" and "CUDAExecutionProvider" in pred["args"]
    side = gpu[("DaemonSet", "power-sidecar")]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in side["env"]}
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "utility" and "nvidia.com/gpu" not in str(side["resources"])


def test_broken_builtin_manifest_names_file_and_field(tmp_path, capsys):
    d = _copy(tmp_path)
    f = d / "base" / "job-train.yaml"
    f.write_text(f.read_text().replace("  backoffLimit: 0 ", '  backoffLimit: "zero" ', 1))
    f = d / "overlays" / "gpu" / "power-sidecar.yaml"
    f.write_text(f.read_text().replace("          workingDir:", "          workDir:", 1))
    assert k8s_check.main(["--dir", str(d)]) == 1
    out = capsys.readouterr().out
    assert "ERROR kubernetes/base/job-train.yaml: Job/train (overlay cpu): spec.backoffLimit: 'zero' is not of type" in out
    assert "kubernetes/overlays/gpu/power-sidecar.yaml: DaemonSet/power-sidecar (overlay gpu): " \
           "spec.template.spec.containers.0: Additional properties are not allowed ('workDir'" in out


@pytest.mark.skipif(_crds() is None, reason="KServe CRDs not present (see kubernetes/schemas/kserve-crds.lock.json)")
def test_broken_kserve_manifest_fails_against_the_crd(tmp_path, capsys):
    d = _copy(tmp_path)
    f = d / "base" / "isvc-pytorch.yaml"
    f.write_text(f.read_text().replace("    minReplicas: 1", "    minReplica: 1", 1))
    f = d / "base" / "isvc-triton.yaml"
    f.write_text(f.read_text().replace("      storageUri: pvc://", "      storageUri: 7 #", 1))
    assert k8s_check.main(["--dir", str(d), "--kserve-crds", _crds()]) == 1
    out = capsys.readouterr().out
    assert "kubernetes/base/isvc-pytorch.yaml: InferenceService/pytorch (overlay cpu): spec.predictor: " \
           "Additional properties are not allowed ('minReplica'" in out
    assert "kubernetes/base/isvc-triton.yaml: InferenceService/triton (overlay gpu): " \
           "spec.predictor.model.storageUri: 7 is not of type 'string'" in out


def test_a_crd_that_is_not_the_locked_one_is_refused(tmp_path, capsys):
    lock = k8s_check.json.loads(k8s_check.LOCK.read_text())
    for name in lock["files"]:
        (tmp_path / name).write_text("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n")
    assert k8s_check.main(["--kserve-crds", str(tmp_path)]) == 2
    assert "does not match" in capsys.readouterr().err


def test_missing_crds_warn_or_fail_when_required(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(k8s_check, "crd_dirs", lambda explicit: [tmp_path / "nowhere"])
    assert k8s_check.main([]) == 0
    assert "NOT validated against KServe's schema" in capsys.readouterr().err
    assert k8s_check.main(["--require-crd"]) == 2
