"""The data stage: paired examples, drop counts, the leak-free group split, class balance."""

from __future__ import annotations

import pandas as pd
import pytest

from training.data import (
    SPLIT_FILE,
    class_balance,
    load_bigvul,
    load_split,
    load_split_for_artifact,
    make_examples,
    split_by_group,
)


def _rows() -> pd.DataFrame:
    return pd.DataFrame({
        "commit_id": ["c1", "c1", "c2", "c3", "c4", None],
        "CVE ID": ["CVE-1", "CVE-1", "CVE-2", "CVE-3", "CVE-4", "CVE-9"],
        "func_before": ["int a(){x;}", "int b(){y;}", "   ", "int d(){z;}", "int a(){x;}", "void é(){ü;}"],
        "func_after": ["int a(){X;}", "int b(){y;}", "int c(){}", "int d(){z;}", "int a(){X;}", "void é(){ö;}"],
        "vul": [1, 1, 1, 0, 1, 1],
    })


def test_paired_examples_and_drop_counts():
    ex, st = make_examples(_rows(), paired=True)
    # c1 row 0 pairs (fix differs); row 1's fix is identical; c2 before is blank; row 4
    # duplicates row 0 (text+label) in another commit; row 5 (no commit) falls back to its CVE
    assert st.dropped_empty == 1
    assert st.dropped_duplicates == 2  # row 4's before and its paired after
    assert set(ex.columns) == {"text", "label", "group", "pair"}
    assert ex["text"].str.strip().ne("").all()
    assert "CVE-9" in set(ex["group"])
    fix = ex[ex["text"] == "int a(){X;}"]
    assert fix["label"].tolist() == [0]
    unpaired, st2 = make_examples(_rows(), paired=False)
    assert st2.paired_negatives == 0 and (unpaired["label"] == 1).sum() >= 3


def test_conflicting_text_is_dropped():
    rows = pd.DataFrame({"commit_id": ["a", "b"], "func_before": ["f(){}", "g(){}"],
                         "func_after": ["g(){}", "h(){}"], "vul": [1, 1]})
    ex, st = make_examples(rows)
    # "g(){}" is the fixed (0) version in commit a and the vulnerable (1) one in commit b
    assert st.dropped_conflicting == 2 and "g(){}" not in set(ex["text"])


@pytest.mark.parametrize("seed", [0, 1, 7, 42, 1234])
def test_group_split_never_leaks_a_group(seed):
    ex, _ = make_examples(load_bigvul(None))
    splits = split_by_group(ex, seed=seed)
    groups = {name: set(df["group"]) for name, df in splits.items()}
    assert not groups["train"] & groups["validation"]
    assert not groups["train"] & groups["test"]
    assert not groups["validation"] & groups["test"]
    assert sum(len(df) for df in splits.values()) == len(ex)
    # every function and its fix share a group, so no text pair straddles splits
    texts = {name: set(df["text"]) for name, df in splits.items()}
    assert not texts["train"] & texts["test"]
    assert 0.7 < len(splits["train"]) / len(ex) < 0.9


def test_different_seeds_give_different_splits():
    ex, _ = make_examples(load_bigvul(None))
    a = set(split_by_group(ex, seed=1)["test"]["group"])
    b = set(split_by_group(ex, seed=2)["test"]["group"])
    assert a != b


def test_class_balance_counts():
    df = pd.DataFrame({"label": [1, 0, 0, 1, 1]})
    assert class_balance(df) == {"n": 5, "positive": 3, "negative": 2, "positive_share": 0.6}
    assert class_balance(df.iloc[:0])["positive_share"] == 0.0


def test_bad_split_fractions_and_missing_file(tmp_path):
    ex, _ = make_examples(_rows())
    with pytest.raises(ValueError, match="fractions"):
        split_by_group(ex, fractions=(0.5, 0.6, 0.1))
    with pytest.raises(FileNotFoundError, match="BigVul CSV not found"):
        load_bigvul(tmp_path / "nope.csv")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="missing columns"):
        load_bigvul(tmp_path / "x.csv")


def test_split_for_artifact_follows_the_recorded_seed(tmp_path):
    # A model trained on split seed 7 must be evaluated/load-tested on seed 7's test split.
    (tmp_path / SPLIT_FILE).write_text('{"split_seed": 7, "fractions": [0.8, 0.1, 0.1], "paired": true}')
    got = load_split_for_artifact("test", tmp_path)
    assert got["text"].tolist() == load_split("test", seed=7)["text"].tolist()
    assert got["text"].tolist() != load_split("test", seed=42)["text"].tolist()
    # no split.json: training's defaults
    assert load_split_for_artifact("test", tmp_path / "none")["text"].tolist() == load_split("test")["text"].tolist()
