"""Carbon: grid intensity from packaged tables (``intensity``) and a run's operational and embodied
carbon (``account``). Offline by design: no live API, no IP geolocation.

Layer: imports ``config`` and ``energy.base`` (units) only.
"""

from powertrain.carbon.account import TYPICAL_PUE, account, device_count, embodied_g, operational_g
from powertrain.carbon.intensity import (
    OVERRIDE_SOURCE,
    WORLD_AVERAGE_G_PER_KWH,
    WORLD_AVERAGE_SOURCE,
    Intensity,
    hint,
    region_problem,
    resolve,
    table,
)

__all__ = ["OVERRIDE_SOURCE", "TYPICAL_PUE", "WORLD_AVERAGE_G_PER_KWH", "WORLD_AVERAGE_SOURCE", "Intensity",
           "account", "device_count", "embodied_g", "hint", "operational_g", "region_problem", "resolve", "table"]
