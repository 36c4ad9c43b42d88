"""CPU package and DRAM energy from Linux powercap RAPL (``/sys/class/powercap/intel-rapl:*``).

Each ``package-N`` zone becomes device ``cpu-package-N`` and each ``dram`` sub-zone ``dram-N``
(``core``/``uncore`` sub-zones are inside the package figure, so they are not added again).
``energy_uj`` is a microjoule counter that wraps at ``max_energy_range_uj``; this meter unwraps
it (one wrap per sampling interval at most — at 0.1 s that holds for any real CPU), so the
emitted ``energy_j`` is monotonic and :mod:`energy.integrate` sums plain deltas.

Since Linux 5.10 ``energy_uj`` is readable by root only (CVE-2020-8694); an unreadable counter
makes the meter unavailable with that reason, not an error.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from energy.base import MeterBase, Reading
from energy.config import MeterConfig

_ZONE_RE = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")


@dataclass
class _Domain:
    device: str
    path: Path
    max_range_uj: int
    last_raw_uj: int | None = None
    offset_uj: int = 0
    wraps: int = 0


def _discover(root: Path) -> list[tuple[str, Path]]:
    """``[(device, zone_dir), …]`` for package and DRAM zones under ``root``."""
    out: list[tuple[str, Path]] = []
    if not root.is_dir():
        return out
    for zone in sorted(root.iterdir()):
        m = _ZONE_RE.match(zone.name)
        if not m:
            continue
        try:
            name = (zone / "name").read_text().strip()
        except OSError:
            continue
        pkg = m.group(1)
        if name.startswith("package"):
            out.append((f"cpu-{name}", zone))
        elif name == "dram":
            out.append((f"dram-{pkg}", zone))
    return out


class RaplMeter(MeterBase, name="rapl", kind="measured"):
    """Package and DRAM RAPL domains (``kind: measured``, ``source: rapl``)."""

    @staticmethod
    def probe(config: MeterConfig) -> str | None:
        """Reason RAPL cannot be read here, or ``None``."""
        root = Path(config.rapl_root)
        if not root.is_dir():
            return f"{root} does not exist (no powercap driver, e.g. a VM or container)"
        zones = _discover(root)
        if not zones:
            return f"no intel-rapl package/dram zones under {root}"
        try:
            int((zones[0][1] / "energy_uj").read_text())
        except PermissionError:
            return (
                f"{zones[0][1] / 'energy_uj'} is not readable (root only since Linux 5.10, "
                "CVE-2020-8694; run as root or chmod it)"
            )
        except (OSError, ValueError) as e:
            return f"cannot read {zones[0][1] / 'energy_uj'}: {e}"
        return None

    def __init__(self, config: MeterConfig | None = None) -> None:
        config = config or MeterConfig()
        self._root = Path(config.rapl_root)
        self._domains: list[_Domain] = []
        for device, zone in _discover(self._root):
            try:
                max_uj = int((zone / "max_energy_range_uj").read_text())
            except (OSError, ValueError):
                max_uj = 2**32  # documented default width when the file is missing
            self._domains.append(_Domain(device=device, path=zone / "energy_uj", max_range_uj=max_uj))
        if not self._domains:
            raise RuntimeError(f"no RAPL package/dram zones under {self._root}")

    def read(self) -> list[Reading]:
        """One reading per domain with the unwrapped cumulative ``energy_j``."""
        out: list[Reading] = []
        for d in self._domains:
            raw = int(d.path.read_text())
            t = time.time()
            if d.last_raw_uj is not None and raw < d.last_raw_uj:
                # The counter wrapped past max_energy_range_uj: carry the range over.
                d.offset_uj += d.max_range_uj
                d.wraps += 1
            d.last_raw_uj = raw
            out.append(
                Reading(
                    t_unix_s=t,
                    device=d.device,
                    power_w=None,
                    energy_j=(raw + d.offset_uj) / 1e6,
                    source=self.source,
                    kind=self.kind,
                )
            )
        return out

    def devices(self) -> list[str]:
        return [d.device for d in self._domains]

    def details(self) -> dict[str, Any]:
        return {"root": str(self._root)}

    def device_table(self) -> dict[str, dict[str, Any]]:
        return {d.device: {"source": self.source, "kind": self.kind, "max_energy_range_uj": d.max_range_uj,
                           "wraps_unwrapped": d.wraps} for d in self._domains}
