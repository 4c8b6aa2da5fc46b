"""Datasets load into normalised tensors: embedded digits, synthetic, and real-format files on disk.

The MNIST/FashionMNIST and CIFAR files are written here byte for byte in their published formats (IDX
with big-endian headers; Python 2 pickles of dicts of numpy arrays) and read back through
``load_dataset``, i.e. through torchvision's own dataset classes, as a user's downloaded copy would be.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from powertrain.config import ConfigError, DatasetConfig
from powertrain.data import DeviceBatches, load_dataset

# ---------------------------------------------------------------------------------------------- digits


def test_digits_is_the_full_bundled_set_with_a_stratified_holdout():
    d = load_dataset(DatasetConfig(name="digits"))
    n_train, n_test = d.x_train.shape[0], d.x_test.shape[0]
    assert n_train + n_test == 1797
    assert n_test == pytest.approx(1797 * 0.25, abs=10)
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10
    assert d.y_train.dtype == torch.int64 and set(d.y_test.tolist()) == set(range(10))
    # stratified: every class keeps about a quarter of its samples for testing
    for c in range(10):
        share = (d.y_test == c).sum().item() / ((d.y_test == c).sum() + (d.y_train == c).sum()).item()
        assert 0.2 < share < 0.3
    # normalised with the training split's statistics
    assert d.x_train.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert d.x_train.std().item() == pytest.approx(1.0, abs=1e-3)
    # the split is fixed, so runs with different seeds are scored on the same test set
    again = load_dataset(DatasetConfig(name="digits"))
    assert torch.equal(d.y_test, again.y_test) and torch.equal(d.x_test, again.x_test)


def test_limits_cut_each_split():
    d = load_dataset(DatasetConfig(name="digits", limit_train=100, limit_test=30))
    assert (d.x_train.shape[0], d.y_train.shape[0], d.x_test.shape[0]) == (100, 100, 30)
    # statistics come from what is actually trained on
    assert d.x_train.mean().item() == pytest.approx(0.0, abs=1e-4)


# ------------------------------------------------------------------------------------------- synthetic


def _nearest_mean_accuracy(d) -> float:
    means = torch.stack([d.x_train[d.y_train == c].mean(0) for c in range(d.num_classes)]).flatten(1)
    pred = torch.cdist(d.x_test.flatten(1), means).argmin(1)
    return (pred == d.y_test).float().mean().item()


def test_synthetic_is_deterministic_and_shaped_as_configured():
    cfg = DatasetConfig(name="synthetic", num_classes=4, channels=3, image_size=12, train_size=100, test_size=40)
    a, b = load_dataset(cfg), load_dataset(cfg)
    assert a.input_shape == (3, 12, 12) and a.num_classes == 4
    assert (a.x_train.shape[0], a.x_test.shape[0]) == (100, 40)
    assert set(a.y_train.tolist()) == set(range(4))
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_synthetic_is_learnable_and_noise_sets_difficulty():
    easy = load_dataset(DatasetConfig(name="synthetic", train_size=500, test_size=200, noise=0.5))
    hard = load_dataset(DatasetConfig(name="synthetic", train_size=500, test_size=200, noise=8.0))
    assert _nearest_mean_accuracy(easy) > 0.9
    assert _nearest_mean_accuracy(hard) < _nearest_mean_accuracy(easy) - 0.2


# ------------------------------------------------------------------------------------ MNIST-format files


def _write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: magic (0, 0, dtype 0x08=ubyte, ndim), big-endian int32 dims, then the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _write_mnist(root: Path, folder: str, n_train: int = 12, n_test: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    for name, a in arrays.items():
        _write_idx(root / folder / "raw" / name, a)
    return arrays


def _denormalise(x: torch.Tensor, train_pixels: np.ndarray) -> np.ndarray:
    """Undo load_dataset's per-channel normalisation, given the training pixels as N×C×H×W."""
    t = torch.from_numpy(train_pixels).float()
    mean, std = t.mean(dim=(0, 2, 3), keepdim=True), t.std(dim=(0, 2, 3), keepdim=True)
    return (x * std + mean).round().numpy()


def test_idx_writer_matches_the_published_magic_numbers(tmp_path):
    arrays = _write_mnist(tmp_path, "MNIST")
    raw = tmp_path / "MNIST" / "raw"
    images, labels = (raw / "train-images-idx3-ubyte").read_bytes(), (raw / "train-labels-idx1-ubyte").read_bytes()
    assert struct.unpack(">iiii", images[:16]) == (2051, 12, 28, 28)
    assert struct.unpack(">ii", labels[:8]) == (2049, 12)
    assert len(images) == 16 + arrays["train-images-idx3-ubyte"].size


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_format_files_round_trip(tmp_path, name, folder):
    arrays = _write_mnist(tmp_path, folder)
    d = load_dataset(DatasetConfig(name=name, root=str(tmp_path)))
    assert d.input_shape == (1, 28, 28) and d.num_classes == 10
    assert (d.x_train.shape[0], d.x_test.shape[0]) == (12, 5)
    assert d.y_train.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert d.y_test.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    train_px = arrays["train-images-idx3-ubyte"][:, None]
    assert np.array_equal(_denormalise(d.x_train, train_px), train_px)
    assert np.array_equal(_denormalise(d.x_test, train_px), arrays["t10k-images-idx3-ubyte"][:, None])


# ------------------------------------------------------------------------------------ CIFAR-format files


class _Py2Pickler(pickle._Pickler):
    """Writes ``str`` and ``bytes`` as Python 2 byte strings, as the published CIFAR files (pickled by Python 2) hold them:
    read with ``encoding="bytes"`` the keys are ``b"data"``; with ``encoding="latin1"`` (torchvision) ``"data"``."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str  # numpy's raw array bytes: a Python 2 str too


def _write_pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)


def _cifar_images(n: int, seed: int) -> np.ndarray:
    """N×3072 uint8 rows (1024 red, 1024 green, 1024 blue, each row-major), channels far apart."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 60, (n, 3, 32, 32), dtype=np.uint8) + np.array([0, 90, 180], dtype=np.uint8)[:, None, None]
    return x.reshape(n, 3072)


def _write_cifar10(root: Path, per_batch: int = 4, n_test: int = 6) -> tuple[np.ndarray, list, np.ndarray, list]:
    folder = root / "cifar-10-batches-py"
    xs, ys = [], []
    for i in range(1, 6):
        x, y = _cifar_images(per_batch, seed=i), [(i + j) % 10 for j in range(per_batch)]
        _write_pickle(folder / f"data_batch_{i}", {"batch_label": f"training batch {i} of 5", "labels": y,
                                                   "data": x, "filenames": [f"f{i}_{j}.png" for j in range(per_batch)]})
        xs.append(x)
        ys += y
    x_te, y_te = _cifar_images(n_test, seed=99), [j % 10 for j in range(n_test)]
    _write_pickle(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": y_te, "data": x_te,
                                          "filenames": [f"t{j}.png" for j in range(n_test)]})
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _write_pickle(folder / "batches.meta", {"num_cases_per_batch": per_batch, "label_names": names,
                                            "num_vis": 3072})
    return np.concatenate(xs), ys, x_te, y_te


def test_cifar_writer_produces_python2_style_pickles(tmp_path):
    _write_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        entry = pickle.load(f, encoding="bytes")
    assert entry[b"data"].shape == (4, 3072) and entry[b"data"].dtype == np.uint8
    assert b"labels" in entry


def test_cifar10_files_round_trip_in_channel_order(tmp_path):
    x_tr, y_tr, x_te, y_te = _write_cifar10(tmp_path)
    d = load_dataset(DatasetConfig(name="cifar10", root=str(tmp_path)))
    assert d.input_shape == (3, 32, 32) and d.num_classes == 10
    assert d.y_train.tolist() == y_tr and d.y_test.tolist() == y_te
    train_px = x_tr.reshape(-1, 3, 32, 32)
    # pixel [n, c, i, j] is byte c·1024 + 32·i + j of row n: channels and rows not transposed
    assert np.array_equal(_denormalise(d.x_train, train_px), train_px)
    assert np.array_equal(_denormalise(d.x_test, train_px), x_te.reshape(-1, 3, 32, 32))


def test_cifar100_files_round_trip_with_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    x_tr, x_te = _cifar_images(8, seed=1), _cifar_images(3, seed=2)
    fine_tr, fine_te = [0, 17, 99, 42, 5, 63, 71, 88], [99, 0, 50]
    _write_pickle(folder / "train", {"filenames": [], "batch_label": "training batch 1 of 1", "data": x_tr,
                                     "fine_labels": fine_tr, "coarse_labels": [f // 5 for f in fine_tr]})
    _write_pickle(folder / "test", {"filenames": [], "batch_label": "testing batch 1 of 1", "data": x_te,
                                    "fine_labels": fine_te, "coarse_labels": [f // 5 for f in fine_te]})
    _write_pickle(folder / "meta", {"fine_label_names": [f"class{i}" for i in range(100)],
                                    "coarse_label_names": [f"super{i}" for i in range(20)]})
    d = load_dataset(DatasetConfig(name="cifar100", root=str(tmp_path)))
    assert d.num_classes == 100 and d.input_shape == (3, 32, 32)
    assert d.y_train.tolist() == fine_tr and d.y_test.tolist() == fine_te  # fine, not coarse, labels
    assert np.array_equal(_denormalise(d.x_test, x_tr.reshape(-1, 3, 32, 32)), x_te.reshape(-1, 3, 32, 32))


@pytest.mark.parametrize(
    ("name", "expected"),
    [("mnist", "MNIST/raw/train-images-idx3-ubyte"), ("fashion_mnist", "FashionMNIST/raw/t10k-labels-idx1-ubyte"),
     ("cifar10", "cifar-10-batches-py/data_batch_1"), ("cifar100", "cifar-100-python/meta")],
)
def test_missing_files_name_what_is_expected_and_how_to_fetch(tmp_path, name, expected):
    with pytest.raises(ConfigError) as err:
        load_dataset(DatasetConfig(name=name, root=str(tmp_path)))
    msg = str(err.value)
    assert err.value.key == "dataset.root" and "\n" not in msg
    assert expected in msg
    assert f"dataset={name} dataset.download=true dataset.root={tmp_path}" in msg


def test_partly_present_files_name_only_the_missing_ones(tmp_path):
    _write_mnist(tmp_path, "MNIST")
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(ConfigError) as err:
        load_dataset(DatasetConfig(name="mnist", root=str(tmp_path)))
    assert "t10k-labels-idx1-ubyte" in str(err.value) and "train-images" not in str(err.value)


# ------------------------------------------------------------------------------------- device batches


def test_device_batches_cover_each_sample_once_in_a_seeded_order():
    x, y = torch.arange(10).float().view(10, 1), torch.arange(10)
    batches = DeviceBatches(x, y, batch_size=4, seed=3)
    assert len(batches) == 3
    epoch0 = list(batches.epoch(0))
    assert [len(b[1]) for b in epoch0] == [4, 4, 2]
    order0 = torch.cat([b[1] for b in epoch0])
    assert sorted(order0.tolist()) == list(range(10))
    assert all(torch.equal(bx.view(-1).long(), by) for bx, by in epoch0)  # x and y stay paired
    # same (seed, epoch) → same order: a resumed run sees the batches an uninterrupted one would
    assert torch.equal(order0, torch.cat([b[1] for b in DeviceBatches(x, y, 4, seed=3).epoch(0)]))
    assert not torch.equal(order0, torch.cat([b[1] for b in batches.epoch(1)]))
    assert not torch.equal(order0, torch.cat([b[1] for b in DeviceBatches(x, y, 4, seed=4).epoch(0)]))
    assert len(DeviceBatches(x, y, 4, seed=0, drop_last=True)) == 2
