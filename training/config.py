"""Typed training configuration: ``variants/base.yaml`` + variant overlays + ``--set`` overrides.

A variant is a short YAML overlay on ``base.yaml`` (never a copy of code). A combination
``v2+v7+v8`` applies the overlays in order. Every value is checked against the dataclasses
below: an unknown section or key, or a value of the wrong type or outside its allowed set,
raises :class:`ConfigError` naming the file (or ``--set``), the key and what is allowed.

Each overlay may carry two reserved top-level keys that are not configuration:
``description`` (one line for ``make variants``) and ``aliases`` (other accepted names, e.g. the
seed's ``v2_lora_peft``).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

VARIANTS_DIR = Path(__file__).resolve().parent / "variants"
BASE_FILE = VARIANTS_DIR / "base.yaml"
META_KEYS = ("description", "aliases")

# ModernBERT-base has 22 encoder layers: the seed's pruning sweep (4…20) counts against it.
MODERNBERT_BASE_LAYERS = 22


_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class ConfigError(ValueError):
    """Bad configuration: the message names the source, the key and the allowed values."""


@dataclass
class DataConfig:
    path: str | None = None  # BigVul CSV (None → $DATA → embedded sample)
    paired: bool = True  # add (func_after, 0) for vulnerable rows whose fix differs
    split_seed: int = 42  # the group split's seed (fixed across repeats, so repeats compare)
    fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    max_length: int = 2048  # tokens, for a real checkpoint (the seed's value)
    tiny_max_length: int = 256  # tokens, for MODEL=tiny (its position table is this long)
    padding: Literal["max_length", "longest"] = "max_length"  # v4: longest = dynamic padding
    group_by_length: bool = False  # v4: length-grouped batches (TrainingArguments sampler)
    train_limit: int = 0  # use at most this many training examples (0 = all); for tests
    eval_limit: int = 0  # evaluate at most this many test examples (0 = all); for tests


@dataclass
class TinyModelConfig:
    # Sized so one epoch over the embedded sample trains in minutes on 2 busy CPU cores
    # (training.model.TINY_DEFAULTS, the same keys a little larger, is build_tiny_model()'s default).
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    intermediate_size: int = 128
    max_position_embeddings: int = 256
    global_attn_every_n_layers: int = 2
    local_attention: int = 64
    vocab_size: int = 4096


@dataclass
class ModelConfig:
    name: str = "tiny"  # "tiny" | local dir | hub id already in the HF cache
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] = "eager"
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)


@dataclass
class TrainingConfig:
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    learning_rate: float = 5e-5  # real checkpoint (the seed's value)
    tiny_learning_rate: float = 5e-4  # random-init tiny model: 5e-5 barely moves it in 1 epoch
    per_device_train_batch_size: int = 2
    gradient_accumulation_steps: int = 4
    per_device_eval_batch_size: int = 8
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    optim: Literal["adamw_torch", "adamw_torch_fused", "adafactor", "adamw_8bit", "sgd"] = "adamw_torch"
    gradient_checkpointing: bool = False
    precision: Literal["fp32", "fp16", "bf16", "half"] = "fp32"  # half: fp16 on CUDA, bf16 on CPU
    torch_compile: bool = False
    dataloader_pin_memory: bool = False  # v10 (HF's own default is True; off = the seed's baseline)
    dataloader_num_workers: int = 0  # v10: worker processes for the training dataloader
    seed: int = 42  # repeat k uses seed + k
    logging_steps: int = 10
    save_steps: int = 50  # checkpoint every N optimizer steps (resume after a kill)
    save_total_limit: int = 2
    keep_checkpoints: bool = False  # keep the checkpoint dir after a successful run


@dataclass
class PeftConfig:
    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: ["Wqkv", "Wo", "Wi"])
    # The classification head is new/random, so it must train with the adapters.
    modules_to_save: list[str] = field(default_factory=lambda: ["head", "classifier"])


@dataclass
class QuantizationConfig:
    mode: Literal["none", "bnb_4bit", "bnb_8bit"] = "none"
    # No bitsandbytes kernels on CPU: "dynamic_int8" quantises Linear layers (torch dynamic int8)
    # for the evaluation stage only and records that; "refuse" fails the run instead.
    cpu_fallback: Literal["dynamic_int8", "refuse"] = "dynamic_int8"


@dataclass
class PowerConfig:
    limit_w: float | None = None  # v5: NVML power limit per GPU, W
    # Changing a power limit affects the whole machine: only with this opt-in (or
    # GPS_ALLOW_POWER_LIMIT=1); otherwise a variant that asks for a limit is refused.
    allow_change: bool = False


@dataclass
class InferenceConfig:
    engine: Literal["pytorch", "onnxruntime"] = "pytorch"  # v9: onnxruntime
    batch_size: int = 8
    onnx_opset: int = 18


@dataclass
class PruningConfig:
    layers: int = 0  # encoder layers to drop, counted against `reference_layers`
    side: Literal["top", "bottom"] = "top"
    # The sweep's counts refer to ModernBERT-base (22 layers). A model with another depth drops
    # round(layers × its_layers / reference_layers), at least 1 and at most its_layers − 1;
    # the mapping is recorded in the result. Set to 0 to use `layers` as an absolute count
    # (then pruning all layers or more is an error).
    reference_layers: int = MODERNBERT_BASE_LAYERS


@dataclass
class RuntimeConfig:
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0  # torch CPU threads (0 = torch's default)
    gpus: int = 1  # > 1: data-parallel through `accelerate launch`
    meter: str = "auto"  # energy meter spec (energy.open_meters)
    meter_interval_s: float = 0.1
    idle_s: float = 3.0  # idle baseline before the first repeat (0 = skip)
    country: str = "FRA"  # grid intensity for CO2
    # Reuse an identical earlier tokenisation of the training split (.cache/datasets): "resume"
    # only when resuming from a checkpoint (default: every fresh repeat does the whole data
    # stage), "always" whenever present (the repeat is then flagged tokenisation_cache_hit).
    tokenize_cache: Literal["resume", "always"] = "resume"


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    peft: PeftConfig = field(default_factory=PeftConfig)
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    power: PowerConfig = field(default_factory=PowerConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def is_tiny(self) -> bool:
        return self.model.name == "tiny"

    @property
    def max_length(self) -> int:
        """The effective truncation length (tokens) for this model."""
        return self.data.tiny_max_length if self.is_tiny else self.data.max_length

    @property
    def learning_rate(self) -> float:
        return self.training.tiny_learning_rate if self.is_tiny else self.training.learning_rate


# -- validation ------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is list:
        (inner,) = get_args(tp)
        return f"list of {_type_name(inner)}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against type ``tp``; ints are accepted where floats are expected."""
    origin = get_origin(tp)
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(f"{where}: {value!r} is not allowed; allowed values: {_type_name(tp)}")
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} has the wrong type; expected {_type_name(tp)}")
    if origin is list:
        (inner,) = get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {value!r} has the wrong type; expected {_type_name(tp)}")
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # PyYAML (YAML 1.1) reads "5e-5" as a string; accept plain float spellings anyway
        if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{where}: {value!r} has the wrong type; expected {_type_name(tp)}")


def _apply(obj: Any, mapping: dict[str, Any], source: str, prefix: str = "") -> None:
    """Set ``mapping``'s keys on dataclass ``obj`` (recursively), validating each."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'top level'} must be a mapping, got {mapping!r}")
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            what = "section" if not prefix else "key"
            raise ConfigError(
                f"{source}: unknown {what} {dotted!r}; allowed {what}s"
                f"{' in ' + prefix.rstrip('.') if prefix else ''}: {', '.join(names)}"
            )
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            _apply(getattr(obj, key), value, source, f"{dotted}.")
        else:
            setattr(obj, key, _coerce(value, tp, f"{source}: {dotted}"))


def _check_ranges(cfg: Config, source: str) -> None:
    """Cross-field and range checks that a type alone cannot express."""
    problems = []
    f = cfg.data.fractions
    if len(f) != 3 or abs(sum(f) - 1.0) > 1e-6 or min(f) < 0:
        problems.append(f"data.fractions must be three non-negative numbers summing to 1, got {f}")
    for dotted, v, lo in (
        ("data.max_length", cfg.data.max_length, 8),
        ("data.tiny_max_length", cfg.data.tiny_max_length, 8),
        ("training.per_device_train_batch_size", cfg.training.per_device_train_batch_size, 1),
        ("training.gradient_accumulation_steps", cfg.training.gradient_accumulation_steps, 1),
        ("training.per_device_eval_batch_size", cfg.training.per_device_eval_batch_size, 1),
        ("training.save_steps", cfg.training.save_steps, 1),
        ("training.logging_steps", cfg.training.logging_steps, 1),
        ("peft.r", cfg.peft.r, 1),
        ("inference.batch_size", cfg.inference.batch_size, 1),
        ("runtime.gpus", cfg.runtime.gpus, 1),
        ("pruning.layers", cfg.pruning.layers, 0),
        ("pruning.reference_layers", cfg.pruning.reference_layers, 0),
        ("data.train_limit", cfg.data.train_limit, 0),
        ("data.eval_limit", cfg.data.eval_limit, 0),
        ("runtime.threads", cfg.runtime.threads, 0),
        ("training.dataloader_num_workers", cfg.training.dataloader_num_workers, 0),
    ):
        if v < lo:
            problems.append(f"{dotted} must be ≥ {lo}, got {v}")
    if not 0 <= cfg.training.warmup_ratio < 1:
        problems.append(f"training.warmup_ratio must be in [0, 1), got {cfg.training.warmup_ratio}")
    if cfg.training.epochs <= 0 and cfg.training.max_steps <= 0:
        problems.append("training.epochs must be > 0 unless training.max_steps > 0")
    if cfg.runtime.idle_s < 0:
        problems.append(f"runtime.idle_s must be ≥ 0, got {cfg.runtime.idle_s}")
    if cfg.power.limit_w is not None and cfg.power.limit_w <= 0:
        problems.append(f"power.limit_w must be > 0 W or null, got {cfg.power.limit_w}")
    if cfg.is_tiny and cfg.data.tiny_max_length > cfg.model.tiny.max_position_embeddings:
        problems.append(
            f"data.tiny_max_length ({cfg.data.tiny_max_length}) exceeds "
            f"model.tiny.max_position_embeddings ({cfg.model.tiny.max_position_embeddings})"
        )
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))


# -- variants ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VariantInfo:
    name: str  # canonical name (the file stem), e.g. "v2"
    path: Path
    description: str
    aliases: tuple[str, ...]
    overlay: dict[str, Any]


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of sections, got {type(data).__name__}")
    return data


def _variant_sort_key(name: str) -> tuple:
    m = re.fullmatch(r"v(\d+)", name)
    return (0, int(m.group(1)), "") if m else (1, 0, name)


def discover_variants(variants_dir: Path = VARIANTS_DIR) -> dict[str, VariantInfo]:
    """Every ``<name>.yaml`` except ``base.yaml``, keyed by canonical name, in v0…vN order."""
    out: dict[str, VariantInfo] = {}
    for p in sorted(variants_dir.glob("*.yaml"), key=lambda p: _variant_sort_key(p.stem)):
        if p.name == BASE_FILE.name:
            continue
        data = _read_yaml(p)
        aliases = data.get("aliases") or []
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise ConfigError(f"{p}: aliases must be a list of names, got {aliases!r}")
        overlay = {k: v for k, v in data.items() if k not in META_KEYS}
        out[p.stem] = VariantInfo(p.stem, p, str(data.get("description", "")), tuple(aliases), overlay)
    return out


def alias_table(variants: dict[str, VariantInfo]) -> dict[str, str]:
    """name or alias → canonical name (case-sensitive, as written in the files)."""
    table: dict[str, str] = {}
    for name, info in variants.items():
        for n in (name, *info.aliases):
            if n in table and table[n] != name:
                raise ConfigError(f"{info.path}: alias {n!r} is also used by variant {table[n]!r}")
            table[n] = name
    return table


# A compressed variant is ``<parent>@<method>`` (``v0@magnitude-50``): the parent's trained
# artifact turned into a new one by ``python -m training.compress`` (never trained itself).
COMPRESSED_SEP = "@"


def split_compressed(variant: str) -> tuple[str, str | None]:
    """``"v0@magnitude-50"`` → ``("v0", "magnitude-50")``; ``"v2+v8"`` → ``("v2+v8", None)``.

    The method is checked by :func:`training.compress.base.parse_method`; here only the shape
    (one ``@``, both sides non-empty) is.
    """
    if COMPRESSED_SEP not in variant:
        return variant, None
    parent, _, method = variant.partition(COMPRESSED_SEP)
    if not parent.strip() or not method.strip() or COMPRESSED_SEP in method:
        raise ConfigError(
            f"variant {variant!r}: a compressed variant is <parent>@<method> with one '@', "
            f"e.g. v0@magnitude-50"
        )
    return parent.strip(), method.strip()


def split_variant(variant: str, variants: dict[str, VariantInfo] | None = None) -> list[str]:
    """``"v2+v7_f16+v8"`` → canonical names ``["v2", "v7", "v8"]``; unknown → ConfigError."""
    parent, method = split_compressed(variant)
    if method is not None:
        raise ConfigError(
            f"variant {variant!r} is a compressed variant, built from a trained {parent} rather than "
            f"trained: make compress VARIANT={parent} METHOD={method} "
            f"(python -m training.compress --variant {parent} --method {method})"
        )
    variants = variants if variants is not None else discover_variants()
    table = alias_table(variants)
    parts = [p.strip() for p in variant.split("+")]
    if not variant.strip() or any(not p for p in parts):
        raise ConfigError(f"variant {variant!r} is empty or has an empty part; write e.g. v2+v7+v8")
    out = []
    for p in parts:
        if p not in table:
            raise ConfigError(
                f"unknown variant {p!r}; valid: {', '.join(variants)} "
                f"(aliases: {', '.join(a for v in variants.values() for a in v.aliases)}); "
                f"combine with '+', e.g. v2+v7+v8"
            )
        out.append(table[p])
    return out


def parse_set(item: str) -> tuple[str, Any]:
    """``"training.max_steps=3"`` → ``("training.max_steps", 3)``; the value is parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected section.key=value (e.g. training.max_steps=3)")
    key, raw = item.split("=", 1)
    key = key.strip()
    if key.count(".") < 1:
        raise ConfigError(f"--set {item!r}: the key must be section.key (e.g. training.max_steps)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(dotted.split(".")):
        out = {part: out}
    return out


def resolve(
    variant: str = "v0",
    sets: list[str] | tuple[str, ...] = (),
    *,
    overrides: dict[str, Any] | None = None,
    base_file: Path = BASE_FILE,
    variants_dir: Path = VARIANTS_DIR,
) -> Config:
    """The validated :class:`Config` of ``variant`` (``v2`` / alias / ``v2+v7+v8``).

    Order: dataclass defaults → ``base.yaml`` → each overlay in order → ``overrides``
    (``{"training.max_steps": 3}``, from CLI flags) → ``sets`` (``["training.max_steps=3"]``).
    """
    variants = discover_variants(variants_dir)
    names = split_variant(variant, variants)
    cfg = Config()
    _apply(cfg, _read_yaml(base_file), str(base_file))
    for n in names:
        _apply(cfg, variants[n].overlay, str(variants[n].path))
    for dotted, value in (overrides or {}).items():
        _apply(cfg, _nest(dotted, value), f"option {dotted}")
    for item in sets:
        dotted, value = parse_set(item)
        _apply(cfg, _nest(dotted, value), f"--set {item}")
    _check_ranges(cfg, f"variant {variant}")
    return cfg


def describe_overlay(overlay: dict[str, Any]) -> str:
    """``{"training": {"optim": "x"}}`` → ``"training.optim=x"`` (for listings)."""
    parts = []
    for section, keys in overlay.items():
        if isinstance(keys, dict):
            for k, v in keys.items():
                if isinstance(v, dict):
                    parts.extend(f"{section}.{k}.{kk}={vv}" for kk, vv in v.items())
                else:
                    parts.append(f"{section}.{k}={v}")
        else:
            parts.append(f"{section}={keys}")
    return ", ".join(parts) or "(nothing: the baseline)"


def from_dict(values: dict[str, Any], source: str) -> Config:
    """A :class:`Config` from a resolved ``cfg.to_dict()`` (e.g. a result.json's ``config``),
    validated like a YAML overlay; ``source`` names where it came from in errors."""
    cfg = Config()
    _apply(cfg, values, source)
    _check_ranges(cfg, source)
    return cfg
