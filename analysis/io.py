"""Atomic file writes and small readers shared by the analysis modules.

Every result file is written to a temporary file in the same directory and then moved into
place with ``os.replace``, so a reader (or a killed run) never sees half a file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd


def _tmp_in(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + ``os.replace``)."""
    path = Path(path)
    fd, tmp = _tmp_in(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared/read
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def _json_default(o: Any) -> Any:
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _nan_to_none(o: Any) -> Any:
    # JSON has no NaN; a missing number is null.
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _nan_to_none(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_nan_to_none(v) for v in o]
    return o


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (NaN/inf become ``null``)."""
    text = json.dumps(_nan_to_none(obj), indent=2, sort_keys=False, default=_json_default)
    return write_text_atomic(path, text + "\n")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON object; raises ``ValueError`` naming the file when it is not an object."""
    with open(path, encoding="utf-8") as f:
        obj = json.load(f)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


_PARQUET_OK: bool | None = None


def parquet_available() -> bool:
    """True when pandas can write Parquet here (pyarrow importable and compatible)."""
    global _PARQUET_OK
    if _PARQUET_OK is None:
        try:
            import pyarrow  # noqa: F401

            _PARQUET_OK = True
        except Exception:  # ImportError, or pyarrow built against a newer numpy
            _PARQUET_OK = False
    return _PARQUET_OK


def write_table_atomic(df: pd.DataFrame, csv_path: str | os.PathLike, parquet: bool = True) -> list[Path]:
    """Write ``df`` as CSV (and Parquet beside it when available), each atomically."""
    csv_path = Path(csv_path)
    written = [write_text_atomic(csv_path, df.to_csv(index=False))]
    if parquet and parquet_available():
        pq = csv_path.with_suffix(".parquet")
        fd, tmp = _tmp_in(pq)
        os.close(fd)
        try:
            df.to_parquet(tmp, index=False)
            os.chmod(tmp, 0o644)
            os.replace(tmp, pq)
            written.append(pq)
        except Exception:
            if os.path.exists(tmp):
                os.unlink(tmp)
            # Parquet is a convenience copy; the CSV is the record.
    return written


def get_path(d: Any, dotted: str, default: Any = None) -> Any:
    """``get_path({"a": {"b": 1}}, "a.b") == 1``; ``default`` when any step is missing."""
    cur = d
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


def as_float(v: Any) -> float | None:
    """``float(v)`` for finite numbers, else ``None`` (strings, bools, NaN, missing)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
