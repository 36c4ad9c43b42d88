"""The meter layer's contracts: what a meter reads and what a measured window reports.

Every energy figure in the study is an :class:`EnergyRecord`. It always says *where* the number
came from (``source``) and what kind of figure it is (``kind``): *measured* live by hardware,
*replayed* from a recorded hardware trace, or *estimated* by a model, so that nothing
downstream can pass an estimate (or a replay) off as a live measurement.

Units live in names: ``*_j`` joules, ``*_w`` watts, ``*_s`` seconds, ``*_kwh`` kilowatt-hours.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

# Labels used in every record and every power CSV row.
SOURCES = ("nvml-counter", "nvml-power", "rapl", "codecarbon", "estimate", "replay")
# Kinds, from the strongest claim to the weakest. A figure combined from several kinds takes the
# weakest one present (see :func:`combine_kinds`): any estimated part → "estimated"; else any
# replayed part → "replayed"; else "measured".
KINDS = ("measured", "replayed", "estimated")

J_PER_KWH = 3.6e6
J_PER_WH = 3600.0


def combine_kinds(kinds: Iterable[str | None]) -> str:
    """The kind of a figure built from parts of ``kinds``: the weakest claim among them.

    ``measured`` < ``replayed`` < ``estimated``: one estimated part makes the whole an estimate,
    else one replayed part makes it a replay, else it is measured. Nothing known (no parts, only
    ``None``) or a label outside :data:`KINDS` counts as ``estimated`` — never a measurement.
    """
    present = {k for k in kinds if k is not None}
    if not present or not present <= set(KINDS):
        return "estimated"
    return max(present, key=KINDS.index)


@dataclass(frozen=True)
class Reading:
    """One sample of one device at one instant.

    ``energy_j`` is a cumulative counter (joules since an arbitrary origin) when the hardware
    has one (NVML's total-energy counter, RAPL); ``power_w`` is an instantaneous or short-average
    power. A meter fills whichever it has, possibly both. ``flag`` marks a sample that analysis
    must not integrate through (``"gap"``, ``"reset"``, ``"wrap"``).
    """

    t_unix_s: float
    device: str
    power_w: float | None
    energy_j: float | None
    source: str
    kind: str
    flag: str = ""


@runtime_checkable
class Meter(Protocol):
    """A source of :class:`Reading` samples (one per device per call to :meth:`read`)."""

    source: str  # one of SOURCES
    kind: str  # one of KINDS: "measured", "replayed" or "estimated"

    def read(self) -> list[Reading]:
        """Sample every device this meter covers, now. Raises on a read error."""
        ...

    def describe(self) -> dict[str, Any]:
        """Parameters a reader needs to judge the figures (devices, model coefficients, …)."""
        ...

    def close(self) -> None: ...


class MeterBase:
    """What every meter of the registry shares: its labels, the frame of :meth:`describe` and a
    no-op :meth:`close`. The labels are given once, in the class statement, and checked there::

        class RaplMeter(MeterBase, name="rapl", kind="measured"): ...   # source defaults to name

    A meter whose ``source`` or ``kind`` depends on what it finds (NVML with or without an
    energy counter, a replayed trace's kind) leaves it out and sets it on the instance.
    Subclasses list :meth:`devices` and add :meth:`details` (meter-wide parameters) and, where
    a device needs more than its source and kind, :meth:`device_table`.
    """

    name: ClassVar[str]
    source: str
    kind: str

    def __init_subclass__(cls, *, name: str, source: str | None = None, kind: str | None = None,
                          **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if source is None and name in SOURCES:
            source = name
        if source is not None and source not in SOURCES:
            raise ValueError(f"meter {name!r}: source={source!r} is invalid; allowed: {', '.join(SOURCES)}")
        if kind is not None and kind not in KINDS:
            raise ValueError(f"meter {name!r}: kind={kind!r} is invalid; allowed: {', '.join(KINDS)}")
        cls.name = name
        if source is not None:
            cls.source = source
        if kind is not None:
            cls.kind = kind

    def devices(self) -> list[str]:
        raise NotImplementedError

    def details(self) -> dict[str, Any]:
        """Meter-wide parameters a reader needs to judge the figures (model, driver, trace…)."""
        return {}

    def device_table(self) -> dict[str, dict[str, Any]]:
        """``{device: {source, kind, …}}`` of every device this meter reads."""
        return {d: {"source": self.source, "kind": self.kind} for d in self.devices()}

    def describe(self) -> dict[str, Any]:
        return {"meter": self.name, "source": self.source, "kind": self.kind, **self.details(),
                "devices": self.device_table()}

    def close(self) -> None:
        pass


@dataclass
class EnergyRecord:
    """The energy of one named window, as written into every result file.

    ``net_j = gross_j - idle_w * duration_s`` when an idle baseline is known, else ``None``.
    ``per_device_j`` splits ``gross_j`` by device. ``flags`` lists anything a reader should
    know (gaps in the trace, counter resets, a device missing for part of the window).
    ``cross_checks`` holds series reported beside, never summed into, ``gross_j``.
    """

    name: str
    start_unix_s: float
    end_unix_s: float
    duration_s: float
    gross_j: float | None
    idle_w: float | None
    net_j: float | None
    source: str
    kind: str
    per_device_j: dict[str, float] = field(default_factory=dict)
    n_samples: int = 0
    flags: list[str] = field(default_factory=list)
    meter: dict[str, Any] = field(default_factory=dict)
    # Seconds of the window each summed device was covered by samples, and the smallest
    # covered share over the summed devices (net energy is computed over covered time only).
    per_device_covered_s: dict[str, float] = field(default_factory=dict)
    coverage: float = 1.0
    # Series that are *not* summed into gross_j: CodeCarbon's independent estimate and
    # per-process attributions ("pid:<n>"), keyed by device: {energy_j, source, kind, …}.
    cross_checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def gross_kwh(self) -> float | None:
        return None if self.gross_j is None else self.gross_j / J_PER_KWH

    @property
    def net_kwh(self) -> float | None:
        return None if self.net_j is None else self.net_j / J_PER_KWH

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gross_kwh"] = self.gross_kwh
        d["net_kwh"] = self.net_kwh
        return d
