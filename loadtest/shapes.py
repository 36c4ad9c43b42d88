"""Load models: closed-loop fixed concurrency, open-loop Poisson arrivals, and sweeps.

A :class:`LoadSpec` is one load level. It turns into the Locust command-line arguments and the
locustfile's own options (:mod:`loadtest.locustfile`), so the load model is decided in
one place:

* **closed** (``users=N``): N users, each sending its next request as soon as the previous one
  is answered (no think time). Offered load adapts to the server — the classic "fixed
  concurrency" benchmark. Throughput and latency are related by Little's law, and a slow server
  sees fewer requests (that is the point of a closed loop, and its bias).
* **open** (``rps=R``): arrivals follow a Poisson process of rate R that does not depend on
  completions. Locust has no native open-loop mode, so a *pool* of users shares the rate: each
  of the ``pool`` users runs its own Poisson stream of rate ``R / pool`` on a schedule of
  absolute target times (the superposition is Poisson at rate R). A user still waiting for a
  response when its next target passes sends immediately after and keeps its schedule, so the
  offered rate only falls short when *all* pool users are busy — coordinated omission is
  bounded by the pool size, and every request's lateness is recorded and reported
  (``open_loop.n_late``, ``latency_from_intended_ms``).
* **sweep**: a list of users or rates, one run per level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

LOAD_MODELS = ("closed", "open")
# Open loop: enough streams that, at the expected latency, the chance that every stream is
# busy at once stays small. pool = max(MIN_POOL, ceil(rps × POOL_LATENCY_S × POOL_HEADROOM)).
MIN_POOL = 16
POOL_LATENCY_S = 0.5
POOL_HEADROOM = 4.0
MAX_POOL = 2000
SPAWN_FACTOR = 20


def default_pool(rps: float) -> int:
    """Users an open-loop rate is spread over (see the module docstring)."""
    return int(min(MAX_POOL, max(MIN_POOL, math.ceil(rps * POOL_LATENCY_S * POOL_HEADROOM))))


@dataclass(frozen=True)
class LoadSpec:
    """One load level. Exactly one of ``users`` (closed loop) or ``rps`` (open loop)."""

    users: int | None = None
    rps: float | None = None
    pool: int | None = None  # open loop only; default :func:`default_pool`
    batch: int = 1  # functions per request

    def __post_init__(self) -> None:
        if (self.users is None) == (self.rps is None):
            raise ValueError(
                f"load: give exactly one of users (closed loop) or rps (open loop); "
                f"got users={self.users!r}, rps={self.rps!r}"
            )
        if self.users is not None and self.users < 1:
            raise ValueError(f"load: users={self.users!r} is invalid; allowed: an integer >= 1")
        if self.rps is not None and not (self.rps > 0 and math.isfinite(self.rps)):
            raise ValueError(f"load: rps={self.rps!r} is invalid; allowed: a number > 0")
        if self.pool is not None and (self.rps is None or self.pool < 1):
            raise ValueError(f"load: pool={self.pool!r} is only valid with rps, and must be >= 1")
        if self.batch < 1:
            raise ValueError(f"load: batch={self.batch!r} is invalid; allowed: an integer >= 1")

    @property
    def model(self) -> str:
        return "closed" if self.users is not None else "open"

    @property
    def n_users(self) -> int:
        """Locust users to spawn (the pool for open loop)."""
        if self.users is not None:
            return self.users
        return self.pool if self.pool is not None else default_pool(self.rps or 0.0)

    @property
    def label(self) -> str:
        """Short tag for run ids: ``users8`` / ``rps25``."""
        if self.users is not None:
            return f"users{self.users}"
        return f"rps{self.rps:g}"

    def locust_args(self) -> list[str]:
        """``-u``/``-r``: every user spawned within ~1/SPAWN_FACTOR s, so the measured window
        holds no ramp at partial load (Locust spawns one user per ``1/r`` seconds)."""
        n = self.n_users
        return ["-u", str(n), "-r", str(n * SPAWN_FACTOR)]

    def locust_options(self) -> list[str]:
        """The locustfile's own options for this level (``--batch``, open loop: ``--rps``,
        ``--pool``), as ``locust -f loadtest/locustfile.py --help`` lists them."""
        out = ["--batch", str(self.batch)]
        if self.rps is not None:
            out += ["--rps", repr(float(self.rps)), "--pool", str(self.n_users)]
        return out

    def env(self) -> dict[str, str]:
        """Environment the locustfile reads for this level (the same as :meth:`locust_options`;
        the options are what :mod:`loadtest.run` passes)."""
        e = {"LOADTEST_BATCH": str(self.batch)}
        if self.rps is not None:
            e["LOADTEST_RPS"] = repr(float(self.rps))
            e["LOADTEST_POOL"] = str(self.n_users)
        return e

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "users": self.users,
            "rps": self.rps,
            "pool": self.n_users if self.rps is not None else None,
            "batch": self.batch,
        }


def parse_sweep(text: str, *, kind: str = "users") -> list[float]:
    """``"1,4,16,64"`` → ``[1, 4, 16, 64]`` (validated; ``kind`` is ``users`` or ``rps``)."""
    if kind not in ("users", "rps"):
        raise ValueError(f"sweep kind {kind!r} is invalid; allowed: users, rps")
    levels: list[float] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = float(part)
        except ValueError:
            raise ValueError(f"sweep level {part!r} in {text!r} is not a number") from None
        if kind == "users" and (v < 1 or v != int(v)):
            raise ValueError(f"sweep level {part!r} is invalid; users must be integers >= 1")
        if kind == "rps" and not v > 0:
            raise ValueError(f"sweep level {part!r} is invalid; rates must be > 0")
        levels.append(int(v) if kind == "users" else v)
    if not levels:
        raise ValueError(f"sweep {text!r} has no levels; example: 1,4,16,64")
    return levels


def specs_for(
    *,
    users: int | None = None,
    rps: float | None = None,
    sweep: str | None = None,
    sweep_kind: str = "users",
    pool: int | None = None,
    batch: int = 1,
) -> list[LoadSpec]:
    """The load levels of one invocation: a sweep (one spec per level) or a single level.

    ``sweep`` varies users, or rates when ``sweep_kind='rps'`` (or when ``rps`` is given and
    ``users`` is not). With neither users nor rps, closed loop with 8 users.
    """
    if sweep:
        if rps is not None and users is None:
            sweep_kind = "rps"
        levels = parse_sweep(sweep, kind=sweep_kind)
        if sweep_kind == "users":
            return [LoadSpec(users=int(v), batch=batch) for v in levels]
        return [LoadSpec(rps=float(v), pool=pool, batch=batch) for v in levels]
    if users is not None and rps is not None:
        raise ValueError("load: give users (closed loop) or rps (open loop), not both")
    if rps is not None:
        return [LoadSpec(rps=rps, pool=pool, batch=batch)]
    return [LoadSpec(users=users if users is not None else 8, batch=batch)]
