"""Table writes and small readers shared by the analysis modules (JSON/text writers come from
:mod:`study.io`).

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

# One atomic writer for every result file in the study.
from study.io import write_bytes_atomic, write_json_atomic, write_text_atomic  # noqa: F401
from study.stats import get_path  # noqa: F401  (re-exported for the analysis modules)


def _tmp_in(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)


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


def as_float(v: Any) -> float | None:
    """``float(v)`` for finite numbers, else ``None`` (strings, bools, NaN, missing)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
