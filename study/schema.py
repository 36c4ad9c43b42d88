"""The study's result types: what a training run and a load test write, and what the analysis
reads (docs/interfaces.md is the prose copy).

Every stage writes through these classes and the analysis reads through them, so a field
cannot be spelled two ways (STYLE.md §7)::

    summary = LoadSummary(status="ok", engine="onnxruntime", …)
    write_json_atomic(path, summary.to_dict())
    LoadSummary.from_dict(json.loads(path.read_text()))     # SchemaError naming a bad key

``from_dict`` accepts files written before a field existed (it takes the default) and keeps
keys it does not know under ``extra`` (written back at the top level), so old results stay
readable and nothing is dropped. It refuses values that would make a figure lie: an unknown
``status`` or energy ``kind``, a non-numeric energy, a flag list that is not a list.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

KINDS = ("measured", "replayed", "estimated")
LOAD_STATUSES = ("ok", "degraded", "failed")
TRAIN_STATUSES = ("ok", "failed", "running")

# The headline figures of a load summary.json (dotted keys, all numeric): every repeat has
# them, the load test gives each a 95 % CI across repeats, and the aggregate reads them first.
LOAD_HEADLINE_METRICS = (
    "throughput_rps",
    "latency_ms.mean",
    "latency_ms.p50",
    "latency_ms.p90",
    "latency_ms.p95",
    "latency_ms.p99",
    "served.accuracy",
    "served.f1",
    "served.precision",
    "served.recall",
    "served.mcc",
    "served.balanced_accuracy",
    "served.roc_auc",
    "served.baseline_f1",
    "served.pair_accuracy",
    "energy_per_1k_wh.server",
    "energy_per_1k_wh.gross",
    "energy_per_1k_wh.net",
    "j_per_request.server",
    "j_per_request.gross",
    "j_per_request.net",
    "co2_per_1k_g.server",
    "co2_per_1k_g.gross",
    "co2_per_1k_g.net",
    "attribution.server_share",
)
# Every numeric key the aggregate reads from a load summary.json (its table's columns).
LOAD_METRICS = (
    *LOAD_HEADLINE_METRICS,
    "attribution.server_cpu_s",
    "attribution.client_cpu_s",
    "attribution.other_cpu_s",
    "open_loop.achieved_fraction",
    "requests.ok",
    "requests.failed",
    "requests.server_counted",
    "requests.client_counted",
    "client_cpu.mean_percent",
    "energy.inference.idle_w",
    "energy.inference.duration_s",
    "energy.system.gross_j",
    "energy.idle.gross_j",
    "grid_gco2_per_kwh",
)


class SchemaError(ValueError):
    """A result file does not match its schema; the message names the key and what is allowed."""


def _num(where: str, v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SchemaError(f"{where}={v!r} is invalid; allowed: a number or null")
    return v if math.isfinite(v) else None


def _choice(where: str, v: Any, allowed: tuple[str, ...], nullable: bool = True) -> Any:
    if v is None and nullable:
        return None
    if v not in allowed:
        raise SchemaError(f"{where}={v!r} is invalid; allowed: {', '.join(allowed)}")
    return v


def _strings(where: str, v: Any) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise SchemaError(f"{where}={v!r} is invalid; allowed: a list of strings")
    return list(v)


@dataclass
class Per1k:
    """Energy per 1,000 successful requests (Wh): whole machine, minus idle, the server's share."""

    gross: float | None = None
    net: float | None = None
    server: float | None = None

    @classmethod
    def from_dict(cls, d: Any, where: str = "energy_per_1k_wh") -> Per1k:
        d = d or {}
        if not isinstance(d, dict):
            raise SchemaError(f"{where}={d!r} is invalid; allowed: an object with gross, net, server")
        return cls(**{k: _num(f"{where}.{k}", d.get(k)) for k in ("gross", "net", "server")})


@dataclass
class Attribution:
    """A window's energy split between the server, the load client and the rest (joules), with
    the CPU times it came from (:mod:`energy.attribution`)."""

    method: str
    server_j: float | None = None
    client_j: float | None = None
    rest_j: float | None = None
    server_cpu_s: float | None = None
    client_cpu_s: float | None = None
    other_cpu_s: float | None = None
    server_share: float | None = None
    per_device: dict[str, dict[str, float]] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    affinity: dict[str, list[int] | None] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Any) -> Attribution | None:
        if d is None:
            return None
        if not isinstance(d, dict) or "method" not in d:
            raise SchemaError(f"attribution={d!r} is invalid; allowed: null or an object with a method")
        nums = ("server_j", "client_j", "rest_j", "server_cpu_s", "client_cpu_s", "other_cpu_s", "server_share")
        return cls(method=str(d["method"]), **{k: _num(f"attribution.{k}", d.get(k)) for k in nums},
                   per_device=dict(d.get("per_device") or {}), flags=_strings("attribution.flags", d.get("flags")),
                   affinity=dict(d.get("affinity") or {}))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Result:
    """Shared ``from_dict`` / ``to_dict`` of the top-level result types."""

    NESTED: ClassVar[dict[str, Any]] = {}

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        if not isinstance(d, dict):
            raise SchemaError(f"a {cls.__name__} must be a JSON object, got {type(d).__name__}")
        names = {f.name for f in fields(cls)} - {"extra"}  # type: ignore[arg-type]
        kw = {k: d[k] for k in names if k in d}
        for k, conv in cls.NESTED.items():
            if k in d:
                kw[k] = conv(d[k])
        obj = cls(**kw, extra={k: v for k, v in d.items() if k not in names})  # type: ignore[call-arg]
        obj.validate()
        return obj

    def validate(self) -> None:  # pragma: no cover - overridden
        pass

    def to_dict(self) -> dict[str, Any]:
        self.validate()
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            out[f.name] = v.to_dict() if hasattr(v, "to_dict") else (asdict(v) if hasattr(v, "__dataclass_fields__") else v)
        out.update(self.extra)  # type: ignore[attr-defined]
        return out


@dataclass
class LoadSummary(_Result):
    """``summary.json`` of one load-test repeat, or of a run (the mean over its ok repeats, with
    ``ci95`` and every repeat under ``extra["repeats"]``). docs/loadtest.md explains each field."""

    status: str = "failed"
    failure_reason: str | None = None
    run_id: str | None = None
    engine: str | None = None
    variant: str | None = None
    format: str | None = None
    model: str | None = None
    load: dict[str, Any] = field(default_factory=dict)
    requests: dict[str, Any] = field(default_factory=dict)
    items_ok: int = 0
    throughput_rps: float | None = None
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    latency_basis: str = "sent"
    latency_from_sent_ms: dict[str, float | None] | None = None
    latency_from_intended_ms: dict[str, float | None] | None = None
    open_loop: dict[str, Any] | None = None
    served: dict[str, Any] = field(default_factory=dict)
    energy: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    energy_per_1k_wh: Per1k = field(default_factory=Per1k)
    energy_scope: dict[str, str] = field(default_factory=dict)
    attribution: Attribution | None = None
    stability: dict[str, Any] | None = None
    flags: list[str] = field(default_factory=list)
    cross_checks_per_1k_wh: dict[str, dict[str, Any]] = field(default_factory=dict)
    j_per_request: Per1k = field(default_factory=Per1k)
    co2_per_1k_g: Per1k = field(default_factory=Per1k)
    country: str | None = None
    grid_gco2_per_kwh: float | None = None
    energy_source: str | None = None
    energy_kind: str | None = None
    client_cpu: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    window: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    n_repeats: int = 1
    ci95: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    NESTED: ClassVar[dict[str, Any]] = {
        "energy_per_1k_wh": Per1k.from_dict,
        "j_per_request": lambda d: Per1k.from_dict(d, "j_per_request"),
        "co2_per_1k_g": lambda d: Per1k.from_dict(d, "co2_per_1k_g"),
        "attribution": Attribution.from_dict,
    }

    def validate(self) -> None:
        _choice("status", self.status, LOAD_STATUSES, nullable=False)
        _choice("energy_kind", self.energy_kind, KINDS)
        _choice("latency_basis", self.latency_basis, ("sent", "intended"), nullable=False)
        self.flags = _strings("flags", self.flags)
        self.warnings = _strings("warnings", self.warnings)
        self.throughput_rps = _num("throughput_rps", self.throughput_rps)


@dataclass
class TrainingResult(_Result):
    """``result.json`` of one training repeat, or of a variant (the mean over its used repeats,
    with ``ci95``, ``runs`` and ``excluded``). docs/training.md explains each field."""

    variant: str = ""
    run_id: str = ""
    status: str = "failed"
    failure_reason: str | None = None
    energy_kwh: dict[str, float | None] = field(default_factory=dict)
    energy_net_kwh: dict[str, float | None] = field(default_factory=dict)
    energy_source: dict[str, str] | str = field(default_factory=dict)
    energy_kind: str = "estimated"
    co2_kg: float | None = None
    grid_gco2_per_kwh: float | None = None
    country: str | None = None
    accuracy: float | None = None
    f1: float | None = None
    precision: float | None = None
    recall: float | None = None
    mcc: float | None = None
    balanced_accuracy: float | None = None
    roc_auc: float | None = None
    baseline_f1: float | None = None
    pair_accuracy: float | None = None
    at_chance: bool | None = None
    latency_ms: float | None = None
    duration_s: dict[str, float | None] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    n_repeats: int = 1
    flags: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        _choice("status", self.status, TRAIN_STATUSES, nullable=False)
        _choice("energy_kind", self.energy_kind, KINDS, nullable=False)
        self.flags = _strings("flags", self.flags)
        for k, v in (self.energy_kwh or {}).items():
            _num(f"energy_kwh.{k}", v)
        for k in ("accuracy", "f1", "precision", "recall", "mcc", "balanced_accuracy", "roc_auc",
                  "baseline_f1", "pair_accuracy", "co2_kg"):
            setattr(self, k, _num(k, getattr(self, k)))
