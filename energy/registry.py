"""Meter registry: a meter is chosen by name and only its own module is imported.

Meter spec grammar (``meter=`` / ``--meter`` / ``METER``)::

    auto                      best available: nvml (GPUs) + rapl (CPU package/DRAM); if neither,
                              estimate. Plus CodeCarbon as a cross-check when it is installed.
    nvml | rapl | estimate | codecarbon | replay:<power.csv>
    a+b                       several meters at once, e.g. ``estimate+codecarbon``, ``nvml+rapl``

Explicitly named meters that cannot run here raise :class:`MeterUnavailable`; under ``auto`` an
absent meter costs one informative log line and is skipped.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from energy.base import Meter
from energy.config import GpuSelectionError, MeterConfig

log = logging.getLogger("energy")

METERS: dict[str, str] = {
    "nvml": "energy.nvml:NvmlMeter",
    "rapl": "energy.rapl:RaplMeter",
    "estimate": "energy.estimate:EstimateMeter",
    "codecarbon": "energy.codecarbon:CodecarbonMeter",
    "replay": "energy.replay:ReplayMeter",
}
# Hardware meters, best first. "estimate" is the fallback when none of these can run.
AUTO_MEASURED = ("nvml", "rapl")
AUTO_CROSS_CHECK = "codecarbon"
VALID_SPECS = "auto, nvml, rapl, estimate, codecarbon, replay:<power.csv> (combine with '+', e.g. estimate+codecarbon)"


class MeterUnavailable(RuntimeError):
    """A meter that was asked for by name cannot run on this machine (the message says why)."""


def meter_class(name: str) -> Any:
    """Import and return the class registered as ``name`` (only that module is imported)."""
    if name not in METERS:
        raise ValueError(f"unknown meter {name!r}; valid meters: {VALID_SPECS}")
    module, _, attr = METERS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def parse_spec(spec: str) -> list[tuple[str, str | None]]:
    """``"estimate+replay:x.csv"`` → ``[("estimate", None), ("replay", "x.csv")]`` (validated)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"meter spec must be a non-empty string; valid meters: {VALID_SPECS}")
    out: list[tuple[str, str | None]] = []
    for part in spec.strip().split("+"):
        name, sep, arg = part.strip().partition(":")
        name = name.strip().lower()
        if name != "auto" and name not in METERS:
            raise ValueError(f"unknown meter {name!r} in {spec!r}; valid meters: {VALID_SPECS}")
        if name == "replay" and not arg:
            raise ValueError(f"meter 'replay' needs a trace: 'replay:<power.csv>' (got {spec!r})")
        if name != "replay" and sep:
            raise ValueError(f"meter {name!r} takes no argument (got {part!r}); valid meters: {VALID_SPECS}")
        out.append((name, arg or None))
    return out


def probe(name: str, config: MeterConfig) -> str | None:
    """Why meter ``name`` cannot run here, or ``None`` when it can (cheap, never raises)."""
    try:
        return meter_class(name).probe(config)
    except Exception as e:  # a broken optional dependency must not crash meter selection
        return f"{type(e).__name__}: {e}"


def build(name: str, config: MeterConfig, arg: str | None = None) -> Meter:
    """Instantiate meter ``name``; raises :class:`MeterUnavailable` when it cannot run here."""
    cls = meter_class(name)
    reason = cls.probe(config) if arg is None else cls.probe(config, arg)
    if reason:
        raise MeterUnavailable(f"meter {name!r} is not available here: {reason}")
    return cls(config) if arg is None else cls(config, arg)


def resolve(spec: str, config: MeterConfig | None = None) -> list[Meter]:
    """Meters for ``spec`` (see module doc), in the order given; ``auto`` logs its choice."""
    config = config or MeterConfig()
    meters: list[Meter] = []
    chosen: set[str] = set()
    try:
        for name, arg in parse_spec(spec):
            if name == "auto":
                meters.extend(_auto(config, exclude=chosen))
                chosen.update(getattr(m, "name", "") for m in meters)
                continue
            if name in chosen and name != "replay":
                continue
            meters.append(build(name, config, arg))
            chosen.add(name)
    except BaseException:
        for m in meters:  # do not leak a started CodeCarbon tracker or an NVML handle
            try:
                m.close()
            except Exception:
                pass
        raise
    return meters


def _auto(config: MeterConfig, exclude: set[str]) -> list[Meter]:
    meters: list[Meter] = []
    skipped: list[str] = []
    for name in AUTO_MEASURED:
        if name in exclude:
            continue
        reason = probe(name, config)
        if reason:
            # One informative line per absent meter — no traceback: absence is normal on CPU boxes.
            log.info("%s meter not available (%s)", name, reason)
            skipped.append(name)
            continue
        try:
            meters.append(build(name, config))
        except GpuSelectionError:
            for m in meters:
                try:
                    m.close()
                except Exception:
                    pass
            raise  # a mistyped --gpus / CUDA_VISIBLE_DEVICES is an error, not "no GPU here"
        except Exception as e:
            log.info("%s meter failed to start (%s: %s)", name, type(e).__name__, e)
    if not meters and "estimate" not in exclude:
        meters.append(build("estimate", config))
    if AUTO_CROSS_CHECK not in exclude:
        reason = probe(AUTO_CROSS_CHECK, config)
        if reason:
            log.info("codecarbon cross-check not available (%s)", reason)
        else:
            try:
                meters.append(build(AUTO_CROSS_CHECK, config))
            except Exception as e:
                log.info("codecarbon cross-check failed to start (%s: %s)", type(e).__name__, e)
    log.info(
        "energy: meter auto -> %s",
        ", ".join(f"{getattr(m, 'name', '?')} ({m.source}, {m.kind})" for m in meters),
    )
    return meters
