"""The aggregate of a results tree: :class:`Aggregate` and :func:`aggregate`."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.aggregate.columns import CI_NOTE, SETTING_COLUMNS
from analysis.aggregate.load import collect_load
from analysis.aggregate.summary import failed_table, long_table, summarise_serve, summarise_train
from analysis.aggregate.train import collect_train
from analysis.io import write_json_atomic, write_table_atomic
from study.paths import Paths


@dataclass
class Aggregate:
    """Everything :func:`aggregate` found: tidy tables and the JSON summary."""

    results_dir: Path
    train_runs: pd.DataFrame
    load_runs: pd.DataFrame
    failed: pd.DataFrame
    metrics: dict[str, Any]
    written: list[Path] = field(default_factory=list)

    @property
    def train(self) -> dict[str, dict[str, Any]]:
        return self.metrics["train"]

    @property
    def serve(self) -> dict[str, dict[str, Any]]:
        return self.metrics["serve"]

    @property
    def paths(self) -> Paths:
        """The study's layout below this aggregate's results root."""
        return Paths.from_env(results=self.results_dir)


def aggregate(results_dir: str | os.PathLike | None = None, write: bool = True) -> Aggregate:
    """Read all results under the results root ``results_dir`` (default ``$RESULTS_DIR``, else
    ``results``) and (if ``write``) write the tables and JSON."""
    paths = Paths.from_env(results=results_dir)
    results_dir = paths.results
    train, p1 = collect_train(paths)
    load, p2 = collect_load(paths)
    # -- compression study (analysis/compression.py) --
    from analysis import compression

    comp, p3 = compression.collect(paths)
    # -- end compression --
    failed = failed_table(train, load, p1 + p2 + p3)
    train_s = summarise_train(train)
    serve_s = summarise_serve(load)
    metrics = {
        "schema": "green-pipeline-study/aggregated_metrics/1",
        "generated_unix_s": time.time(),
        "results_dir": str(results_dir),
        "ci_note": CI_NOTE,
        "train": train_s,
        "serve": serve_s,
        "compress": compression.summarise(comp),  # compression study
        "failed": failed.to_dict(orient="records"),
        "superseded": {
            "train": int((train["note"].str.startswith("superseded")).sum()) if not train.empty else 0,
            "load": int((load["note"].str.startswith("superseded")).sum()) if not load.empty else 0,
        },
    }
    agg = Aggregate(results_dir, train, load, failed, metrics)
    if write:
        tables = paths.tables
        agg.written += write_table_atomic(train, tables / "train_runs.csv")
        agg.written += write_table_atomic(load, tables / "load_runs.csv")
        agg.written += write_table_atomic(long_table(train_s, ("variant",)), tables / "train_summary.csv")
        agg.written += write_table_atomic(
            long_table(serve_s, SETTING_COLUMNS), tables / "serve_summary.csv")
        agg.written += write_table_atomic(failed, tables / "failed.csv")
        agg.written += write_table_atomic(comp, tables / "compress_runs.csv")  # compression study
        agg.written.append(write_json_atomic(paths.aggregated_metrics, metrics))
    return agg

