"""powertrain: Hydra-configured training that says what it cost in joules and carbon."""

__version__ = "0.1.0"
