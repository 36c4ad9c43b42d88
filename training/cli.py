"""What the training and compression CLIs share: the two root options, one-line errors and
SIGTERM as an interrupt."""

from __future__ import annotations

import argparse
import signal

from study.paths import ARTIFACTS_ENV, DEFAULT_ARTIFACTS, DEFAULT_RESULTS, RESULTS_ENV


def add_root_options(p: argparse.ArgumentParser) -> None:
    """``--results-dir`` and ``--artifacts-dir``: the two roots of :mod:`study.paths` (None →
    ``Paths.from_env`` reads the environment, then the defaults)."""
    p.add_argument("--results-dir", default=None,
                   help=f"results root (default: ${RESULTS_ENV}, else {DEFAULT_RESULTS}/ in the repository)")
    p.add_argument("--artifacts-dir", default=None,
                   help=f"artifacts root (default: ${ARTIFACTS_ENV}, else {DEFAULT_ARTIFACTS}/ in the repository)")


def one_line(e: BaseException, expected: tuple[type[BaseException], ...] = ()) -> str:
    """``e`` on one line: its message alone for an ``expected`` error (bad input, a refusal),
    else prefixed with its type."""
    msg = " ".join(str(e).split()) or type(e).__name__
    return msg if isinstance(e, expected) else f"{type(e).__name__}: {msg}"


def sigterm_as_interrupt() -> None:
    """SIGTERM (``timeout``, ``docker stop``, a parent's stop) → KeyboardInterrupt, so the run is
    recorded as failed ("interrupted") and a training run's checkpoints are kept for a resume."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"interrupted by signal {signum}")

    signal.signal(signal.SIGTERM, handler)
