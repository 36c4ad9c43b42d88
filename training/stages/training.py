"""Stage ``training``: HF Trainer on the tokenised split, checkpoints every ``save_steps``.

A rerun of an interrupted repeat resumes: its checkpoint folder carries ``run.json`` (the run
id and a hash of the config and seed), and :func:`prepare_checkpoint_dir` reuses the folder
only for the same hash. :func:`trainer_arguments` is how the study drives HF Trainer, shared
with compression's fine-tuning (:func:`training.compress.base.finetune`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.io import write_json_atomic
from training.config import Config
from training.runtime import Plan, power_limit

if TYPE_CHECKING:
    from training.repeat import Repeat

log = logging.getLogger("training")
STEP_DELAY_ENV = "GPS_TRAIN_STEP_DELAY_S"  # throttle each step (kill/resume tests and demos)
RUN_MARKER = "run.json"


def _progress_callback(log_path: Path, run_id: str):
    from transformers import TrainerCallback

    delay_s = float(os.environ.get(STEP_DELAY_ENV, "0") or 0)

    def line(text: str) -> None:
        with log_path.open("a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} run={run_id} {text}\n")

    class ProgressLog(TrainerCallback):
        """Per-step loss/lr lines in training_progress.log (the seed's file, one line per log)."""

        def on_train_begin(self, args, state, control, **kw):
            line(f"train_begin step={state.global_step} max_steps={state.max_steps}")

        def on_log(self, args, state, control, logs=None, **kw):
            if not logs or not state.is_world_process_zero:
                return
            parts = [f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items()]
            line(f"step={state.global_step} {' '.join(parts)}")

        def on_step_end(self, args, state, control, **kw):
            if delay_s > 0:
                time.sleep(delay_s)

    return ProgressLog()


def trainer_arguments(cfg: Config, output_dir: str | os.PathLike, seed: int, *, use_cpu: bool, **specific: Any):
    """``TrainingArguments`` as the study drives HF Trainer: the config's batch size,
    accumulation, learning rate and weight decay, ``seed`` for weights and data order, step
    logging, no evaluation, no reporting, every column kept (the dataset holds only model
    inputs). ``specific`` adds or replaces arguments."""
    from transformers import TrainingArguments

    tr = cfg.training
    common: dict[str, Any] = {
        "output_dir": str(output_dir), "per_device_train_batch_size": tr.per_device_train_batch_size,
        "gradient_accumulation_steps": tr.gradient_accumulation_steps, "learning_rate": cfg.learning_rate,
        "weight_decay": tr.weight_decay, "seed": seed, "data_seed": seed, "logging_strategy": "steps",
        "eval_strategy": "no", "report_to": [], "use_cpu": use_cpu,
        "disable_tqdm": os.environ.get("GPS_NO_PROGRESS") == "1", "remove_unused_columns": False,
    }
    return TrainingArguments(**{**common, **specific})


def training_args(cfg: Config, pl: Plan, output_dir: Path, seed: int):
    """The variant's knobs as ``TrainingArguments`` (a flag wherever transformers has one)."""
    import dataclasses

    from transformers import TrainingArguments

    tr = cfg.training
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    # transformers 5 renamed gradient_checkpointing (kept as a deprecated alias)
    ckpt_flag = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    return trainer_arguments(
        cfg, output_dir, seed, use_cpu=pl.device == "cpu",
        **{ckpt_flag: tr.gradient_checkpointing},
        per_device_eval_batch_size=tr.per_device_eval_batch_size,
        num_train_epochs=tr.epochs, max_steps=tr.max_steps,
        warmup_steps=tr.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        optim=tr.optim, bf16=pl.precision == "bf16", fp16=pl.precision == "fp16",
        torch_compile=tr.torch_compile,
        train_sampling_strategy="group_by_length" if cfg.data.group_by_length else "random",
        dataloader_pin_memory=tr.dataloader_pin_memory, dataloader_num_workers=tr.dataloader_num_workers,
        logging_steps=tr.logging_steps, logging_first_step=True,
        save_strategy="steps", save_steps=tr.save_steps, save_total_limit=tr.save_total_limit,
    )


# -- resume -------------------------------------------------------------------------------------


def config_hash(cfg: Config, seed: int) -> str:
    """What a checkpoint belongs to: the config (less ``runtime`` and ``inference``, which do
    not change what is trained) and the seed."""
    d = cfg.to_dict()
    d.pop("runtime", None)  # meters/idle do not change what is trained
    d.pop("inference", None)
    return hashlib.sha256(json.dumps([d, seed], sort_keys=True).encode()).hexdigest()[:16]


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The highest complete ``checkpoint-<step>`` (one with ``trainer_state.json``), if any."""
    cks = [p for p in ckpt_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()
           and (p / "trainer_state.json").exists()]
    return max(cks, key=lambda p: int(p.name.split("-")[-1])) if cks else None


def checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[-1])


def prepare_checkpoint_dir(ckpt_dir: Path, cfg: Config, seed: int, new_run_id: str) -> tuple[str, Path | None]:
    """Reuse an interrupted run's checkpoint dir (same config and seed) → ``(run_id, checkpoint)``;
    otherwise start a clean one → ``(new_run_id, None)``."""
    marker = ckpt_dir / RUN_MARKER
    h = config_hash(cfg, seed)
    if marker.exists():
        try:
            m = json.loads(marker.read_text())
        except (OSError, ValueError):
            m = {}
        if m.get("config_hash") == h:
            ck = latest_checkpoint(ckpt_dir)
            if ck is not None:
                return str(m.get("run_id") or new_run_id), ck
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    elif ckpt_dir.exists():
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(marker, {"run_id": new_run_id, "config_hash": h, "seed": seed})
    return new_run_id, None


def remove_checkpoints(ckpt_dir: Path) -> None:
    """After a successful repeat: its checkpoints, and the checkpoints folder once empty."""
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    try:
        ckpt_dir.parent.rmdir()  # only if no other seed's checkpoints are left
    except OSError:
        pass


# -- the stage ----------------------------------------------------------------------------------


def run(rep: Repeat, model, tokenizer, train_ds, ckpt_dir: Path, resume_from: Path | None):
    """HF Trainer in the stage's window (under the variant's power limit); records
    ``training``. Returns the trainer (the system stage unwraps its model)."""
    from transformers import DataCollatorWithPadding, Trainer
    from transformers.utils import logging as hf_logging

    cfg, result = rep.cfg, rep.result
    hf_logging.set_verbosity_warning()
    args = training_args(cfg, rep.plan, ckpt_dir, rep.seed)
    rep.paths.progress_log.parent.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(
        model=model, args=args, train_dataset=train_ds,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer, callbacks=[_progress_callback(rep.paths.progress_log, rep.run_id)],
    )
    # ModernBertForSequenceClassification takes **kwargs but averages its cross-entropy itself,
    # ignoring num_items_in_batch; the Trainer then assumes the loss is already scaled for
    # gradient accumulation and neither divides it nor the gradient (4× too large with the
    # seed's accumulation of 4; the log would show ~4 × ln 2 at start). Turn that path off.
    trainer.model_accepts_loss_kwargs = False
    if resume_from is not None:
        log.info("resuming %s from %s", rep.run_id, resume_from)
        result["notes"].append(f"resumed from {resume_from.name}")
    with rep.stage("training"), power_limit(rep.plan.power_limit_w):
        out = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    result["training"] = {
        "global_step": trainer.state.global_step, "max_steps": trainer.state.max_steps,
        "epochs": trainer.state.epoch, "final_loss": losses[-1] if losses else None,
        "mean_loss": out.training_loss, "resumed_from": resume_from.name if resume_from else None,
        "learning_rate": cfg.learning_rate, "runtime_s": out.metrics.get("train_runtime"),
        "samples_per_s": out.metrics.get("train_samples_per_second"),
        "checkpoint_dir": str(ckpt_dir),
    }
    return trainer
