"""Energy metering: one interface (``EnergyMeter`` windows over ``Source``s), several backends.

- ``base``: ``Source`` (one component's cumulative joules, with its method and whether it is measured),
  ``MeasuringSource`` (a counter that falls back to an estimate mid-run), ``EnergyMeter`` (named windows),
  ``Measurement``, ``Ledger`` (phases, epochs, the result's energy section), ``J_PER_KWH``
- ``nvml``/``nvml_devices``: GPU energy counter or integrated power; ``rapl``: CPU/DRAM counters;
  ``estimate``: labelled TDP × utilisation and per-thread models; ``attribution``: the job's share of a
  shared machine; ``select``: ``build_meter``, the best source per component; ``idle``; ``layers``

Layer: the bottom but for ``results`` and ``config``: it imports nothing else of powertrain.
"""

from powertrain.energy.base import ComponentEnergy, EnergyMeter, Ledger, Measurement, Source
from powertrain.energy.select import build_meter

__all__ = ["ComponentEnergy", "EnergyMeter", "Ledger", "Measurement", "Source", "build_meter"]
