"""Datasets, held in memory as tensors, and the device-resident batch iterator.

Every shipped dataset is loaded by name through a small registry into ``DataSplits`` (float images
N×C×H×W, or N×F features, normalised with the training split's per-channel statistics, and int64 labels).
Everything here fits in memory, so batches are sliced from tensors on the training device instead of going
through DataLoader worker processes (the airbench approach): no per-batch host→device copies, no worker
start-up.

The user's own datasets (``dataset._target_``, ``register_dataset``, entry points ``powertrain.datasets``)
are loaded by ``data.own``: small tensor splits take the same on-device path, anything else a DataLoader
with workers (``data.loader``). ``load_data`` serves both.

Layer: imports ``config`` only; ``train`` and ``paradigms`` build on it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from powertrain.config import ConfigError, DatasetConfig
from powertrain.config.checks import FIELD_CHECKS, check_value, one_of, run_check
from powertrain.config.registry import Registry


@dataclass
class DataSplits:
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape: (C, H, W) for images, (F,) for tabular features."""
        return tuple(int(s) for s in self.x_train.shape[1:])

    def to(self, device: torch.device) -> DataSplits:
        return DataSplits(self.name, self.x_train.to(device), self.y_train.to(device),
                          self.x_test.to(device), self.y_test.to(device), self.num_classes)


Loader = Callable[[DatasetConfig], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]]
# loaders return raw (x_train, y_train, x_test, y_test, num_classes)
DATASETS: Registry[Loader] = Registry()
register_loader = DATASETS.register  # powertrain's own loaders: loader(cfg) -> (x_tr, y_tr, x_te, y_te, k)
ENTRY_POINTS = "powertrain.datasets"


@register_loader("target")
def _target_dataset(cfg: DatasetConfig) -> Any:
    """``dataset=target`` names no loader: the data is ``dataset._target_`` (reached only when it is unset)."""
    raise ConfigError("dataset._target_", cfg._target_, "an importable callable with dataset=target "
                      "(dataset._target_=mylab.data.make)")


def register_dataset(name: str) -> Callable[[Any], Any]:
    """``@powertrain.register_dataset("my_data")`` on the user's dataset callable: ``dataset.name=my_data``
    then loads it exactly as ``dataset._target_`` would (a callable returning the train and test splits as
    torch Datasets; see ``powertrain.data.own``). No ``dataset.root`` is required of it.

    Processes that powertrain starts (DDP ranks, study parts, Slurm tasks) import only what they are told:
    name the module in ``plugins=[...]`` (or ``$POWERTRAIN_PLUGINS``), or declare an entry point.
    """
    # the module calling this, which DDP ranks etc. must import (it may register a class defined elsewhere)
    return DATASETS.register_own(name, registered_in=sys._getframe(1).f_globals.get("__name__"))


def registered_datasets() -> Registry[Loader]:
    """The dataset registry: every shipped loader (each registers itself on import), the modules named in
    ``$POWERTRAIN_PLUGINS`` and the names installed packages declare as entry points."""
    from powertrain.config.targets import import_env_plugins
    from powertrain.data import sources, synthetic  # noqa: F401

    import_env_plugins()
    DATASETS.add_entry_points(ENTRY_POINTS)
    return DATASETS


def is_own(cfg: DatasetConfig) -> bool:
    """Whether ``cfg`` names the user's code (a ``_target_``, a registered or entry-point dataset)."""
    return bool(cfg._target_) or bool(registered_datasets().meta.get(cfg.name, {}).get("own"))


_KEPT: dict[str, Any] = {}  # one dataset loaded by a pre-run check, for the run in the same process


def load_data(cfg: DatasetConfig, classification: bool = True, keep: bool = False) -> Any:
    """The dataset ``cfg`` names: ``DataSplits`` (tensors, on-device batches) or a ``DatasetPair`` (a
    DataLoader's). ``keep`` holds it for the next call with the same config (the run after its check),
    so a check before the meter starts does not load the data twice."""
    key = repr(cfg)
    if key in _KEPT:
        return _KEPT.pop(key)
    if is_own(cfg):
        from powertrain.data.own import load_own

        data = load_own(cfg, classification)
    else:
        data = load_dataset(cfg)
    if keep:
        _KEPT.clear()
        _KEPT[key] = data
    return data


def load_dataset(cfg: DatasetConfig) -> DataSplits:
    """Load, limit and normalise a shipped dataset on the CPU."""
    x_tr, y_tr, x_te, y_te, k = registered_datasets()[cfg.name](cfg)
    if cfg.classes:
        x_tr, y_tr, x_te, y_te, k = _select_classes(cfg, x_tr, y_tr, x_te, y_te, k)
    if cfg.limit_train:
        x_tr, y_tr = x_tr[: cfg.limit_train], y_tr[: cfg.limit_train]
    if cfg.limit_test:
        x_te, y_te = x_te[: cfg.limit_test], y_te[: cfg.limit_test]
    x_tr, x_te = x_tr.float(), x_te.float()
    # per-channel statistics of the training split only, so nothing leaks from the test split (N×F
    # features: per feature)
    dims = (0, *range(2, x_tr.ndim))
    mean = x_tr.mean(dim=dims, keepdim=True)
    std = x_tr.std(dim=dims, keepdim=True).clamp_min(1e-6)
    x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    return DataSplits(cfg.name, x_tr.contiguous(), y_tr.long(), x_te.contiguous(), y_te.long(), k)


def dataset_preset(name: str, key: str = "paradigm.tasks") -> DatasetConfig:
    """The ``DatasetConfig`` of ``conf/dataset/<name>.yaml`` (its values merged onto the schema defaults).

    ``key`` is the setting that named the preset, for the ConfigError when it is not a usable one.
    """
    from dataclasses import fields

    from omegaconf import OmegaConf

    from powertrain.config.paths import conf_dir

    folder = conf_dir() / "dataset"
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise ConfigError(key, name, f"dataset preset names from conf/dataset: {known}")
    values = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    assert isinstance(values, dict)
    values.pop("defaults", None)
    known_keys = {f.name for f in fields(DatasetConfig)}
    unknown = sorted(set(values) - known_keys)
    if unknown:
        raise ConfigError(key, name, f"a preset with DatasetConfig keys only ({unknown[0]} is not one)")
    ds = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DatasetConfig), values))
    assert isinstance(ds, DatasetConfig)
    run_check("dataset.name", ds.name, one_of(registered_datasets()))
    for dotted in FIELD_CHECKS:
        if dotted.startswith("dataset."):
            check_value(dotted, getattr(ds, dotted.split(".", 1)[1]))
    return ds


def _select_classes(cfg: DatasetConfig, x_tr: torch.Tensor, y_tr: torch.Tensor, x_te: torch.Tensor,
                    y_te: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Keep the samples of ``cfg.classes`` and renumber their labels 0..len(classes)-1 in that order."""
    if max(cfg.classes) >= k:
        raise ConfigError("dataset.classes", list(cfg.classes), f"class indices below {k} for {cfg.name}")
    relabel = torch.full((k,), -1, dtype=torch.long)
    relabel[torch.tensor(cfg.classes)] = torch.arange(len(cfg.classes))

    def pick(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        new = relabel[y.long()]
        keep = new >= 0
        return x[keep], new[keep]

    x_tr, y_tr = pick(x_tr, y_tr)
    x_te, y_te = pick(x_te, y_te)
    return x_tr, y_tr, x_te, y_te, len(cfg.classes)


class DeviceBatches:
    """Shuffled mini-batches sliced from tensors that already live on the training device.

    The permutation comes from a generator seeded with (seed, epoch), so the batch order of an epoch is
    reproducible and a resumed run sees the same order as an uninterrupted one. In a distributed run
    every rank draws the same permutation and takes every ``world_size``-th sample of it from its own
    ``rank``: step i of the ranks together is exactly global batch i of one process with
    ``batch_size × world_size`` (the last ``n mod world_size`` samples of each epoch's shuffle are left
    out, so that every rank takes as many steps as the others).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1):
        self.x, self.y, self.batch_size, self.seed, self.drop_last = x, y, batch_size, seed, drop_last
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        n = self.x.shape[0] // self.world_size  # this rank's samples per epoch
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.x.shape[0]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g)
        if self.world_size > 1:
            perm = perm[: n - n % self.world_size][self.rank :: self.world_size]
        perm = perm.to(self.x.device, non_blocking=True)
        for i in range(len(self)):
            idx = perm[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.x[idx], self.y[idx]


def describe(data: Any) -> dict[str, Any]:
    """What the result says about the data (``DataSplits`` or a ``DatasetPair``)."""
    if isinstance(data, DataSplits):
        return {"name": data.name, "train_size": int(data.x_train.shape[0]),
                "test_size": int(data.x_test.shape[0]), "input_shape": list(data.input_shape),
                "num_classes": data.num_classes, "batches": "on_device"}
    return {"name": data.name, "train_size": len(data.train), "test_size": len(data.test),
            "input_shape": list(data.input_shape), "num_classes": data.num_classes,
            "batches": f"dataloader ({data.num_workers} workers)"}
