"""Admission by deadline: the pure rule that decides, before a request's body is read, whether
it can be served in time (:func:`admit`), and the 503 it becomes otherwise (:class:`Overloaded`).

Used by :class:`serving.batcher.Batcher` (which holds the queue state the rule reads) and by the
HTTP front of :mod:`serving.server`. Documented in docs/serving.md ("admission by deadline").
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class Overloaded(Exception):
    """The queue is full, the deadline cannot be met or the server is stopping (→ 503)."""

    def __init__(self, reason: str, kind: str = "queue_full", retry_after_s: int = 1) -> None:
        super().__init__(reason)
        self.kind = kind
        self.retry_after_s = retry_after_s


#: a request that finds fewer rows than this waiting is always admitted, so a few concurrent
#: clients (the 4-user light load the overload targets are measured against) never see a 503,
#: however slow each row is or however busy the machine
ALWAYS_ADMIT_ROWS = 4


@dataclass(frozen=True)
class Admission:
    """The admission decision for one request, with the numbers it rests on."""

    admit: bool
    expected_wait_s: float
    #: whole seconds for ``Retry-After`` (HTTP wants delta-seconds, at least 1)
    retry_after_s: int


def admit(
    *, queued_rows: float, running_left_s: float, batch_s: float, batch_rows: float,
    batch_cap: int, max_wait_s: float, rows: int = 1,
) -> Admission:
    """Admit a request of ``rows`` rows (1 when not parsed yet) or shed it.

    Expected queue wait = what is left of the running batch + the rows ahead × the recent batch
    time ÷ the recent rows per batch (both moving averages). A request that fits in the *next*
    batch (``queued_rows + rows <= batch_cap``, the rows the next batch may hold:
    :meth:`serving.batcher.Batcher.batch_cap`) is always admitted: it is served as early as
    any request can be, and a model whose one batch outlasts the bound still serves; so is one
    that finds fewer than :data:`ALWAYS_ADMIT_ROWS` rows ahead. Otherwise the wait must fit
    ``max_wait_s`` (0 = no bound; only ``max_queue_size`` limits the queue).
    Pure and cheap: it runs before the body is read.
    """
    per_row_s = batch_s / max(batch_rows, 1.0)
    wait_s = max(running_left_s, 0.0) + max(queued_rows, 0.0) * per_row_s
    room = max(batch_cap, ALWAYS_ADMIT_ROWS)
    ok = max_wait_s <= 0 or queued_rows + rows <= room or wait_s <= max_wait_s
    return Admission(ok, wait_s, max(1, math.ceil(wait_s)))

