"""The meter layer: every energy figure in the study comes from here, labelled with its
``source`` and ``kind`` (measured or estimated). See docs/energy.md.

``from energy import open_meters`` is the entry point for in-process windows; the sidecar is
``python -m energy.sidecar``. Importing this package is cheap: meters (NVML, CodeCarbon, …) are
imported only when selected.
"""

from energy.base import EnergyRecord, Meter, Reading
from energy.window import MeterSession, open_meters

__all__ = ["EnergyRecord", "Meter", "MeterSession", "Reading", "open_meters"]
