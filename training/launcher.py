"""How ``python -m training.train`` runs on more than one GPU: it relaunches itself under
``accelerate launch`` (:func:`training.runtime.launch_command`), one data-parallel worker per GPU,
through the study's one launcher (:class:`study.process.Launched`).

The workers see ``GPS_LAUNCHED=1`` and do not relaunch. The launch leads its own process group:
an interrupt of this process (Ctrl-C, SIGTERM) stops the whole group — SIGTERM first, which
each worker records as an interrupted repeat with its checkpoints kept, SIGKILL after
:data:`STOP_GRACE_S`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from study.process import Launched, child_env
from training.runtime import LAUNCHED_ENV, launch_command

log = logging.getLogger("training")
STOP_GRACE_S = 60.0  # the workers write their interrupted results and checkpoints meanwhile


def relaunch(argv: Sequence[str], gpus: int) -> int:
    """Run this command line on ``gpus`` GPUs and wait; the launch's exit code. On an interrupt
    the launch's group is stopped and the interrupt re-raised."""
    cmd = launch_command(list(argv), gpus)
    log.info("launching: %s", " ".join(cmd))
    launched = Launched(cmd, name="accelerate launch", env=child_env({LAUNCHED_ENV: "1"})).start()
    try:
        rc = launched.wait()
    finally:  # after an exit: whatever of the group is left; after an interrupt: all of it
        launched.stop(timeout_s=STOP_GRACE_S)
    return int(rc if rc is not None else 1)
