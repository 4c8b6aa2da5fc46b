"""Registers ``hydra/sweeper=powertrain`` in Hydra's ConfigStore (imported during Hydra's plugin scan)."""

from hydra.core.config_store import ConfigStore

from powertrain.launch.repeats import SWEEPER, RepeatSweeperConf

ConfigStore.instance().store(group="hydra/sweeper", name=SWEEPER, node=RepeatSweeperConf, provider="powertrain")
