"""Where every file of the study lives: the one module that spells the layout.

Two roots, each with one environment / Make variable and one CLI option:

* the **artifacts root** (``$ARTIFACTS``, ``--artifacts-dir``, default ``artifacts``): models
  and their exports;
* the **results root** (``$RESULTS_DIR``, ``--results-dir``, default ``results``): everything
  measured.

A relative root is taken from the repository root, so a command gives the same answer from
any working directory. Below the roots::

    <artifacts>/<variant>/model/                 trained (or compressed) HF model, safetensors
    <artifacts>/<variant>/<format>/              one export (onnx, onnx-int8, pytorch, tensorrt)
    <artifacts>/<variant>/triton/                Triton model repository

    <results>/train/<variant>/result.json        training: mean over repeats
    <results>/train/<variant>/runs/<run_id>/     one repeat (result.json)
    <results>/train/<variant>/checkpoints/       resumable checkpoints (seed-<n>/)
    <results>/compress/<variant>/result.json     one compression (<parent>@<method>)
    <results>/load/<engine>__<variant>/<run_id>/ one load test (summary.json, repeats)
    <results>/locust/<engine>__<variant>/<run_id>/ plain-Locust runs (loadtest/locustfile.py)
    <results>/bench/                             make bench tables and JSON
    <results>/sweep/                             Optuna sweep: study.db, trial folders
    <results>/power/                             the power sidecar's default CSVs
    <results>/tables/                            aggregate tables (CSV + Parquet)
    <results>/report/                            the HTML/Markdown report and its figures
    <results>/aggregated_metrics.json            the aggregate in one file
    <results>/gpu-validation/                    python -m energy.validate_gpu

A sweep trial is a small study of its own: ``Paths.for_trial(dir)`` puts both roots inside the
trial's folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

ARTIFACTS_ENV = "ARTIFACTS"
RESULTS_ENV = "RESULTS_DIR"
DEFAULT_ARTIFACTS = "artifacts"
DEFAULT_RESULTS = "results"


def resolve(path: str | os.PathLike) -> Path:
    """``path`` made absolute against the repository root when it is relative."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


def artifacts_root(path: str | os.PathLike | None = None) -> Path:
    """The artifacts root: ``path`` → ``$ARTIFACTS`` → ``artifacts`` (repo-relative)."""
    return resolve(path or os.environ.get(ARTIFACTS_ENV) or DEFAULT_ARTIFACTS)


def results_root(path: str | os.PathLike | None = None) -> Path:
    """The results root: ``path`` → ``$RESULTS_DIR`` → ``results`` (repo-relative)."""
    return resolve(path or os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS)


def load_results_root(path: str | os.PathLike | None = None) -> tuple[Path, str | None]:
    """The results root a load test's ``--results-dir`` names, and a note when it needed one.

    ``--results-dir`` used to mean the *load folder* (``results/load``). A folder called
    ``load`` with no ``load/`` of its own is that old meaning, so it is taken explicitly as
    ``<root>/load`` (the results root is its parent) and the note says so, instead of writing
    ``results/load/load/…``.
    """
    root = results_root(path)
    if root.name == "load" and not (root / "load").is_dir():
        return root.parent, (f"--results-dir {root} is the load folder of the results root "
                             f"{root.parent} (the option names the results root now); "
                             f"writing under {root.parent / 'load'}")
    return root, None


def setting_name(engine: str, variant: str) -> str:
    """The folder name of one serving setting: ``<engine>__<variant>``."""
    return f"{engine}__{variant}"


@dataclass(frozen=True)
class Paths:
    """The two roots and every directory below them (see the module docstring)."""

    artifacts: Path
    results: Path

    @classmethod
    def from_env(cls, artifacts: str | os.PathLike | None = None,
                 results: str | os.PathLike | None = None) -> Paths:
        """Roots from the arguments, else the environment, else the defaults."""
        return cls(artifacts_root(artifacts), results_root(results))

    @classmethod
    def for_trial(cls, trial_dir: str | os.PathLike) -> Paths:
        """A sweep trial's own roots: ``<trial>/artifacts`` and ``<trial>`` itself."""
        d = resolve(trial_dir)
        return cls(d / DEFAULT_ARTIFACTS, d)

    # -- artifacts -------------------------------------------------------------------------
    def artifact(self, variant: str) -> Path:
        """``<artifacts>/<variant>/``."""
        return self.artifacts / variant

    def model_dir(self, variant: str) -> Path:
        """``<artifacts>/<variant>/model/``: the trained HF directory (source of every export)."""
        return self.artifacts / variant / "model"

    def format_dir(self, variant: str, fmt: str) -> Path:
        """``<artifacts>/<variant>/<format>/``: one export (``model`` is the trained model)."""
        return self.artifacts / variant / fmt

    def triton_repo(self, variant: str) -> Path:
        """``<artifacts>/<variant>/triton/``: the Triton model repository."""
        return self.artifacts / variant / "triton"

    @staticmethod
    def model_beside(export_dir: str | os.PathLike) -> Path:
        """The trained model directory of the variant an export directory belongs to:
        ``<artifacts>/<variant>/<format>/`` → ``<artifacts>/<variant>/model/``."""
        return Path(export_dir).parent / "model"

    def variants_with_model(self) -> list[str]:
        """Variants that have a trained model (``<artifacts>/<v>/model/config.json``), sorted."""
        if not self.artifacts.is_dir():
            return []
        return sorted(d.name for d in self.artifacts.iterdir() if (d / "model" / "config.json").is_file())

    # -- training --------------------------------------------------------------------------
    @property
    def train_root(self) -> Path:
        return self.results / "train"

    def train(self, variant: str) -> Path:
        """``<results>/train/<variant>/`` (also holds the variant's run lock)."""
        return self.train_root / variant

    def train_result(self, variant: str) -> Path:
        return self.train(variant) / "result.json"

    def train_runs(self, variant: str) -> Path:
        return self.train(variant) / "runs"

    def train_run(self, variant: str, run_id: str) -> Path:
        return self.train_runs(variant) / run_id

    def checkpoints(self, variant: str) -> Path:
        return self.train(variant) / "checkpoints"

    # -- compression -----------------------------------------------------------------------
    @property
    def compress_root(self) -> Path:
        return self.results / "compress"

    def compress(self, variant: str) -> Path:
        """``<results>/compress/<parent>@<method>/``."""
        return self.compress_root / variant

    # -- serving and load ------------------------------------------------------------------
    @property
    def load_root(self) -> Path:
        return self.results / "load"

    def load(self, engine: str, variant: str) -> Path:
        """``<results>/load/<engine>__<variant>/``: every run of one serving setting."""
        return self.load_root / setting_name(engine, variant)

    def load_run(self, engine: str, variant: str, run_id: str) -> Path:
        return self.load(engine, variant) / run_id

    @property
    def locust_root(self) -> Path:
        return self.results / "locust"

    def locust_run(self, engine: str, variant: str, run_id: str) -> Path:
        return self.locust_root / setting_name(engine, variant) / run_id

    @property
    def bench(self) -> Path:
        return self.results / "bench"

    @property
    def power(self) -> Path:
        return self.results / "power"

    @property
    def gpu_validation(self) -> Path:
        return self.results / "gpu-validation"

    # -- analysis --------------------------------------------------------------------------
    @property
    def sweep(self) -> Path:
        return self.results / "sweep"

    @property
    def tables(self) -> Path:
        return self.results / "tables"

    @property
    def report(self) -> Path:
        return self.results / "report"

    @property
    def aggregated_metrics(self) -> Path:
        return self.results / "aggregated_metrics.json"
