"""A FAKE ``pynvml`` (nvidia-ml-py) for tests on machines without an NVIDIA GPU.

It stands in for absent hardware only: it implements the read-only NVML calls that
:mod:`energy.nvml` makes, with nvidia-ml-py's names, units and error classes
(``nvmlDeviceGetTotalEnergyConsumption`` in millijoules, ``nvmlDeviceGetPowerUsage`` in
milliwatts, ``NVMLError_NotSupported`` for boards without the energy counter), and plays back
values given to it. Nothing here can change a GPU setting: there are no setters.

Boards are configured by :func:`configure` (in-process tests insert this module as
``sys.modules["pynvml"]``) or, for a subprocess with this folder on ``PYTHONPATH``, by the JSON
in ``$FAKE_PYNVML_BOARDS``. A board is a dict::

    {"uuid": "GPU-…", "name": "NVIDIA H100 80GB HBM3", "bus": "00000000:19:00.0",
     "energy_mj": [..] | null,   # counter per step; null → NVMLError_NotSupported
     "power_mw": [..],           # power per step
     "rate_w": 200.0,            # instead of the lists: constant power, counter from wall time
     "mig": ["MIG-…", …]}        # MIG mode on, with these instances

A list entry ``"err"`` raises ``NVMLError_Unknown`` for that read (a transient driver failure).
The step is :data:`STEP` (tests set it); past the end of a list its last value repeats.
"""

from __future__ import annotations

import json
import os
import time
from types import SimpleNamespace
from typing import Any

FAKE = True
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_UNKNOWN = 999

BOARDS: list[dict[str, Any]] = []
STEP = 0
CALLS: list[str] = []  # every function called, in order (tests check only reads were made)
_T0 = time.time()
_initialised = 0


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {3: "Not Supported", 6: "Not Found", 999: "Unknown Error"}.get(self.value, str(self.value))


class NVMLError_NotSupported(NVMLError):  # noqa: N801 (nvidia-ml-py's name)
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_NOT_SUPPORTED)


class NVMLError_NotFound(NVMLError):  # noqa: N801
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_NOT_FOUND)


class NVMLError_Unknown(NVMLError):  # noqa: N801
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_UNKNOWN)


class NVMLError_Uninitialized(NVMLError):  # noqa: N801
    def __init__(self) -> None:
        super().__init__(1)


def configure(boards: list[dict[str, Any]]) -> None:
    global BOARDS, STEP, _T0
    BOARDS = [dict(b) for b in boards]
    STEP = 0
    CALLS.clear()
    _T0 = time.time()


if os.environ.get("FAKE_PYNVML_BOARDS"):
    configure(json.loads(os.environ["FAKE_PYNVML_BOARDS"]))


def _called(name: str) -> None:
    CALLS.append(name)
    if name not in ("nvmlInit", "nvmlShutdown") and _initialised <= 0:
        raise NVMLError_Uninitialized()


def _at(values: list[Any]) -> Any:
    v = values[min(STEP, len(values) - 1)]
    if v == "err":
        raise NVMLError_Unknown()
    return v


class _Handle:
    def __init__(self, board: dict[str, Any], mig: str | None = None) -> None:
        self.board, self.mig = board, mig


def nvmlInit() -> None:  # noqa: N802
    global _initialised
    _called("nvmlInit")
    _initialised += 1


def nvmlShutdown() -> None:  # noqa: N802
    global _initialised
    _called("nvmlShutdown")
    _initialised -= 1


def nvmlDeviceGetCount() -> int:  # noqa: N802
    _called("nvmlDeviceGetCount")
    return len(BOARDS)


def nvmlDeviceGetHandleByIndex(i: int) -> _Handle:  # noqa: N802
    _called("nvmlDeviceGetHandleByIndex")
    if not 0 <= i < len(BOARDS):
        raise NVMLError(2)
    return _Handle(BOARDS[i])


def nvmlDeviceGetUUID(h: _Handle) -> str:  # noqa: N802
    _called("nvmlDeviceGetUUID")
    return h.mig or h.board["uuid"]


def nvmlDeviceGetName(h: _Handle) -> bytes:  # noqa: N802
    _called("nvmlDeviceGetName")
    return h.board["name"].encode()  # older nvidia-ml-py returns bytes


def nvmlDeviceGetPciInfo(h: _Handle) -> SimpleNamespace:  # noqa: N802
    _called("nvmlDeviceGetPciInfo")
    return SimpleNamespace(busId=h.board["bus"].encode())


def nvmlDeviceGetMigMode(h: _Handle) -> list[int]:  # noqa: N802
    _called("nvmlDeviceGetMigMode")
    if "mig" not in h.board:
        raise NVMLError_NotSupported()
    return [1, 1] if h.board["mig"] else [0, 0]


def nvmlDeviceGetMaxMigDeviceCount(h: _Handle) -> int:  # noqa: N802
    _called("nvmlDeviceGetMaxMigDeviceCount")
    return 7


def nvmlDeviceGetMigDeviceHandleByIndex(h: _Handle, j: int) -> _Handle:  # noqa: N802
    _called("nvmlDeviceGetMigDeviceHandleByIndex")
    migs = h.board.get("mig") or []
    if j >= len(migs):
        raise NVMLError_NotFound()
    return _Handle(h.board, migs[j])


def nvmlDeviceGetTotalEnergyConsumption(h: _Handle) -> int:  # noqa: N802
    """Millijoules since the driver was loaded."""
    _called("nvmlDeviceGetTotalEnergyConsumption")
    b = h.board
    if "rate_w" in b:
        return int(1_000_000 + b["rate_w"] * (time.time() - _T0) * 1000)
    if b.get("energy_mj") is None:
        raise NVMLError_NotSupported()
    return int(_at(b["energy_mj"]))


def nvmlDeviceGetPowerUsage(h: _Handle) -> int:  # noqa: N802
    """Milliwatts."""
    _called("nvmlDeviceGetPowerUsage")
    b = h.board
    if "rate_w" in b:
        return int(b["rate_w"] * 1000)
    return int(_at(b["power_mw"]))


def nvmlSystemGetDriverVersion() -> str:  # noqa: N802
    _called("nvmlSystemGetDriverVersion")
    return "550.54.15"
