"""Validate the Kubernetes manifests offline: ``python -m serving.k8s_check`` (``make k8s-check``).

Each overlay under ``kubernetes/overlays/`` is rendered with Kustomize (``kubectl kustomize``,
which ships it) and every object it yields is validated:

* built-in kinds (Job, Deployment, DaemonSet, Service, PVC, ConfigMap, Namespace…) with
  kubernetes-validate against the pinned Kubernetes version (``--k8s-version``), strictly
  (unknown fields are errors);
* KServe kinds (InferenceService, ServingRuntime) against the ``openAPIV3Schema`` of KServe's
  own CRDs for the served API version, made strict the way ``kubectl apply
  --validate=strict`` is (an unknown field is an error, except where the CRD preserves unknown
  fields), after checking the CRD files' sha256 against ``kubernetes/schemas/kserve-crds.lock.json``
  (version, source repository, commit and path of each file).

Every error names the source file (Kustomize's ``config.kubernetes.io/origin`` annotation), the
overlay, the object and the field path. Exit status: 0 all valid, 1 invalid manifests, 2 could
not check (no kubectl, a CRD file that does not match its lock). When the KServe CRDs are not
found, KServe objects are not checked against them (only their name and API group) and that is
said loudly; ``--require-crd``
(``K8S_REQUIRE_CRD=1``) makes it an error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
K8S_DIR = REPO / "kubernetes"
LOCK = K8S_DIR / "schemas" / "kserve-crds.lock.json"
K8S_VERSION = "1.33.0"  # pinned: the Kubernetes version the manifests are written for
ORIGIN = "config.kubernetes.io/origin"
KSERVE_KINDS = {"InferenceService": "serving.kserve.io_inferenceservices.yaml",
                "ServingRuntime": "serving.kserve.io_servingruntimes.yaml"}


class CheckError(RuntimeError):
    """The check itself could not run (exit 2)."""


@dataclass
class Problem:
    file: str
    overlay: str
    obj: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"ERROR {self.file}: {self.obj} (overlay {self.overlay}): {self.field or '<root>'}: {self.message}"


def render(overlay: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize <overlay>`` renders."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        raise CheckError("kubectl not found: it renders the Kustomize overlays (kubectl kustomize); install kubectl")
    r = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise CheckError(f"kustomize failed for {overlay}: {r.stderr.strip()}")
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def source_of(obj: dict[str, Any], overlay: Path, root: Path = REPO) -> str:
    """The file an object came from (Kustomize origin annotation), relative to ``root``."""
    ann = (obj.get("metadata") or {}).get("annotations") or {}
    try:
        path = (yaml.safe_load(ann.get(ORIGIN, "")) or {}).get("path")
    except yaml.YAMLError:
        path = None
    if not path:
        return os.path.relpath(overlay, root)
    return os.path.relpath((overlay / path).resolve(), root)


def crd_dirs(explicit: str | None) -> list[Path]:
    lock = json.loads(LOCK.read_text(encoding="utf-8"))
    v = lock["kserve_version"]
    dirs = [Path(explicit)] if explicit else []
    if os.environ.get("KSERVE_CRDS"):
        dirs.append(Path(os.environ["KSERVE_CRDS"]))
    return dirs + [K8S_DIR / "schemas" / f"kserve-{v}", REPO.parent / "shared" / "kserve" / v]


def load_crds(explicit: str | None) -> tuple[dict[str, dict[str, Any]] | None, str]:
    """KServe CRDs by kind (sha256-checked against the lock), or None and where it looked."""
    lock = json.loads(LOCK.read_text(encoding="utf-8"))
    tried = crd_dirs(explicit)
    for d in tried:
        if not all((d / f).is_file() for f in lock["files"]):
            continue
        crds = {}
        for f, meta in lock["files"].items():
            data = (d / f).read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if digest != meta["sha256"]:
                raise CheckError(f"{d / f}: sha256 {digest} does not match {LOCK.relative_to(REPO)} "
                                 f"({meta['sha256']}, KServe {lock['kserve_version']} {meta['path_in_source']})")
            crd = _load_crd(str(d / f), digest)
            crds[crd["spec"]["names"]["kind"]] = crd
        return crds, str(d)
    return None, ", ".join(str(p) for p in tried)


@lru_cache(maxsize=4)
def _load_crd(path: str, sha256: str) -> dict[str, Any]:
    """A CRD file, parsed once per content (2 MB of YAML: libyaml's loader when present)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path, "rb") as f:
        return yaml.load(f, Loader=loader)  # noqa: S506 (a safe loader)


def strict(schema: Any) -> Any:
    """A copy of a CRD structural schema where an object with declared properties rejects
    undeclared ones (unless the CRD preserves unknown fields there), as strict field validation does."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


_VALIDATORS: dict[tuple[int, str], Any] = {}


def _crd_validator(crd: dict[str, Any], version: str) -> Any:
    """A strict JSON-Schema validator for one served version of a CRD (cached per CRD object)."""
    import jsonschema

    key = (id(crd), version)
    if key not in _VALIDATORS:
        schema = next(v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"] if v["name"] == version)
        # metadata is ObjectMeta (type: object in the CRD), which the API server checks itself;
        # name presence is checked separately.
        _VALIDATORS[key] = jsonschema.Draft7Validator(strict(schema))
    return _VALIDATORS[key]


def _path(e: Any) -> str:
    return ".".join(str(p) for p in e.absolute_path)


def check_object(obj: dict[str, Any], file: str, overlay: str, crds: dict[str, dict[str, Any]] | None,
                 k8s_version: str) -> list[Problem]:
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError

    kind, api = obj.get("kind", "?"), obj.get("apiVersion", "?")
    name = (obj.get("metadata") or {}).get("name", "?")
    label = f"{kind}/{name}"
    if not isinstance((obj.get("metadata") or {}).get("name"), str):
        return [Problem(file, overlay, label, "metadata.name", "required")]
    if kind in KSERVE_KINDS:
        group, _, version = api.partition("/")
        if group != "serving.kserve.io":
            return [Problem(file, overlay, label, "apiVersion", f"{api!r}: KServe kinds are serving.kserve.io/<version>")]
        if crds is None:
            return []  # structure-only mode; reported once by main()
        crd = crds[kind]
        served = [v["name"] for v in crd["spec"]["versions"] if v.get("served")]
        if version not in served:
            return [Problem(file, overlay, label, "apiVersion", f"{api!r} is not served by the KServe CRD "
                                                                 f"(served: {', '.join(served)})")]
        v = _crd_validator(crd, version)
        return [Problem(file, overlay, label, _path(e), e.message)
                for e in sorted(v.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))]
    try:
        kubernetes_validate.validate(obj, k8s_version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [Problem(file, overlay, label, _path(e), e.message)]
    except SchemaNotFoundError:
        return [Problem(file, overlay, label, "kind", f"no schema for {api} {kind} in Kubernetes {k8s_version} "
                                                       f"nor in the KServe CRDs ({', '.join(KSERVE_KINDS)})")]
    return []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m serving.k8s_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("overlays", nargs="*", help="overlay folders (default: every <dir>/overlays/*)")
    ap.add_argument("--dir", default=str(K8S_DIR), help="the manifests folder (default kubernetes/)")
    ap.add_argument("--k8s-version", default=os.environ.get("K8S_VERSION") or K8S_VERSION,
                    help=f"Kubernetes version to validate against (default {K8S_VERSION})")
    ap.add_argument("--kserve-crds", default=None, help="folder with the KServe CRD files named in the lock file")
    ap.add_argument("--require-crd", action="store_true", default=os.environ.get("K8S_REQUIRE_CRD") == "1",
                    help="fail when the KServe CRDs are not found (default: warn and check structure only)")
    a = ap.parse_args(argv)
    k8s_dir = Path(a.dir).resolve()
    root = k8s_dir.parent
    overlays = [Path(o).resolve() for o in a.overlays] or sorted(p for p in (k8s_dir / "overlays").iterdir()
                                                                 if (p / "kustomization.yaml").is_file())
    try:
        crds, where = load_crds(a.kserve_crds)
        if crds is None:
            msg = (f"KServe CRDs not found (looked in {where}; see {LOCK.relative_to(REPO)} for the version and "
                   "source): InferenceService/ServingRuntime objects are NOT validated against KServe's schema")
            if a.require_crd:
                raise CheckError(msg)
            print(f"WARN {msg}", file=sys.stderr)
        problems: list[Problem] = []
        n = 0
        for ov in overlays:
            for obj in render(ov):
                n += 1
                problems += check_object(obj, source_of(obj, ov, root), ov.name, crds, a.k8s_version)
    except CheckError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for p in problems:
        print(p)
    kserve = f"KServe CRDs from {where}" if crds else "KServe objects NOT checked against the CRD"
    print(f"k8s-check: {n} objects in {len(overlays)} overlay(s) ({', '.join(o.name for o in overlays)}), Kubernetes "
          f"{a.k8s_version} (kubernetes-validate, strict), {kserve}: "
          f"{'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
