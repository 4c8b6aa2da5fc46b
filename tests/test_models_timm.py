"""timm models by name (importing timm takes ~8 s, so these live in their own module)."""

from __future__ import annotations

import pytest
import torch

from powertrain.config import ConfigError, ModelConfig
from powertrain.models import create_model

pytestmark = pytest.mark.slow

pytest.importorskip("timm")


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
@pytest.mark.parametrize("name", ["resnet18", "mobilenetv3_small_100"])
def test_cnn_timm_models_take_small_inputs_and_any_class_count(name, shape):
    model = create_model(ModelConfig(family="timm", name=name), shape, 7).eval()
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == shape[0]
    with torch.no_grad():
        assert model(torch.randn(2, *shape)).shape == (2, 7)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_vit_preset_builds_for_small_inputs(compose, shape):
    from powertrain.compose.validate import validate

    cfg = validate(compose("model=vit_tiny_patch16_224")).model
    model = create_model(cfg, shape, 10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, *shape)).shape == (2, 10)


def test_vit_without_resize_fits_its_position_embeddings_to_the_input():
    model = create_model(ModelConfig(family="timm", name="vit_tiny_patch16_224"), (3, 32, 32), 10).eval()
    assert model.patch_embed.num_patches == 4  # (32 / 16)², not the 224-pixel default's 196
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_vit_on_inputs_smaller_than_a_patch_asks_for_input_size():
    # 8×8 digits with 16-pixel patches: a config error naming the fix, not a conv error mid-run
    with pytest.raises(ConfigError) as err:
        create_model(ModelConfig(family="timm", name="vit_tiny_patch16_224"), (1, 8, 8), 10)
    assert err.value.key == "model.input_size" and "model.input_size=224" in str(err.value)


def test_vit_preset_resizes_small_inputs_to_224():
    model = create_model(ModelConfig(family="timm", name="vit_tiny_patch16_224", input_size=224), (3, 32, 32), 10)
    assert type(model[0]).__name__ == "Resize"
    seen = []
    model[1].patch_embed.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert seen == [(1, 3, 224, 224)]


def test_unknown_timm_name_is_a_config_error_with_close_names():
    with pytest.raises(ConfigError) as err:
        create_model(ModelConfig(family="timm", name="resnet181"), (3, 32, 32), 10)
    msg = str(err.value)
    assert err.value.key == "model.name" and "\n" not in msg
    assert "did you mean" in msg and "resnet18," in msg
