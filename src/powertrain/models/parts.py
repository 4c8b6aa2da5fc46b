"""The parts of a network that transfer and multitask learning work on: classifier, head, blocks, backbone.

Defined generically over the model families we build:

- **classifier**: the final layer that maps features to class scores (replaced when the class count
  changes). timm models name it through ``get_classifier()``; elsewhere it is the last ``nn.Linear``.
- **head**: what ``finetune=head`` trains. SimpleCNN declares it (``.head``, its linear stack after
  ``.features``); for timm and dense models it is the classifier.
- **blocks**: the backbone's units, in order, for ``finetune=partial``. timm models: the children of
  ``blocks``/``stages``/``layers`` or ``layer1..layerN`` (ResNet); elsewhere a block starts at each
  conv or linear layer and takes the norm/activation/pool layers after it.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Callable

from torch import nn

from powertrain.models import Resize

_WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def unwrap(model: nn.Module) -> nn.Module:
    """The network itself, without ``torch.compile``'s wrapper or the ``Resize`` that ``create_model`` adds."""
    model = getattr(model, "_orig_mod", model)
    if isinstance(model, nn.Sequential) and len(model) == 2 and isinstance(model[0], Resize):
        return model[1]
    return model


def _name_of(core: nn.Module, module: nn.Module) -> str:
    for name, m in core.named_modules():
        if m is module:
            return name
    raise ValueError("module is not part of the model")


def is_timm(core: nn.Module) -> bool:
    return hasattr(core, "get_classifier") and hasattr(core, "reset_classifier")


def classifier_name(core: nn.Module) -> str:
    """Qualified name of the final classifier layer (relative to ``unwrap(model)``)."""
    if is_timm(core):
        return _name_of(core, core.get_classifier())
    last = [name for name, m in core.named_modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ValueError(f"{type(core).__name__} has no linear classifier")
    return last[-1]


def head_name(core: nn.Module) -> str:
    """Qualified name of the head module (see the module docstring)."""
    if not is_timm(core) and isinstance(getattr(core, "features", None), nn.Module) \
            and isinstance(getattr(core, "head", None), nn.Module):
        return "head"
    return classifier_name(core)


def _inside(name: str, prefix: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def block_names(core: nn.Module) -> list[list[str]]:
    """The backbone's blocks in forward order, each as the qualified names of its modules."""
    head = head_name(core)
    if is_timm(core):
        for attr in ("blocks", "stages", "layers"):
            seq = getattr(core, attr, None)
            if isinstance(seq, (nn.Sequential, nn.ModuleList)) and len(seq) > 0:
                return [[f"{attr}.{i}"] for i in range(len(seq))]
        layers = sorted((n for n, _ in core.named_children() if n.startswith("layer") and n[5:].isdigit()),
                        key=lambda n: int(n[5:]))
        if layers:
            return [[n] for n in layers]
    blocks: list[list[str]] = []
    for name, m in core.named_modules():
        if next(m.children(), None) is not None or _inside(name, head):
            continue  # containers and the head are not backbone leaves
        if isinstance(m, _WEIGHT_LAYERS) or not blocks:
            blocks.append([name])
        else:
            blocks[-1].append(name)
    # leading parameter-free leaves (e.g. Flatten) are not a block of their own
    return [b for b in blocks if any(True for n in b for _ in core.get_submodule(n).parameters())]


def param_names(core: nn.Module, modules: list[str]) -> set[str]:
    """Names of the parameters of ``core`` that belong to any of the named ``modules``."""
    return {n for n, _ in core.named_parameters() if any(n.startswith(m + ".") for m in modules)}


def _stay_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(self, False)


def pin_frozen_norms(core: nn.Module) -> int:
    """Keep BatchNorm layers whose parameters are all frozen in eval mode, so their running statistics
    stay as loaded too (``requires_grad=False`` alone still lets train mode update them). Returns the count."""
    n = 0
    for m in core.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters())
            if params and not any(p.requires_grad for p in params):
                m.train = types.MethodType(_stay_eval, m)  # type: ignore[method-assign]
                m.eval()
                n += 1
    return n


def reinit(module: nn.Module) -> nn.Module:
    """Fresh initial weights for every layer of ``module`` that knows how to reset itself."""
    for m in module.modules():
        reset: Callable[[], None] | None = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()
    return module


def split_for_heads(model: nn.Module) -> tuple[nn.Module, Callable[[int], nn.Module]]:
    """Split ``model`` into a shared backbone and a factory of fresh heads for ``k`` classes.

    The backbone keeps any input ``Resize``; the heads have the architecture of the model's own head.
    """
    core = unwrap(model)
    wrapper = model if model is not core and isinstance(model, nn.Sequential) else None
    if is_timm(core):
        width = core.num_features if hasattr(core, "num_features") else core.get_classifier().in_features
        core.reset_classifier(0)  # the backbone now returns pooled features

        def make(k: int) -> nn.Module:
            return nn.Linear(width, k)

        backbone: nn.Module = core
    elif head_name(core) == "head":
        template = core.head
        last = classifier_name(template)

        def make(k: int) -> nn.Module:
            h = copy.deepcopy(template)
            old = h.get_submodule(last)
            _set_submodule(h, last, nn.Linear(old.in_features, k))
            return reinit(h)

        backbone = core.features
    else:
        name = classifier_name(core)
        width = core.get_submodule(name).in_features
        _set_submodule(core, name, nn.Identity())

        def make(k: int) -> nn.Module:
            return nn.Linear(width, k)

        backbone = core
    if wrapper is not None:
        backbone = nn.Sequential(wrapper[0], backbone)
    return backbone, make


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, module)
