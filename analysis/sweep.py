"""The sweep: an Optuna study over energy-saving knobs, kept in a real database.

``python -m analysis.sweep --n 4 [--workers 2] [--sampler random|tpe|nsga2] [--storage URL] [--serve]``

* **Search space** (YAML, ``analysis/search_space.yaml``): the variant — a subset of overlays
  (``v2+v7``), one Optuna categorical over every allowed subset — and one categorical per
  ``--set`` knob. A knob that a chosen overlay sets itself is left to the overlay for that trial.
  Optional ``compress:`` (methods of ``training.compress``, or ``none``) adds one categorical,
  drawn last: a chosen method compresses the trained model and the trial serves
  ``<variant>@<method>``.
* **Objectives** (multi-objective study): minimise energy — serving energy per 1k requests when
  trials serve (``energy_per_1k_wh.server`` where the load summary has it, else ``.net``, else
  ``.gross``; the served model is the compressed one when the trial compresses), else
  ``energy_kwh.training`` (with ``compress:`` choices: ``pipeline.energy_kwh`` = training + the
  compression step's own energy) — and maximise accuracy (``mcc`` where the training result has
  it, else ``f1``; with ``compress:`` choices ``pipeline.mcc``/``.f1``, the compressed model's
  when the trial compresses; ``--energy-metric`` / ``--accuracy-metric`` choose others). The
  study fixes both names (``study.metric_names``) at its first finished trial, so every trial of
  one study is judged by the same two numbers.
* **Samplers**: ``random`` (default; the seed's random search — trial *i*'s draw depends only on
  ``(seed, i)``, whichever worker runs it), ``tpe`` and ``nsga2`` (Optuna's
  ``TPESampler`` / ``NSGAIISampler``; they learn from finished trials, so their draws depend on
  the order trials finish).
* **Storage**: ``sqlite:///<out>/study.db`` by default; ``postgresql://USER@HOST/DB`` lets many
  machines run workers on one study (``make sweep-worker STORAGE=… N=…`` on each).
  ``--workers K`` runs K worker processes on this machine.
* **Trials**: each trial runs ``python -m training.train`` (then ``python -m training.compress``
  when it compresses, and, with ``--serve``, ``python -m loadtest.run``) into
  ``<out>/<run_id>/`` (``params.json``, ``train/…/result.json``, ``compress/…/result.json``,
  ``power.csv`` from the energy sidecar, ``train.log``, ``compress.log``, ``load/``,
  ``done.json``) and stores its run id, host, every metric (``train.*``, ``compress.*``,
  ``pipeline.*``, ``load.*``) and its result paths as user attributes.
* **Stopping and resuming**: workers stop once the study has ``N`` complete trials. A trial
  that fails (training failed, metric missing) ends ``FAIL`` with its reason and the study goes
  on (``--max-failed`` bounds that). A worker stopped with Ctrl-C/SIGTERM ends its trial
  ``FAIL`` at once; a worker killed outright stops heart-beating, and the next worker to look
  (after ``--grace-s``) ends that trial ``FAIL`` through Optuna's heartbeat, marks its folder
  failed (partial results kept) and queues its parameters again
  (``RetryHeartbeatStaleTrialCallback``). Rerunning the same command continues the study;
  finished trials are never repeated.
* **Output**: ``<out>/aggregate.csv`` (one row per trial, every state) and ``<out>/best.json``
  (the Pareto set from ``study.best_trials``, best accuracy, lowest energy, best trade-off),
  rewritten after every trial; the report's sweep section reads them.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from analysis.io import as_float, get_path, read_json, write_json_atomic, write_table_atomic
from analysis.tradeoffs import Point, key_findings
from study.process import stop_process

SPACE_KEYS = {"base_variant", "overlays", "set", "fixed", "max_steps", "train_args", "serve", "compress"}
OVERLAY_KEYS = {"choices", "min", "max"}
SERVE_KEYS = {"engine", "duration_s", "warmup_s", "idle_s", "max_items"}
DEFAULT_SPACE = Path(__file__).with_name("search_space.yaml")
VARIANTS_DIR = Path(__file__).resolve().parent.parent / "training" / "variants"


class SpaceError(ValueError):
    """A search-space file that does not validate (names the file, the key and what is allowed)."""


@dataclass
class SearchSpace:
    """The declared search space (see ``analysis/search_space.yaml``)."""

    base_variant: str = "v0"
    overlays: list[str] = field(default_factory=list)
    min_overlays: int = 0
    max_overlays: int = 3
    set: dict[str, list[Any]] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    max_steps: int = 4
    train_args: list[str] = field(default_factory=list)
    serve: dict[str, Any] = field(default_factory=lambda: {"engine": "onnxruntime", "duration_s": 5,
                                                           "warmup_s": 2, "idle_s": 2, "max_items": 32})
    # compression methods to choose from after training ("none" = keep the trained model); a
    # chosen method runs `python -m training.compress` and the trial serves <variant>@<method>
    compress: list[str] = field(default_factory=list)
    source: str = ""


def load_space(path: str | os.PathLike) -> SearchSpace:
    """Read and validate a search-space YAML; errors name the file, key and allowed values."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise SpaceError(f"{path}: cannot read search space: {e}") from e
    if not isinstance(raw, dict):
        raise SpaceError(f"{path}: top level must be a mapping with keys {sorted(SPACE_KEYS)}")
    unknown = set(raw) - SPACE_KEYS
    if unknown:
        raise SpaceError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(SPACE_KEYS)}")
    sp = SearchSpace(source=str(path))
    sp.base_variant = str(raw.get("base_variant", sp.base_variant))
    ov = raw.get("overlays", {}) or {}
    if not isinstance(ov, dict) or set(ov) - OVERLAY_KEYS:
        raise SpaceError(f"{path}: 'overlays' must be a mapping with keys {sorted(OVERLAY_KEYS)}")
    sp.overlays = [str(x) for x in ov.get("choices", [])]
    sp.min_overlays = int(ov.get("min", 0))
    sp.max_overlays = int(ov.get("max", min(3, len(sp.overlays))))
    if not 0 <= sp.min_overlays <= sp.max_overlays <= len(sp.overlays):
        raise SpaceError(f"{path}: overlays.min/max must satisfy 0 ≤ min ≤ max ≤ {len(sp.overlays)} "
                         f"(number of choices); got min={sp.min_overlays}, max={sp.max_overlays}")
    st = raw.get("set", {}) or {}
    if not isinstance(st, dict):
        raise SpaceError(f"{path}: 'set' must map 'section.key' to a list of values")
    for k, v in st.items():
        if "." not in str(k):
            raise SpaceError(f"{path}: set key {k!r} must be dotted 'section.key' (e.g. training.tiny_learning_rate)")
        if not isinstance(v, list) or not v:
            raise SpaceError(f"{path}: set.{k} must be a non-empty list of values, got {v!r}")
    sp.set = {str(k): list(v) for k, v in st.items()}
    fx = raw.get("fixed", {}) or {}
    if not isinstance(fx, dict) or any("." not in str(k) for k in fx):
        raise SpaceError(f"{path}: 'fixed' must map dotted 'section.key' to one value")
    both = set(map(str, fx)) & set(sp.set)
    if both:
        raise SpaceError(f"{path}: key(s) {sorted(both)} are in both 'set' and 'fixed'; keep one")
    sp.fixed = {str(k): v for k, v in fx.items()}
    sp.max_steps = int(raw.get("max_steps", sp.max_steps))
    sp.train_args = [str(a) for a in raw.get("train_args", []) or []]
    serve = raw.get("serve", {}) or {}
    if set(serve) - SERVE_KEYS:
        raise SpaceError(f"{path}: unknown serve key(s) {sorted(set(serve) - SERVE_KEYS)}; allowed: "
                         f"{sorted(SERVE_KEYS)}")
    sp.serve = {**sp.serve, **serve}
    sp.compress = _compress_choices(raw.get("compress", []), path)
    return sp


def _compress_choices(comp: Any, path: Path) -> list[str]:
    """The ``compress:`` list, each method checked (and spelt canonically) by the compression
    package's own parser, so an error names its allowed values."""
    from training.compress.base import ALLOWED, CompressError, parse_method

    if comp is None:
        return []
    if not isinstance(comp, list):
        raise SpaceError(f"{path}: 'compress' must be a list of methods (none, {ALLOWED}), got {comp!r}")
    out: list[str] = []
    for m in comp:
        if str(m) == "none":
            text = "none"
        else:
            try:
                text = parse_method(str(m)).text
            except CompressError as e:
                raise SpaceError(f"{path}: compress: {e} (or none)") from None
        if text in out:
            raise SpaceError(f"{path}: compress: {m!r} is listed twice")
        out.append(text)
    return out


def overlay_keys(variant: str, variants_dir: Path = VARIANTS_DIR) -> set[str]:
    """Dotted config keys an overlay YAML sets (empty when the file is not found)."""
    f = variants_dir / f"{variant}.yaml"
    if not f.is_file():
        return set()
    raw = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
    keys: set[str] = set()

    def walk(d: dict, prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                keys.add(f"{prefix}{k}")

    walk({k: v for k, v in raw.items() if isinstance(v, dict)}, "")
    return keys


@dataclass
class RunSpec:
    """One trial's configuration (``index`` is the Optuna trial number)."""

    index: int
    seed: int
    variant: str
    overlays: list[str]
    set: dict[str, Any]
    overridden_by_overlay: list[str]
    max_steps: int
    run_id: str = ""
    compress: str | None = None  # a compression method applied after training (served as variant@method)

    @property
    def served_variant(self) -> str:
        """What the trial ends with and serves: ``<variant>@<method>`` when it compresses."""
        return f"{self.variant}@{self.compress}" if self.compress else self.variant

    def params_hash(self) -> str:
        key: dict[str, Any] = {"variant": self.variant, "set": self.set, "max_steps": self.max_steps}
        if self.compress:  # only when used, so the ids of trials without compression never change
            key["compress"] = self.compress
        blob = json.dumps(key, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]


def variant_choices(space: SearchSpace) -> list[str]:
    """Every allowed overlay subset as a variant name (``v0``, ``v1``, ``v1+v7``, …), in the
    order the overlays are listed: one Optuna categorical covers the subset constraint exactly."""
    out = []
    for k in range(space.min_overlays, space.max_overlays + 1):
        for combo in itertools.combinations(space.overlays, k):
            out.append("+".join(combo) if combo else space.base_variant)
    return out


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _choices(values: list[Any]) -> list[Any]:
    """Optuna categoricals hold scalars; a list/dict value is offered as its JSON text."""
    return [v if _scalar(v) else json.dumps(v, sort_keys=True) for v in values]


def suggest(trial: Any, space: SearchSpace, seed: int = 0, variants_dir: Path = VARIANTS_DIR) -> RunSpec:
    """Ask ``trial`` (an ``optuna.Trial``) for one configuration of ``space``."""
    variant = trial.suggest_categorical("variant", variant_choices(space))
    chosen = [] if variant == space.base_variant else variant.split("+")
    values = {}
    for key, raw in sorted(space.set.items()):
        offered = _choices(raw)
        values[key] = raw[offered.index(trial.suggest_categorical(key, offered))]
    values.update(space.fixed)
    taken: set[str] = set()
    for o in chosen:
        taken |= overlay_keys(o, variants_dir)
    dropped = sorted(k for k in values if k in taken)
    values = {k: v for k, v in values.items() if k not in taken}
    # drawn last, so a sampler with one random stream draws the other parameters as without it
    method = trial.suggest_categorical("compress", space.compress) if space.compress else None
    spec = RunSpec(index=trial.number, seed=seed, variant=variant, overlays=chosen, set=values,
                   overridden_by_overlay=dropped, max_steps=space.max_steps,
                   compress=None if method in (None, "none") else method)
    spec.run_id = f"t{trial.number:04d}-{spec.params_hash()}"
    return spec


def space_fingerprint(space: SearchSpace) -> str:
    """What the study's parameter distributions depend on (a study keeps one search space)."""
    key: dict[str, Any] = {"variants": variant_choices(space), "set": space.set}
    if space.compress:  # only when used, so studies made before compression existed still match
        key["compress"] = space.compress
    blob = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _set_value(v: Any) -> str:
    # The training CLI parses the right-hand side as YAML: JSON is valid YAML for lists/bools/null.
    if isinstance(v, str):
        return v
    return json.dumps(v)


def train_command(spec: RunSpec, run_dir: Path, space: SearchSpace, python: str = sys.executable,
                  meter: str | None = None) -> list[str]:
    """The ``python -m training.train`` command line of one run."""
    cmd = [python, "-m", "training.train", "--variant", spec.variant, "--max-steps", str(spec.max_steps),
           "--results-dir", str(run_dir), "--artifacts-dir", str(run_dir / "artifacts")]
    if meter:
        cmd += ["--meter", meter]
    for k, v in spec.set.items():
        cmd += ["--set", f"{k}={_set_value(v)}"]
    return cmd + list(space.train_args)


def load_command(spec: RunSpec, run_dir: Path, space: SearchSpace, python: str = sys.executable,
                 meter: str | None = None) -> list[str]:
    """The ``python -m loadtest.run`` command line (serve + load) of one run."""
    s = space.serve
    cmd = [python, "-m", "loadtest.run", "--engine", str(s["engine"]), "--variant", spec.served_variant,
           "--duration", str(s["duration_s"]), "--warmup", str(s["warmup_s"]), "--idle", str(s["idle_s"]),
           "--max-items", str(s["max_items"]), "--artifacts-dir", str(run_dir / "artifacts"),
           "--results-dir", str(run_dir / "load"), "--run-id", spec.run_id, "--no-progress"]
    if meter:
        cmd += ["--meter", meter]
    return cmd


def compress_command(spec: RunSpec, run_dir: Path, python: str = sys.executable,
                     meter: str | None = None) -> list[str]:
    """The ``python -m training.compress`` command line of a trial that compresses its model
    (reads ``run_dir/artifacts/<variant>``, writes ``<variant>@<method>`` beside it and
    ``run_dir/compress/<variant>@<method>/result.json`` with the step's own energy)."""
    cmd = [python, "-m", "training.compress", "--variant", spec.variant, "--method", str(spec.compress),
           "--results-dir", str(run_dir), "--artifacts-dir", str(run_dir / "artifacts"), "--idle-s", "0"]
    return cmd + (["--meter", meter] if meter else [])


# A runner executes one command, logging to ``log_path`` and, when ``power_csv`` is given,
# recording the run's power there; it returns the exit status. Tests inject a fake one.
Runner = Callable[[list[str], Path, "Path | None"], int]


def _die_with_parent() -> None:
    """preexec_fn: ask Linux to SIGTERM this child when the sweep dies, even by SIGKILL, so a
    killed sweep never leaves a training run or a sidecar behind (no-op where prctl is absent)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def subprocess_runner(meter: str | None = None, interval_s: float = 0.2) -> Runner:
    """The real runner: the command as a child process (own process group, so a Ctrl-C or kill
    of the sweep also stops it) with the energy sidecar recording ``power_csv`` beside it."""

    def run(cmd: list[str], log_path: Path, power_csv: Path | None) -> int:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            log.write(("$ " + " ".join(cmd) + "\n").encode())
            log.flush()
            child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent)
            side = None
            if power_csv is not None:
                side_cmd = [sys.executable, "-m", "energy.sidecar", "--out", str(power_csv),
                            "--interval-s", str(interval_s), "--pid", str(child.pid), "--log-level", "WARNING"]
                if meter:
                    side_cmd += ["--meter", meter]
                try:
                    side = subprocess.Popen(side_cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=_die_with_parent)
                except OSError as e:  # the run matters more than its power log; say so in the log
                    log.write(f"[sweep] power sidecar did not start: {e}\n".encode())
            try:
                return child.wait()
            except BaseException:
                stop_process(child, timeout_s=10, group=True)
                raise
            finally:
                stop_process(side, timeout_s=10)

    return run


# --------------------------------------------------------------------------- the study

SAMPLERS = ("random", "tpe", "nsga2")
DEFAULT_STUDY = "green-sweep"
AUTO = "auto"
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


class SweepError(RuntimeError):
    """A sweep that cannot start or go on (bad storage URL, space changed under a study…)."""


class TrialFailed(RuntimeError):
    """One trial could not produce both objectives; the study records it as FAIL and goes on."""


def default_storage(out_dir: str | os.PathLike) -> str:
    return f"sqlite:///{Path(out_dir) / 'study.db'}"


class RetryStaleTrial:
    """Heartbeat-stale trial callback: mark the dead worker's run folder failed (its partial
    results stay), then queue the same parameters again with Optuna's own retry callback."""

    def __init__(self, max_retry: int = 3):
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def __call__(self, study: Any, trial: Any) -> None:
        d = trial.user_attrs.get("run_dir")
        if d and trial.user_attrs.get("host") == socket.gethostname() and Path(d).is_dir() \
                and not (Path(d) / "done.json").exists():
            write_json_atomic(Path(d) / "done.json", {
                "run_id": trial.user_attrs.get("run_id"), "status": "failed", "partial": True,
                "failure_reason": "worker stopped heart-beating mid-trial (killed?); trial marked FAIL by "
                                  f"pid {os.getpid()}", "finished_unix_s": time.time()})
        self._retry(study, trial)


def open_storage(url: str, heartbeat_s: int = 10, grace_s: int | None = None, max_retry: int = 3) -> Any:
    """An Optuna ``RDBStorage`` with heartbeats on (SQLite or PostgreSQL only)."""
    import optuna

    kw: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kw["connect_args"] = {"timeout": 60}  # two workers on one file: wait for the lock, don't fail
    elif url.startswith(("postgresql://", "postgresql+psycopg2://")):
        kw["pool_pre_ping"] = True
    else:
        raise SweepError(f"--storage {url!r}: allowed sqlite:///PATH (embedded, one machine) or "
                         "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB (many machines)")
    if heartbeat_s < 1:
        raise SweepError(f"--heartbeat-s must be ≥ 1, got {heartbeat_s}")
    for attempt in range(5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                return optuna.storages.RDBStorage(url, engine_kwargs=kw, heartbeat_interval=heartbeat_s,
                                                  grace_period=grace_s or 3 * heartbeat_s,
                                                  heartbeat_stale_trial_callback=RetryStaleTrial(max_retry))
            except Exception as e:  # sqlalchemy's OperationalError etc.: say which storage and why
                # Workers that start together on an empty database race to create Optuna's
                # tables (PostgreSQL: duplicate key on CREATE TYPE; SQLite: UNIQUE constraint failed
                # on alembic_version); the loser finds them made.
                if attempt < 4 and any(m in str(e) for m in ("already exists", "UniqueViolation", "UNIQUE constraint",
                                                             "duplicate key")):
                    time.sleep(0.5 + attempt)
                    continue
                raise SweepError(f"cannot open storage {_safe_url(url)!r}: {e}") from e
    raise AssertionError("unreachable")


class TrialSeededRandomSampler:
    """Random search where trial *i*'s value of each parameter depends only on ``(seed, i, name)``
    (the seed's property: same seed → same trials, whichever worker runs them, in any order).
    Each draw is Optuna's ``RandomSampler``, seeded per trial."""

    def __new__(cls, seed: int):
        import optuna

        class _Sampler(optuna.samplers.BaseSampler):
            def __init__(self, seed: int):
                self.seed = seed

            def infer_relative_search_space(self, study, trial):
                return {}

            def sample_relative(self, study, trial, search_space):
                return {}

            def sample_independent(self, study, trial, param_name, param_distribution):
                h = hashlib.sha256(f"green-sweep:{self.seed}:{trial.number}:{param_name}".encode()).digest()
                rs = optuna.samplers.RandomSampler(seed=int.from_bytes(h[:4], "big"))
                return rs.sample_independent(study, trial, param_name, param_distribution)

        return _Sampler(seed)


def make_sampler(name: str, seed: int) -> Any:
    import optuna

    if name == "random":
        return TrialSeededRandomSampler(seed)
    # Adaptive samplers: each worker gets its own stream (the same seed in two workers would
    # propose the same first trials twice).
    worker_seed = int.from_bytes(hashlib.sha256(f"{seed}:{socket.gethostname()}:{os.getpid()}".encode())
                                 .digest()[:4], "big")
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=worker_seed, multivariate=True)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=worker_seed)
    raise SweepError(f"--sampler {name!r}: allowed {', '.join(SAMPLERS)}")


@dataclass
class SweepConfig:
    """Everything a worker needs (the CLI's arguments, typed)."""

    space: SearchSpace
    n: int
    out_dir: Path
    storage: str = ""
    study_name: str = DEFAULT_STUDY
    sampler: str = "random"
    seed: int = 0
    serve: bool = False
    meter: str | None = None
    energy_metric: str = AUTO
    accuracy_metric: str = AUTO
    heartbeat_s: int = 10
    grace_s: int | None = None
    max_failed: int | None = None
    poll_s: float = 2.0
    python: str = sys.executable

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.storage = self.storage or default_storage(self.out_dir)
        if self.sampler not in SAMPLERS:
            raise SweepError(f"--sampler {self.sampler!r}: allowed {', '.join(SAMPLERS)}")
        if self.n < 1:
            raise SweepError(f"--n must be ≥ 1, got {self.n}")
        if self.max_failed is None:
            self.max_failed = max(3, self.n)


def open_study(cfg: SweepConfig, create: bool = True) -> Any:
    """Create or load the study; refuse one whose search space, directions or serve mode differ."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(cfg.storage, cfg.heartbeat_s, cfg.grace_s)
    fp = space_fingerprint(cfg.space)
    try:
        if create:
            study = optuna.create_study(study_name=cfg.study_name, storage=storage, load_if_exists=True,
                                        directions=["minimize", "maximize"],
                                        sampler=make_sampler(cfg.sampler, cfg.seed))
        else:
            study = optuna.load_study(study_name=cfg.study_name, storage=storage,
                                      sampler=make_sampler(cfg.sampler, cfg.seed))
    except (KeyError, ValueError) as e:
        raise SweepError(f"study {cfg.study_name!r} in {_safe_url(cfg.storage)}: {e}") from e
    except Exception as e:  # a second worker creating the same study at the same moment
        if type(e).__name__ != "DuplicatedStudyError":
            raise
        study = optuna.load_study(study_name=cfg.study_name, storage=storage,
                                  sampler=make_sampler(cfg.sampler, cfg.seed))
    dirs = [d.name for d in study.directions]
    if dirs != ["MINIMIZE", "MAXIMIZE"]:
        raise SweepError(f"study {cfg.study_name!r} in {_safe_url(cfg.storage)} has directions {dirs}, not "
                         "[MINIMIZE energy, MAXIMIZE accuracy]; pick another --study-name")
    attrs = study.user_attrs
    want = {"space_fingerprint": fp, "serve": cfg.serve, "space": cfg.space.source, "max_steps": cfg.space.max_steps}
    if "space_fingerprint" not in attrs:
        for k, v in want.items():
            study.set_user_attr(k, v)
        study.set_user_attr("seed", cfg.seed)
        study.set_user_attr("sampler", cfg.sampler)
    else:
        for k in ("space_fingerprint", "serve", "max_steps"):
            if attrs.get(k) != want[k]:
                raise SweepError(f"study {cfg.study_name!r} in {_safe_url(cfg.storage)} was created with {k}="
                                 f"{attrs.get(k)!r}, this run has {want[k]!r}; rerun with the same space and "
                                 "options to continue it, or start a new one with --study-name")
    return study


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


def _trial_counts(study: Any) -> dict[str, int]:
    from optuna.trial import TrialState

    counts = {s.name: 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] += 1
    return counts


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
                                                    "storage": _safe_url(cfg.storage), "trial": trial.number,
                                                    "retry_of": retry_of})
        done = run_one(spec, run_dir, cfg.space, runner, cmds)
        res, summ = find_result(run_dir, "train", "result.json"), find_result(run_dir, "load", "summary.json")
        train = flatten_metrics(read_json(res), "train") if res else {}
        load = flatten_metrics(read_json(summ), "load") if summ else {}
        cres = find_result(run_dir, "compress", "result.json") if spec.compress else None
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
        c = _trial_counts(study)
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
    return {**best, "ran": ran, "counts": _trial_counts(study)}


# --------------------------------------------------------------------------- export


def trial_row(t: Any) -> dict[str, Any]:
    """One ``aggregate.csv`` row for an Optuna trial."""
    ua = t.user_attrs
    row: dict[str, Any] = {"trial": t.number, "state": t.state.name, "run_id": ua.get("run_id"),
                           "status": ua.get("status") or ("failed" if t.state.name == "FAIL" else None),
                           "variant": ua.get("variant") or t.params.get("variant"),
                           "compress": ua.get("compress") or t.params.get("compress"), "host": ua.get("host"),
                           "retry_of": ua.get("retry_of"), "energy_metric": ua.get("energy_metric"),
                           "energy": t.values[0] if t.values else None, "accuracy_metric": ua.get("accuracy_metric"),
                           "accuracy": t.values[1] if t.values else None}
    for k, v in (ua.get("set") or {}).items():
        row[f"set.{k}"] = v
    row["overridden_by_overlay"] = ",".join(ua.get("overridden_by_overlay") or [])
    for k in ("energy_kind", "energy_source", "load_energy_kind"):
        row[k] = ua.get(k)
    for k, v in sorted(ua.items()):
        if k.startswith(("train.", "compress.", "pipeline.", "load.", "path.")):
            row[k] = v
    row["run_dir"] = ua.get("run_dir")
    row["failure_reason"] = ua.get("failure_reason") or ua.get("skipped") or (
        "worker stopped mid-trial (heartbeat stale)" if t.state.name == "FAIL" and not ua.get("status") else None)
    row["duration_s"] = t.duration.total_seconds() if t.duration else None
    return row


def export_study(study: Any, out_dir: str | os.PathLike, storage: str = "") -> dict[str, Any]:
    """Write ``aggregate.csv`` (every trial) and ``best.json`` (Pareto set = ``study.best_trials``);
    ``storage`` is the study's URL, recorded without its password."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    df = pd.DataFrame([trial_row(t) for t in trials])
    write_table_atomic(df, out_dir / "aggregate.csv", parquet=False)
    names = study.metric_names or ["energy", "accuracy"]
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.values]
    pareto = sorted(study.best_trials, key=lambda t: (t.values[0], -t.values[1], t.number)) if complete else []
    pts = [Point(t.user_attrs.get("run_id") or f"t{t.number}", t.values[0], t.values[1]) for t in complete]
    kf = key_findings(pts, names[0])
    best = {"study": study.study_name, "storage": _safe_url(storage) if storage else None, "metric_names": names,
            "directions": [d.name.lower() for d in study.directions], "sampler": study.user_attrs.get("sampler"),
            "n_complete": len(complete), "states": _trial_counts(study),
            "pareto": [t.user_attrs.get("run_id") or f"t{t.number}" for t in pareto],
            "pareto_trials": [{"trial": t.number, "run_id": t.user_attrs.get("run_id"), names[0]: t.values[0],
                               names[1]: t.values[1], "variant": t.user_attrs.get("variant")} for t in pareto],
            # the trade-off helpers speak of "f1"; here that is the study's accuracy metric
            "best_accuracy": kf["best_accuracy"], "lowest_energy": kf["lowest_energy"], "best_tradeoff": kf["best_tradeoff"],
            "exported_unix_s": time.time()}
    write_json_atomic(out_dir / "best.json", best)
    return best


def _safe_url(url: str) -> str:
    """A storage URL without its password."""
    try:
        import sqlalchemy

        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


# --------------------------------------------------------------------------- run folders


def params_of(spec: RunSpec, space: SearchSpace, commands: list[list[str]]) -> dict[str, Any]:
    """What goes into ``params.json``."""
    return {**asdict(spec), "served_variant": spec.served_variant, "space": space.source, "commands": commands}


def find_result(run_dir: Path, sub: str, name: str) -> Path | None:
    """The top-level result file under ``run_dir/sub`` (not a repeat's copy)."""
    root = run_dir / sub
    if not root.is_dir():
        return None
    hits = [p for p in root.rglob(name) if "runs" not in p.relative_to(root).parts
            and not any(part.startswith("repeat-") for part in p.relative_to(root).parts)]
    return sorted(hits)[0] if hits else None


def run_one(spec: RunSpec, run_dir: Path, space: SearchSpace, runner: Runner,
            cmds: list[list[str]]) -> dict[str, Any]:
    """Run one trial's commands in ``run_dir`` (training, then the compression when
    ``spec.compress``, then the load test when a command for it follows) and write its
    ``done.json`` (also when stopped: an interrupted run is marked failed and keeps what it had)."""
    t0 = time.time()
    rc = load_rc = compress_rc = None
    rest = list(cmds[1:])
    compress_cmd = rest.pop(0) if spec.compress else None
    status, reason = "failed", "interrupted before training finished"
    try:
        rc = runner(cmds[0], run_dir / "train.log", run_dir / "power.csv")
        status, reason = "ok", None
        result = find_result(run_dir, "train", "result.json")
        if result is None:
            status, reason = "failed", f"training exited {rc} without a result.json (see train.log)"
        else:
            r = read_json(result)
            if r.get("status", "ok") != "ok":
                status, reason = "failed", r.get("failure_reason") or "training reported status failed"
            elif rc != 0:
                status, reason = "failed", f"training exited {rc}"
        if compress_cmd and status == "ok":
            status, reason = "failed", "interrupted during the compression"
            compress_rc = runner(compress_cmd, run_dir / "compress.log", None)  # measures its own energy window
            cres = find_result(run_dir, "compress", "result.json")
            c = read_json(cres) if cres else {}
            if cres is None:
                reason = f"compression exited {compress_rc} without a result.json (see compress.log)"
            elif c.get("status") != "ok":
                reason = c.get("failure_reason") or f"compression exited {compress_rc} (see compress.log)"
            elif compress_rc != 0:
                reason = f"compression exited {compress_rc} (see compress.log)"
            else:
                status, reason = "ok", None
        if rest and status == "ok":
            status, reason = "failed", "interrupted during the load test"
            load_rc = runner(rest[0], run_dir / "load.log", None)  # loadtest runs its own sidecar
            status, reason = "ok", None
            if find_result(run_dir, "load", "summary.json") is None:
                status, reason = "failed", f"load test exited {load_rc} without a summary.json (see load.log)"
    finally:
        done = {"run_id": spec.run_id, "status": status, "failure_reason": reason, "returncode": rc,
                "compress_returncode": compress_rc, "load_returncode": load_rc, "duration_s": time.time() - t0, "finished_unix_s": time.time()}
        write_json_atomic(run_dir / "done.json", done)
    return done


# --------------------------------------------------------------------------- CLI


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
    return [sys.executable, "-m", "analysis.sweep", *out, "--workers", "1", "--no-export",
            "--worker-index", str(index)]


def run_workers(argv: list[str], k: int) -> int:
    """Start ``k`` worker processes on one study and wait for them (SIGTERM to all on a stop)."""
    procs = [subprocess.Popen(_worker_argv(argv, i), preexec_fn=_die_with_parent) for i in range(k)]
    try:
        rcs = [p.wait() for p in procs]
    except BaseException:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        raise
    bad = [(i, rc) for i, rc in enumerate(rcs) if rc != 0]
    if bad:
        print(f"sweep: worker(s) {', '.join(f'#{i} exited {rc}' for i, rc in bad)}", file=sys.stderr)
    return max(rcs, key=abs)


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
    ap.add_argument("--out", default="results/sweep", help="run folders + aggregate.csv + best.json (results/sweep)")
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
        out = Path(a.out)
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
        print(f"\ninterrupted: the running trial is marked FAIL (partial results kept in {a.out}); rerun the "
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


if __name__ == "__main__":
    sys.exit(main())
