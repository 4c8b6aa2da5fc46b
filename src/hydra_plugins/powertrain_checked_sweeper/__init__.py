"""powertrain's checked grid sweeper for Hydra (``hydra/sweeper=checked``, conf/hydra/sweeper/checked.yaml).

Hydra only instantiates sweepers from the ``hydra_plugins`` namespace package; the checks live in
``powertrain.launch.preflight``.
"""
