"""``powertrain --help``: the options a user can choose and the top-level keys, generated from conf/ and
the schema.

Hydra's own ``$APP_CONFIG_GROUPS`` lists every option of a group, the ConfigStore's schema nodes
(``base_model``, ``base_study_*``) among them, and ``$CONFIG`` prints the whole composed config. Our
``hydra.help.template`` (conf/config.yaml) calls the ``powertrain_help`` resolver instead: the YAML files
under conf/<group>/ (schema nodes are not files), the choice in effect marked ``*``, and the top-level keys
with their types and the defaults as composed (so ``powertrain batch_size=8 --help`` shows 8).
"""

from __future__ import annotations

import dataclasses
from typing import Any

RESOLVER = "powertrain_help"


def register_resolver() -> None:
    """Make ``${powertrain_help:}`` resolvable (idempotent, cheap: the text is built only for --help)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, _resolve)


def _resolve(*, _root_: Any) -> str:
    return help_text(_root_)


def _value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def group_lines(choices: Any = None) -> list[str]:
    """``group: a, b*, c`` per choosable group: its YAML files, the option in effect marked ``*``."""
    from powertrain.config import CHOICE_GROUPS
    from powertrain.config.paths import group_options

    lines = []
    for group in CHOICE_GROUPS:
        options = group_options(group)
        chosen = None if choices is None else choices.get(group)
        marked = [f"{o}*" if o == chosen else o for o in options]
        lines.append(f"{group}: {', '.join(marked)}")
    return lines


def key_lines(cfg: Any = None) -> list[str]:
    """The top-level keys of the schema: ``name  type  default`` for plain values, and each section
    (``energy.*``) with its keys; defaults read from the composed ``cfg`` where given."""
    from powertrain.config import GROUPS, RunConfig
    from powertrain.config.errors import type_name

    plain, sections = [], []
    for f in dataclasses.fields(RunConfig):
        if f.name in GROUPS:
            continue  # chosen above (group=option), its keys: powertrain --cfg job
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            keys = [g.name for g in dataclasses.fields(f.default_factory)]  # type: ignore[arg-type]
            sections.append(f"  {f.name}.*: {', '.join(keys)}")
            continue
        declared = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        default = declared if cfg is None else cfg.get(f.name, declared)
        plain.append((f.name, type_name(str(f.type)), _value(default)))
    width = max(len(n) for n, _, _ in plain)
    twidth = max(len(t) for _, t, _ in plain)
    return [f"  {n.ljust(width)}  {t.ljust(twidth)}  {d}" for n, t, d in plain] + ["", *sections]


def help_text(cfg: Any = None) -> str:
    """The whole --help text (Hydra then substitutes ``$FLAGS_HELP``-style names: ``$`` is escaped)."""
    import hydra

    from powertrain import __version__

    choices = None
    if cfg is not None:
        try:
            choices = cfg.hydra.runtime.choices
        except Exception:  # composed without Hydra's node (a test): no choice to mark
            choices = None
    body = [
        f"powertrain {__version__}: train a composed PyTorch setup and account its energy and carbon "
        f"(Hydra {hydra.__version__})",
        "",
        "  powertrain [group=option ...] [key=value ...]   one run",
        "  powertrain -m key=a,b [key=c,d ...]              a sweep (every combination)",
        "  powertrain experiment=<preset>                   a study (several runs, one report)",
        "  powertrain report DIR                            re-write a sweep's or a study's report",
        "",
        "== Groups: pick one option each (group=option; * = in effect) ==",
        *group_lines(choices),
        "",
        *names_help().splitlines(),
        "== Top-level keys (key=value): type and default ==",
        *key_lines(None if cfg is None else _plain(cfg)),
        "",
        "Every key with its value: powertrain --cfg job [overrides]. Hydra's flags (--multirun, --cfg, --info,",
        "--shell-completion, --config-dir, ...): powertrain --hydra-help. Documentation: README.md.",
    ]
    return "\n".join(body).replace("$", "$$")


def _plain(cfg: Any) -> Any:
    """The composed config without the hydra node, as plain values (a dict), for the defaults column."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        return {k: OmegaConf.select(cfg, k) for k in cfg.keys() if k != "hydra" and not OmegaConf.is_config(cfg[k])}
    return cfg


def names_help() -> str:
    """The ``--help`` section naming what ``model.family`` and ``dataset.name`` take, shipped and the user's
    own (where each comes from), and the keys for code of one's own."""
    from powertrain.data import registered_datasets
    from powertrain.models import registered_models

    lines = ["== Models and datasets by name ==", ""]
    for key, registry in (("model.family", registered_models()), ("dataset.name", registered_datasets())):
        shipped = [n for n in registry if not registry.meta.get(n, {}).get("own")]
        own = [f"{n} ({m.get('entry_point') or 'registered by ' + str(m.get('module'))})"
               for n, m in ((n, registry.meta.get(n, {})) for n in registry) if m.get("own")]
        lines.append(f"{key}: {', '.join(shipped)}")
        how = "register_model" if key.startswith("model") else "register_dataset"
        lines.append(f"  your own: {', '.join(own) if own else f'none found ({how}, entry points, plugins)'}")
    lines += ["", "Your own code: model._target_=mylab.nets.MyNet, dataset._target_=mylab.data.make, "
              "task.loss=..., task.evaluate=..., plugins=[mylab.nets] (README: Your own model, data and loop)", "", ""]
    return "\n".join(lines)
