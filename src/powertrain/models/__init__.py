"""Models looked up by name: ``create_model(cfg, input_shape, num_classes)``.

One builder per family in a plain name → function registry (timm's ``create_model`` idea, without
``_target_`` strings in YAML). Families: the seed paper's ``dense_poly``, ``dense_linear`` and
``simple_cnn``, a configurable ``mlp``, and any ``timm`` model by name (timm is imported only then).

The user's own models come in by ``model._target_`` (an importable callable), ``register_model`` or an
entry point (group ``powertrain.models``); all three end in ``build_own``: the callable gets its arguments
(the keys beside ``_target_``) and those of the data's shape and the layer knobs that it names
(``OFFERED``), and the same one-line errors when it refuses them.

Layer: imports ``config`` only; ``paradigms`` build on it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from powertrain.config import ConfigError, ModelConfig
from powertrain.config import targets as own
from powertrain.config.errors import close_matches
from powertrain.config.registry import Registry

Builder = Callable[[ModelConfig, tuple[int, int, int], int], nn.Module]
MODELS: Registry[Builder] = Registry()
# powertrain's own families: builder(cfg, (C, H, W), num_classes); meta ``features=True``: F features are
# taken too, as a 1×1×F image
register_builder = MODELS.register
ENTRY_POINTS = "powertrain.models"
# what a user's model callable may name and get: the data's shape, and the layer knobs of ModelConfig
SHAPE_ARGS = ("in_channels", "image_size", "in_features", "input_shape", "num_classes")
KNOB_ARGS = ("linear_layers", "conv_blocks", "relu", "hidden_sizes", "dropout")


@register_builder("target", features=True)  # whatever the shape, the error is the missing _target_
def _target_family(cfg: ModelConfig, shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """``model=target`` names no builder: the model is ``model._target_`` (reached only when it is unset)."""
    raise ConfigError("model._target_", cfg._target_, "an importable callable with model=target "
                      "(model._target_=mylab.nets.MyNet)")


def register_model(name: str) -> Callable[[Any], Any]:
    """``@powertrain.register_model("my_net")`` on the user's model class or function: ``model.family=my_net``
    then builds it exactly as ``model._target_`` would (it gets the data's shape as the keyword arguments it
    names: in_channels, image_size, in_features, input_shape, num_classes).

    Processes that powertrain starts (DDP ranks, study parts, Slurm tasks) import only what they are told:
    put the decorated callable in a module and name it in ``plugins=[mylab.nets]`` (or
    ``$POWERTRAIN_PLUGINS``), or declare it as an entry point of your package.
    """
    # the module calling this, which DDP ranks etc. must import (it may register a class defined elsewhere)
    return MODELS.register_own(name, registered_in=sys._getframe(1).f_globals.get("__name__"))


class Resize(nn.Module):
    """Resizes a batch on the device (models that need e.g. 224×224 input from 32×32 data)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == self.size and x.shape[-2] == self.size:
            return x
        return nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)


def registered_models() -> Registry[Builder]:
    """The model registry: every shipped family (each registers itself on import), the modules named in
    ``$POWERTRAIN_PLUGINS`` and the names installed packages declare as entry points."""
    from powertrain.models import cnn, dense, timm_models  # noqa: F401

    own.import_env_plugins()
    MODELS.add_entry_points(ENTRY_POINTS)
    return MODELS


def is_own(cfg: ModelConfig) -> bool:
    """Whether ``cfg`` names the user's code (a ``_target_``, a registered or entry-point family)."""
    return bool(cfg._target_) or bool(registered_models().meta.get(cfg.family, {}).get("own"))


def create_model(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build the model for samples of ``input_shape`` ((C, H, W) images, or (F,) features) with
    ``num_classes`` outputs."""
    registered_models()
    shape = tuple(int(s) for s in input_shape)
    resize = cfg.input_size is not None and len(shape) == 3 and (cfg.input_size, cfg.input_size) != shape[1:]
    if resize:
        shape = (shape[0], cfg.input_size, cfg.input_size)
    if is_own(cfg):
        model = build_own(cfg, shape, num_classes)
    else:
        model = MODELS[cfg.family](cfg, _image_shape(cfg, shape), num_classes)
    return nn.Sequential(Resize(int(cfg.input_size)), model) if resize else model


def _image_shape(cfg: ModelConfig, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) for the shipped families: F features are a 1×1×F image (the dense models flatten it)."""
    if len(shape) == 3:
        return shape  # type: ignore[return-value]
    if len(shape) == 1 and MODELS.meta.get(cfg.family, {}).get("features"):
        return (1, 1, shape[0])
    raise ConfigError("model.family", cfg.family, f"a model for samples of shape {list(shape)}: {cfg.family} "
                      "takes C×H×W images (dense_poly, dense_linear and mlp also take F features); for other "
                      "data bring your own model (model._target_=mylab.nets.MyNet)")


def offered_args(shape: tuple[int, ...], num_classes: int) -> dict[str, Any]:
    """The data's shape as a user's model callable may name it."""
    offered: dict[str, Any] = {"input_shape": shape, "in_features": int(torch.Size(shape).numel()),
                               "num_classes": num_classes}
    if len(shape) >= 2:
        offered["in_channels"] = shape[0]
    if len(shape) == 3:
        offered["image_size"] = shape[1] if shape[1] == shape[2] else (shape[1], shape[2])
    return offered


def knob_fields(cfg: ModelConfig) -> dict[str, tuple[Any, Any]]:
    """The layer knobs as (value, default): a user's model gets those it names (see targets.arguments)."""
    return {k: (getattr(cfg, k), getattr(_DEFAULTS, k)) for k in KNOB_ARGS}


def own_target(cfg: ModelConfig) -> tuple[str, str, Callable[..., Any]]:
    """(config key, target label, callable) of a user's model: ``_target_`` or a registered name."""
    if cfg._target_:
        return "model._target_", cfg._target_, own.resolve("model._target_", cfg._target_)
    fn = registered_models().target(cfg.family)
    return "model.family", cfg.family, fn


def build_own(cfg: ModelConfig, shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build the user's model: its own arguments, plus the shape and the layer knobs it names.

    A knob the callable names always gets powertrain's value (``model.conv_blocks`` defaults to 2, as
    SimpleCNN's): studies vary the knobs (yarally_layers: 1-4 conv blocks around the default 2), and every
    variant must reach the network. A knob set away from its default for a callable that does not take it
    is refused: a study varying it would otherwise compare identical models.
    """
    key, target, fn = own_target(cfg)
    offered = {**offered_args(shape, num_classes), **{k: v for k, (v, _) in knob_fields(cfg).items()}}
    kwargs = own.arguments(key, target, fn, dict(cfg.args), offered, "model", knob_fields(cfg))
    model = own.call(key, target, fn, kwargs)
    if not isinstance(model, nn.Module):
        raise ConfigError(key, target, f"a callable that returns a torch.nn.Module (it returned a "
                          f"{type(model).__name__})")
    return model


_DEFAULTS = ModelConfig()


@functools.lru_cache(maxsize=1)
def _timm_names() -> tuple[str, ...]:
    import timm

    return tuple(timm.list_models())


def check_timm_name(name: str) -> None:
    """Raise ConfigError naming close matches if timm has no model called ``name``."""
    names = _timm_names()
    if name in names:
        return
    close = close_matches(name, names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError("model.name", name, f"a timm model name (timm.list_models()){hint}")
