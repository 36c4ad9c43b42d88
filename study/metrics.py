"""The one classification-metrics function of the study: training evaluation, served accuracy
and compressed artifacts all score through :func:`classification_metrics`, so a training F1 and
a served F1 are the same computation.

Label 1 (vulnerable) is the positive class. Beside accuracy/F1/precision/recall it reports what
tells a real detector from a trivial one (scikit-learn computes each):

* ``mcc`` — Matthews correlation, 0 for any constant or random classifier;
* ``balanced_accuracy`` — mean recall of both classes, 0.5 at chance;
* ``roc_auc`` — from the positive-class scores (logit difference or probability), when given;
* ``baseline_f1`` — the F1 of the constant "always vulnerable" classifier on the same labels
  (precision = prevalence, recall = 1 → ``2π / (1 + π)``): a model whose F1 is below it does
  worse than saying "vulnerable" to everything;
* ``pair_accuracy`` — on paired data (a vulnerable function and its own fix share a pair id):
  the share of pairs where the vulnerable function scores higher than its fix (the pairwise
  view of the PrimeVul benchmark); ties count half.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# |MCC| below this at n = 1 (no CI) is "at chance" (docs/analysis.md).
CHANCE_MCC = 0.05
METRIC_NAMES = ("accuracy", "f1", "precision", "recall", "mcc", "balanced_accuracy", "roc_auc",
                "baseline_f1", "pair_accuracy")


def baseline_f1(labels: Sequence[int]) -> float | None:
    """F1 of predicting "vulnerable" for every example: ``2π / (1 + π)``, π the prevalence."""
    y = np.asarray(labels, dtype=int)
    if len(y) == 0:
        return None
    pi = float((y == 1).mean())
    return 2 * pi / (1 + pi) if pi > 0 else 0.0


def pair_accuracy(labels: Sequence[int], scores: Sequence[float],
                  pairs: Sequence[Any]) -> tuple[float | None, int]:
    """(share of vulnerable/fix pairs where the vulnerable one scores higher, number of pairs).

    ``pairs`` gives each example's pair id (``None``/empty for an unpaired one). Each pair counts
    once: its vulnerable side's mean score is compared with its fixed side's (a load test sends
    the same function many times; a pair must not weigh more for being sent more often).
    """
    groups: dict[Any, tuple[list[float], list[float]]] = {}
    for y, s, p in zip(labels, scores, pairs, strict=True):
        if p is None or p == "" or (isinstance(p, float) and math.isnan(p)):
            continue
        pos, neg = groups.setdefault(p, ([], []))
        (pos if int(y) == 1 else neg).append(float(s))
    wins, n = 0.0, 0
    for pos, neg in groups.values():
        if pos and neg:
            a, b = sum(pos) / len(pos), sum(neg) / len(neg)
            n += 1
            wins += 1.0 if a > b else (0.5 if a == b else 0.0)
    return (wins / n if n else None), n


def classification_metrics(
    labels: Sequence[int],
    preds: Sequence[int],
    scores: Sequence[float] | None = None,
    pairs: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Every accuracy figure of one evaluation (see the module docstring).

    ``scores``: a positive-class score per example (higher = more vulnerable), for ROC-AUC and
    pair accuracy. ``pairs``: a pair id per example. Figures that cannot be computed (no
    examples, one class only, no scores) are ``None``, never a made-up number. Precision,
    recall and F1 are 0.0 when undefined (``zero_division=0``).
    """
    import warnings

    from sklearn import metrics as skm

    y = np.asarray(labels, dtype=int)
    p = np.asarray(preds, dtype=int)
    if y.shape != p.shape:
        raise ValueError(f"labels and predictions differ in length: {y.shape} vs {p.shape}")
    n = len(y)
    out: dict[str, Any] = {k: None for k in METRIC_NAMES}
    out.update(n_scored=n, predicted_positive_rate=None, n_pairs=0)
    if n == 0:
        return out
    both = len(np.unique(y)) == 2
    out.update(
        accuracy=float(skm.accuracy_score(y, p)),
        f1=float(skm.f1_score(y, p, pos_label=1, zero_division=0)),
        precision=float(skm.precision_score(y, p, pos_label=1, zero_division=0)),
        recall=float(skm.recall_score(y, p, pos_label=1, zero_division=0)),
        mcc=_mcc(skm, y, p, warnings),
        balanced_accuracy=float(skm.balanced_accuracy_score(y, p)) if both else None,
        baseline_f1=baseline_f1(y),
        predicted_positive_rate=float((p == 1).mean()),
    )
    if scores is not None:
        s = np.asarray(scores, dtype=float)
        if s.shape != y.shape:
            raise ValueError(f"labels and scores differ in length: {y.shape} vs {s.shape}")
        if both and np.isfinite(s).all():
            out["roc_auc"] = float(skm.roc_auc_score(y, s))
        if pairs is not None:
            out["pair_accuracy"], out["n_pairs"] = pair_accuracy(y, s, pairs)
    return out


def _mcc(skm: Any, y: np.ndarray, p: np.ndarray, warnings: Any) -> float:
    with warnings.catch_warnings():  # one class only: sklearn warns, and MCC is 0 by definition
        warnings.simplefilter("ignore", UserWarning)
        return float(skm.matthews_corrcoef(y, p))


def at_chance(mcc: float | None, mcc_ci95: Sequence[float] | None = None) -> bool | None:
    """A model is *at chance* when its MCC's 95 % CI contains 0, or (one run, no CI) when
    ``|MCC| < 0.05``. ``None`` when there is no MCC."""
    if mcc is None:
        return None
    if mcc_ci95 is not None and len(mcc_ci95) == 2 and None not in mcc_ci95:
        return bool(mcc_ci95[0] <= 0.0 <= mcc_ci95[1])
    return abs(mcc) < CHANCE_MCC


def chance_verdict(mcc: float | None, mcc_ci95: Sequence[float] | None = None) -> str | None:
    """``"at chance"`` (:func:`at_chance`), ``"worse than chance"`` (MCC's CI entirely below 0,
    or MCC ≤ −0.05 at n = 1: predictions anti-correlated with the labels) or ``"better than
    chance"``; ``None`` without an MCC."""
    if mcc is None:
        return None
    if at_chance(mcc, mcc_ci95):
        return "at chance"
    hi = mcc_ci95[1] if mcc_ci95 is not None and len(mcc_ci95) == 2 and None not in mcc_ci95 else mcc
    return "worse than chance" if hi < 0 else "better than chance"


def logit_score(logits: np.ndarray) -> np.ndarray:
    """Positive-class score of ``[n, 2]`` logits: ``logit₁ − logit₀`` (monotone in p(vulnerable),
    so ROC-AUC and pair order are those of the probability)."""
    a = np.asarray(logits, dtype=float)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"logits must be [n, 2], got {a.shape}")
    return a[:, 1] - a[:, 0]
