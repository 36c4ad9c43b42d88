"""NVIDIA GPUs through NVML (``pynvml`` from the ``nvidia-ml-py`` package, imported lazily).

Per GPU (device ``gpu<i>``):

* Volta and newer expose ``nvmlDeviceGetTotalEnergyConsumption`` — a millijoule counter since
  the driver was loaded. We report it as ``energy_j`` (source ``nvml-counter``) and integrate
  its deltas: on Ampere and newer ``nvmlDeviceGetPowerUsage`` is a ~1 s moving average, so
  integrating sampled power would smear short windows, while the counter is exact.
* Older GPUs: ``nvmlDeviceGetPowerUsage`` (milliwatts) sampled and integrated (source
  ``nvml-power``).

A counter that goes backwards (driver reload) is detected by :mod:`energy.integrate` and never
summed through. Both sources are ``kind: measured`` (board power as the driver reports it).
"""

from __future__ import annotations

import time
from typing import Any

from energy.base import Reading
from energy.config import MeterConfig


def _pynvml() -> Any:
    import pynvml  # lazy: only this meter needs NVML

    return pynvml


class NvmlMeter:
    """All GPUs NVML can see."""

    name = "nvml"
    kind = "measured"

    @staticmethod
    def probe(config: MeterConfig) -> str | None:
        """Reason NVML cannot be used here, or ``None``."""
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

    def __init__(self, config: MeterConfig | None = None) -> None:
        self._nv = _pynvml()
        self._nv.nvmlInit()
        self._handles: list[Any] = []
        self._has_counter: list[bool] = []
        self._names: list[str] = []
        for i in range(self._nv.nvmlDeviceGetCount()):
            h = self._nv.nvmlDeviceGetHandleByIndex(i)
            self._handles.append(h)
            name = self._nv.nvmlDeviceGetName(h)
            self._names.append(name.decode() if isinstance(name, bytes) else str(name))
            try:
                self._nv.nvmlDeviceGetTotalEnergyConsumption(h)
                self._has_counter.append(True)
            except self._nv.NVMLError:
                self._has_counter.append(False)
        self.source = "nvml-counter" if all(self._has_counter) else "nvml-power"
        try:
            drv = self._nv.nvmlSystemGetDriverVersion()
            self._driver = drv.decode() if isinstance(drv, bytes) else str(drv)
        except Exception:
            self._driver = None

    def read(self) -> list[Reading]:
        """One reading per GPU: counter (J) where supported, plus instantaneous power (W)."""
        out: list[Reading] = []
        for i, h in enumerate(self._handles):
            t = time.time()
            power_w = self._nv.nvmlDeviceGetPowerUsage(h) / 1000.0
            energy_j = None
            if self._has_counter[i]:
                energy_j = self._nv.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0
            out.append(
                Reading(
                    t_unix_s=t,
                    device=f"gpu{i}",
                    power_w=power_w,
                    energy_j=energy_j,
                    source="nvml-counter" if self._has_counter[i] else "nvml-power",
                    kind=self.kind,
                )
            )
        return out

    def devices(self) -> list[str]:
        return [f"gpu{i}" for i in range(len(self._handles))]

    def describe(self) -> dict[str, Any]:
        return {
            "meter": self.name,
            "source": self.source,
            "kind": self.kind,
            "driver": self._driver,
            "devices": {
                f"gpu{i}": {
                    "name": self._names[i],
                    "source": "nvml-counter" if self._has_counter[i] else "nvml-power",
                    "kind": self.kind,
                }
                for i in range(len(self._handles))
            },
        }

    def close(self) -> None:
        try:
            self._nv.nvmlShutdown()
        except Exception:
            pass
