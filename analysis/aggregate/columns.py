"""What the aggregate reads from each result file, and how it names a setting: the metric keys,
the canonical variant name, the load label and the columns that make one serving setting."""

from __future__ import annotations

import re
from typing import Any

from analysis.io import as_float, get_path
from study.schema import LOAD_METRICS  # noqa: F401 (re-exported: the aggregate's load columns)

STAGES = ("data", "architecture", "training", "system", "inference")

# Dotted keys read from a training result.json (all numeric).
TRAIN_METRICS = (
    *(f"energy_kwh.{s}" for s in (*STAGES, "total")),
    *(f"energy_net_kwh.{s}" for s in (*STAGES, "total")),
    "co2_kg",
    "grid_gco2_per_kwh",
    "energy_kwh.export",
    "energy_kwh.unaccounted",
    "accuracy",
    "f1",
    "precision",
    "recall",
    "mcc",
    "balanced_accuracy",
    "roc_auc",
    "baseline_f1",
    "pair_accuracy",
    "latency_ms",
    "duration_s.total",
    "duration_s.training",
    "model.params",
    "model.trainable_params",
    "model.size_mb",
)

# Dotted keys read from a load summary.json (all numeric): one list, in study.schema.
CI_NOTE = (
    "ci95 is a two-sided 95 % confidence interval of the mean from Student's t with n-1 degrees "
    "of freedom over repeats; it is null when n = 1 (a single run has no spread to estimate)."
)

_VARIANT_ALIAS = re.compile(r"^(v\d+)(?:[_-].*)?$")


def canonical_variant(name: str) -> str:
    """``"v2_lora_peft+v7_f16"`` → ``"v2+v7"``; names that are not ``v<N>…`` stay as they are;
    a compressed variant keeps its method: ``"v0_baseline@qat"`` → ``"v0@qat"``."""
    if "@" in str(name):
        parent, _, method = str(name).partition("@")
        return f"{canonical_variant(parent)}@{method}"
    parts = []
    for p in str(name).split("+"):
        m = _VARIANT_ALIAS.match(p.strip())
        parts.append(m.group(1) if m else p.strip())
    return "+".join(parts)


# What makes two load runs one serving setting (docs/analysis.md): runs that differ in any of
# these are never merged or superseded by each other. The load knobs are folded into the
# ``load`` label (``closed-u8·b4·w2``), the meter is its own column.
SETTING_COLUMNS = ("engine", "variant", "format", "load", "meter")


def load_label(load: dict[str, Any] | None) -> str:
    """A short label for a load setting: ``closed-u8``, ``open-r20-p40``, ``sweep-1,4,16``,
    with ``·b<batch>``, ``·w<workers>``, ``·len<max length>``, ``·stable`` when they are not the
    defaults (batch 1, one local Locust process, the model's own max length, fixed duration)."""
    if not isinstance(load, dict) or not load:
        return "default"
    return _load_base(load) + "".join(
        f"·{tag}{load[k]}" for k, tag, default in (("batch", "b", 1), ("workers", "w", 0),
                                                   ("max_length", "len", None))
        if load.get(k) not in (None, default)) + ("·stable" if load.get("stable") else "")


def _load_base(load: dict[str, Any]) -> str:
    model = load.get("model") or "closed"
    if load.get("sweep"):
        sweep = load["sweep"]
        return f"sweep-{','.join(str(s) for s in sweep) if isinstance(sweep, list) else sweep}"
    def num(x: Any) -> str:
        return f"{x:g}" if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)

    if model == "open" or load.get("rps"):
        pool = f"-p{num(load['pool'])}" if load.get("pool") else ""
        return f"open-r{num(load.get('rps'))}{pool}"
    return f"{model}-u{num(load.get('users'))}"


def sources_of(obj: dict[str, Any]) -> str:
    src = obj.get("energy_source")
    if isinstance(src, dict):
        vals = sorted({str(v) for v in src.values() if v})
        return ",".join(vals)
    return str(src) if src else ""


def flatten(obj: dict[str, Any], keys: tuple[str, ...]) -> dict[str, float | None]:
    return {k: as_float(get_path(obj, k)) for k in keys}

