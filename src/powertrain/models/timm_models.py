"""Any timm model by name; timm is imported only when one is asked for."""

from __future__ import annotations

from torch import nn

from powertrain.config import ConfigError, ModelConfig
from powertrain.models import check_timm_name, register_builder


@register_builder("timm")
def timm_model(cfg: ModelConfig, shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    import timm

    check_timm_name(cfg.name)
    c, h, w = shape
    kwargs = {}
    if "vit" in cfg.name or "deit" in cfg.name:
        kwargs["img_size"] = h  # ViTs fix their position embeddings to the input size
    # pretrained weights are the pretrained paradigm's job (it handles the offline case)
    model = timm.create_model(cfg.name, pretrained=False, num_classes=num_classes, in_chans=c,
                              drop_rate=cfg.dropout, **kwargs)
    # inputs smaller than one patch would build, then fail in the first forward with a conv error
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    if patch is not None and (h < patch[0] or w < patch[1]):
        raise ConfigError("model.input_size", cfg.input_size,
                          f"a side of at least {patch[0]} for {cfg.name} ({patch[0]}-pixel patches, inputs are "
                          f"{h}×{w}); e.g. model.input_size=224")
    return model
