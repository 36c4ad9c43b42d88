"""Train one variant end to end, with the energy of every stage measured.

``python -m training.train --variant v2 [--model tiny|<dir>|<hub id>] [--data PATH] [--repeats N]
[--max-steps N] [--meter auto] [--include-flagged] [--set section.key=value …]``

Stages (each an energy window): **data** (load BigVul, paired examples, group split, tokenizer,
tokenisation) → **architecture** (build/load the model, layer pruning, LoRA wrapping) →
**training** (HF Trainer, checkpoints every ``save_steps``; a rerun resumes) → **system** (save
the artifact, LoRA merged, and reload it) → **inference** (evaluate the reloaded artifact on the
test split). v9's ONNX export is its own window (``export``) and an outer window (``run``)
covers the whole repeat: ``energy_kwh.total``, with ``unaccounted`` = total − stages − export.
Repeats flagged ``resumed_from_step_<n>`` / ``tokenisation_cache_hit`` are left out of the
means unless ``--include-flagged``. Output: ``artifacts/<variant>/model/``,
``results/train/<variant>/result.json``, ``results/train/<variant>/runs/<run_id>/result.json``
per repeat, and
``results/train/<variant>/training_progress.log``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from energy.base import J_PER_KWH
from energy.window import recorded_window
from study.io import write_json_atomic
from study.metrics import METRIC_NAMES, at_chance
from training.config import (
    Config,
    ConfigError,
    describe_overlay,
    discover_variants,
    resolve,
)
from training.data import SPLIT_FILE
from training.results import (
    EXPORT,
    REQUIRED_KEYS,
    RESUMED_FLAG,
    RUN_WINDOW,
    STAGES,
    TOKENISATION_CACHE_HIT,
    aggregate,
    empty_result,
    energy_summary,
    write_result,
)
from training.runtime import (
    LAUNCHED_ENV,
    Hardware,
    Plan,
    Refused,
    is_worker,
    launch_command,
    plan,
    power_limit,
    probe_hardware,
    rank,
)

log = logging.getLogger("training")
REPO_ROOT = Path(__file__).resolve().parent.parent
STEP_DELAY_ENV = "GPS_TRAIN_STEP_DELAY_S"  # throttle each step (kill/resume tests and demos)

EXIT_FAILED, EXIT_CONFIG, EXIT_REFUSED = 1, 2, 3

__all__ = ["main", "run_variant", "RunPaths", "REQUIRED_KEYS"]


# -- paths --------------------------------------------------------------------------------------


class RunPaths:
    """Where a variant's files go (relative dirs are taken from the repo root)."""

    def __init__(self, variant: str, results_dir: str | os.PathLike = "results",
                 artifacts_dir: str | os.PathLike = "artifacts") -> None:
        res = Path(results_dir)
        art = Path(artifacts_dir)
        self.variant = variant
        self.variant_dir = (res if res.is_absolute() else REPO_ROOT / res) / "train" / variant
        self.artifact_dir = (art if art.is_absolute() else REPO_ROOT / art) / variant / "model"
        self.result = self.variant_dir / "result.json"
        self.progress_log = self.variant_dir / "training_progress.log"
        self.runs_dir = self.variant_dir / "runs"
        self.checkpoints_dir = self.variant_dir / "checkpoints"

    def run_result(self, run_id: str) -> Path:
        return self.runs_dir / run_id / "result.json"

    def checkpoint(self, seed: int) -> Path:
        return self.checkpoints_dir / f"seed-{seed}"


class Busy(RuntimeError):
    """Another process is training the same variant into the same results dir right now."""


@contextmanager
def variant_lock(paths: RunPaths):
    """Hold ``<variant dir>/.lock`` (flock) for the run: two runs of one variant would share and
    delete each other's checkpoints and race on result.json. Released when the process dies."""
    import fcntl

    paths.variant_dir.mkdir(parents=True, exist_ok=True)
    f = (paths.variant_dir / ".lock").open("a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "?"
            raise Busy(f"another training run of {paths.variant} is writing {paths.variant_dir} "
                       f"(pid {holder}); wait for it or use --results-dir") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        yield
    finally:
        f.close()


def _write_failed(paths: RunPaths, variant: str, cfg: Config, reason: str,
                  environment: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``result.json`` for a run that could not start (refusal, no meter) and return it."""
    res = empty_result(variant, _new_run_id(cfg.training.seed))
    res.update(failure_reason=reason, config=cfg.to_dict(), environment=environment or {},
               country=cfg.runtime.country)
    write_result(paths.result, res)
    return res


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    return msg if isinstance(e, (Refused, ConfigError)) else f"{type(e).__name__}: {msg}"


# -- meters -------------------------------------------------------------------------------------


class _NoMeters:
    """Stand-in for non-zero ranks of a multi-GPU run: rank 0's meters cover every device."""

    idle_w = None
    records: dict[str, Any] = {}

    @contextmanager
    def window(self, name: str, **_: Any):
        class W:
            record = None

        yield W()

    def measure_idle(self, seconds: float = 0.0) -> float:
        return 0.0

    def describe(self) -> dict[str, Any]:
        return {"source": "none", "kind": "estimated", "note": f"rank {rank()} does not measure"}

    def close(self) -> None:
        pass


# -- data stage ---------------------------------------------------------------------------------


TOKENIZE_CACHE = Path(os.environ.get("GPS_CACHE_DIR", REPO_ROOT / ".cache")) / "datasets"


def tokenize(tokenizer, texts: list[str], labels: list[int], max_length: int, padding: str,
             cache_dir: Path | None = None, reuse_cache: bool = True):
    """Tokenise with the ``datasets`` library, cached on disk.

    Truncates to ``max_length`` tokens and pads to it (``max_length``) or not at all
    (``longest``: the collator pads each batch). The cache file is keyed by the texts, labels,
    tokenizer and settings, so a change of any of them never reuses a stale file. With
    ``reuse_cache`` an existing file is loaded instead of tokenising (``cache_hit`` in the
    returned info: the data stage then did not do the whole work); without, the file is
    rewritten. Only the texts and labels enter the dataset (no ``group``/``pair`` column
    reaches the Trainer). Returns the dataset and truncation statistics.
    """
    import datasets

    key = hashlib.sha256()
    if hasattr(tokenizer, "backend_tokenizer"):
        # the vocabulary and pipeline, without the truncation/padding state a previous call left
        # behind (max_length and padding are keyed below)
        spec = json.loads(tokenizer.backend_tokenizer.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
        key.update(json.dumps(spec, sort_keys=True).encode())
    else:
        key.update(repr(tokenizer).encode())
    key.update(f"{max_length}|{padding}|{len(texts)}".encode())
    for t, y in zip(texts, labels, strict=True):
        key.update(t.encode("utf-8", "surrogatepass"))
        key.update(b"\x00%d\x00" % int(y))
    cache = Path(cache_dir or TOKENIZE_CACHE)
    cache.mkdir(parents=True, exist_ok=True)
    cache_file = cache / f"tokenized-{key.hexdigest()[:24]}.arrow"
    cache_hit = reuse_cache and cache_file.exists()

    def encode(batch):
        enc = tokenizer(batch["text"], truncation=True, max_length=max_length,
                        padding="max_length" if padding == "max_length" else False)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                "labels": batch["label"], "n_tokens": [int(sum(m)) for m in enc["attention_mask"]]}

    raw = datasets.Dataset.from_dict({"text": list(texts), "label": [int(y) for y in labels]})
    ds = raw.map(encode, batched=True, remove_columns=["text", "label"],
                 cache_file_name=str(cache_file), load_from_cache_file=reuse_cache,
                 desc="tokenise", keep_in_memory=False)
    n_tokens = ds["n_tokens"]
    ds = ds.remove_columns(["n_tokens"])
    n = len(ds)
    n_trunc = sum(1 for k in n_tokens if k >= max_length)
    return ds, {
        "n": n, "max_length": max_length, "padding": padding,
        "truncated": n_trunc, "truncated_share": n_trunc / n if n else 0.0,
        "mean_tokens": sum(n_tokens) / n if n else 0.0,
        "library": f"datasets {datasets.__version__}", "cache_file": str(cache_file),
        "cache_hit": cache_hit,
    }


def data_stage(cfg: Config, seed: int, ckpt_dir: Path, reuse_tokenisation: bool = False) -> dict[str, Any]:
    """Load BigVul, build paired examples, split by group, get the tokenizer, tokenise train
    (loading an earlier identical tokenisation only with ``reuse_tokenisation``)."""
    from training.data import (
        class_balance,
        load_bigvul,
        make_examples,
        resolve_data_path,
        split_by_group,
    )

    path = resolve_data_path(cfg.data.path)
    rows = load_bigvul(path)
    ex, stats = make_examples(rows, paired=cfg.data.paired)
    splits = split_by_group(ex, seed=cfg.data.split_seed, fractions=tuple(cfg.data.fractions))
    train, test = splits["train"], splits["test"]
    if cfg.data.train_limit and len(train) > cfg.data.train_limit:
        train = train.sample(n=cfg.data.train_limit, random_state=cfg.data.split_seed).reset_index(drop=True)
    if cfg.data.eval_limit and len(test) > cfg.data.eval_limit:
        test = test.sample(n=cfg.data.eval_limit, random_state=cfg.data.split_seed).reset_index(drop=True)
    if train["label"].nunique() < 2:
        raise ValueError(f"the training split has one class only ({class_balance(train)}); "
                         "enable data.paired or use more data")

    tok_dir = ckpt_dir / "tokenizer"
    if cfg.is_tiny:
        from transformers import AutoTokenizer

        from training.model import train_tokenizer

        if (tok_dir / "tokenizer.json").exists():
            # resuming: the checkpoint's weights belong to *this* vocabulary
            tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        else:
            tokenizer = train_tokenizer(train["text"], vocab_size=cfg.model.tiny.vocab_size, max_length=cfg.max_length)
            if not (is_worker() and rank() != 0):
                tokenizer.save_pretrained(tok_dir)
    else:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(cfg.model.name)
        except OSError as e:
            raise RuntimeError(f"tokenizer for model {cfg.model.name!r} is not available offline ({e})") from None
    tokenizer.model_max_length = cfg.max_length
    train_ds, trunc = tokenize(tokenizer, train["text"].tolist(), train["label"].tolist(),
                               cfg.max_length, cfg.data.padding, reuse_cache=reuse_tokenisation)
    return {
        "path": path, "train": train, "test": test, "validation": splits["validation"],
        "tokenizer": tokenizer, "train_ds": train_ds,
        "info": {
            "path": str(path), "rows": stats.rows, "paired": cfg.data.paired,
            "paired_negatives": stats.paired_negatives,
            "examples_before_dedup": stats.examples_before_dedup,
            "dropped_empty": stats.dropped_empty, "dropped_duplicates": stats.dropped_duplicates,
            "dropped_conflicting": stats.dropped_conflicting, "examples": stats.examples,
            "notes": stats.notes, "split_seed": cfg.data.split_seed,
            "fractions": list(cfg.data.fractions), "train_used": len(train), "test_used": len(test),
            "train_tokenization": trunc, "tokenizer": type(tokenizer).__name__,
            "vocab_size": len(tokenizer),
        },
        "class_balance": {
            "train": class_balance(train), "validation": class_balance(splits["validation"]),
            "test": class_balance(test),
        },
    }


# -- architecture stage -----------------------------------------------------------------------


def architecture_stage(cfg: Config, pl: Plan, tokenizer, seed: int) -> tuple[Any, dict[str, Any]]:
    """Build (tiny) or load (real) the classifier, prune layers, wrap with LoRA."""
    from training.model import (
        apply_lora,
        build_tiny_model,
        count_params,
        load_model,
        model_size_mb,
        prune_layers,
        pruned_layer_count,
    )

    info: dict[str, Any] = {"name": cfg.model.name, "attn_implementation": cfg.model.attn_implementation}
    if cfg.is_tiny:
        tiny = asdict(cfg.model.tiny)
        model = build_tiny_model(tokenizer, seed=seed, attn_implementation=cfg.model.attn_implementation, **tiny)
    else:
        kwargs: dict[str, Any] = {}
        if pl.bnb_quantization != "none":
            import torch
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = (
                BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                   bnb_4bit_compute_dtype=torch.bfloat16)
                if pl.bnb_quantization == "bnb_4bit" else BitsAndBytesConfig(load_in_8bit=True)
            )
        model, _ = load_model(cfg.model.name, attn_implementation=cfg.model.attn_implementation, **kwargs)
    layers_before = int(model.config.num_hidden_layers)
    n_drop, note = pruned_layer_count(cfg.pruning.layers, layers_before, cfg.pruning.reference_layers)
    if n_drop:
        prune_layers(model, n_drop, cfg.pruning.side)
    info["pruning"] = {"requested": cfg.pruning.layers, "side": cfg.pruning.side, "dropped": n_drop,
                       "layers_before": layers_before, "layers_after": int(model.config.num_hidden_layers),
                       "note": note}
    if pl.bnb_quantization != "none":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.training.gradient_checkpointing)
    if cfg.peft.enabled:
        p = cfg.peft
        model = apply_lora(model, r=p.r, alpha=p.alpha, dropout=p.dropout,
                           target_modules=p.target_modules, modules_to_save=p.modules_to_save)
        if cfg.training.gradient_checkpointing:
            model.enable_input_require_grads()
    info.update(count_params(model))
    info["size_mb_training"] = model_size_mb(model)
    info["layers"] = int(model.config.num_hidden_layers) if hasattr(model, "config") else None
    return model, info


# -- training stage ----------------------------------------------------------------------------


def _progress_callback(log_path: Path, run_id: str):
    from transformers import TrainerCallback

    delay_s = float(os.environ.get(STEP_DELAY_ENV, "0") or 0)

    class ProgressLog(TrainerCallback):
        """Per-step loss/lr lines in training_progress.log (the seed's file, one line per log)."""

        def on_train_begin(self, args, state, control, **kw):
            with log_path.open("a") as f:
                f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} run={run_id} "
                        f"train_begin step={state.global_step} max_steps={state.max_steps}\n")

        def on_log(self, args, state, control, logs=None, **kw):
            if not logs or not state.is_world_process_zero:
                return
            parts = [f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items()]
            with log_path.open("a") as f:
                f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} run={run_id} "
                        f"step={state.global_step} {' '.join(parts)}\n")

        def on_step_end(self, args, state, control, **kw):
            if delay_s > 0:
                time.sleep(delay_s)

    return ProgressLog()


def training_args(cfg: Config, pl: Plan, output_dir: Path, seed: int):
    """The variant's knobs as ``TrainingArguments`` (a flag wherever transformers has one)."""
    import dataclasses

    from transformers import TrainingArguments

    tr = cfg.training
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    # transformers 5 renamed gradient_checkpointing (kept as a deprecated alias)
    ckpt_flag = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    return TrainingArguments(
        **{ckpt_flag: tr.gradient_checkpointing},
        output_dir=str(output_dir),
        per_device_train_batch_size=tr.per_device_train_batch_size,
        per_device_eval_batch_size=tr.per_device_eval_batch_size,
        gradient_accumulation_steps=tr.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        num_train_epochs=tr.epochs,
        max_steps=tr.max_steps,
        warmup_steps=tr.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        weight_decay=tr.weight_decay,
        optim=tr.optim,
        bf16=pl.precision == "bf16",
        fp16=pl.precision == "fp16",
        torch_compile=tr.torch_compile,
        train_sampling_strategy="group_by_length" if cfg.data.group_by_length else "random",
        dataloader_pin_memory=tr.dataloader_pin_memory,
        dataloader_num_workers=tr.dataloader_num_workers,
        seed=seed,
        data_seed=seed,
        logging_strategy="steps",
        logging_steps=tr.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=tr.save_steps,
        save_total_limit=tr.save_total_limit,
        eval_strategy="no",
        report_to=[],
        use_cpu=pl.device == "cpu",
        disable_tqdm=os.environ.get("GPS_NO_PROGRESS") == "1",
        remove_unused_columns=False,
    )


def _config_hash(cfg: Config, seed: int) -> str:
    d = cfg.to_dict()
    d.pop("runtime", None)  # meters/idle do not change what is trained
    d.pop("inference", None)
    return hashlib.sha256(json.dumps([d, seed], sort_keys=True).encode()).hexdigest()[:16]


def _latest_checkpoint(ckpt_dir: Path) -> Path | None:
    cks = [p for p in ckpt_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()
           and (p / "trainer_state.json").exists()]
    return max(cks, key=lambda p: int(p.name.split("-")[-1])) if cks else None


def prepare_checkpoint_dir(ckpt_dir: Path, cfg: Config, seed: int, new_run_id: str) -> tuple[str, Path | None]:
    """Reuse an interrupted run's checkpoint dir (same config and seed) → ``(run_id, checkpoint)``;
    otherwise start a clean one → ``(new_run_id, None)``."""
    marker = ckpt_dir / "run.json"
    h = _config_hash(cfg, seed)
    if marker.exists():
        try:
            m = json.loads(marker.read_text())
        except (OSError, ValueError):
            m = {}
        if m.get("config_hash") == h:
            ck = _latest_checkpoint(ckpt_dir)
            if ck is not None:
                return str(m.get("run_id") or new_run_id), ck
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    elif ckpt_dir.exists():
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(marker, {"run_id": new_run_id, "config_hash": h, "seed": seed})
    return new_run_id, None


# -- system stage ------------------------------------------------------------------------------


def save_artifact_atomically(model, tokenizer, out_dir: Path, split: dict[str, Any] | None = None,
                             extra_json: dict[str, Any] | None = None) -> Path:
    """Write the artifact to a sibling temp dir, then swap it in: a reader never sees half a model.

    ``split`` (data path, split seed, fractions, paired) is saved as ``split.json`` beside the
    weights, so later stages evaluate and load-test on exactly this model's held-out split.
    ``extra_json`` (``{file name: object}``) adds more JSON files to the same atomic swap (a
    compressed artifact's ``compression.json``).
    """
    from training.model import save_artifact

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    save_artifact(model, tokenizer, tmp)
    if split is not None:
        write_json_atomic(tmp / SPLIT_FILE, split)
    for name, obj in (extra_json or {}).items():
        write_json_atomic(tmp / name, obj)
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return out_dir


def _unwrap(trainer):
    model = trainer.model
    try:
        model = trainer.accelerator.unwrap_model(model)
    except Exception:
        pass
    return getattr(model, "_orig_mod", model)  # torch.compile wrapper


# -- one repeat --------------------------------------------------------------------------------


def run_once(variant: str, cfg: Config, pl: Plan, seed: int, paths: RunPaths, meters, run_id: str,
             environment: dict[str, Any]) -> dict[str, Any]:
    """One full pipeline run (all five stages) → its result dict (status ok). Raises on failure,
    after filling ``result`` as far as it got (the caller records it as failed).

    The whole repeat runs inside the outer window ``run``: its energy is ``energy_kwh.total``,
    and what no stage (or export) window covered is ``energy_kwh.unaccounted``."""
    state: dict[str, Any] = {}
    outer = None
    t0 = time.perf_counter()
    try:
        with meters.window(RUN_WINDOW) as outer:
            return _run_stages(variant, cfg, pl, seed, paths, meters, run_id, environment, state)
    finally:
        # also on failure: the partial result's total is the outer window up to the failure
        result = state.get("result")
        if result is not None:
            if outer is not None and outer.record is not None:
                state["records"][RUN_WINDOW] = outer.record
            _fill_energy(result, state["records"], state["durations"], meters,
                         total_s=time.perf_counter() - t0)
            total = result["energy_kwh"]["total"]
            if total is not None:
                from energy.carbon import co2_kg, grid_intensity

                result["grid_gco2_per_kwh"] = grid_intensity(cfg.runtime.country)
                result["co2_kg"] = co2_kg(total, cfg.runtime.country)


def _run_stages(variant: str, cfg: Config, pl: Plan, seed: int, paths: RunPaths, meters, run_id: str,
                environment: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """The body of :func:`run_once`; ``state`` receives ``result``, ``records`` and ``durations``
    as soon as they exist."""
    import torch

    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    ckpt_dir = paths.checkpoint(seed)
    if is_worker() and rank() != 0:
        # rank 0 owns the checkpoint dir; the others only follow its resume decision
        # (multi-GPU runs are not exercised on this CPU box, see docs/training.md)
        resume_from = _latest_checkpoint(ckpt_dir) if ckpt_dir.exists() else None
    else:
        run_id, resume_from = prepare_checkpoint_dir(ckpt_dir, cfg, seed, run_id)
    result = empty_result(variant, run_id)
    result.update(config=cfg.to_dict(), environment=environment, seed=seed, plan=pl.to_dict(),
                  country=cfg.runtime.country, notes=list(pl.notes))
    records: dict[str, Any] = {}
    durations: dict[str, float] = {}
    state.update(result=result, records=records, durations=durations)
    _current["result"] = result
    if resume_from is not None:  # its energy is not that of a whole run: flagged, out of the means
        result["flags"].append(RESUMED_FLAG.format(step=int(resume_from.name.split("-")[-1])))

    def stage(name: str):
        # Also when the stage raises: a failed run's result.json keeps the energy of every stage
        # it went through (the failing one flagged by the energy layer).
        return recorded_window(meters, name, records, durations,
                               after=lambda: _fill_energy(result, records, durations, meters))

    # data
    with stage("data"):
        d = data_stage(cfg, seed, ckpt_dir,
                       reuse_tokenisation=resume_from is not None or cfg.runtime.tokenize_cache == "always")
    result["data"] = d["info"]
    if d["info"]["train_tokenization"]["cache_hit"]:
        result["flags"].append(TOKENISATION_CACHE_HIT)
    result["class_balance"] = d["class_balance"]
    tokenizer = d["tokenizer"]

    # architecture
    with stage("architecture"):
        model, minfo = architecture_stage(cfg, pl, tokenizer, seed)
    result["model"] = minfo
    if minfo["pruning"]["note"]:
        result["notes"].append(minfo["pruning"]["note"])

    # training
    from transformers import DataCollatorWithPadding, Trainer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_warning()
    args = training_args(cfg, pl, ckpt_dir, seed)
    paths.progress_log.parent.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(
        model=model, args=args, train_dataset=d["train_ds"],
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer, callbacks=[_progress_callback(paths.progress_log, run_id)],
    )
    # ModernBertForSequenceClassification takes **kwargs but averages its cross-entropy itself,
    # ignoring num_items_in_batch; the Trainer then assumes the loss is already scaled for
    # gradient accumulation and neither divides it nor the gradient (4× too large with the
    # seed's accumulation of 4; the log would show ~4 × ln 2 at start). Turn that path off.
    trainer.model_accepts_loss_kwargs = False
    if resume_from is not None:
        log.info("resuming %s from %s", run_id, resume_from)
        result["notes"].append(f"resumed from {resume_from.name}")
    with stage("training"), power_limit(pl.power_limit_w):
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
    if is_worker() and rank() != 0:
        return result  # rank 0 saves, evaluates and writes

    # system: save (LoRA merged) + reload, as a server would load it
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from training.model import export_onnx, merge_lora, model_size_mb

    with stage("system"):
        final = merge_lora(_unwrap(trainer))
        final = final.float() if pl.bnb_quantization == "none" else final
        split = {"data_path": str(d["path"]), "split_seed": cfg.data.split_seed,
                 "fractions": list(cfg.data.fractions), "paired": cfg.data.paired}
        save_artifact_atomically(final, tokenizer, paths.artifact_dir, split=split)
        reloaded = AutoModelForSequenceClassification.from_pretrained(paths.artifact_dir, use_safetensors=True)
        reloaded_tok = AutoTokenizer.from_pretrained(paths.artifact_dir)
        reloaded.to(pl.device).eval()
    result["artifact"] = str(paths.artifact_dir)
    result["model"]["params_artifact"] = sum(p.numel() for p in reloaded.parameters())
    result["model"]["size_mb"] = model_size_mb(reloaded)
    result["model"]["artifact_bytes"] = sum(f.stat().st_size for f in paths.artifact_dir.iterdir() if f.is_file())
    del trainer, model, final

    # inference: evaluation of the reloaded artifact on the test split
    from training.evaluate import predict_onnxruntime, predict_pytorch, summarise

    test = d["test"]
    texts, labels = test["text"].tolist(), test["label"].tolist()
    pairs = [None if pd.isna(p) else str(p) for p in test["pair"]] if "pair" in test.columns else None
    ev: dict[str, Any] = {"engine": cfg.inference.engine, "quantization": pl.eval_quantization,
                          "batch_size": cfg.inference.batch_size, "split": "test"}
    if cfg.inference.engine == "onnxruntime":
        with tempfile.TemporaryDirectory(prefix="gps-onnx-") as tmp:
            onnx_path = Path(tmp) / "model.onnx"
            with stage(EXPORT):  # its own window: energy_kwh.export, not part of a stage
                ev["onnx_export"] = export_onnx(reloaded, onnx_path, opset=cfg.inference.onnx_opset)
            ev["export_s"] = durations[EXPORT]
            ev["export_energy"] = records[EXPORT].to_dict() if EXPORT in records else None
            ev["onnx_bytes"] = onnx_path.stat().st_size
            with stage("inference"):
                logits, wall_s = predict_onnxruntime(onnx_path, reloaded_tok, texts, max_length=cfg.max_length,
                                                     batch_size=cfg.inference.batch_size, threads=cfg.runtime.threads)
    else:
        if pl.eval_quantization == "dynamic_int8":
            from torch.ao.quantization import quantize_dynamic

            reloaded = quantize_dynamic(reloaded.cpu(), {torch.nn.Linear}, dtype=torch.qint8)
            ev["size_mb_quantized"] = model_size_mb(reloaded)
        autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(pl.precision)
        with stage("inference"):
            logits, wall_s = predict_pytorch(
                reloaded, reloaded_tok, texts, max_length=cfg.max_length, batch_size=cfg.inference.batch_size,
                device=pl.device if pl.eval_quantization == "none" else "cpu",
                autocast_dtype=autocast if pl.eval_quantization == "none" else None)
        ev["autocast"] = str(autocast).replace("torch.", "") if autocast is not None and pl.eval_quantization == "none" else None
    metrics = summarise(labels, logits, wall_s, pairs=pairs)
    ev.update(metrics)
    result["evaluation"] = ev
    for k in (*METRIC_NAMES, "latency_ms"):
        result[k] = metrics[k]
    result["at_chance"] = at_chance(metrics["mcc"])

    # the energy fields are kept current by every stage (_fill_energy); run_once adds the outer
    # window's total and the CO2 when the repeat ends
    result["status"] = "ok"
    result["failure_reason"] = None
    if not cfg.training.keep_checkpoints:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        try:
            ckpt_dir.parent.rmdir()  # only if no other seed's checkpoints are left
        except OSError:
            pass
    return result


def _fill_energy(result: dict[str, Any], records: dict[str, Any], durations: dict[str, float], meters,
                 total_s: float | None = None) -> None:
    """Write the energy and duration fields of ``result`` from the window records so far
    (stages, ``export``, and the outer ``run`` window once it closed). ``total_s``: the whole
    repeat's duration, once known (until then the sum of the windows so far)."""
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
    parts = sum(durations.values())
    result["duration_s"] = {**durations, "unaccounted": None if total_s is None else total_s - parts,
                            "total": parts if total_s is None else total_s}
    unacc = result["energy_kwh"].get("unaccounted")
    total = result["energy_kwh"].get("total")
    if unacc is not None and total and unacc < -0.01 * total:  # cannot happen with additive windows
        result["notes"].append(f"unaccounted energy is negative ({unacc * J_PER_KWH:.1f} J): the stage "
                               "windows add up to more than the outer window (meter integration error)")


_current: dict[str, Any] = {}  # the run in progress, so a failure can still write what it had


# -- the whole variant -------------------------------------------------------------------------


def _preload(cfg: Config) -> None:
    """Import the heavy libraries before the first window: Python import time is not a stage
    of the pipeline, and the first repeat would otherwise pay it alone."""
    import torch  # noqa: F401
    import transformers.models.modernbert.modeling_modernbert  # noqa: F401
    from transformers import AutoTokenizer, Trainer  # noqa: F401

    if cfg.peft.enabled:
        import peft  # noqa: F401
    if cfg.inference.engine == "onnxruntime":
        import onnxruntime  # noqa: F401
        import torch.onnx  # noqa: F401


def _new_run_id(seed: int) -> str:
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-s{seed}"


def run_variant(variant: str, cfg: Config, *, repeats: int = 1, paths: RunPaths | None = None,
                hw: Hardware | None = None, meters=None, include_flagged: bool = False) -> dict[str, Any]:
    """Run ``repeats`` seeds of ``variant`` and write every result file. Returns the variant's
    result dict (``status`` ok/failed). Raises :class:`Refused` (after writing a failed
    result.json) when the variant cannot run here. Flagged repeats (resumed, tokenisation
    cache hit) are left out of the means unless ``include_flagged``."""
    from study.environment import capture

    paths = paths or RunPaths(variant)
    paths.variant_dir.mkdir(parents=True, exist_ok=True)
    environment = capture()
    try:
        pl = plan(cfg, hw or probe_hardware())
    except Refused as e:
        _write_failed(paths, variant, cfg, str(e), environment)
        raise

    own_meters = meters is None
    if own_meters:
        if is_worker() and rank() != 0:
            meters = _NoMeters()
        else:
            from energy import open_meters
            from energy.nvml import cuda_devices_spec

            # pids: the estimate meter also attributes this process's own share (a cross-check,
            # never summed) — on a shared box the machine-wide figure includes other work.
            # gpus: NVML reads exactly the boards this run trains on (cuda:0 … cuda:gpus-1 of
            # its CUDA_VISIBLE_DEVICES), none when it trains on the CPU.
            gpus = cuda_devices_spec(cfg.runtime.gpus) if pl.device == "cuda" else "none"
            try:
                meters = open_meters(cfg.runtime.meter, interval_s=cfg.runtime.meter_interval_s,
                                     country=cfg.runtime.country, pids=(os.getpid(),), gpus=gpus)
            except (ValueError, RuntimeError) as e:  # unknown spec, MeterUnavailable
                _write_failed(paths, variant, cfg, f"energy meter: {_one_line(e)}", environment)
                raise
    runs: list[dict[str, Any]] = []
    try:
        _preload(cfg)
        if cfg.runtime.idle_s > 0 and meters.idle_w is None:
            try:
                meters.measure_idle(seconds=cfg.runtime.idle_s)
            except RuntimeError as e:  # the idle window produced no energy
                _write_failed(paths, variant, cfg, f"idle baseline: {_one_line(e)}", environment)
                raise
        for k in range(repeats):
            seed = cfg.training.seed + k
            run_id = _new_run_id(seed)
            _current.clear()
            try:
                res = run_once(variant, cfg, pl, seed, paths, meters, run_id, environment)
            except (Exception, KeyboardInterrupt) as e:
                res = _current.get("result")
                if res is None:  # failed before run_once built its result
                    res = empty_result(variant, run_id)
                    res.update(config=cfg.to_dict(), environment=environment, seed=seed,
                               country=cfg.runtime.country)
                res.update(status="failed", failure_reason=_one_line(e))
                if not isinstance(e, Exception):
                    if not (is_worker() and rank() != 0):
                        write_result(paths.run_result(res["run_id"]), res)
                        runs.append(res)
                        write_result(paths.result, aggregate(variant, runs, runs[-1]["run_id"],
                                                                  include_flagged=include_flagged))
                    raise
                log.debug("run %s failed", run_id, exc_info=True)
            res["n_repeats"] = 1
            if is_worker() and rank() != 0:
                continue
            write_result(paths.run_result(res["run_id"]), res)
            runs.append(res)
            print(summary_line(res), flush=True)
        if is_worker() and rank() != 0:
            return {"status": "ok", "variant": variant}
        final = aggregate(variant, runs, runs[0]["run_id"] if len(runs) == 1 else
                          f"{runs[0]['run_id']}..{runs[-1]['run_id']}", include_flagged=include_flagged)
        write_result(paths.result, final)
        return final
    finally:
        if own_meters:
            meters.close()


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def summary_line(res: dict[str, Any]) -> str:
    """One line: variant, F1 (beside the constant baseline), MCC, class balance, energy per
    stage with source/kind, flags, artifact."""
    if res.get("status") != "ok":
        return f"{res.get('variant')} [{res.get('run_id')}]: FAILED — {res.get('failure_reason')}"
    cb = res.get("class_balance", {}).get("test", {})
    e = res.get("energy_kwh", {})
    src = res.get("energy_source", {})
    stages = " ".join(
        f"{s} {e[s] * J_PER_KWH:.0f}J" if e.get(s) is not None else f"{s} n/a"
        for s in (*STAGES, EXPORT, "unaccounted") if s in STAGES or e.get(s) is not None
    )
    sources = ",".join(sorted(set(src.values()))) or "none"
    chance = " AT CHANCE" if res.get("at_chance") else ""
    flags = f" | flags {','.join(res['flags'])}" if res.get("flags") else ""
    return (
        f"{res['variant']} [{res['run_id']}]: F1 {_fmt(res['f1'])} (constant 'vulnerable' "
        f"{_fmt(res.get('baseline_f1'))}) MCC {_fmt(res.get('mcc'))}{chance} acc {_fmt(res['accuracy'])} "
        f"pair acc {_fmt(res.get('pair_accuracy'))} "
        f"(test n={cb.get('n')}, {100 * cb.get('positive_share', 0):.0f}% vulnerable) | "
        f"energy {stages} total {(e.get('total') or 0) * 1000:.4f} Wh ({sources}, {res.get('energy_kind')}) | "
        f"{res.get('duration_s', {}).get('total', 0):.0f} s{flags} | artifact {res.get('artifact')}"
    )


# -- CLI ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Train one variant (v0…, aliases, or a combination like v2+v7+v8) with per-stage "
                    "energy; writes artifacts/<variant>/model/ and results/train/<variant>/result.json.",
    )
    p.add_argument("--variant", default=os.environ.get("VARIANT", "v0"), help="variant name, alias or A+B+C (default v0)")
    p.add_argument("--model", default=None, help="tiny (default) | local checkpoint dir | hub id in the HF cache")
    p.add_argument("--data", default=None, help="BigVul CSV (MSR_data_cleaned.csv[.gz]); default: embedded sample")
    p.add_argument("--repeats", type=int, default=1, help="seeds to run (seed, seed+1, …); result.json holds means + ci95")
    p.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps (overrides epochs)")
    p.add_argument("--meter", default=None, help="energy meter spec: auto | nvml | rapl | estimate | codecarbon | replay:<csv>")
    p.add_argument("--gpus", type=int, default=None, help="data-parallel over N GPUs via accelerate launch")
    p.add_argument("--idle-s", type=float, default=None, help="idle baseline seconds before the first repeat (0 = skip)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config key (validated like the YAML); repeatable")
    p.add_argument("--include-flagged", action="store_true",
                   default=os.environ.get("INCLUDE_FLAGGED", "").lower() in ("1", "true", "yes"),
                   help="average flagged repeats too (resumed from a checkpoint, tokenisation cache hit); "
                        "default: left out of the means and CIs, listed in 'excluded' (env INCLUDE_FLAGGED=1)")
    p.add_argument("--results-dir", default=os.environ.get("RESULTS_DIR", "results"), help="default: results")
    p.add_argument("--artifacts-dir", default=os.environ.get("ARTIFACTS_DIR", "artifacts"), help="default: artifacts")
    p.add_argument("--list", action="store_true", help="list every variant and what it changes, then exit")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and plan as JSON, then exit")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging (and tracebacks on failure)")
    return p


def list_variants() -> str:
    rows = []
    for name, info in discover_variants().items():
        rows.append(f"{name:<5} {info.description}\n      aliases: {', '.join(info.aliases) or '-'}; "
                    f"sets: {describe_overlay(info.overlay)}")
    rows.append("combine with '+': e.g. v2+v7+v8 applies v2, then v7, then v8")
    return "\n".join(rows)


def _sigterm_as_interrupt() -> None:
    """SIGTERM (``timeout``, ``docker stop``) → KeyboardInterrupt, so the run is recorded as
    failed ("interrupted") and its checkpoints are kept for a resume."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt(f"interrupted by signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    if args.list:
        print(list_variants())
        return 0
    overrides: dict[str, Any] = {}
    for key, val in (("model.name", args.model), ("data.path", args.data), ("training.max_steps", args.max_steps),
                     ("runtime.meter", args.meter), ("runtime.gpus", args.gpus), ("runtime.idle_s", args.idle_s)):
        if val is not None:
            overrides[key] = val
    try:
        cfg = resolve(args.variant, args.set, overrides=overrides)
        if args.repeats < 1:
            raise ConfigError(f"--repeats must be ≥ 1, got {args.repeats}")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if args.print_config:
        out: dict[str, Any] = {"variant": args.variant, "config": cfg.to_dict()}
        try:
            out["plan"] = plan(cfg, probe_hardware()).to_dict()
        except Refused as e:
            out["plan"] = {"refused": str(e)}
        print(json.dumps(out, indent=2))
        return 0

    if cfg.runtime.gpus > 1 and os.environ.get(LAUNCHED_ENV) != "1":
        try:
            plan(cfg, probe_hardware())
        except Refused as e:
            _write_failed(RunPaths(args.variant, args.results_dir, args.artifacts_dir), args.variant, cfg, str(e))
            print(f"error: {e}", file=sys.stderr)
            return EXIT_REFUSED
        cmd = launch_command(argv, cfg.runtime.gpus)
        log.info("launching: %s", " ".join(cmd))
        return subprocess.call(cmd, env={**os.environ, LAUNCHED_ENV: "1"})

    _sigterm_as_interrupt()
    paths = RunPaths(args.variant, args.results_dir, args.artifacts_dir)
    try:
        with variant_lock(paths) if not (is_worker() and rank() != 0) else nullcontext():
            res = run_variant(args.variant, cfg, repeats=args.repeats, paths=paths,
                              include_flagged=args.include_flagged)
    except Busy as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except Refused as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print(f"error: interrupted; checkpoints kept in {paths.checkpoints_dir} (rerun to resume)", file=sys.stderr)
        return 130
    except Exception as e:  # failed before a repeat started (no meter, …); result.json says so
        log.debug("run failed", exc_info=True)
        print(f"error: {args.variant} failed: {_one_line(e)}", file=sys.stderr)
        return EXIT_FAILED
    if res.get("status") != "ok":
        print(f"error: {args.variant} failed: {res.get('failure_reason')}", file=sys.stderr)
        return EXIT_FAILED
    if res.get("n_repeats", 1) > 1 or res.get("excluded") or res.get("flags"):
        ci = res.get("ci95", {}).get("f1")
        mci = res.get("ci95", {}).get("mcc")
        left_out = (f"; {len(res['excluded'])} flagged left out "
                    f"({'; '.join(e['run_id'] + ': ' + ','.join(e['flags']) for e in res['excluded'])})"
                    if res.get("excluded") else "")
        flagged = f"; flagged: {','.join(res['flags'])}" if res.get("flags") else ""
        print(f"{args.variant}: mean F1 {_fmt(res['f1'])}"
              + (f" (95% CI {ci[0]:.3f}–{ci[1]:.3f})" if ci else "")
              + f", MCC {_fmt(res.get('mcc'))}" + (f" (95% CI {mci[0]:.3f}–{mci[1]:.3f})" if mci else "")
              + (" at chance" if res.get("at_chance") else "")
              + f" over {res.get('n_used', res['n_repeats'])} of {res['n_repeats']} repeats"
              + left_out + flagged + f"; {paths.result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
