"""Typed settings of the meter layer.

Every meter is built from one :class:`MeterConfig`, so a session, the sidecar and the CLI pass
the same knobs the same way. Environment overrides (read by :meth:`MeterConfig.from_env`):

* ``METER`` — meter spec (see :mod:`energy.registry`), default ``auto``
* ``COUNTRY`` — ISO-3 code for CodeCarbon's grid data, default ``FRA``
* ``ENERGY_ESTIMATE_P_MIN_W`` / ``ENERGY_ESTIMATE_P_MAX_W`` — estimate coefficients per core

The GPUs the NVML meter reads come from ``gpus`` (``--gpus``) or else ``CUDA_VISIBLE_DEVICES``,
read when the meter starts (see :mod:`energy.nvml`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Cloud Carbon Footprint, "Methodology", Appendix I: Energy Coefficients, AWS:
# "Average Minimum Watts (0% CPU Utilization): 0.74", "Average Maximum Watts (100% CPU
# Utilization): 3.5" — per vCPU, derived from the SPECpower database.
# https://www.cloudcarbonfootprint.org/docs/methodology/#appendix-i-energy-coefficients
# (GCP: 0.71 / 4.26, Azure: 0.78 / 3.76 on the same page.)
CCF_AWS_P_MIN_W_PER_CORE = 0.74
CCF_AWS_P_MAX_W_PER_CORE = 3.5
CCF_SOURCE = (
    "Cloud Carbon Footprint methodology, Appendix I (AWS average min/max watts per vCPU), "
    "https://www.cloudcarbonfootprint.org/docs/methodology/"
)


class GpuSelectionError(ValueError):
    """A GPU selection (``--gpus`` / ``CUDA_VISIBLE_DEVICES``) naming no GPU here (the message
    lists the GPUs there are). Raised even under ``meter=auto``: a mistyped selection must not
    quietly measure nothing."""


@dataclass(frozen=True)
class EstimateCoefficients:
    """Linear CPU power model ``P = n_cores × (p_min + (p_max − p_min) × u)``.

    ``p_min_w_per_core``/``p_max_w_per_core`` are watts per logical core (vCPU) at 0 % and
    100 % utilisation; ``n_cores`` defaults to the logical CPU count of this machine.
    """

    p_min_w_per_core: float = CCF_AWS_P_MIN_W_PER_CORE
    p_max_w_per_core: float = CCF_AWS_P_MAX_W_PER_CORE
    n_cores: int | None = None
    source: str = CCF_SOURCE

    def __post_init__(self) -> None:
        if not (0 <= self.p_min_w_per_core <= self.p_max_w_per_core):
            raise ValueError(
                "estimate coefficients: need 0 <= p_min_w_per_core <= p_max_w_per_core, got "
                f"p_min_w_per_core={self.p_min_w_per_core}, p_max_w_per_core={self.p_max_w_per_core}"
            )
        if self.n_cores is not None and self.n_cores < 1:
            raise ValueError(f"estimate coefficients: n_cores must be >= 1, got {self.n_cores}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MeterConfig:
    """Settings shared by all meters.

    ``pids``: processes the estimate meter also attributes power to (reported as cross-check
    devices ``pid:<n>``, never summed). ``country_iso_code``: CodeCarbon's grid region.
    ``codecarbon_output_dir``: where CodeCarbon may write; ``None`` = it writes nothing.
    ``gpus``: the GPUs the NVML meter reads, in ``CUDA_VISIBLE_DEVICES`` syntax (``"0,2"``,
    ``"GPU-8f3e…"``, ``"MIG-…"``) or ``"all"``/``"none"``; ``None`` = ``$CUDA_VISIBLE_DEVICES``
    when set, else every GPU (see :mod:`energy.nvml`).
    """

    interval_s: float = 0.1
    country_iso_code: str = "FRA"
    pids: tuple[int, ...] = ()
    estimate: EstimateCoefficients = field(default_factory=EstimateCoefficients)
    codecarbon_output_dir: str | None = None
    rapl_root: str = "/sys/class/powercap"
    gpus: str | None = None

    def __post_init__(self) -> None:
        if not self.interval_s > 0:
            raise ValueError(f"interval_s must be > 0 seconds, got {self.interval_s}")
        if self.gpus is not None:
            from energy.nvml import parse_gpu_spec  # syntax only: no NVML is loaded

            parse_gpu_spec(self.gpus)

    @classmethod
    def from_env(cls, **overrides: Any) -> MeterConfig:
        """Defaults ← environment (COUNTRY, ENERGY_ESTIMATE_P_*_W) ← ``overrides`` (not None)."""
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown MeterConfig key(s) {sorted(unknown)}; allowed: {sorted(known)}")
        kw: dict[str, Any] = {}
        if os.environ.get("COUNTRY"):
            kw["country_iso_code"] = os.environ["COUNTRY"]
        est: dict[str, Any] = {}
        for env, key in (
            ("ENERGY_ESTIMATE_P_MIN_W", "p_min_w_per_core"),
            ("ENERGY_ESTIMATE_P_MAX_W", "p_max_w_per_core"),
        ):
            if os.environ.get(env):
                try:
                    est[key] = float(os.environ[env])
                except ValueError:
                    raise ValueError(f"{env}={os.environ[env]!r} is not a number (watts per core)") from None
        if est:
            est["source"] = "user-supplied via ENERGY_ESTIMATE_P_MIN_W/ENERGY_ESTIMATE_P_MAX_W"
            kw["estimate"] = EstimateCoefficients(**est)
        kw.update({k: v for k, v in overrides.items() if v is not None})
        if "pids" in kw:
            kw["pids"] = tuple(int(p) for p in kw["pids"])
        return cls(**kw)
