"""The sweep's search space: the YAML file, its validation, and one trial's draw.

The variant is one Optuna categorical over every allowed overlay subset (``v2+v7``); each
``--set`` knob is one categorical; ``compress:`` (when present) is drawn last. A knob that a
chosen overlay sets itself is left to the overlay for that trial.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from training.config import VARIANTS_DIR

SPACE_KEYS = {"base_variant", "overlays", "set", "fixed", "max_steps", "train_args", "serve", "compress"}
OVERLAY_KEYS = {"choices", "min", "max"}
SERVE_KEYS = {"engine", "duration_s", "warmup_s", "idle_s", "max_items"}
DEFAULT_SPACE = Path(__file__).resolve().parent.parent / "search_space.yaml"


class SpaceError(ValueError):
    """A search-space file that does not validate (names the file, the key and what is allowed)."""


@dataclass
class SearchSpace:
    """The declared search space (see ``analysis/search_space.yaml``)."""

    base_variant: str = "v0"
    overlays: list[str] = field(default_factory=list)
    min_overlays: int = 0
    max_overlays: int = 3
    set: dict[str, list[Any]] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    max_steps: int = 4
    train_args: list[str] = field(default_factory=list)
    serve: dict[str, Any] = field(default_factory=lambda: {"engine": "onnxruntime", "duration_s": 5,
                                                           "warmup_s": 2, "idle_s": 2, "max_items": 32})
    # compression methods to choose from after training ("none" = keep the trained model); a
    # chosen method runs `python -m training.compress` and the trial serves <variant>@<method>
    compress: list[str] = field(default_factory=list)
    source: str = ""


def load_space(path: str | os.PathLike) -> SearchSpace:
    """Read and validate a search-space YAML; errors name the file, key and allowed values."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise SpaceError(f"{path}: cannot read search space: {e}") from e
    if not isinstance(raw, dict):
        raise SpaceError(f"{path}: top level must be a mapping with keys {sorted(SPACE_KEYS)}")
    unknown = set(raw) - SPACE_KEYS
    if unknown:
        raise SpaceError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(SPACE_KEYS)}")
    sp = SearchSpace(source=str(path))
    sp.base_variant = str(raw.get("base_variant", sp.base_variant))
    ov = raw.get("overlays", {}) or {}
    if not isinstance(ov, dict) or set(ov) - OVERLAY_KEYS:
        raise SpaceError(f"{path}: 'overlays' must be a mapping with keys {sorted(OVERLAY_KEYS)}")
    sp.overlays = [str(x) for x in ov.get("choices", [])]
    sp.min_overlays = int(ov.get("min", 0))
    sp.max_overlays = int(ov.get("max", min(3, len(sp.overlays))))
    if not 0 <= sp.min_overlays <= sp.max_overlays <= len(sp.overlays):
        raise SpaceError(f"{path}: overlays.min/max must satisfy 0 ≤ min ≤ max ≤ {len(sp.overlays)} "
                         f"(number of choices); got min={sp.min_overlays}, max={sp.max_overlays}")
    st = raw.get("set", {}) or {}
    if not isinstance(st, dict):
        raise SpaceError(f"{path}: 'set' must map 'section.key' to a list of values")
    for k, v in st.items():
        if "." not in str(k):
            raise SpaceError(f"{path}: set key {k!r} must be dotted 'section.key' (e.g. training.tiny_learning_rate)")
        if not isinstance(v, list) or not v:
            raise SpaceError(f"{path}: set.{k} must be a non-empty list of values, got {v!r}")
    sp.set = {str(k): list(v) for k, v in st.items()}
    fx = raw.get("fixed", {}) or {}
    if not isinstance(fx, dict) or any("." not in str(k) for k in fx):
        raise SpaceError(f"{path}: 'fixed' must map dotted 'section.key' to one value")
    both = set(map(str, fx)) & set(sp.set)
    if both:
        raise SpaceError(f"{path}: key(s) {sorted(both)} are in both 'set' and 'fixed'; keep one")
    sp.fixed = {str(k): v for k, v in fx.items()}
    sp.max_steps = int(raw.get("max_steps", sp.max_steps))
    sp.train_args = [str(a) for a in raw.get("train_args", []) or []]
    serve = raw.get("serve", {}) or {}
    if set(serve) - SERVE_KEYS:
        raise SpaceError(f"{path}: unknown serve key(s) {sorted(set(serve) - SERVE_KEYS)}; allowed: "
                         f"{sorted(SERVE_KEYS)}")
    sp.serve = {**sp.serve, **serve}
    sp.compress = _compress_choices(raw.get("compress", []), path)
    return sp


def _compress_choices(comp: Any, path: Path) -> list[str]:
    """The ``compress:`` list, each method checked (and spelt canonically) by the compression
    package's own parser, so an error names its allowed values."""
    from training.compress.base import ALLOWED, CompressError, parse_method

    if comp is None:
        return []
    if not isinstance(comp, list):
        raise SpaceError(f"{path}: 'compress' must be a list of methods (none, {ALLOWED}), got {comp!r}")
    out: list[str] = []
    for m in comp:
        if str(m) == "none":
            text = "none"
        else:
            try:
                text = parse_method(str(m)).text
            except CompressError as e:
                raise SpaceError(f"{path}: compress: {e} (or none)") from None
        if text in out:
            raise SpaceError(f"{path}: compress: {m!r} is listed twice")
        out.append(text)
    return out


def overlay_keys(variant: str, variants_dir: Path = VARIANTS_DIR) -> set[str]:
    """Dotted config keys an overlay YAML sets (empty when the file is not found)."""
    f = variants_dir / f"{variant}.yaml"
    if not f.is_file():
        return set()
    raw = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
    keys: set[str] = set()

    def walk(d: dict, prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                keys.add(f"{prefix}{k}")

    walk({k: v for k, v in raw.items() if isinstance(v, dict)}, "")
    return keys


@dataclass
class RunSpec:
    """One trial's configuration (``index`` is the Optuna trial number)."""

    index: int
    seed: int
    variant: str
    overlays: list[str]
    set: dict[str, Any]
    overridden_by_overlay: list[str]
    max_steps: int
    run_id: str = ""
    compress: str | None = None  # a compression method applied after training (served as variant@method)

    @property
    def served_variant(self) -> str:
        """What the trial ends with and serves: ``<variant>@<method>`` when it compresses."""
        return f"{self.variant}@{self.compress}" if self.compress else self.variant

    def params_hash(self) -> str:
        key: dict[str, Any] = {"variant": self.variant, "set": self.set, "max_steps": self.max_steps}
        if self.compress:  # only when used, so the ids of trials without compression never change
            key["compress"] = self.compress
        blob = json.dumps(key, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]


def variant_choices(space: SearchSpace) -> list[str]:
    """Every allowed overlay subset as a variant name (``v0``, ``v1``, ``v1+v7``, …), in the
    order the overlays are listed: one Optuna categorical covers the subset constraint exactly."""
    out = []
    for k in range(space.min_overlays, space.max_overlays + 1):
        for combo in itertools.combinations(space.overlays, k):
            out.append("+".join(combo) if combo else space.base_variant)
    return out


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _choices(values: list[Any]) -> list[Any]:
    """Optuna categoricals hold scalars; a list/dict value is offered as its JSON text."""
    return [v if _scalar(v) else json.dumps(v, sort_keys=True) for v in values]


def suggest(trial: Any, space: SearchSpace, seed: int = 0, variants_dir: Path = VARIANTS_DIR) -> RunSpec:
    """Ask ``trial`` (an ``optuna.Trial``) for one configuration of ``space``."""
    variant = trial.suggest_categorical("variant", variant_choices(space))
    chosen = [] if variant == space.base_variant else variant.split("+")
    values = {}
    for key, raw in sorted(space.set.items()):
        offered = _choices(raw)
        values[key] = raw[offered.index(trial.suggest_categorical(key, offered))]
    values.update(space.fixed)
    taken: set[str] = set()
    for o in chosen:
        taken |= overlay_keys(o, variants_dir)
    dropped = sorted(k for k in values if k in taken)
    values = {k: v for k, v in values.items() if k not in taken}
    # drawn last, so a sampler with one random stream draws the other parameters as without it
    method = trial.suggest_categorical("compress", space.compress) if space.compress else None
    spec = RunSpec(index=trial.number, seed=seed, variant=variant, overlays=chosen, set=values,
                   overridden_by_overlay=dropped, max_steps=space.max_steps,
                   compress=None if method in (None, "none") else method)
    spec.run_id = f"t{trial.number:04d}-{spec.params_hash()}"
    return spec


def space_fingerprint(space: SearchSpace) -> str:
    """What the study's parameter distributions depend on (a study keeps one search space)."""
    key: dict[str, Any] = {"variants": variant_choices(space), "set": space.set}
    if space.compress:  # only when used, so studies made before compression existed still match
        key["compress"] = space.compress
    blob = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
