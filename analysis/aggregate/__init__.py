"""Collect every training and load result into tidy tables and ``aggregated_metrics.json``.

Reads ``<results>/train/**/result.json`` and ``<results>/load/**/summary.json`` (schemas in
docs/interfaces.md) and writes, atomically:

* ``<results>/tables/train_runs.csv``   one row per training result file (repeat or variant file)
* ``<results>/tables/load_runs.csv``    one row per load repeat
* ``<results>/tables/train_summary.csv`` per variant × metric: mean, 95 % CI, n
* ``<results>/tables/serve_summary.csv`` per engine × variant × format × load × metric
* ``<results>/tables/failed.csv``       every failed or incomplete run, never averaged in
* ``<results>/aggregated_metrics.json`` the same summaries as one JSON document

(Parquet copies beside the CSVs when pyarrow is importable.)

Which observations count
------------------------
Training: a variant's statistics come from its repeats (``runs/<run_id>/result.json``). When the
variant's ``result.json`` lists ``runs``, only those (the latest invocation) are used and older
repeats are kept in the table marked ``superseded``; with no repeats on disk, the variant file
itself is one observation (n = 1, no CI). The variant file is never averaged together with its
own repeats (it *is* their mean).

Load: a run's statistics come from its repeats (``repeat-<k>/summary.json``, else the
``repeats`` list inside the run's summary, else the summary itself as n = 1). When several runs
exist for one engine × variant × format × load setting, the latest run with an ok repeat is
used and the others are marked ``superseded``.

Anything with ``status`` other than ``"ok"`` goes to the failed table with its reason.

Modules: :mod:`~analysis.aggregate.columns` (what is read, setting names),
:mod:`~analysis.aggregate.train` and :mod:`~analysis.aggregate.load` (the rows and which count),
:mod:`~analysis.aggregate.summary` (statistics, tables), :mod:`~analysis.aggregate.core`
(:func:`aggregate`), :mod:`~analysis.aggregate.cli`.
"""

from analysis.aggregate.cli import main
from analysis.aggregate.columns import (
           LOAD_METRICS,
           SETTING_COLUMNS,
           STAGES,
           TRAIN_METRICS,
           canonical_variant,
           load_label,
)
from analysis.aggregate.core import Aggregate, aggregate
from analysis.aggregate.summary import energy_label, serve_key

__all__ = ["LOAD_METRICS", "SETTING_COLUMNS", "STAGES", "TRAIN_METRICS", "Aggregate", "aggregate", "canonical_variant",
           "energy_label", "load_label", "main", "serve_key"]
