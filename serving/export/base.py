"""What every export shares: paths, the result record (``export.json``), sizes, the energy window.

An export turns ``artifacts/<variant>/model/`` (the trained, merged HF directory) into one
serving format under ``artifacts/<variant>/<format>/``. Each format module (``pytorch``,
``onnx``, ``onnx_int8``, ``tensorrt``) exposes ``build(ctx) -> dict`` that writes the files and
returns format-specific details; :func:`serving.export.run_export` wraps it in the energy
window, runs the parity check and writes ``export.json`` atomically.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from study.paths import REPO_ROOT, Paths, artifacts_root

__all__ = ["REPO_ROOT", "resolve_root"]  # (and everything below)
FORMATS = ("pytorch", "onnx", "onnx-int8", "tensorrt")
# Module per format, imported only when that format is asked for (tensorrt needs a GPU stack).
FORMAT_MODULES = {
    "pytorch": "serving.export.pytorch",
    "onnx": "serving.export.onnx",
    "onnx-int8": "serving.export.onnx_int8",
    "tensorrt": "serving.export.tensorrt",
}
# Files a server needs beside the model to tokenise and label (copied into every export dir).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "config.json",
    "compression.json",  # a compressed artifact's record (training.compress): how engines load it
)
EXPORT_JSON = "export.json"


class ExportUnavailable(RuntimeError):
    """This format cannot be built on this machine (e.g. TensorRT without a GPU); one line why."""


class ParityError(RuntimeError):
    """The exported model disagrees with the PyTorch reference beyond the format's tolerance."""


@dataclass
class ExportContext:
    """Inputs of one export. ``artifacts_dir`` is the root holding ``<variant>/model/``."""

    variant: str
    fmt: str
    artifacts_dir: Path
    max_length: int = 512
    # Format options (validated by the format module; unknown keys are an error there).
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise ValueError(f"unknown export format {self.fmt!r}; allowed: {', '.join(FORMATS)}")
        self.artifacts_dir = resolve_root(self.artifacts_dir)

    @property
    def paths(self) -> Paths:
        return Paths.from_env(artifacts=self.artifacts_dir)

    @property
    def model_dir(self) -> Path:
        """``<artifacts>/<variant>/model/``: the trained HF directory (source of every export)."""
        return self.paths.model_dir(self.variant)

    @property
    def out_dir(self) -> Path:
        """``<artifacts>/<variant>/<format>/``."""
        return self.format_dir(self.fmt)

    def format_dir(self, fmt: str) -> Path:
        return self.paths.format_dir(self.variant, fmt)


def check_options(fmt: str, options: dict[str, Any], defaults: dict[str, Any],
                  choices: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """``defaults`` updated with ``options``: an unknown key, or a value of a ``choices`` key
    outside its tuple, is a ``ValueError`` naming the key and the allowed values."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {fmt} export options {unknown}; valid: {sorted(defaults)}")
    opts = {**defaults, **options}
    for key, allowed in choices.items():
        if opts[key] not in allowed:
            raise ValueError(f"{fmt} {key}={opts[key]!r}; allowed: {', '.join(allowed)}")
    return opts


def resolve_root(path: str | os.PathLike | None) -> Path:
    """An artifacts root: ``path`` → ``$ARTIFACTS`` → ``artifacts``; relative to the repo root
    (:func:`study.paths.artifacts_root`)."""
    return artifacts_root(path)


@dataclass
class ExportResult:
    """The content of ``artifacts/<variant>/<format>/export.json`` (one way to serialise it)."""

    status: str  # "ok" | "failed"
    variant: str
    format: str
    out_dir: str
    model_file: str | None  # relative to out_dir: "model.onnx", "model.plan", "model.safetensors"
    source_model_dir: str
    size_bytes: int | None = None
    size_mb: float | None = None
    export_time_s: float | None = None  # the conversion only (not parity, not the reference)
    energy: dict[str, Any] | None = None  # EnergyRecord.to_dict() of window "export:<format>"
    energy_source: str | None = None
    energy_kind: str | None = None
    parity: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    failure_reason: str | None = None
    created_unix_s: float | None = None
    environment: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dir_size_bytes(path: Path, exclude: tuple[str, ...] = (EXPORT_JSON,)) -> int:
    """Total size of the files under ``path`` (the export's footprint on disk)."""
    return sum(
        f.stat().st_size for f in Path(path).rglob("*") if f.is_file() and f.name not in exclude
    )


def copy_tokenizer(src: Path, dst: Path) -> list[str]:
    """Copy the tokenizer (and config.json, for id2label) so ``dst`` is self-contained."""
    dst.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in TOKENIZER_FILES:
        if name == "config.json" and (dst / name).exists():
            continue  # a config written by the export itself (save_pretrained) wins
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
            copied.append(name)
    if "tokenizer.json" not in copied and "tokenizer_config.json" not in copied:
        raise FileNotFoundError(f"{src}: no tokenizer files ({', '.join(TOKENIZER_FILES[:2])})")
    return copied


def fresh_dir(path: Path) -> Path:
    """An empty directory at ``path`` (an old export is replaced, never mixed with the new)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path
