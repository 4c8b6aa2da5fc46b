"""powertrain's default Hydra sweeper (``hydra/sweeper=powertrain``): the basic sweeper with repeats.

Hydra finds it by scanning the ``hydra_plugins`` namespace package; ``config.py`` registers the config
group entry. What it adds to the basic sweeper, and why, is in ``powertrain.launch.repeats``.
"""
