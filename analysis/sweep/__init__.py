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
* **Modules**: :mod:`~analysis.sweep.space` (the YAML space and one trial's draw),
  :mod:`~analysis.sweep.trial` (command lines, the runner, the trial folder),
  :mod:`~analysis.sweep.storage` (config, Optuna storage, samplers, the study),
  :mod:`~analysis.sweep.objective` (the two objectives, the worker loop),
  :mod:`~analysis.sweep.export` (``aggregate.csv``, ``best.json``), :mod:`~analysis.sweep.cli`.
* **Output**: ``<out>/aggregate.csv`` (one row per trial, every state) and ``<out>/best.json``
  (the Pareto set from ``study.best_trials``, best accuracy, lowest energy, best trade-off),
  rewritten after every trial; the report's sweep section reads them.
"""

from analysis.sweep.cli import main
from analysis.sweep.export import export_study
from analysis.sweep.objective import TrialFailed, run_worker
from analysis.sweep.space import (
           DEFAULT_SPACE,
           RunSpec,
           SearchSpace,
           SpaceError,
           load_space,
           space_fingerprint,
           suggest,
           variant_choices,
)
from analysis.sweep.storage import SAMPLERS, SweepConfig, SweepError, make_sampler, open_study
from analysis.sweep.trial import (
           Runner,
           compress_command,
           load_command,
           subprocess_runner,
           train_command,
)

__all__ = ["DEFAULT_SPACE", "SAMPLERS", "RunSpec", "Runner", "SearchSpace", "SpaceError", "SweepConfig", "SweepError",
           "TrialFailed", "compress_command", "export_study", "load_command", "load_space", "main", "make_sampler",
           "open_study", "run_worker", "space_fingerprint", "subprocess_runner", "suggest", "train_command",
           "variant_choices"]
