"""Where the sweep's study lives: its configuration, the Optuna storage (SQLite or
PostgreSQL, with heartbeats), the samplers, and opening (or creating) the study itself."""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.io import write_json_atomic
from analysis.sweep.space import SearchSpace, space_fingerprint
from study.paths import resolve

SAMPLERS = ("random", "tpe", "nsga2")
DEFAULT_STUDY = "green-sweep"
AUTO = "auto"


class SweepError(RuntimeError):
    """A sweep that cannot start or go on (bad storage URL, space changed under a study…)."""


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
                raise SweepError(f"cannot open storage {safe_url(url)!r}: {e}") from e
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
        self.out_dir = resolve(self.out_dir)  # relative: from the repo root, as every results path
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
        raise SweepError(f"study {cfg.study_name!r} in {safe_url(cfg.storage)}: {e}") from e
    except Exception as e:  # a second worker creating the same study at the same moment
        if type(e).__name__ != "DuplicatedStudyError":
            raise
        study = optuna.load_study(study_name=cfg.study_name, storage=storage,
                                  sampler=make_sampler(cfg.sampler, cfg.seed))
    dirs = [d.name for d in study.directions]
    if dirs != ["MINIMIZE", "MAXIMIZE"]:
        raise SweepError(f"study {cfg.study_name!r} in {safe_url(cfg.storage)} has directions {dirs}, not "
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
                raise SweepError(f"study {cfg.study_name!r} in {safe_url(cfg.storage)} was created with {k}="
                                 f"{attrs.get(k)!r}, this run has {want[k]!r}; rerun with the same space and "
                                 "options to continue it, or start a new one with --study-name")
    return study


def trial_counts(study: Any) -> dict[str, int]:
    from optuna.trial import TrialState

    counts = {s.name: 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] += 1
    return counts



def safe_url(url: str) -> str:
    """A storage URL without its password."""
    try:
        import sqlalchemy

        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]

