"""Parity: does an export give the PyTorch model's logits on real held-out inputs?

The reference is ``artifacts/<variant>/model/`` run in PyTorch (fp32, CPU) on the first ``n``
texts of the test split; the candidate is the export run through the *serving* runner
(:mod:`serving.runners`), so the tokenisation checked is the one the servers use. Both sides
tokenise with the same tokenizer files (the export copies them), truncating to the same
``max_length``.

Tolerances per format (``TOLERANCES``) reflect what the conversion may change: nothing
(pytorch re-save), float reassociation (onnx fp32), 8-bit weights (onnx-int8) and fp16
arithmetic (tensorrt). int8 and fp16 are judged on label agreement; their logit error is
recorded, not bounded, because it scales with the logits' magnitude.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

# max_abs_diff bound (None = not bounded) and the minimum share of identical labels.
TOLERANCES: dict[str, dict[str, float | None]] = {
    "pytorch": {"max_abs_diff": 1e-5, "min_label_agreement": 1.0},
    "onnx": {"max_abs_diff": 1e-4, "min_label_agreement": 1.0},
    "onnx-int8": {"max_abs_diff": None, "min_label_agreement": 0.9},
    "tensorrt": {"max_abs_diff": None, "min_label_agreement": 0.98},
}
DEFAULT_N = 64
BATCH_SIZE = 16

Predict = Callable[[list[str]], tuple[np.ndarray, np.ndarray]]


@dataclass
class ParityReport:
    """What ``export.json`` records under ``"parity"``."""

    passed: bool
    n_samples: int
    max_abs_diff: float
    mean_abs_diff: float
    label_agreement: float
    tolerance: dict[str, float | None]
    reference: str
    inputs: str
    max_length: int
    duration_s: float
    mismatched_rows: list[int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parity_texts(n: int = DEFAULT_N, data_path: str | None = None) -> tuple[list[str], str]:
    """The first ``n`` texts of the test split (real BigVul functions), and a description."""
    from training.data import load_split

    test = load_split("test", data_path=data_path)
    if len(test) == 0:
        raise ValueError("the test split is empty: parity needs real held-out inputs")
    n = min(int(n), len(test))
    return [str(t) for t in test["text"].iloc[:n]], f"test split, first {n} of {len(test)} rows"


def run_batched(predict: Predict, texts: Sequence[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Logits of ``texts`` in fixed-size batches (float32 [n, 2])."""
    out = [predict(list(texts[i : i + batch_size]))[0] for i in range(0, len(texts), batch_size)]
    return np.concatenate(out, axis=0).astype(np.float32, copy=False)


_REFERENCE_CACHE: dict[tuple[str, int, int], np.ndarray] = {}


def reference_logits(model_dir: Path, texts: Sequence[str], max_length: int) -> np.ndarray:
    """PyTorch fp32 CPU logits of the trained model (cached per process: ``all`` computes it once)."""
    key = (str(Path(model_dir).resolve()), hash(tuple(texts)), int(max_length))
    if key not in _REFERENCE_CACHE:
        from serving.runners import TorchRunner

        runner = TorchRunner(model_dir, device="cpu", max_length=max_length)
        _REFERENCE_CACHE[key] = run_batched(runner.predict, texts)
    return _REFERENCE_CACHE[key]


def compare(
    reference: np.ndarray,
    candidate: np.ndarray,
    fmt: str,
    *,
    reference_desc: str = "",
    inputs_desc: str = "",
    max_length: int = 0,
    duration_s: float = 0.0,
) -> ParityReport:
    """Compare logits row by row against ``TOLERANCES[fmt]``. Pure; tested on known arrays."""
    if fmt not in TOLERANCES:
        raise ValueError(f"unknown format {fmt!r}; allowed: {', '.join(TOLERANCES)}")
    if reference.shape != candidate.shape:
        raise ValueError(f"shape mismatch: reference {reference.shape} vs candidate {candidate.shape}")
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    max_abs = float(diff.max()) if diff.size else 0.0
    finite = bool(np.isfinite(candidate).all())
    same = reference.argmax(axis=-1) == candidate.argmax(axis=-1)
    agreement = float(same.mean()) if same.size else 1.0
    tol = TOLERANCES[fmt]
    passed = finite and agreement >= float(tol["min_label_agreement"]) - 1e-12
    if tol["max_abs_diff"] is not None:
        passed = passed and max_abs <= float(tol["max_abs_diff"])
    return ParityReport(
        passed=bool(passed),
        n_samples=int(reference.shape[0]),
        max_abs_diff=max_abs if finite else math.inf,
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        label_agreement=agreement,
        tolerance=dict(tol),
        reference=reference_desc,
        inputs=inputs_desc,
        max_length=int(max_length),
        duration_s=float(duration_s),
        mismatched_rows=[int(i) for i in np.flatnonzero(~same)[:20]],
    )


def check(
    fmt: str,
    model_dir: Path,
    predict: Predict,
    *,
    n: int = DEFAULT_N,
    max_length: int = 512,
    data_path: str | None = None,
) -> ParityReport:
    """Run the reference and ``predict`` on the same test-split texts and compare."""
    t0 = time.perf_counter()
    texts, inputs_desc = parity_texts(n, data_path)
    ref = reference_logits(model_dir, texts, max_length)
    cand = run_batched(predict, texts)
    return compare(
        ref,
        cand,
        fmt,
        reference_desc=f"PyTorch fp32 CPU logits of {model_dir}",
        inputs_desc=inputs_desc,
        max_length=max_length,
        duration_s=time.perf_counter() - t0,
    )
