"""CodeCarbon's offline tracker as an independent cross-check (device ``codecarbon``).

CodeCarbon is not a second measurement of the same thing: without RAPL it models the CPU from
its TDP table and load (``cpu_load`` mode) and always models RAM from its size, so its figure is
labelled ``kind: estimated`` unless every component it tracks is read from hardware (RAPL/NVML).
Its series is reported in ``EnergyRecord.cross_checks`` and never summed into ``gross_j``.

It runs with ``OfflineEmissionsTracker(country_iso_code=…)`` (default FRA), no output files
(``output_methods=[]`` — nothing lands in the repository root), its logger at ERROR, and its own
scheduler effectively off: every :meth:`read` asks it for a fresh measurement, so its samples
line up with ours. (``_measure_power_and_energy`` and ``_total_energy`` are CodeCarbon internals,
pinned by requirements; a change there makes this meter fail loudly at start, not silently.)
"""

from __future__ import annotations

import logging
import tempfile
import time
from typing import Any

from energy.base import J_PER_KWH, MeterBase, Reading
from energy.config import MeterConfig

# CodeCarbon CPU modes that read hardware counters rather than a TDP model.
_MEASURED_CPU_MODES = {"intel_rapl", "intel_power_gadget", "apple_powermetrics"}


class CodecarbonMeter(MeterBase, name="codecarbon"):
    """One ``codecarbon`` device: CodeCarbon's cumulative energy (J) and current power (W)."""

    @staticmethod
    def probe(config: MeterConfig) -> str | None:
        import importlib.util

        if importlib.util.find_spec("codecarbon") is None:
            return "codecarbon is not installed (pip install codecarbon)"
        return None

    def __init__(self, config: MeterConfig | None = None) -> None:
        config = config or MeterConfig()
        import codecarbon
        from codecarbon import OfflineEmissionsTracker

        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        out_dir = config.codecarbon_output_dir
        if out_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="codecarbon-")
            out_dir = self._tmp.name
        from energy.carbon import grid_intensity_info

        # Same country codes as energy.carbon; an unknown one fails here with the known list
        # instead of CodeCarbon silently falling back to the world average.
        self.country_iso_code = grid_intensity_info(config.country_iso_code)["country"]
        self._tracker = OfflineEmissionsTracker(
            country_iso_code=self.country_iso_code,
            output_methods=[],
            output_dir=out_dir,
            log_level="error",
            measure_power_secs=3600,  # we drive measurements from read()
            allow_multiple_runs=True,
            tracking_mode="machine",
            project_name="green-pipeline-study",
        )
        self._tracker.start()
        try:
            self._version = getattr(codecarbon, "__version__", None)
            self._components = self._component_modes()
            self.kind = (
                "measured"
                if self._components and all(m["measured"] for m in self._components.values())
                else "estimated"
            )
            # Fail at start, not mid-run, if the internals we rely on moved.
            self._tracker._measure_power_and_energy()
            _ = self._tracker._total_energy.kWh
        except BaseException:
            self.close()  # the caller never gets this object, so stop the tracker here
            raise

    def _component_modes(self) -> dict[str, dict[str, Any]]:
        comps: dict[str, dict[str, Any]] = {}
        for hw in getattr(self._tracker, "_hardware", []):
            kind = type(hw).__name__
            if kind == "CPU":
                mode = getattr(hw, "_mode", None)
                comps["cpu"] = {
                    "mode": mode,
                    "model": getattr(hw, "_model", None),
                    "tdp_w": getattr(hw, "_tdp", None),
                    "measured": mode in _MEASURED_CPU_MODES,
                }
            elif kind == "GPU":
                comps["gpu"] = {"mode": "nvml", "measured": True}
            elif kind == "RAM":
                # CodeCarbon sizes RAM power from installed memory: a model, not a reading.
                comps["ram"] = {"mode": "size-model", "measured": False}
            else:
                comps[kind.lower()] = {"mode": None, "measured": False}
        return comps

    def read(self) -> list[Reading]:
        """CodeCarbon's total so far (cumulative J) and its current total power (W)."""
        tr = self._tracker
        tr._measure_power_and_energy()
        t = time.time()
        p_kw = 0.0
        for attr in ("_cpu_power", "_gpu_power", "_ram_power"):
            pw = getattr(tr, attr, None)
            if pw is not None:
                p_kw += pw.kW
        return [
            Reading(t, "codecarbon", p_kw * 1000.0, tr._total_energy.kWh * J_PER_KWH, self.source, self.kind)
        ]

    def devices(self) -> list[str]:
        return ["codecarbon"]

    def details(self) -> dict[str, Any]:
        return {"role": "cross-check (never summed into gross_j)", "codecarbon_version": self._version,
                "country_iso_code": self.country_iso_code, "components": self._components}

    def close(self) -> None:
        try:
            self._tracker.stop()
        except Exception:
            pass
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
