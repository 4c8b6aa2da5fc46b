"""Registers ``hydra/sweeper=optuna`` in Hydra's ConfigStore (imported during Hydra's plugin scan)."""

from hydra.core.config_store import ConfigStore

from powertrain.launch.search import OptunaSweeperConf

ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="powertrain")
