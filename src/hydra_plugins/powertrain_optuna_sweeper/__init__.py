"""powertrain's Optuna sweeper for Hydra (``hydra/sweeper=optuna``), on current Optuna (>= 4).

Hydra finds it by scanning the ``hydra_plugins`` namespace package; ``config.py`` registers the config
group entry. The search logic lives in ``powertrain.launch.search``.
"""
