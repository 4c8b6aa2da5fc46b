"""powertrain: Hydra-configured training that says what it cost in joules and carbon.

The public API, each name imported only when first used (``import powertrain`` stays cheap):

- ``Meter``: energy and carbon windows around any PyTorch code (``powertrain.meter``)
- ``run_job(*overrides)``: compose one run as the CLI would, train it, return its result dict
- ``register_model`` / ``register_dataset``: add the user's own model or dataset callable under a name
- ``load_sweep``: every result.json under a sweep or study directory as a DataFrame
"""

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> (module, attribute): resolved on first access (pandas, torch, Hydra stay unimported)
_LAZY = {
    "Meter": ("powertrain.meter", "Meter"),
    "Measurement": ("powertrain.energy.base", "Measurement"),
    "run_job": ("powertrain.launch.job", "run_job"),
    "register_model": ("powertrain.models", "register_model"),
    "register_dataset": ("powertrain.data", "register_dataset"),
    "load_sweep": ("powertrain.report.load", "load_sweep"),
}
__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if name == "report":  # ``powertrain.report.factors(df)`` straight after ``import powertrain`` (light)
        return importlib.import_module("powertrain.report")
    raise AttributeError(f"module 'powertrain' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
