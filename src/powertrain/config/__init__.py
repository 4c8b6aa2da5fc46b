"""Configuration at the bottom of the stack: the typed schema, the one error type, range checks, the
registry type and where conf/ lives. Nothing here imports the rest of powertrain, so every layer may
import it.

- ``schema``: the dataclasses Hydra composes into (``RunConfig`` and its groups), ``data_root``, ``get_dotted``
- ``errors``: ``ConfigError`` (one line: key, value, what is allowed) and the did-you-mean helper
- ``checks``: value checks by dotted key
- ``registry``: ``Registry`` (name → builder) and ``LazyModules`` (plug-in folders)
- ``paths``: ``conf_dir``, ``group_options``
- ``targets``: the user's own code: ``_target_`` paths resolved and called, plug-in modules imported

Checks that need the registries (which names exist) sit above them, in ``powertrain.compose``.
"""

from powertrain.config.errors import ConfigError, did_you_mean, one_of_message
from powertrain.config.schema import (
    CHOICE_GROUPS,
    GROUPS,
    BudgetConfig,
    CarbonConfig,
    DatasetConfig,
    DistributedConfig,
    EnergyConfig,
    HardwareConfig,
    ModelConfig,
    OptimizerConfig,
    ParadigmConfig,
    RunConfig,
    SchedulerConfig,
    StudyConfig,
    TaskConfig,
    TrackingConfig,
    data_root,
    get_dotted,
)

__all__ = ["CHOICE_GROUPS", "GROUPS", "BudgetConfig", "CarbonConfig", "ConfigError", "DatasetConfig", "DistributedConfig",
           "EnergyConfig", "HardwareConfig", "ModelConfig", "OptimizerConfig", "ParadigmConfig", "RunConfig",
           "SchedulerConfig", "StudyConfig", "TaskConfig", "TrackingConfig", "data_root", "did_you_mean", "get_dotted",
           "one_of_message"]
