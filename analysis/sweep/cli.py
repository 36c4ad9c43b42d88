"""``python -m analysis.sweep``: the command line, and the pool of worker processes that
``--workers K`` starts on this machine (see the package docstring for what a sweep does)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

from analysis.sweep.export import export_study
from analysis.sweep.objective import run_worker
from analysis.sweep.space import DEFAULT_SPACE, SpaceError, load_space, suggest
from analysis.sweep.storage import (
    AUTO,
    DEFAULT_STUDY,
    SAMPLERS,
    SweepConfig,
    SweepError,
    make_sampler,
    open_study,
)
from analysis.sweep.trial import compress_command, die_with_parent, subprocess_runner, train_command
from study.paths import Paths, resolve
from study.process import Launched, python_module


def _worker_argv(argv: list[str], index: int) -> list[str]:
    """This command line for one child worker (``--workers 1``; the parent exports at the end)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--workers":
            skip = True
            continue
        if a.startswith("--workers="):
            continue
        out.append(a)
    return python_module("analysis.sweep", *out, "--workers", "1", "--no-export", "--worker-index", str(index))


def run_workers(argv: list[str], k: int) -> int:
    """Start ``k`` worker processes on one study and wait for them (SIGTERM to all on a stop).

    The workers stay in this process's group, so a Ctrl-C at the terminal reaches each of them
    as it would a single worker, and each dies with this process (:func:`die_with_parent`)."""
    workers = [Launched(_worker_argv(argv, i), name=f"sweep worker {i}", cwd=os.getcwd(), preexec=die_with_parent,
                        new_group=False).start() for i in range(k)]
    try:
        rcs = [w.wait() for w in workers]
    except BaseException:
        for w in workers:
            w.signal(signal.SIGTERM)
        for w in workers:
            w.wait(30)
            w.stop(timeout_s=1)  # an exited worker gets nothing; one still running after 30 s is killed
        raise
    codes = [-1 if rc is None else rc for rc in rcs]
    bad = [(i, rc) for i, rc in enumerate(codes) if rc != 0]
    if bad:
        print(f"sweep: worker(s) {', '.join(f'#{i} exited {rc}' for i, rc in bad)}", file=sys.stderr)
    return max(codes, key=abs)


def _print_best(best: dict[str, Any], out: Path) -> None:
    names = best.get("metric_names") or ["energy", "accuracy"]
    print(f"study {best.get('study')} ({best.get('storage')}): {best.get('n_complete')} complete trials; "
          f"states {best.get('states')}; table: {out / 'aggregate.csv'}")
    for label, k in (("best accuracy", "best_accuracy"), ("lowest energy", "lowest_energy"),
                     ("best trade-off", "best_tradeoff")):
        p = best.get(k)
        if p:
            print(f"  {label:<15} {p['id']}  {names[1]} {p['accuracy']:.3f}  {names[0]} {p['energy']:.3g}")
    print(f"  Pareto set (study.best_trials): {', '.join(best.get('pareto') or []) or 'none (no complete trial)'}")
    print(f"  details: {out / 'best.json'}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m analysis.sweep",
                                 description="Optuna study over training knobs (variant overlays and --set values), "
                                             "minimising energy and maximising accuracy. Rerun the same command to "
                                             "continue; point several machines at one PostgreSQL --storage to share "
                                             "the work.")
    ap.add_argument("--n", type=int, required=True, help="complete trials the study should have")
    ap.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    ap.add_argument("--sampler", default="random", choices=SAMPLERS,
                    help="random (default: the seed's random search) | tpe | nsga2")
    ap.add_argument("--seed", type=int, default=0, help="sampler seed (random: same seed → same trials)")
    ap.add_argument("--storage", default=None,
                    help="sqlite:///PATH (default sqlite:///<out>/study.db) or postgresql://USER@HOST/DB")
    ap.add_argument("--study-name", default=DEFAULT_STUDY, help=f"study name (default {DEFAULT_STUDY})")
    ap.add_argument("--space", default=str(DEFAULT_SPACE), help="search-space YAML")
    ap.add_argument("--out", default=None,
                    help="run folders + aggregate.csv + best.json (default: <results root>/sweep; the results "
                         "root is $RESULTS_DIR, else results)")
    ap.add_argument("--max-steps", type=int, default=None, help="override the space's max_steps per run")
    ap.add_argument("--serve", action="store_true", help="also serve + load each trained run (energy per 1k)")
    ap.add_argument("--energy-metric", default=AUTO,
                    help="objective 1, minimised: auto (serve: energy_per_1k_wh.server→net→gross; else "
                         "energy_kwh.training) or a result key, e.g. energy_kwh.total")
    ap.add_argument("--accuracy-metric", default=AUTO,
                    help="objective 2, maximised: auto (mcc where present, else f1) or a result key, e.g. "
                         "f1, served.mcc")
    ap.add_argument("--meter", default=os.environ.get("METER") or None, help="meter for training and sidecar")
    ap.add_argument("--heartbeat-s", type=int, default=10, help="trial heartbeat interval (s)")
    ap.add_argument("--grace-s", type=int, default=None,
                    help="a running trial without a heartbeat this long is failed (default 3 × heartbeat)")
    ap.add_argument("--max-failed", type=int, default=None, help="stop after this many failed trials (max(3, N))")
    ap.add_argument("--export-only", action="store_true", help="rewrite aggregate.csv + best.json from the study")
    ap.add_argument("--dry-run", action="store_true", help="print the first N trials' commands (in memory), run nothing")
    ap.add_argument("--no-export", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.workers < 1:
        ap.error("--workers must be ≥ 1")
    try:
        space = load_space(a.space)
        if a.max_steps is not None:
            space.max_steps = a.max_steps
        out = resolve(a.out) if a.out else Paths.from_env().sweep
        cfg = SweepConfig(space=space, n=a.n, out_dir=out, storage=a.storage or "", study_name=a.study_name,
                          sampler=a.sampler, seed=a.seed, serve=a.serve, meter=a.meter,
                          energy_metric=a.energy_metric, accuracy_metric=a.accuracy_metric,
                          heartbeat_s=a.heartbeat_s, grace_s=a.grace_s, max_failed=a.max_failed)
        if a.dry_run:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            study = optuna.create_study(directions=["minimize", "maximize"], sampler=make_sampler(a.sampler, a.seed))
            for _ in range(a.n):
                s = suggest(study.ask(), space, a.seed)
                print(s.run_id, " ".join(train_command(s, out / s.run_id, space, meter=a.meter)))
                if s.compress:
                    print(s.run_id, " ".join(compress_command(s, out / s.run_id, meter=a.meter)))
            return 0
        if a.export_only:
            _print_best(export_study(open_study(cfg, create=False), out, cfg.storage), out)
            return 0
    except (SpaceError, SweepError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    def _term(signum, frame):  # SIGTERM (kill, CI timeout) → the same clean stop as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background by a shell
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if a.workers > 1:
            open_study(cfg)  # create it once, before the workers race to
            rc = run_workers(argv, a.workers)
            best = export_study(open_study(cfg), out, cfg.storage)
            _print_best(best, out)
            return rc
        res = run_worker(cfg, subprocess_runner(a.meter), export=not a.no_export)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the running trial is marked FAIL (partial results kept in {out}); rerun the "
              "same command to continue the study", file=sys.stderr)
        return 130
    except SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tag = f"worker {a.worker_index}: " if a.worker_index is not None else ""
    print(f"{tag}ran {res['ran']} trial(s); study states {res['counts']}")
    if not a.no_export:
        _print_best(res, out)
    return 0

