"""Atomic result files: write to a temporary file beside the target, fsync, ``os.replace``.

A reader (or a crash) never sees a half-written JSON. Every package writes its result files with
:func:`write_json_atomic`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def _default(o: Any) -> Any:
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        to_dict = getattr(o, "to_dict", None)
        return to_dict() if callable(to_dict) else dataclasses.asdict(o)
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    if isinstance(o, (set, frozenset)):
        return sorted(o, key=str)
    to_dict = getattr(o, "to_dict", None)  # pandas objects and other records
    if callable(to_dict):
        return to_dict()
    item = getattr(o, "item", None)  # numpy / torch scalars
    if callable(item):
        return item()
    tolist = getattr(o, "tolist", None)  # numpy arrays
    if callable(tolist):
        return tolist()
    raise TypeError(f"object of type {type(o).__name__} is not JSON serialisable")


def _clean(o: Any) -> Any:
    # JSON has no NaN/Infinity; write null so every JSON reader can load the file.
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parents created; temp file beside it, fsync,
    ``os.replace``); returns the path. Files are made world-readable (``mkstemp`` creates
    0600), because results and artifacts are read by other users, e.g. a container's uid."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return p


def write_text_atomic(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`write_bytes_atomic`)."""
    return write_bytes_atomic(path, text.encode(encoding))


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, indent: int = 2) -> Path:
    """Serialise ``obj`` as JSON to ``path`` atomically.

    Dataclasses (``to_dict()`` when they have one), paths, sets and numpy/torch scalars are
    converted; NaN/inf become ``null``. Returns the path.
    """
    obj = _clean(json.loads(json.dumps(obj, default=_default, allow_nan=True)))
    return write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")
