"""The sweep's two objectives and the worker loop.

A trial is judged by energy (minimised) and accuracy (maximised): ``auto`` picks the first
candidate metric its results have, and the study keeps that pair (``study.metric_names``) from
its first finished trial on. :func:`run_worker` runs trials until the study has N complete.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from collections.abc import Callable
from typing import Any

from analysis.io import as_float, get_path, read_json, write_json_atomic
from analysis.sweep.export import export_study
from analysis.sweep.space import suggest
from analysis.sweep.storage import AUTO, SweepConfig, SweepError, open_study, safe_url, trial_counts
from analysis.sweep.trial import (
    Runner,
    compress_command,
    find_result,
    load_command,
    params_of,
    run_one,
    train_command,
)
from study.paths import Paths

# "auto" picks the first of these that the trial's results have (then the study keeps it).
SERVE_ENERGY = ("energy_per_1k_wh.server", "energy_per_1k_wh.net", "energy_per_1k_wh.gross")
TRAIN_ENERGY = ("energy_kwh.training",)
ACCURACY = ("mcc", "f1")
# With `compress:` in the space the study judges the model a trial ends with: derived values
# under "pipeline." (see pipeline_metrics) replace the training-only ones in "auto".
PIPELINE_ENERGY = ("pipeline.energy_kwh",)
PIPELINE_ACCURACY = ("pipeline.mcc", "pipeline.f1")
# Training-result subtrees that are settings or bookkeeping, not metrics.
NOT_METRICS = {"config", "environment", "runs", "plan", "energy_records_of_run", "notes", "artifact"}


class TrialFailed(RuntimeError):
    """One trial could not produce both objectives; the study records it as FAIL and goes on."""


def flatten_metrics(obj: Any, prefix: str) -> dict[str, float]:
    """Every finite numeric leaf of a result, as ``prefix.dotted.path`` → value."""
    out: dict[str, float] = {}

    def walk(o: Any, p: str) -> None:
        if isinstance(o, dict):
            for k, v in o.items():
                if p == prefix and k in NOT_METRICS:
                    continue
                walk(v, f"{p}.{k}")
        elif (f := as_float(o)) is not None:
            out[p] = f

    walk(obj, prefix)
    return out


def resolve_metric(requested: str, fixed: str | None, candidates: tuple[str, ...], sources: dict[str, float],
                   what: str) -> str:
    """The metric name this trial is judged by: the study's when fixed, else the request, else
    the first ``auto`` candidate present."""
    if fixed:
        return fixed
    if requested != AUTO:
        return requested
    for c in candidates:
        if c in sources:
            return c
    raise TrialFailed(f"no {what} metric in the results (looked for {', '.join(candidates)})")



def make_objective(cfg: SweepConfig, runner: Runner) -> Callable[[Any], tuple[float, float]]:
    import optuna
    from optuna.trial import TrialState

    def objective(trial: Any) -> tuple[float, float]:
        study = trial.study
        # Exactly N complete trials, however many workers: a trial with N complete-or-running
        # trials ahead of it (lower numbers) is surplus and is not run.
        ahead = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
                 if t.state == TrialState.COMPLETE or t.number < trial.number]
        if len(ahead) >= cfg.n:
            trial.set_user_attr("skipped", f"not run: the study already had {cfg.n} complete or running trials")
            raise optuna.TrialPruned("surplus trial: the study already has its N trials")
        spec = suggest(trial, cfg.space, cfg.seed)
        run_dir = cfg.out_dir / spec.run_id
        if run_dir.exists():  # trial numbers are unique per study: this is another study's folder
            raise TrialFailed(f"{run_dir} already exists (another study in the same --out?)")
        run_dir.mkdir(parents=True)
        cmds = [train_command(spec, run_dir, cfg.space, cfg.python, cfg.meter)]
        if spec.compress:
            cmds.append(compress_command(spec, run_dir, cfg.python, cfg.meter))
        if cfg.serve:
            cmds.append(load_command(spec, run_dir, cfg.space, cfg.python, cfg.meter))
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
        retry_of = frozen.system_attrs.get("failed_trial")  # set by RetryHeartbeatStaleTrialCallback
        attrs = {"run_id": spec.run_id, "run_dir": str(run_dir.resolve()), "host": socket.gethostname(),
                 "pid": os.getpid(), "variant": spec.variant, "compress": spec.compress,
                 "served_variant": spec.served_variant, "set": spec.set,
                 "overridden_by_overlay": spec.overridden_by_overlay, "commands": cmds,
                 "retry_of": retry_of, "path.params": str(run_dir / "params.json"),
                 "path.train_log": str(run_dir / "train.log"), "path.power_csv": str(run_dir / "power.csv")}
        for k, v in attrs.items():  # recorded before the run, so a killed trial still says where it was
            trial.set_user_attr(k, v)
        write_json_atomic(run_dir / "params.json", {**params_of(spec, cfg.space, cmds), "study": cfg.study_name,
                                                    "storage": safe_url(cfg.storage), "trial": trial.number,
                                                    "retry_of": retry_of})
        done = run_one(spec, run_dir, cfg.space, runner, cmds)
        roots = Paths.for_trial(run_dir)
        res, summ = find_result(roots.train_root, "result.json"), find_result(roots.load_root, "summary.json")
        train = flatten_metrics(read_json(res), "train") if res else {}
        load = flatten_metrics(read_json(summ), "load") if summ else {}
        cres = find_result(roots.compress_root, "result.json") if spec.compress else None
        comp = flatten_metrics(read_json(cres), "compress") if cres else {}
        if cres:
            trial.set_user_attr("path.compress_result", str(cres))
            trial.set_user_attr("path.compress_log", str(run_dir / "compress.log"))
        if res:
            trial.set_user_attr("path.train_result", str(res))
            r = read_json(res)
            trial.set_user_attr("energy_kind", r.get("energy_kind"))
            src = r.get("energy_source")
            trial.set_user_attr("energy_source", get_path(r, "energy_source.training") if isinstance(src, dict)
                                else src)
        if summ:
            trial.set_user_attr("path.load_summary", str(summ))
            trial.set_user_attr("load_energy_kind", get_path(read_json(summ), "energy.kind"))
        values = {**train, **comp, **load}
        if cfg.space.compress:
            values.update(pipeline_metrics(train, comp, bool(spec.compress)))
        for k, v in values.items():
            trial.set_user_attr(k, v)
        trial.set_user_attr("status", done["status"])
        trial.set_user_attr("failure_reason", done["failure_reason"])
        if done["status"] != "ok":
            raise TrialFailed(done["failure_reason"] or "run failed")
        names = study.metric_names or [None, None]
        if cfg.serve:  # the served model's (the compressed one when the trial compresses)
            e_cands = tuple(f"load.{c}" for c in SERVE_ENERGY)
        else:
            e_cands = PIPELINE_ENERGY if cfg.space.compress else tuple(f"train.{c}" for c in TRAIN_ENERGY)
        a_cands = PIPELINE_ACCURACY if cfg.space.compress else tuple(f"train.{c}" for c in ACCURACY)
        e_name = resolve_metric(_qualify(cfg.energy_metric), names[0], e_cands, values, "energy")
        a_name = resolve_metric(_qualify(cfg.accuracy_metric), names[1], a_cands, values, "accuracy")
        if e_name not in values or a_name not in values:
            missing = [m for m in (e_name, a_name) if m not in values]
            raise TrialFailed(f"metric(s) {missing} missing from this trial's results (the study judges every "
                              f"trial by {e_name} and {a_name})")
        if not study.metric_names:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([e_name, a_name])
        trial.set_user_attr("energy_metric", e_name)
        trial.set_user_attr("accuracy_metric", a_name)
        trial.set_user_attr("energy", values[e_name])
        trial.set_user_attr("accuracy", values[a_name])
        return values[e_name], values[a_name]

    return objective


def pipeline_metrics(train: dict[str, float], comp: dict[str, float], compressed: bool) -> dict[str, float]:
    """The model a trial ends with, for a space with ``compress:`` choices: ``pipeline.energy_kwh``
    = training energy + the compression step's own energy (0 for ``none``), and
    ``pipeline.accuracy``/``f1``/``mcc`` of the compressed model when the trial compresses (on
    the parent's test split), else of the trained one. A compressing trial without a figure
    gets none (the metric is then missing, and the trial fails rather than borrow the parent's)."""
    out: dict[str, float] = {}
    e_train = train.get("train.energy_kwh.training")
    e_comp = comp.get("compress.energy_kwh.compress") if compressed else 0.0
    if e_train is not None and e_comp is not None:
        out["pipeline.energy_kwh"] = e_train + e_comp
    for k in ("accuracy", "f1", "mcc"):
        v = comp.get(f"compress.{k}") if compressed else train.get(f"train.{k}")
        if v is not None:
            out[f"pipeline.{k}"] = v
    return out


def _qualify(metric: str) -> str:
    """``f1`` → ``train.f1``; ``energy_per_1k_wh.net`` → ``load.energy_per_1k_wh.net``;
    ``served.mcc`` → ``load.served.mcc``; already-qualified names (``train.``, ``load.``,
    ``compress.``, ``pipeline.``) and ``auto`` stay."""
    if metric == AUTO or metric.startswith(("train.", "load.", "compress.", "pipeline.")):
        return metric
    if metric.startswith(("energy_per_1k_wh", "served.", "latency_ms", "throughput")):
        return f"load.{metric}"
    return f"train.{metric}"


def run_worker(cfg: SweepConfig, runner: Runner, export: bool = True) -> dict[str, Any]:
    """One worker: run trials until the study has ``cfg.n`` complete ones (see the module doc)."""
    import optuna

    study = open_study(cfg)
    objective = make_objective(cfg, runner)
    ran = 0
    log = logging.getLogger("analysis.sweep")
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # a killed worker's trial → FAIL (+ requeued)
        c = trial_counts(study)
        if c["COMPLETE"] >= cfg.n:
            break
        failed = sum(1 for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
                     if t.user_attrs.get("status") == "failed" or t.user_attrs.get("failure_reason"))
        if failed >= cfg.max_failed:
            raise SweepError(f"{failed} trials failed (--max-failed {cfg.max_failed}); see failure_reason in "
                             f"{cfg.out_dir / 'aggregate.csv'} and each run's train.log")
        if c["COMPLETE"] + c["RUNNING"] >= cfg.n:  # the last trials are running elsewhere: wait for them
            time.sleep(cfg.poll_s)
            continue
        study.optimize(objective, n_trials=1, catch=(TrialFailed,), gc_after_trial=False)
        ran += 1
        if export:
            try:
                export_study(study, cfg.out_dir, cfg.storage)  # after every trial, so a kill loses nothing finished
            except Exception as e:  # the study is the record; a failed export must not stop it
                log.warning("could not export %s: %s", cfg.out_dir, e)
    best = export_study(study, cfg.out_dir, cfg.storage) if export else {}
    return {**best, "ran": ran, "counts": trial_counts(study)}

