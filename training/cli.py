"""What the training and compression CLIs share: one-line errors and SIGTERM as an interrupt."""

from __future__ import annotations

import signal


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
