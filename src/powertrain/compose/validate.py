"""The one place a configuration is checked, and where the schemas are registered with Hydra.

Sits above config (the schema), checks (range checks), the registries (models, data, optim, paradigms,
studies) and carbon (region tables): nothing below imports this module, so there is no cycle. The names
a key allows come from those registries, never from a hand-kept list.
"""

from __future__ import annotations

import functools
import os
from dataclasses import fields
from typing import Any, Optional

from powertrain.config import (
    GROUPS,
    DatasetConfig,
    ModelConfig,
    RunConfig,
    StudyConfig,
    data_root,
    get_dotted,
)
from powertrain.config.checks import FIELD_CHECKS, Check, check_precision, one_of, optional, run_check
from powertrain.config.errors import ConfigError, did_you_mean

__all__ = ["ConfigError", "validate", "check_value", "register_configs", "schema"]


def _region(v: Any) -> Optional[str]:
    if v is None:
        return None
    from powertrain.carbon import region_problem  # the tables live with the carbon accounting

    return region_problem(v)


@functools.lru_cache(maxsize=1)
def name_checks() -> dict[str, Check]:
    """Checks of keys that name a plug-in: the allowed names are the registries' keys."""
    from powertrain.data import registered_datasets
    from powertrain.energy.select import METER_MODES
    from powertrain.models import registered_models
    from powertrain.paradigms import PARADIGMS
    from powertrain.studies import STUDIES
    from powertrain.tracking import TRACKERS
    from powertrain.train.optim import OPTIMIZERS, SCHEDULERS

    checks: dict[str, Check] = {
        # read at each call: a plug-in imported after the first check may add names
        "model.family": lambda v: one_of(registered_models())(v),
        "dataset.name": lambda v: one_of(registered_datasets())(v),
        "model._target_": optional(_importable("model._target_")),
        "dataset._target_": optional(_importable("dataset._target_")),
        "task.loss": optional(_importable("task.loss")),
        "task.evaluate": optional(_importable("task.evaluate")),
        "optimizer.name": one_of(OPTIMIZERS),
        "optimizer.scheduler.name": one_of(SCHEDULERS),
        "paradigm.name": one_of(PARADIGMS),
        "study.driver": optional(one_of(STUDIES)),
        "energy.meter": one_of(METER_MODES),
        "tracking.name": one_of(TRACKERS),
        "carbon.region": _region,
    }
    for module in (*PARADIGMS.values(), *STUDIES.values()):
        checks.update(getattr(module, "CHECKS", {}))
    return checks


def _importable(key: str) -> Check:
    def check(v: Any) -> Optional[str]:
        from powertrain.config.targets import resolve

        resolve(key, v)  # raises the ConfigError that names the import problem
        return None

    return check


def check_value(key: str, value: Any) -> None:
    """Raise ConfigError if ``value`` is not allowed for ``key`` (keys without a check pass)."""
    run_check(key, value, FIELD_CHECKS.get(key) or name_checks().get(key))


def paradigm_schema(name: str) -> type:
    """The schema dataclass of paradigm ``name`` (ConfigError naming the paradigms that exist)."""
    from powertrain.paradigms import PARADIGMS

    check_value("paradigm.name", name)
    return PARADIGMS[name].Config


def study_schema(driver: Optional[str]) -> type:
    """The schema dataclass of study driver ``driver`` (``StudyConfig`` if it has no knobs)."""
    from powertrain.studies import STUDIES

    if driver is None:
        return StudyConfig
    check_value("study.driver", driver)
    return getattr(STUDIES[driver], "Config", StudyConfig)


def schema(paradigm: str = "scratch", driver: Optional[str] = None) -> Any:
    """The structured config (an OmegaConf node) of a run with this paradigm and study driver."""
    from omegaconf import OmegaConf

    node = OmegaConf.structured(RunConfig)
    node.paradigm = OmegaConf.structured(paradigm_schema(paradigm))
    node.study = OmegaConf.structured(study_schema(driver))
    return node


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore: ``base_config``, ``base_<group>``, ``base_<paradigm>``
    and ``base_study_<driver>``."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from powertrain.compose.help import register_resolver
    from powertrain.config.paths import register_resolvers
    from powertrain.paradigms import PARADIGMS
    from powertrain.studies import STUDIES

    register_resolvers()  # ${powertrain.unique:} in the run and sweep directories
    cs = ConfigStore.instance()
    node = OmegaConf.structured(RunConfig)
    # the keys beside model._target_ / dataset._target_ are the user's callable's arguments: those two
    # nodes take keys the schema does not name (validate gathers them into .args, or refuses them for a
    # shipped family)
    OmegaConf.set_struct(node.model, False)
    OmegaConf.set_struct(node.dataset, False)
    cs.store(name="base_config", node=node)
    for group, node in GROUPS.items():
        cs.store(group=group, name=f"base_{group}", node=node)
    for name, module in PARADIGMS.items():
        cs.store(group="paradigm", name=f"base_{name}", node=module.Config)
    for name, module in STUDIES.items():
        cs.store(group="study", name=f"base_study_{name}", node=getattr(module, "Config", StudyConfig))
    register_resolver()  # hydra.help.template (conf/config.yaml) calls it


def _as_paradigm(cfg: RunConfig) -> None:
    """In-process callers may build ``RunConfig()`` and set ``paradigm.name``: give it its own schema."""
    cls = paradigm_schema(cfg.paradigm.name)
    if not isinstance(cfg.paradigm, cls):
        values = {f.name: getattr(cfg.paradigm, f.name) for f in fields(cfg.paradigm)}
        cfg.paradigm = cls(**{k: v for k, v in values.items() if k in {f.name for f in fields(cls)}})


def validate(cfg: Any) -> RunConfig:
    """Convert a composed DictConfig (or a RunConfig) into a checked ``RunConfig``.

    Raises:
        ConfigError: on the first value that is not allowed.
    """
    from powertrain.config.targets import import_plugins

    if not isinstance(cfg, RunConfig):
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        import_plugins(list(OmegaConf.select(cfg, "plugins", default=None) or []))
        cfg, args = _without_args(cfg)
        try:
            cfg = OmegaConf.to_object(cfg)
        except OmegaConfBaseException as e:  # e.g. ${oc.env:NOPE} in a config file: one line, not a traceback
            key = str(getattr(e, "full_key", None) or "config")
            raise ConfigError.relayed(f"{key} is not allowed: a value that resolves and has the key's type "
                                      f"({str(e).splitlines()[0][:200]})", key) from None
        if not isinstance(cfg, RunConfig):  # composed without the schema (e.g. a bare dict)
            raise ConfigError("config", type(cfg).__name__, "a config composed on base_config")
        cfg.model.args = {**cfg.model.args, **args["model"]}
        cfg.dataset.args = {**cfg.dataset.args, **args["dataset"]}
    else:
        import_plugins(cfg.plugins)
    _check_own(cfg)
    _as_paradigm(cfg)
    for key in (*FIELD_CHECKS, *name_checks()):
        value = get_dotted(cfg, key, default=_ABSENT)
        if value is not _ABSENT:  # paradigm.* / study.* keys of other paradigms and drivers
            check_value(key, value)
    _check_combinations(cfg)
    from powertrain.paradigms import PARADIGMS

    _call_check(PARADIGMS[cfg.paradigm.name], cfg)
    if cfg.study.driver is not None:
        from powertrain.studies import STUDIES

        module = STUDIES[cfg.study.driver]
        expected = getattr(module, "Config", StudyConfig)
        if not isinstance(cfg.study, expected):
            raise ConfigError("study.driver", cfg.study.driver, f"a preset whose defaults start from "
                              f"/study: base_study_{cfg.study.driver} (the driver's knobs)")
        if cfg.study.part is None:  # the study's own checks; its parts set what they need themselves
            _call_check(module, cfg)
    return cfg


_ABSENT = object()


def _without_args(dcfg: Any) -> tuple[Any, dict[str, dict[str, Any]]]:
    """A copy of the composed config without the keys beside ``_target_`` in model and dataset (the
    schema has no field for them), and those keys: the arguments of the user's callables."""
    from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

    args: dict[str, dict[str, Any]] = {"model": {}, "dataset": {}}
    if not isinstance(dcfg, DictConfig):
        return dcfg, args
    dcfg = dcfg.copy()
    for group, cls in (("model", ModelConfig), ("dataset", DatasetConfig)):
        node = dcfg.get(group)
        if not isinstance(node, DictConfig):
            continue
        names = {f.name for f in fields(cls)}
        for key in [k for k in node.keys() if k not in names]:
            value = node[key]
            if isinstance(value, (DictConfig, ListConfig)):
                value = OmegaConf.to_container(value, resolve=True)
            args[group][str(key)] = value
            with open_dict(node):
                del node[key]
    return dcfg, args


def _check_own(cfg: RunConfig) -> None:
    """The user's own code, as far as it can be checked without building it: the callables import, the
    arguments beside ``_target_`` are ones they take; shipped families and datasets take no such keys."""
    from powertrain import data, models
    from powertrain.config import targets as own

    for group, node, cls, is_own in (("model", cfg.model, ModelConfig, models.is_own),
                                     ("dataset", cfg.dataset, DatasetConfig, data.is_own)):
        if not node.args:
            continue
        if not is_own(node):
            name = node.family if group == "model" else node.name
            first = next(iter(node.args))
            known = [f.name for f in fields(cls) if f.name not in ("args", "_target_")]
            raise ConfigError(f"{group}.{first}", node.args[first], f"an existing config key of {group} "
                              f"{name}{did_you_mean(first, known, quote=False)} (keys beside {group}._target_ "
                              "are arguments of your own callable)")
    for key, node, name in (("model", cfg.model, cfg.model.family), ("dataset", cfg.dataset, cfg.dataset.name)):
        if name == "target" and not node._target_:
            raise ConfigError(f"{key}._target_", None, f"an importable callable with {key}=target "
                              f"({key}._target_=mylab.{'nets.MyNet' if key == 'model' else 'data.make'})")
    if models.is_own(cfg.model):
        key, target, fn = models.own_target(cfg.model)
        own.arguments(key, target, fn, dict(cfg.model.args), dict.fromkeys((*models.SHAPE_ARGS, *models.KNOB_ARGS)),
                      "model", models.knob_fields(cfg.model))
    if data.is_own(cfg.dataset):
        from powertrain.data.own import FIELDS, dataset_fields, own_target

        key, target, fn = own_target(cfg.dataset)
        own.arguments(key, target, fn, dict(cfg.dataset.args), {}, "dataset", dataset_fields(cfg.dataset), FIELDS)
    if cfg.task.evaluate is None and cfg.task.metric != "accuracy":
        raise ConfigError("task.metric", cfg.task.metric, "accuracy with the default evaluation (a metric of "
                          "your own needs task.evaluate=mylab.train.evaluate, which returns it)")


def _call_check(module: Any, cfg: RunConfig) -> None:
    check = getattr(module, "check", None)
    if check is not None:
        check(cfg)


def _check_combinations(cfg: RunConfig) -> None:
    if cfg.hardware.device == "cpu":  # hardware.device=auto is checked once run() knows the device
        check_precision(cfg.precision, "cpu")
        from powertrain.hardware.knobs import check_gpu_run  # GPU knobs need a GPU run

        check_gpu_run(cfg.hardware, "cpu")
    from powertrain.run.distributed import (
        check as check_distributed,  # world size vs batch, paradigm, backend
    )

    check_distributed(cfg)
    if cfg.optimizer.nesterov and (cfg.optimizer.name != "sgd" or cfg.optimizer.momentum <= 0):
        raise ConfigError("optimizer.nesterov", True, "only with optimizer=sgd and momentum > 0")
    from powertrain.data import registered_datasets

    reads_root = registered_datasets().meta.get(cfg.dataset.name, {}).get("reads_root")
    if reads_root and not cfg.dataset._target_:  # e.g. torchvision's MNIST; the user's data finds its own
        root = data_root(cfg.dataset)
        if not cfg.dataset.download and not os.path.isdir(root):
            raise ConfigError(
                "dataset.root",
                root,
                "an existing directory holding the dataset files (set dataset.root or "
                "$POWERTRAIN_DATA, or dataset.download=true on a machine with network)",
            )
    if cfg.model.family == "timm" and not cfg.model._target_:
        from powertrain.models import check_timm_name

        check_timm_name(cfg.model.name)


