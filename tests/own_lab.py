"""A researcher's own code, outside src/powertrain, written into a temp dir by the tests that train it.

``write_lab(root)`` lays out what a user brings:

- ``root/lab/mylab_pt/``: a package on PYTHONPATH with models (``nets``), datasets (``data``), a training
  step and evaluation (``train``) and a plug-in module that registers names (``plugin``);
- ``root/lab/conf/``: a config dir of their own for ``hydra.searchpath`` (``model=my_net``, ``dataset=my_data``);
- ``root/site/``: an "installed" package ``mylab_ep`` with a real ``.dist-info/entry_points.txt`` declaring
  ``powertrain.models`` / ``powertrain.datasets`` entry points (found through PYTHONPATH, as site-packages).
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

NETS = '''
import torch
from torch import nn


class MyNet(nn.Module):
    """A small CNN: conv_blocks 3x3 conv layers, then one hidden linear layer."""

    def __init__(self, in_channels, image_size, num_classes, width=32, conv_blocks=1):
        super().__init__()
        layers, c = [], in_channels
        for _ in range(conv_blocks):
            layers += [nn.Conv2d(c, 8, 3, padding=1), nn.ReLU()]
            c = 8
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Sequential(nn.Linear(c * image_size * image_size, width), nn.ReLU(),
                                  nn.Linear(width, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


class TabNet(nn.Module):
    def __init__(self, in_features, num_classes, width=32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, num_classes))

    def forward(self, x):
        return self.net(x)


class Regressor(nn.Module):
    """One real-valued output per sample (a regression: the default cross-entropy cannot train it)."""

    def __init__(self, in_features, width=32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)
'''

DATA = '''
import torch
from torch.utils.data import Dataset, TensorDataset


def images(n=512, n_classes=4, side=8, seed=0):
    """Class patterns plus noise, as small tensors: (train, test) TensorDatasets of (1 x side x side, label)."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(n_classes, 1, side, side, generator=g)
    y = torch.randint(0, n_classes, (n,), generator=g)
    x = patterns[y] + 0.5 * torch.randn(n, 1, side, side, generator=g)
    k = n * 3 // 4
    return TensorDataset(x[:k], y[:k]), TensorDataset(x[k:], y[k:])


class Points(Dataset):
    """A map-style dataset (not tensors): batches go through a DataLoader with workers."""

    num_classes = 3

    def __init__(self, n, features, seed):
        g = torch.Generator().manual_seed(seed)
        centers = torch.randn(3, features, generator=torch.Generator().manual_seed(99)) * 3
        self.y = torch.randint(0, 3, (n,), generator=g)
        self.x = centers[self.y] + torch.randn(n, features, generator=g)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


class Splits:
    def __init__(self, features):
        self.train, self.test = Points(384, features, 0), Points(128, features, 1)


def points(features=6):
    """One object with .train and .test (and the class count on the datasets)."""
    return Splits(features)


def regression(n=768, features=5, noise_std=0.05, seed=0):
    """y = x . w + noise: float targets."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(features, generator=g)
    x = torch.randn(n, features, generator=g)
    y = x @ w + noise_std * torch.randn(n, generator=g)
    k = n * 3 // 4
    return {"train": TensorDataset(x[:k], y[:k]), "test": TensorDataset(x[k:], y[k:])}


def strings():
    """Wrong types: samples of text."""
    return [("a cat", 0), ("a dog", 1)], [("a cow", 0)]
'''

TRAIN = '''
import torch
import torch.nn.functional as F


def mse(model, batch):
    x, y = batch
    return F.mse_loss(model(x), y)


def r2(model, batches):
    """Coefficient of determination over the test split (accuracy-like: 1 is perfect)."""
    se, ys = 0.0, []
    for x, y in batches:
        se = se + ((model(x) - y) ** 2).sum()
        ys.append(y)
    y = torch.cat(ys)
    return {"r2": 1 - se / ((y - y.mean()) ** 2).sum(), "mse": se / len(y)}


def vector_loss(model, batch):
    x, y = batch
    return (model(x) - y) ** 2  # not reduced to a scalar: refused
'''

PLUGIN = '''
import powertrain
from mylab_pt import data, nets


@powertrain.register_model("lab_net")
def lab_net(in_channels, image_size, num_classes, width=16):
    return nets.MyNet(in_channels, image_size, num_classes, width)


@powertrain.register_dataset("lab_images")
def lab_images(n_classes=4):
    return data.images(n_classes=n_classes)
'''

EP_NETS = '''
from torch import nn


class EpNet(nn.Module):
    def __init__(self, in_features, num_classes, hidden=32):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.net(x)
'''

def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())


def write_lab(root: Path) -> dict[str, Path]:
    """Write the user's package, config dir and installed entry-point package under ``root``."""
    lab, site = root / "lab", root / "site"
    write(lab / "mylab_pt" / "__init__.py", "")
    write(lab / "mylab_pt" / "nets.py", NETS)
    write(lab / "mylab_pt" / "data.py", DATA)
    write(lab / "mylab_pt" / "train.py", TRAIN)
    write(lab / "mylab_pt" / "plugin.py", PLUGIN)
    write(lab / "conf" / "model" / "my_net.yaml", "_target_: mylab_pt.nets.MyNet\nwidth: 16\n")
    write(lab / "conf" / "dataset" / "my_data.yaml", "_target_: mylab_pt.data.images\nn_classes: 4\n")
    write(site / "mylab_ep" / "__init__.py", "")
    write(site / "mylab_ep" / "nets.py", EP_NETS)
    write(site / "mylab_ep" / "data.py", "from mylab_ep._impl import images\n\n\ndef make(n_classes=4):\n"
          "    return images(n_classes=n_classes)\n")
    write(site / "mylab_ep" / "_impl.py", DATA)
    info = site / "mylab_ep-0.1.dist-info"
    write(info / "METADATA", "Metadata-Version: 2.1\nName: mylab-ep\nVersion: 0.1\n")
    write(info / "entry_points.txt", "[powertrain.models]\nep_net = mylab_ep.nets:EpNet\n\n"
          "[powertrain.datasets]\nep_data = mylab_ep.data:make\n")
    write(info / "RECORD", "")
    return {"lab": lab, "site": site, "conf": lab / "conf"}


def lab_env(paths: dict[str, Path], **extra: str) -> dict[str, str]:
    """The environment of a process that finds the user's code: both dirs on PYTHONPATH."""
    pythonpath = os.pathsep.join([str(paths["lab"]), str(paths["site"]), os.environ.get("PYTHONPATH", "")])
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(PYTHONPATH=pythonpath.rstrip(os.pathsep), **extra)
    return env


def on_sys_path(paths: dict[str, Path]) -> None:
    """Make the lab importable in this (pytest) process too, for in-process tests."""
    for p in (str(paths["lab"]), str(paths["site"])):
        if p not in sys.path:
            sys.path.insert(0, p)
