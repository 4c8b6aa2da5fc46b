"""The seed paper's dense networks (Yarally et al. 2023) and a plain MLP."""

from __future__ import annotations

from torch import nn

from powertrain.config import ModelConfig
from powertrain.models import register_builder


def poly_widths(features: int, channels: int, n_linear: int) -> list[int]:
    """DensePolyNN hidden widths: layer k is max(⌊F / 2^(k+1)⌋, C), for the N−1 layers before the classifier."""
    return [max(features // 2 ** (k + 1), channels) for k in range(n_linear - 1)]


def linear_widths(features: int, n_linear: int) -> list[int]:
    """DenseLinearNN hidden widths: F − (k+1)·F/N, shrinking linearly."""
    return [int(features - (k + 1) * features / n_linear) for k in range(n_linear - 1)]


def stack(in_features: int, widths: list[int], num_classes: int, relu: bool, dropout: float = 0.0) -> nn.Sequential:
    """Linear layers of the given widths (ReLU between if ``relu``), then the classifier."""
    layers: list[nn.Module] = []
    for w in widths:
        layers.append(nn.Linear(in_features, w))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_features = w
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)


@register_builder("dense_poly", features=True)
def dense_poly(cfg: ModelConfig, shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    c, h, w = shape
    f = c * h * w
    return nn.Sequential(nn.Flatten(), stack(f, poly_widths(f, c, cfg.linear_layers), num_classes, cfg.relu, cfg.dropout))


@register_builder("dense_linear", features=True)
def dense_linear(cfg: ModelConfig, shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    c, h, w = shape
    f = c * h * w
    return nn.Sequential(nn.Flatten(), stack(f, linear_widths(f, cfg.linear_layers), num_classes, cfg.relu, cfg.dropout))


@register_builder("mlp", features=True)
def mlp(cfg: ModelConfig, shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    c, h, w = shape
    return nn.Sequential(nn.Flatten(), stack(c * h * w, list(cfg.hidden_sizes), num_classes, cfg.relu, cfg.dropout))
