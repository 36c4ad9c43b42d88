"""NVIDIA GPUs through NVML (``pynvml`` from the ``nvidia-ml-py`` package, imported lazily).

**Which GPUs.** Exactly the GPUs the trainer or server uses, never every board in the machine:

* ``MeterConfig.gpus`` (``--gpus`` on the sidecar and ``python -m energy``) when given, else
  ``CUDA_VISIBLE_DEVICES`` when set, else every GPU NVML sees. Both take CUDA's syntax: a comma
  list of indices (``0,2``) or UUIDs as ``nvidia-smi -L`` prints them (``GPU-8f3e…``, MIG
  instances ``MIG-…`` or the older ``MIG-GPU-<uuid>/<gi>/<ci>``), where a unique prefix of a
  UUID is enough (``GPU-8f3e``). ``""`` or ``-1`` means no GPU; like CUDA, a negative index ends
  the list (``0,-1,1`` = GPU 0). ``--gpus`` also takes ``all`` and ``none``.
* Every entry is resolved to an NVML handle **by UUID**: a UUID is matched against
  ``nvmlDeviceGetUUID`` of each board (and of each MIG instance); an index *i* is the *i*-th
  board in PCI bus order, which is CUDA's order under ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and, on
  boards of one model, under CUDA's default ``FASTEST_FIRST`` too. NVML's own index is never
  taken for a CUDA index. Mixed models without ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` make an index
  ambiguous: the meter says so in ``describe()["gpu_selection"]["warnings"]`` (use UUIDs).
* An entry that matches no GPU (or a UUID prefix that matches several) is an error that lists
  the GPUs NVML sees, UUID and name.
* A MIG instance is measured through its parent board: NVML reports board power and energy
  only, shared with the board's other instances (``describe()`` says so).

The selected boards' UUIDs, names and PCI bus ids are in :meth:`NvmlMeter.describe`, so every
result file that carries the meter description carries them. Devices are named ``gpu<i>`` with
*i* the board's NVML index (stable on one machine, whichever process reads it).

**What is read** per board (read-only NVML queries; no GPU setting is changed):

* Volta and newer expose ``nvmlDeviceGetTotalEnergyConsumption`` — a millijoule counter since
  the driver was loaded. We report it as ``energy_j`` (source ``nvml-counter``) and integrate
  its deltas: on Ampere and newer ``nvmlDeviceGetPowerUsage`` is a ~1 s moving average, so
  integrating sampled power would smear short windows, while the counter is exact.
* Boards without the counter (``NVMLError_NotSupported``): ``nvmlDeviceGetPowerUsage``
  (milliwatts) sampled and integrated (source ``nvml-power``).
* Power and counter are read independently: a failed power read keeps the counter value of that
  sample and a failed counter read keeps its power; only when both fail is the sample a
  ``gap``. A counter lower than the previous one (driver reload) is flagged ``reset`` and
  :mod:`energy.integrate` never sums through it.

Both sources are ``kind: measured`` (board power as the driver reports it).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from energy.base import MeterBase, Reading
from energy.config import GpuSelectionError, MeterConfig

log = logging.getLogger("energy")

CUDA_ENV = "CUDA_VISIBLE_DEVICES"
ORDER_ENV = "CUDA_DEVICE_ORDER"
UUID_PREFIXES = ("GPU-", "MIG-")


def _pynvml() -> Any:
    import pynvml  # lazy: only this meter needs NVML

    return pynvml


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


# --------------------------------------------------------------------------- selection spec


def parse_gpu_spec(spec: str | None) -> list[str] | None:
    """``"0, GPU-8f3e"`` → ``["0", "GPU-8f3e"]``; ``None``/``"all"`` → ``None`` (every GPU);
    ``""``, ``"none"``, ``"-1"`` → ``[]``. Syntax only (no NVML); raises :class:`ValueError`.

    CUDA's rules: entries are indices or ``GPU-``/``MIG-`` UUIDs (prefixes allowed); a negative
    index ends the list. Raises :class:`~energy.config.GpuSelectionError` (a ``ValueError``).
    """
    if spec is None:
        return None
    s = spec.strip()
    if s.lower() == "all":
        return None
    if s.lower() == "none":
        return []
    out: list[str] = []
    for raw in s.split(","):
        e = raw.strip()
        if e.lstrip("+-").isdigit():
            if int(e) < 0:
                break  # CUDA: an invalid (negative) index ends the list; "-1" = no GPU
            out.append(str(int(e)))
        elif e.upper().startswith(UUID_PREFIXES) and len(e) > 4:
            out.append(e)
        elif e == "" and len(s) == 0:
            break
        else:
            raise GpuSelectionError(
                f"GPU selection {spec!r}: entry {e!r} is neither an index nor a GPU-/MIG- UUID; "
                "allowed: all, none, or a comma list of indices (0,2) / UUIDs (GPU-8f3e…) as in "
                "CUDA_VISIBLE_DEVICES"
            )
    return out


def gpu_selection(config: MeterConfig | None, env: Mapping[str, str] | None = None) -> tuple[list[str] | None, str]:
    """The entries to measure and where they came from (``"--gpus"``, ``CUDA_VISIBLE_DEVICES``
    or ``"all"``): :attr:`MeterConfig.gpus` first, then ``CUDA_VISIBLE_DEVICES``."""
    env = os.environ if env is None else env
    if config is not None and config.gpus is not None:
        return parse_gpu_spec(config.gpus), "--gpus"
    if CUDA_ENV in env:
        return parse_gpu_spec(env[CUDA_ENV]), CUDA_ENV
    return None, "all"


def cuda_devices_spec(n: int, env: Mapping[str, str] | None = None) -> str:
    """The GPU selection of ``cuda:0 … cuda:n-1`` in a process started with ``env``: the first
    ``n`` entries of its ``CUDA_VISIBLE_DEVICES``, else indices ``0 … n-1`` (a trainer on ``n``
    GPUs uses exactly these)."""
    if n < 1:
        raise ValueError(f"number of GPUs must be >= 1, got {n}")
    env = os.environ if env is None else env
    if CUDA_ENV in env:
        visible = parse_gpu_spec(env[CUDA_ENV])
        if visible is not None:
            return ",".join(visible[:n]) if visible[:n] else "none"
    return ",".join(str(i) for i in range(n))


# --------------------------------------------------------------------------- NVML enumeration


@dataclass
class Gpu:
    """One board to measure (a MIG instance is measured through its board)."""

    nvml_index: int
    handle: Any
    uuid: str
    name: str
    pci_bus_id: str | None
    cuda_index: list[int] = field(default_factory=list)
    mig: list[str] = field(default_factory=list)


def _boards(nv: Any) -> list[Gpu]:
    out = []
    for i in range(nv.nvmlDeviceGetCount()):
        h = nv.nvmlDeviceGetHandleByIndex(i)
        try:
            bus: str | None = _s(nv.nvmlDeviceGetPciInfo(h).busId)
        except Exception:
            bus = None
        out.append(Gpu(i, h, _s(nv.nvmlDeviceGetUUID(h)), _s(nv.nvmlDeviceGetName(h)), bus))
    return out


def _mig_uuids(nv: Any, board: Gpu) -> list[str]:
    """UUIDs of the board's MIG instances (none when MIG is off or unsupported)."""
    try:
        current, _pending = nv.nvmlDeviceGetMigMode(board.handle)
        if not current:
            return []
        n = nv.nvmlDeviceGetMaxMigDeviceCount(board.handle)
    except Exception:  # NVMLError_NotSupported on boards without MIG
        return []
    out = []
    for j in range(n):
        try:
            out.append(_s(nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetMigDeviceHandleByIndex(board.handle, j))))
        except Exception:  # NVMLError_NotFound: an empty slot
            continue
    return out


def _bus_key(g: Gpu) -> tuple[int, str, int]:
    return (0, g.pci_bus_id.lower(), g.nvml_index) if g.pci_bus_id else (1, "", g.nvml_index)


def _listing(boards: list[Gpu], migs: dict[str, list[str]]) -> str:
    rows = []
    for k, g in enumerate(sorted(boards, key=_bus_key)):
        extra = f", MIG {', '.join(migs[g.uuid])}" if migs.get(g.uuid) else ""
        rows.append(f"{k}: {g.uuid} ({g.name}{extra})")
    return "; ".join(rows) or "none"


def select_gpus(nv: Any, entries: list[str] | None, origin: str,
                env: Mapping[str, str] | None = None) -> tuple[list[Gpu], list[str]]:
    """Resolve ``entries`` (see :func:`parse_gpu_spec`) to boards by UUID; ``(gpus, warnings)``.

    Raises :class:`GpuSelectionError` naming the visible GPUs when an entry matches none (or a
    UUID prefix matches several).
    """
    env = os.environ if env is None else env
    boards = _boards(nv)
    by_bus = sorted(boards, key=_bus_key)  # CUDA's PCI_BUS_ID order
    warnings: list[str] = []
    if entries is None:
        for k, g in enumerate(by_bus):
            g.cuda_index.append(k)
        return by_bus, warnings
    migs = {g.uuid: _mig_uuids(nv, g) for g in boards} if any(e.upper().startswith("MIG-") for e in entries) else {}
    chosen: dict[int, Gpu] = {}
    used_index = False
    for pos, e in enumerate(entries):
        if e.isdigit():
            k = int(e)
            if k >= len(by_bus):
                raise GpuSelectionError(
                    f"{origin}={','.join(entries)!r}: GPU index {k} does not exist; "
                    f"{len(by_bus)} GPU(s) here (PCI bus order): {_listing(boards, migs)}")
            g, mig = by_bus[k], None
            used_index = True
        else:
            g, mig = _match_uuid(e, boards, migs, origin, entries)
        g = chosen.setdefault(g.nvml_index, g)
        g.cuda_index.append(pos)
        if mig and mig not in g.mig:
            g.mig.append(mig)
    if used_index and env.get(ORDER_ENV, "FASTEST_FIRST").upper() != "PCI_BUS_ID" \
            and len({g.name for g in boards}) > 1:
        warnings.append(
            f"{origin} uses indices, {ORDER_ENV} is not PCI_BUS_ID and the GPUs differ in model: CUDA may "
            "number them fastest first, so an index may name another board than the one measured "
            f"(measured by PCI bus order); set {ORDER_ENV}=PCI_BUS_ID or use UUIDs")
    gpus = sorted(chosen.values(), key=lambda g: min(g.cuda_index))
    if any(g.mig for g in gpus):
        warnings.append("MIG instance(s) selected: NVML reads power and energy of the whole board, "
                        "shared with the board's other instances")
    return gpus, warnings


def _match_uuid(entry: str, boards: list[Gpu], migs: dict[str, list[str]], origin: str,
                entries: list[str]) -> tuple[Gpu, str | None]:
    want = entry.lower()
    if want.startswith("mig-gpu-"):  # R450-style "MIG-GPU-<board uuid>/<gi>/<ci>"
        board_uuid = want[len("mig-"):].split("/")[0]
        hits = [(g, entry) for g in boards if g.uuid.lower() == board_uuid]
    elif want.startswith("mig-"):
        hits = [(g, m) for g in boards for m in migs.get(g.uuid, []) if m.lower().startswith(want)]
    else:
        hits = [(g, None) for g in boards if g.uuid.lower().startswith(want)]
    if len(hits) == 1:
        return hits[0]
    what = "matches no GPU" if not hits else f"is ambiguous ({len(hits)} matches)"
    raise GpuSelectionError(
        f"{origin}={','.join(entries)!r}: {entry!r} {what}; GPUs here (PCI bus order): "
        f"{_listing(boards, migs)}")


# --------------------------------------------------------------------------- the meter


class NvmlMeter(MeterBase, name="nvml", kind="measured"):
    """The GPUs the trainer or server uses (see module doc), each read by UUID-mapped handle."""

    @staticmethod
    def probe(config: MeterConfig) -> str | None:
        """Reason NVML cannot be used here, or ``None``."""
        try:
            entries, origin = gpu_selection(config)
        except GpuSelectionError:  # reported (raised) by the meter when it starts
            entries, origin = None, ""
        if entries == []:
            return f"no GPU selected ({origin}={'none' if origin == '--gpus' else repr(os.environ.get(CUDA_ENV))})"
        try:
            nv = _pynvml()
        except ImportError:
            return "pynvml is not installed (pip install nvidia-ml-py)"
        try:
            nv.nvmlInit()
        except Exception as e:  # NVMLError_LibraryNotFound / DriverNotLoaded on CPU boxes
            return f"NVML did not initialise: {e}"
        try:
            n = nv.nvmlDeviceGetCount()
        finally:
            nv.nvmlShutdown()
        return None if n > 0 else "NVML found no GPU"

    def __init__(self, config: MeterConfig | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        entries, origin = gpu_selection(config)
        self._nv = _pynvml()
        self._nv.nvmlInit()
        try:
            self._gpus, self._warnings = select_gpus(self._nv, entries, origin)
            if not self._gpus:
                raise GpuSelectionError(f"no GPU selected ({origin})")
            self._has_counter = [self._counter_supported(g.handle) for g in self._gpus]
        except BaseException:
            self.close()
            raise
        for w in self._warnings:
            log.warning("nvml: %s", w)
        self._selection = {"spec": ",".join(entries) if entries is not None else "all", "from": origin,
                           "index_order": "PCI bus (CUDA_DEVICE_ORDER=PCI_BUS_ID)", "warnings": self._warnings}
        self._last_j: dict[int, float] = {}
        self.source = "nvml-counter" if all(self._has_counter) else "nvml-power"
        try:
            self._driver: str | None = _s(self._nv.nvmlSystemGetDriverVersion())
        except Exception:
            self._driver = None

    def _counter_supported(self, h: Any) -> bool:
        try:
            self._nv.nvmlDeviceGetTotalEnergyConsumption(h)
        except self._nv.NVMLError_NotSupported:
            return False
        except self._nv.NVMLError as e:  # a transient failure: keep trying the counter on reads
            log.info("nvml: energy counter probe failed (%s); will retry on every read", e)
        return True

    def read(self) -> list[Reading]:
        """One reading per GPU: counter (J) where supported, plus power (W); each read on its own."""
        nv = self._nv
        out: list[Reading] = []
        for i, g in enumerate(self._gpus):
            t = self._clock()
            try:
                power_w: float | None = nv.nvmlDeviceGetPowerUsage(g.handle) / 1000.0  # mW → W
            except nv.NVMLError:
                power_w = None
            energy_j: float | None = None
            if self._has_counter[i]:
                try:
                    energy_j = nv.nvmlDeviceGetTotalEnergyConsumption(g.handle) / 1000.0  # mJ → J
                except nv.NVMLError_NotSupported:
                    self._has_counter[i] = False
                except nv.NVMLError:
                    energy_j = None
            flag = ""
            if power_w is None and energy_j is None:
                flag = "gap"
            elif energy_j is not None:
                last = self._last_j.get(i)
                if last is not None and energy_j < last:
                    flag = "reset"  # driver reload: never summed through (energy.integrate)
                self._last_j[i] = energy_j
            out.append(Reading(
                t_unix_s=t,
                device=self._device(g),
                power_w=power_w,
                energy_j=energy_j,
                source="nvml-counter" if energy_j is not None else "nvml-power",
                kind=self.kind,
                flag=flag,
            ))
        return out

    @staticmethod
    def _device(g: Gpu) -> str:
        return f"gpu{g.nvml_index}"

    def devices(self) -> list[str]:
        return [self._device(g) for g in self._gpus]

    def details(self) -> dict[str, Any]:
        return {"driver": self._driver, "gpu_selection": self._selection}

    def device_table(self) -> dict[str, dict[str, Any]]:
        return {
            self._device(g): {
                "name": g.name,
                "uuid": g.uuid,
                "nvml_index": g.nvml_index,
                "cuda_index": g.cuda_index,
                "pci_bus_id": g.pci_bus_id,
                **({"mig": g.mig} if g.mig else {}),
                "source": "nvml-counter" if self._has_counter[i] else "nvml-power",
                "kind": self.kind,
            }
            for i, g in enumerate(self._gpus)
        }

    def close(self) -> None:
        try:
            self._nv.nvmlShutdown()
        except Exception:
            pass
