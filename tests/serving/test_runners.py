"""Length-grouped model calls inside one batch (runners.feeds): same answers as row by row,
every call within the padded-token budget, rows back in request order."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.parametrize("engine,sub", [("onnxruntime", "onnx"), ("pytorch", "model")])
def test_grouped_calls_match_row_by_row(serving_root, test_split, engine, sub):
    from serving.runners import make_runner

    runner = make_runner(engine, serving_root / "v0" / sub, threads=1, max_length=128,
                         max_batch_tokens=300)
    assert runner.describe()["max_batch_tokens"] == 300
    texts = list(test_split["text"].iloc[:12]) + ["", "int x;"]
    feeds = runner.feeds(texts)
    assert len(feeds) > 1
    seen = np.concatenate([idx for idx, _ in feeds])
    assert sorted(seen.tolist()) == list(range(len(texts)))
    for idx, feed in feeds:
        rows, width = feed["input_ids"].shape
        assert rows == len(idx) and (rows == 1 or rows * width <= 300)
        assert (feed["attention_mask"].sum(axis=1) >= 2).all()  # at least [CLS] … [SEP]
    logits, labels = runner.predict(texts)
    alone = np.concatenate([runner.predict([t])[0] for t in texts])
    np.testing.assert_allclose(logits, alone, atol=1e-4)
    np.testing.assert_array_equal(labels, alone.argmax(axis=1))
