"""The seed models are built exactly as docs/DESIGN.md defines them; timm models build by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from powertrain.config import ConfigError, ModelConfig
from powertrain.models import create_model

FASHION = (1, 28, 28)


def _linear_widths(model: nn.Module) -> list[int]:
    """[in of the first Linear, out of each Linear...] in forward order."""
    lins = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return [lins[0].in_features] + [m.out_features for m in lins]


def _forward(model: nn.Module, shape: tuple[int, int, int], batch: int = 2) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.randn(batch, *shape))


def test_dense_poly_n3_on_fashion_mnist_halves_the_width():
    model = create_model(ModelConfig(family="dense_poly", linear_layers=3), FASHION, 10)
    assert _linear_widths(model) == [784, 392, 196, 10]
    assert _forward(model, FASHION).shape == (2, 10)


def test_dense_linear_n3_on_fashion_mnist_shrinks_linearly():
    model = create_model(ModelConfig(family="dense_linear", linear_layers=3), FASHION, 10)
    assert _linear_widths(model) == [784, 522, 261, 10]
    assert _forward(model, FASHION).shape == (2, 10)


def test_dense_poly_width_never_drops_below_channel_count():
    # 3×4×4: F=48, widths 24, 12, 6, 3, then max(1, 3)=3 — the C floor of the paper's formula
    model = create_model(ModelConfig(family="dense_poly", linear_layers=6), (3, 4, 4), 10)
    assert _linear_widths(model) == [48, 24, 12, 6, 3, 3, 10]


def test_linear_layers_1_is_the_classifier_alone():
    model = create_model(ModelConfig(family="dense_poly", linear_layers=1), FASHION, 7)
    assert _linear_widths(model) == [784, 7]


@pytest.mark.parametrize(("shape", "channels"), [((1, 28, 28), [3, 9]), ((3, 32, 32), [9, 27])])
def test_simple_cnn_blocks_follow_the_paper(shape, channels):
    model = create_model(ModelConfig(family="simple_cnn", conv_blocks=2, linear_layers=3), shape, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == list(zip([shape[0]] + channels[:-1], channels))
    assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) and c.padding == (1, 1) for c in convs)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [b.num_features for b in bns] == channels
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 2
    # one ReLU per conv block and per hidden linear layer
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 2 + 2

    c, h, w = shape
    f = c * h * w
    conv_out = channels[-1] * (h // 4) * (w // 4)
    # the linear widths come from the input size F; only the first layer's input is the conv output
    assert _linear_widths(model) == [conv_out, f // 2, f // 4, 10]
    assert _forward(model, shape).shape == (2, 10)


def test_simple_cnn_relu_off_removes_every_relu():
    on = create_model(ModelConfig(family="simple_cnn", relu=True), FASHION, 10)
    off = create_model(ModelConfig(family="simple_cnn", relu=False), FASHION, 10)
    assert not any(isinstance(m, nn.ReLU) for m in off.modules())
    # only the ReLUs go: same parameters, same shapes
    assert [p.shape for p in on.parameters()] == [p.shape for p in off.parameters()]


def test_simple_cnn_conv_block_count_is_configurable():
    model = create_model(ModelConfig(family="simple_cnn", conv_blocks=4), (1, 16, 16), 10)
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)] == [3, 9, 27, 81]
    assert _linear_widths(model)[0] == 81 * 1 * 1
    assert _forward(model, (1, 16, 16)).shape == (2, 10)


def test_simple_cnn_too_many_blocks_for_the_input_is_a_config_error():
    create_model(ModelConfig(family="simple_cnn", conv_blocks=3), (1, 8, 8), 10)  # 8→4→2→1 fits
    with pytest.raises(ConfigError) as err:
        create_model(ModelConfig(family="simple_cnn", conv_blocks=4), (1, 8, 8), 10)
    assert err.value.key == "model.conv_blocks" and "at most 3" in str(err.value)


def test_mlp_uses_hidden_sizes():
    model = create_model(ModelConfig(family="mlp", hidden_sizes=[32, 16]), (1, 8, 8), 4)
    assert _linear_widths(model) == [64, 32, 16, 4]


def test_dropout_is_inserted_only_when_asked():
    plain = create_model(ModelConfig(family="dense_poly"), (1, 8, 8), 10)
    drop = create_model(ModelConfig(family="dense_poly", dropout=0.2), (1, 8, 8), 10)
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())
    assert [m.p for m in drop.modules() if isinstance(m, nn.Dropout)] == [0.2, 0.2]


def test_the_families_that_take_features_say_so_in_their_registration() -> None:
    from powertrain.models import registered_models

    takes = sorted(n for n, m in registered_models().meta.items() if m.get("features"))
    assert takes == ["dense_linear", "dense_poly", "mlp", "target"]
    for family in ("dense_poly", "dense_linear", "mlp"):
        assert create_model(ModelConfig(family=family), (7,), 2)(torch.zeros(3, 7)).shape == (3, 2)
    for family in ("simple_cnn", "timm"):
        with pytest.raises(ConfigError, match="takes C×H×W images"):
            create_model(ModelConfig(family=family), (7,), 2)
