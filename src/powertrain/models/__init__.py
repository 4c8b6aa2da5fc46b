"""Models looked up by name: ``create_model(cfg, input_shape, num_classes)``.

One builder per family in a plain name → function registry (timm's ``create_model`` idea, without
``_target_`` strings in YAML). Families: the seed paper's ``dense_poly``, ``dense_linear`` and
``simple_cnn``, a configurable ``mlp``, and any ``timm`` model by name (timm is imported only then).

Layer: imports ``config`` only; ``paradigms`` build on it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from powertrain.config import ConfigError, ModelConfig
from powertrain.config.errors import close_matches
from powertrain.config.registry import Registry

Builder = Callable[[ModelConfig, tuple[int, int, int], int], nn.Module]
MODELS: Registry[Builder] = Registry()
register_model = MODELS.register


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
    """The model registry with every shipped family imported (each registers itself on import)."""
    from powertrain.models import cnn, dense, timm_models  # noqa: F401

    return MODELS


def create_model(cfg: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Build the model for data of ``input_shape`` (C, H, W) with ``num_classes`` outputs."""
    registered_models()
    c, h, w = input_shape
    if cfg.input_size and (cfg.input_size, cfg.input_size) != (h, w):
        model = MODELS[cfg.family](cfg, (c, cfg.input_size, cfg.input_size), num_classes)
        return nn.Sequential(Resize(cfg.input_size), model)
    return MODELS[cfg.family](cfg, input_shape, num_classes)


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
