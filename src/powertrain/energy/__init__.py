"""Energy metering: one interface (``EnergyMeter`` windows over ``Source``s), several backends."""

from powertrain.energy.base import ComponentEnergy, EnergyMeter, Ledger, Measurement, Source
from powertrain.energy.select import build_meter

__all__ = ["ComponentEnergy", "EnergyMeter", "Ledger", "Measurement", "Source", "build_meter"]
