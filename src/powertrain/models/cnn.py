"""SimpleCNN of the seed paper (Yarally et al. 2023)."""

from __future__ import annotations

import torch
from torch import nn

from powertrain.config import ConfigError, ModelConfig
from powertrain.models import register_builder
from powertrain.models.dense import poly_widths, stack


class SimpleCNN(nn.Module):
    """M conv blocks (3×3 conv with C·3^(d+1) channels, BatchNorm, optional ReLU, 2×2 max-pool), then the
    DensePolyNN linear layers whose widths come from the *input* size F, the first taking the conv output.
    ``features`` / ``head`` split the network for fine-tuning and multitask heads."""

    def __init__(self, shape: tuple[int, int, int], num_classes: int, conv_blocks: int = 2,
                 linear_layers: int = 3, relu: bool = True, dropout: float = 0.0):
        super().__init__()
        c, h, w = shape
        if min(h, w) >> conv_blocks < 1:
            raise ConfigError("model.conv_blocks", conv_blocks,
                              f"at most {min(h, w).bit_length() - 1} for {h}×{w} inputs (each block halves the size)")
        blocks: list[nn.Module] = []
        in_ch = c
        for d in range(conv_blocks):
            out_ch = c * 3 ** (d + 1)
            blocks += [nn.Conv2d(in_ch, out_ch, 3, stride=1, padding=1), nn.BatchNorm2d(out_ch)]
            if relu:
                blocks.append(nn.ReLU(inplace=True))
            blocks.append(nn.MaxPool2d(2))
            in_ch = out_ch
        self.features = nn.Sequential(*blocks, nn.Flatten())
        conv_out = in_ch * (h >> conv_blocks) * (w >> conv_blocks)
        self.head = stack(conv_out, poly_widths(c * h * w, c, linear_layers), num_classes, relu, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_builder("simple_cnn")
def simple_cnn(cfg: ModelConfig, shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    return SimpleCNN(shape, num_classes, cfg.conv_blocks, cfg.linear_layers, cfg.relu, cfg.dropout)
