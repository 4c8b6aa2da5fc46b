"""powertrain: Hydra-configured training that says what it cost in joules and carbon."""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # ``powertrain.load_sweep`` for notebooks; pandas is imported only when it is called for
    if name == "load_sweep":
        from powertrain.report.load import load_sweep

        return load_sweep
    if name == "report":  # ``powertrain.report.factors(df)`` straight after ``import powertrain`` (light)
        import importlib

        return importlib.import_module("powertrain.report")
    raise AttributeError(f"module 'powertrain' has no attribute {name!r}")
