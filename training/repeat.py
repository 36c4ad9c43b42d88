"""One repeat of a variant: the five stages (:mod:`training.stages`) inside an outer energy
window, with everything a failure must still write held on an explicit :class:`Repeat`.

The whole repeat runs inside the outer window ``run``: its energy is ``energy_kwh.total``, and
what no stage (or export) window covered is ``energy_kwh.unaccounted``. A stage that raises is
still measured; the caller (:func:`training.variant.run_variant`) reads ``Repeat.result`` to
record the failed repeat as far as it got.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from energy.base import J_PER_KWH
from energy.window import recorded_window
from training.config import Config
from training.results import RESUMED_FLAG, RUN_WINDOW, empty_result, energy_summary
from training.runtime import Plan, is_worker, rank
from training.stages import architecture, data, inference, system
from training.stages import training as training_stage
from training.workspace import RunPaths


def new_run_id(seed: int) -> str:
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-s{seed}"


@dataclass
class Repeat:
    """One repeat in progress: its inputs, and the result, window records and durations so far
    (``result`` is None until the checkpoint folder decided the run id)."""

    variant: str
    cfg: Config
    plan: Plan
    seed: int
    paths: RunPaths
    meters: Any
    run_id: str
    environment: dict[str, Any]
    result: dict[str, Any] | None = None
    records: dict[str, Any] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)

    def stage(self, name: str):
        """The energy window of stage ``name``. Also when the stage raises: a failed run's
        result.json keeps the energy of every stage it went through (the failing one flagged by
        the energy layer)."""
        return recorded_window(self.meters, name, self.records, self.durations, after=self.fill_energy)

    def fill_energy(self, total_s: float | None = None) -> None:
        """Write the energy and duration fields of ``result`` from the window records so far
        (stages, ``export``, and the outer ``run`` window once it closed). ``total_s``: the whole
        repeat's duration, once known (until then the sum of the windows so far)."""
        result, records, meters = self.result, self.records, self.meters
        assert result is not None
        result["energy"] = {name: rec.to_dict() for name, rec in records.items()}
        own = {}
        for name, rec in records.items():
            for dev, cc in (rec.cross_checks or {}).items():
                if dev.startswith("pid:") and cc.get("energy_j") is not None:
                    own[name] = cc["energy_j"] / J_PER_KWH
        if own:
            result["energy_process_kwh"] = own  # this process's attributed dynamic share (estimate)
        idle = getattr(meters, "records", {}).get("idle")
        if idle is not None:  # the baseline behind every net_j, measured once per invocation
            result["energy"]["idle"] = idle.to_dict()
        result.update(energy_summary(records))
        result["meter"] = meters.describe()
        if meters.idle_w is not None:
            result["idle_w"] = meters.idle_w
        parts = sum(self.durations.values())
        result["duration_s"] = {**self.durations, "unaccounted": None if total_s is None else total_s - parts,
                                "total": parts if total_s is None else total_s}
        unacc = result["energy_kwh"].get("unaccounted")
        total = result["energy_kwh"].get("total")
        if unacc is not None and total and unacc < -0.01 * total:  # cannot happen with additive windows
            result["notes"].append(f"unaccounted energy is negative ({unacc * J_PER_KWH:.1f} J): the stage "
                                   "windows add up to more than the outer window (meter integration error)")


def run_once(rep: Repeat) -> dict[str, Any]:
    """All five stages of ``rep`` inside the outer window → its result dict (status ok). Raises
    on failure, after filling ``rep.result`` as far as it got (energy and CO₂ included)."""
    outer = None
    t0 = time.perf_counter()
    try:
        with rep.meters.window(RUN_WINDOW) as outer:
            return _run_stages(rep)
    finally:
        # also on failure: the partial result's total is the outer window up to the failure
        if rep.result is not None:
            if outer is not None and outer.record is not None:
                rep.records[RUN_WINDOW] = outer.record
            rep.fill_energy(total_s=time.perf_counter() - t0)
            total = rep.result["energy_kwh"]["total"]
            if total is not None:
                from energy.carbon import co2_kg, grid_intensity

                rep.result["grid_gco2_per_kwh"] = grid_intensity(rep.cfg.runtime.country)
                rep.result["co2_kg"] = co2_kg(total, rep.cfg.runtime.country)


def _run_stages(rep: Repeat) -> dict[str, Any]:
    import torch

    cfg, pl = rep.cfg, rep.plan
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    ckpt_dir = rep.paths.checkpoint(rep.seed)
    if is_worker() and rank() != 0:
        # rank 0 owns the checkpoint dir; the others only follow its resume decision
        # (multi-GPU runs are not exercised on this CPU box, see docs/training.md)
        resume_from = training_stage.latest_checkpoint(ckpt_dir) if ckpt_dir.exists() else None
    else:
        rep.run_id, resume_from = training_stage.prepare_checkpoint_dir(ckpt_dir, cfg, rep.seed, rep.run_id)
    result = empty_result(rep.variant, rep.run_id)
    result.update(config=cfg.to_dict(), environment=rep.environment, seed=rep.seed, plan=pl.to_dict(),
                  country=cfg.runtime.country, notes=list(pl.notes))
    rep.result = result
    if resume_from is not None:  # its energy is not that of a whole run: flagged, out of the means
        result["flags"].append(RESUMED_FLAG.format(step=training_stage.checkpoint_step(resume_from)))

    d = data.run(rep, ckpt_dir, reuse_tokenisation=resume_from is not None or cfg.runtime.tokenize_cache == "always")
    tokenizer = d["tokenizer"]
    model = architecture.run(rep, tokenizer)
    trainer = training_stage.run(rep, model, tokenizer, d["train_ds"], ckpt_dir, resume_from)
    if is_worker() and rank() != 0:
        return result  # rank 0 saves, evaluates and writes
    reloaded, reloaded_tok = system.run(rep, trainer, tokenizer, d["path"])
    del trainer, model
    inference.run(rep, reloaded, reloaded_tok, d["test"])

    # the energy fields are kept current by every stage (Repeat.fill_energy); run_once adds the
    # outer window's total and the CO2 when the repeat ends
    result["status"] = "ok"
    result["failure_reason"] = None
    if not cfg.training.keep_checkpoints:
        training_stage.remove_checkpoints(ckpt_dir)
    return result
