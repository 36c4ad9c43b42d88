"""``python -m analysis.aggregate``."""

from __future__ import annotations

import argparse

from analysis.aggregate.core import aggregate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m analysis.aggregate",
        description="Aggregate results/train/**/result.json and results/load/**/summary.json into "
        "tidy tables (results/tables/*.csv) and results/aggregated_metrics.json.",
    )
    ap.add_argument("--results-dir", default=None, help="results root (default: $RESULTS_DIR, else results)")
    args = ap.parse_args(argv)
    agg = aggregate(args.results_dir)
    print(
        f"aggregated {len(agg.train)} training variant(s), {len(agg.serve)} serving setting(s), "
        f"{len(agg.failed)} failed/incomplete run(s)"
    )
    for p in agg.written:
        print(f"  wrote {p}")
    return 0

