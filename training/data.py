"""Data stage: BigVul in its original CSV schema → a binary, leak-free classification task.

The seed study reported F1 ≈ 0.99 from a split in which a vulnerable function and its fix could
land on opposite sides. Here every example carries a ``group`` (the fixing commit) and the split
is by group, so that can't happen.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT / "data" / "bigvul" / "bigvul_sample.csv.gz"
REQUIRED_COLUMNS = ("func_before", "func_after", "vul", "commit_id")
SPLITS = ("train", "validation", "test")


@dataclass
class ExampleStats:
    """What :func:`make_examples` kept and dropped; the result file's ``data`` section lists the
    fields in this order."""

    rows: int = 0
    paired_negatives: int = 0
    examples_before_dedup: int = 0
    dropped_empty: int = 0
    dropped_duplicates: int = 0
    dropped_conflicting: int = 0
    examples: int = 0
    notes: list[str] = field(default_factory=list)


def resolve_data_path(path: str | os.PathLike | None = None) -> Path:
    """``path`` → ``$DATA`` → the embedded sample, in that order."""
    chosen = Path(path or os.environ.get("DATA") or DEFAULT_DATA)
    if not chosen.is_absolute() and not chosen.exists():
        chosen = REPO_ROOT / chosen
    if not chosen.exists():
        raise FileNotFoundError(
            f"BigVul CSV not found: {chosen}. Pass DATA=<path to MSR_data_cleaned.csv[.gz]> "
            f"or use the embedded sample {DEFAULT_DATA.relative_to(REPO_ROOT)}."
        )
    return chosen


def load_bigvul(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read BigVul (``MSR_data_cleaned.csv`` schema, gzip or plain) and check its columns."""
    p = resolve_data_path(path)
    # pandas infers gzip from the suffix; BigVul's functions contain every kind of quote/newline.
    rows = pd.read_csv(p, low_memory=False)
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(
            f"{p}: not in BigVul's MSR_data_cleaned.csv schema; missing columns {missing} "
            f"(need {list(REQUIRED_COLUMNS)})"
        )
    return rows


def make_examples(rows: pd.DataFrame, paired: bool = True) -> tuple[pd.DataFrame, ExampleStats]:
    """Turn BigVul rows into ``(text, label, group, pair)`` examples.

    Every row gives ``(func_before, vul)``. With ``paired`` (the default), each vulnerable row
    whose fix differs also gives ``(func_after, 0)``: the same function, patched. Empty
    functions and exact duplicates are dropped; a text seen with both labels is dropped
    entirely (it cannot be learned and would leak across splits). The group is the fixing
    commit (falling back to the CVE, then the row index), so a function and its fix share one.
    ``pair`` is the source row's index: a vulnerable function and its own fix share it (the
    pairwise accuracy of :func:`study.metrics.pair_accuracy`).
    """
    stats = ExampleStats(rows=len(rows))
    group = rows["commit_id"].astype("string")
    if "CVE ID" in rows.columns:
        group = group.fillna(rows["CVE ID"].astype("string"))
    group = group.fillna(pd.Series(rows.index.astype(str), index=rows.index, dtype="string"))
    vul = pd.to_numeric(rows["vul"], errors="coerce").fillna(0).astype(int).clip(0, 1)

    pair = pd.Series(rows.index.astype(str), index=rows.index, dtype="string")
    parts = [pd.DataFrame({"text": rows["func_before"], "label": vul, "group": group, "pair": pair})]
    if paired:
        after = rows["func_after"]
        fix_differs = (vul == 1) & after.notna() & (after != rows["func_before"])
        stats.paired_negatives = int(fix_differs.sum())
        parts.append(
            pd.DataFrame({"text": after[fix_differs], "label": 0, "group": group[fix_differs],
                          "pair": pair[fix_differs]})
        )
    ex = pd.concat(parts, ignore_index=True)
    stats.examples_before_dedup = len(ex)

    empty = ex["text"].isna() | (ex["text"].astype(str).str.strip() == "")
    stats.dropped_empty = int(empty.sum())
    ex = ex[~empty].copy()
    ex["text"] = ex["text"].astype(str)

    n = len(ex)
    ex = ex.drop_duplicates(subset=["text", "label"])
    stats.dropped_duplicates = n - len(ex)
    conflicting = ex.duplicated(subset=["text"], keep=False)
    stats.dropped_conflicting = int(conflicting.sum())
    ex = ex[~conflicting].reset_index(drop=True)
    ex["label"] = ex["label"].astype(int)
    stats.examples = len(ex)
    if ex["label"].nunique() < 2:
        stats.notes.append("only one class present: enable paired negatives or use the full dataset")
    log.info(
        "examples: %d from %d rows (+%d paired negatives; dropped %d empty, %d duplicate, %d conflicting)",
        stats.examples, stats.rows, stats.paired_negatives, stats.dropped_empty,
        stats.dropped_duplicates, stats.dropped_conflicting,
    )
    return ex, stats


def split_by_group(
    ex: pd.DataFrame, seed: int = 42, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, pd.DataFrame]:
    """Split examples into train/validation/test so that no group straddles two splits.

    Groups are shuffled with ``seed`` and dealt out in that order until each split holds its
    fraction of the *examples* (not of the groups), so split sizes stay close to the fractions.
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    sizes = ex.groupby("group", sort=True).size()
    order = np.random.default_rng(seed).permutation(len(sizes))
    targets = np.cumsum(fractions) * len(ex)
    assignment: dict[str, str] = {}
    seen = 0
    for i in order:
        g, n = sizes.index[i], int(sizes.iloc[i])
        # the split whose cumulative target this group's midpoint falls under
        k = int(np.searchsorted(targets, seen + n / 2.0, side="right"))
        assignment[g] = SPLITS[min(k, 2)]
        seen += n
    which = ex["group"].map(assignment)
    return {name: ex[which == name].reset_index(drop=True) for name in SPLITS}


def class_balance(df: pd.DataFrame) -> dict[str, int | float]:
    """Counts per label and the positive share, as recorded next to every F1."""
    n = len(df)
    pos = int((df["label"] == 1).sum())
    return {"n": n, "positive": pos, "negative": n - pos, "positive_share": pos / n if n else 0.0}


def load_split(
    name: str,
    data_path: str | os.PathLike | None = None,
    seed: int = 42,
    paired: bool = True,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> pd.DataFrame:
    """One split (``train``/``validation``/``test``) as ``DataFrame[text, label, group]``.

    Later stages (export parity, load tests) use this to get real, held-out inputs with labels.
    """
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}; valid: {', '.join(SPLITS)}")
    ex, _ = make_examples(load_bigvul(data_path), paired=paired)
    return split_by_group(ex, seed=seed, fractions=fractions)[name]


# Written by training beside the artifact's weights: how that model's splits were made.
SPLIT_FILE = "split.json"


def load_split_for_artifact(
    name: str, model_dir: str | os.PathLike | None, data_path: str | os.PathLike | None = None
) -> pd.DataFrame:
    """The split ``name`` exactly as the model in ``model_dir`` was trained with it.

    Reads ``split.json`` (split seed, fractions, paired, data path) written by training, so an
    evaluation or a load test of that model never sends functions it was trained on — even when
    training used a non-default split seed. ``data_path`` overrides the recorded path (the data
    may have moved); without a ``split.json`` the defaults are used, as training's defaults are.
    """
    import json

    spec: dict = {}
    if model_dir is not None and (Path(model_dir) / SPLIT_FILE).exists():
        spec = json.loads((Path(model_dir) / SPLIT_FILE).read_text(encoding="utf-8"))
    return load_split(
        name,
        data_path=data_path or spec.get("data_path"),
        seed=int(spec.get("split_seed", 42)),
        paired=bool(spec.get("paired", True)),
        fractions=tuple(spec.get("fractions", (0.8, 0.1, 0.1))),
    )
