"""The user's own datasets: ``dataset._target_``, ``register_dataset`` or an entry point (``powertrain.datasets``).

The callable returns the train and test splits as torch Datasets of ``(x, y, ...)`` samples: a pair
``(train, test)``, a dict with ``train`` and ``test``, or one object with ``.train`` and ``.test``; a
``num_classes`` attribute on it (or on the train split) wins over ``dataset.num_classes``. Its arguments are
the keys beside ``_target_``, plus the ``FIELDS`` of the dataset config it names (see
``config.targets.arguments``: set away from their default, or required by it).

Two ways to batch, chosen here: splits that are ``TensorDataset``s of (x, y) and fit ``DEVICE_MAX_BYTES``
become ``DataSplits`` and live on the training device like the shipped datasets (no workers, no copies per
step); anything else stays a ``DatasetPair`` and goes through a DataLoader with worker processes. The
user's data is passed on as it is: no normalisation, labels keep their dtype (a regression target is a float).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from powertrain.config import ConfigError, DatasetConfig, data_root
from powertrain.config import targets as own

DEVICE_MAX_BYTES = 2 * 2**30  # tensor splits up to this size live on the device (like every shipped dataset)
# DatasetConfig fields a dataset callable gets when it names them (set away from the default, or required).
# Never refused when it does not: a preset under the user's dataset.name (experiment=geissler_lr_batch
# selects synthetic_mnist) sets several; num_classes is powertrain's own too (the class count)
FIELDS = ("root", "download", "num_classes", "channels", "image_size", "train_size", "test_size", "noise",
          "clutter", "max_shift_px", "label_noise", "test_fraction")
_DEFAULTS = DatasetConfig()


def dataset_fields(cfg: DatasetConfig) -> dict[str, tuple[Any, Any]]:
    """(value, default) of ``FIELDS``; ``root`` as the resolved directory when it is set."""
    out = {k: (getattr(cfg, k), getattr(_DEFAULTS, k)) for k in FIELDS}
    if cfg.root is not None:
        out["root"] = (data_root(cfg), None)
    return out


@dataclass
class DatasetPair:
    """Train and test splits that go through a DataLoader (``powertrain.data.loader.LoaderBatches``)."""

    name: str
    train: Dataset
    test: Dataset
    num_classes: int
    input_shape: tuple[int, ...]
    num_workers: int
    device: torch.device = torch.device("cpu")

    def to(self, device: torch.device) -> DatasetPair:
        """Batches go to ``device`` as they are loaded (the splits themselves stay where they are)."""
        self.device = torch.device(device)
        return self


def own_target(cfg: DatasetConfig) -> tuple[str, str, Callable[..., Any]]:
    """(config key, target label, callable) of a user's dataset: ``_target_`` or a registered name."""
    from powertrain.data import registered_datasets

    if cfg._target_:
        return "dataset._target_", cfg._target_, own.resolve("dataset._target_", cfg._target_)
    return "dataset.name", cfg.name, registered_datasets().target(cfg.name)


def _splits(key: str, target: str, out: Any) -> tuple[Any, Any, Optional[int]]:
    """(train, test, num_classes or None) from what the callable returned."""
    k = getattr(out, "num_classes", None)
    if isinstance(out, dict) and {"train", "test"} <= set(out):
        train, test, k = out["train"], out["test"], out.get("num_classes", k)
    elif isinstance(out, (tuple, list)) and len(out) == 2:
        train, test = out
    elif hasattr(out, "train") and hasattr(out, "test"):
        train, test = out.train, out.test
    else:
        raise ConfigError(key, target, f"a callable returning (train, test) datasets, a dict with train and "
                          f"test, or an object with .train and .test (it returned a {type(out).__name__})")
    k = k if k is not None else getattr(train, "num_classes", None)
    for split, ds in (("train", train), ("test", test)):
        if not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
            raise ConfigError(key, target, f"a callable whose {split} split is a map-style torch Dataset "
                              f"(__getitem__ and __len__; it is a {type(ds).__name__})")
        if len(ds) == 0:
            raise ConfigError(key, target, f"a callable whose {split} split holds samples (it is empty)")
    return train, test, k


def _is_label(y: Any) -> bool:
    import numpy as np

    if isinstance(y, torch.Tensor):
        return y.numel() == 1 and not y.dtype.is_floating_point and y.dtype != torch.bool
    return isinstance(y, (int, np.integer)) and not isinstance(y, bool)


def check_sample(key: str, target: str, ds: Any, split: str, classification: bool, num_classes: int) -> tuple[int, ...]:
    """The shape of ``ds[0]``'s input; ConfigError when the sample is not (x, y, ...) of the right types."""
    import numpy as np

    sample = ds[0]
    if not isinstance(sample, (tuple, list)) or len(sample) < 2:
        raise ConfigError(key, target, f"datasets of (x, y) samples ({split}[0] is a {type(sample).__name__})")
    x, y = sample[0], sample[1]
    if not isinstance(x, (torch.Tensor, np.ndarray)):
        raise ConfigError(key, target, f"datasets of (x, y) samples with x a tensor or array ({split}[0][0] "
                          f"is a {type(x).__name__})")
    if classification:
        if len(sample) != 2 or not _is_label(y):
            got = f"{len(sample)} items" if len(sample) != 2 else type(y).__name__ + (
                f" of dtype {y.dtype}" if isinstance(y, (torch.Tensor, np.ndarray)) else "")
            raise ConfigError(key, target, f"(x, y) samples with an integer class label y for the default "
                              f"classification task ({split}[0] has {got}; a different target needs task.loss "
                              "and task.evaluate)")
        if not 0 <= int(y) < num_classes:
            raise ConfigError("dataset.num_classes", num_classes, f"more than the label {int(y)} of {split}[0] "
                              f"of {target} (set dataset.num_classes, or give the dataset a num_classes attribute)")
    return tuple(int(s) for s in torch.as_tensor(x).shape)


def _tensors(ds: Any) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(ds, TensorDataset) and len(ds.tensors) == 2:
        return ds.tensors[0], ds.tensors[1]
    return None


def _limit(ds: Any, n: Optional[int]) -> Any:
    if n is None or n >= len(ds):
        return ds
    pair = _tensors(ds)
    return TensorDataset(pair[0][:n], pair[1][:n]) if pair is not None else Subset(ds, range(n))


def load_own(cfg: DatasetConfig, classification: bool = True) -> Any:
    """The user's dataset as ``DataSplits`` (small tensors: on the device) or a ``DatasetPair``.

    ``classification``: the default task trains on these samples, so they must be (x, integer label).

    Raises:
        ConfigError: the callable does not import or rejects its arguments, or returns the wrong types.
    """
    from powertrain.data import DataSplits
    from powertrain.data.loader import default_workers

    key, target, fn = own_target(cfg)
    if cfg.classes:
        raise ConfigError("dataset.classes", list(cfg.classes), "[] with your own dataset (choose its classes "
                          "in your callable)")
    kwargs = own.arguments(key, target, fn, dict(cfg.args), {}, "dataset", dataset_fields(cfg), FIELDS)
    train, test, k = _splits(key, target, own.call(key, target, fn, kwargs))
    num_classes = int(k) if k is not None else cfg.num_classes
    train, test = _limit(train, cfg.limit_train), _limit(test, cfg.limit_test)
    shape = check_sample(key, target, train, "train", classification, num_classes)
    if check_sample(key, target, test, "test", classification, num_classes) != shape:
        raise ConfigError(key, target, "train and test samples of the same shape")
    name = cfg._target_ or cfg.name
    tr, te = _tensors(train), _tensors(test)
    if tr is not None and te is not None and sum(t.nbytes for t in (*tr, *te)) <= DEVICE_MAX_BYTES:
        if classification:
            top = int(max(tr[1].max(), te[1].max()))
            if top >= num_classes:
                raise ConfigError("dataset.num_classes", num_classes, f"more than the largest label {top} of "
                                  f"{target} (set dataset.num_classes={top + 1})")
        y_tr, y_te = (tr[1].long(), te[1].long()) if classification else (tr[1], te[1])
        return DataSplits(name, tr[0], y_tr, te[0], y_te, num_classes)
    workers = cfg.num_workers if cfg.num_workers is not None else default_workers()
    return DatasetPair(name, train, test, num_classes, shape, workers)
