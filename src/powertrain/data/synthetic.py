"""Synthetic images with a configurable difficulty, generated in memory from a fixed seed.

Each class is one smooth random pattern. A sample is its class pattern, moved by a random offset
(``max_shift_px``), on a smooth random background (``clutter``), plus per-pixel noise (``noise``); a share of
the training labels can be replaced by random classes (``label_noise``). The knobs act differently:

- ``noise`` is white: a network averages it away over many pixels, so alone it keeps the task easy.
- ``clutter`` lives at the patterns' own spatial scale, so it does not average away: it sets how much the
  classes overlap, and with it the accuracy a model can reach at all.
- ``max_shift_px`` puts the pattern anywhere within that many pixels: convolutions and pooling see it
  wherever it is, a dense network has to learn every position, and all need more steps to get there.
- ``label_noise`` slows and caps the fit of the training split; the test split keeps its true labels, so a
  target accuracy stays reachable.

The generator seed is fixed (not the run seed), so runs with different seeds train and score on the same data.
With every knob but ``noise`` at 0 the samples are those of earlier powertrain versions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from powertrain.config import ConfigError, DatasetConfig
from powertrain.data import register_loader

GENERATOR_SEED = 1234


def _smooth(n: int, channels: int, size: int, g: torch.Generator) -> torch.Tensor:
    """``n`` smooth random images with unit standard deviation each: Gaussian values on a coarse grid
    (a quarter of the side), upsampled bilinearly."""
    coarse = max(2, size // 4)
    x = torch.randn(n, channels, coarse, coarse, generator=g)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x / x.flatten(1).std(dim=1).view(n, 1, 1, 1)


def _shifted(patterns: torch.Tensor, y: torch.Tensor, max_shift: int, g: torch.Generator) -> torch.Tensor:
    """``patterns[y]``, each moved by its own random offset in [-max_shift, max_shift]² px (zero-filled)."""
    n, s = y.shape[0], patterns.shape[-1]
    padded = F.pad(patterns, (max_shift,) * 4)
    offset = torch.randint(0, 2 * max_shift + 1, (2, n), generator=g)
    rows = torch.arange(s)[None] + offset[0, :, None]  # n×s: the source rows of each sample's window
    cols = torch.arange(s)[None] + offset[1, :, None]
    # one gather for all samples: result n×s×s×C (advanced indices first), back to n×C×s×s
    return padded[y[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


@register_loader("synthetic")
def synthetic(cfg: DatasetConfig):
    """Deterministic, learnable images whose difficulty is set by ``noise``, ``clutter``, ``max_shift_px`` and
    ``label_noise`` (see the module docstring). Shape: ``channels``×``image_size``², ``num_classes`` classes.
    """
    c, s, k = cfg.channels, cfg.image_size, cfg.num_classes
    if cfg.max_shift_px >= s:
        raise ConfigError("dataset.max_shift_px", cfg.max_shift_px,
                          f"an integer in [0, {s - 1}] for {s}×{s} images (dataset.image_size={s})")
    g = torch.Generator().manual_seed(GENERATOR_SEED)
    # the label flips draw from their own stream, so label_noise changes the training labels and nothing else
    g_labels = torch.Generator().manual_seed(GENERATOR_SEED + 1)
    protos = _smooth(k, c, s, g)

    def make(n: int, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % k
        y = y[torch.randperm(n, generator=g)]
        x = _shifted(protos, y, cfg.max_shift_px, g) if cfg.max_shift_px else protos[y]
        if cfg.clutter:
            x = x + cfg.clutter * _smooth(n, c, s, g)
        x = x + cfg.noise * torch.randn(n, c, s, s, generator=g)
        if train and cfg.label_noise:
            flip = torch.rand(n, generator=g_labels) < cfg.label_noise
            y = torch.where(flip, torch.randint(0, k, (n,), generator=g_labels), y)
        return x, y

    x_tr, y_tr = make(cfg.train_size, train=True)
    x_te, y_te = make(cfg.test_size, train=False)
    return x_tr, y_tr, x_te, y_te, k
