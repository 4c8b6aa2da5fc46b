"""timm's published weights for ``paradigm.weights=timm``: found in the local cache (or downloaded when
``paradigm.download=true``), loaded with a time limit so an offline node never hangs on the hub."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, Optional

from torch import nn

from powertrain.config import ConfigError, RunConfig
from powertrain.models import parts

# loading weights already on disk takes seconds; anything longer is a network wait we refuse to hang on
OFFLINE_LOAD_TIMEOUT_S = 60.0


def load_timm_pretrained(cfg: RunConfig, model: nn.Module, shape: tuple[int, int, int], num_classes: int,
                          notes: list[str]) -> None:
    """Load timm's pretrained weights into ``model``: from the local cache, or the hub if paradigm.download.

    timm builds the pretrained twin (it adapts the input conv and drops a classifier of another class
    count); ``model`` has the same architecture, so its weights are copied over and any input ``Resize``
    of ``create_model`` stays as it is.
    """
    if cfg.model.family != "timm":
        raise ConfigError("paradigm.weights", cfg.paradigm.weights, "timm only with model.family=timm "
                          "(other families: paradigm.checkpoint=PATH or paradigm.from_run=RUN_DIR)")
    if cfg.paradigm.weights != "timm":
        raise ConfigError("paradigm.weights", cfg.paradigm.weights, "timm (or null)")
    import timm
    from timm.models import get_pretrained_cfg

    name = cfg.model.name
    pcfg = get_pretrained_cfg(name)
    if pcfg is None or not (pcfg.hf_hub_id or pcfg.url or pcfg.file):
        raise ConfigError("model.name", name, "a timm model with published pretrained weights")
    overlay: dict[str, Any] = {}
    if not cfg.paradigm.download:
        local = cached_timm_file(pcfg)
        if local is None:
            raise ConfigError("paradigm.weights", "timm", f"pretrained weights for {name} in a local cache, found in "
                              f"none ({cache_locations()}; HF_HUB_OFFLINE=1 for this load): fill the cache on a "
                              "machine with network, or set paradigm.download=true")
        overlay = {"file": local}  # load exactly this file: timm then never contacts a hub
    c, h, _ = shape
    size = cfg.model.input_size or h
    kwargs: dict[str, Any] = {"img_size": size} if ("vit" in name or "deit" in name) else {}

    def load() -> nn.Module:
        return timm.create_model(name, pretrained=True, num_classes=num_classes, in_chans=c,
                                 drop_rate=cfg.model.dropout, pretrained_cfg_overlay=overlay or None, **kwargs)

    with _hub_offline(not cfg.paradigm.download):
        twin = _bounded(load, None if cfg.paradigm.download else OFFLINE_LOAD_TIMEOUT_S, name)
    core = parts.unwrap(model)
    core.load_state_dict(twin.state_dict())
    if pcfg.num_classes and pcfg.num_classes != num_classes:
        notes.append(f"head replaced, freshly initialised: {parts.classifier_name(core)} "
                     f"({pcfg.num_classes} → {num_classes} classes)")
    elif cfg.paradigm.reset_classifier:
        parts.reinit(core.get_classifier())
        notes.append(f"head replaced, freshly initialised: {parts.classifier_name(core)} (paradigm.reset_classifier=true)")
    if c != 3:
        notes.append(f"first conv adapted by timm from 3 to {c} input channel(s)")
    notes.append(f"loaded timm pretrained weights for {name}" + (f" from {overlay['file']}" if overlay else ""))


def cache_locations() -> str:
    """Where pretrained weights are looked for, as ``VAR=value`` pairs for the error message."""
    home = os.environ.get("HF_HOME")
    return (f"HF_HUB_CACHE={_hf_cache_dir()}, HF_HOME={home or '(unset)'}, "
            f"TORCH_HOME={os.environ.get('TORCH_HOME') or '(unset)'} → {_torch_hub_dir()}")


def _hf_cache_dir() -> str:
    # read at call time: huggingface_hub's constants are frozen when it is first imported
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return os.path.join(home, "hub")


def _torch_hub_dir() -> str:
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "torch")
    return os.path.join(home, "hub")


def cached_timm_file(pcfg: Any) -> Optional[str]:
    """The local file holding ``pcfg``'s weights (Hugging Face cache, then torch hub cache), or None."""
    if pcfg.file and os.path.isfile(pcfg.file):
        return str(pcfg.file)
    if pcfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = pcfg.hf_hub_id.partition("@")
        for fname in ([pcfg.hf_hub_filename] if pcfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]):
            found = try_to_load_from_cache(repo, fname, cache_dir=_hf_cache_dir(), revision=revision or None)
            if isinstance(found, str) and os.path.isfile(found):
                return found
    if pcfg.url:
        path = os.path.join(_torch_hub_dir(), "checkpoints", os.path.basename(pcfg.url.split("?")[0]))
        if os.path.isfile(path):
            return path
    return None


@contextlib.contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """HF_HUB_OFFLINE=1 for the duration (env and huggingface_hub's import-time constant)."""
    if not offline:
        yield
        return
    old_env = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import huggingface_hub.constants as hfc
    except ImportError:
        hfc = None
    old_const = getattr(hfc, "HF_HUB_OFFLINE", None)
    if hfc is not None:
        hfc.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env
        if hfc is not None:
            hfc.HF_HUB_OFFLINE = old_const


def _bounded(fn: Callable[[], nn.Module], timeout_s: Optional[float], name: str) -> nn.Module:
    """Run ``fn`` in a thread and give up after ``timeout_s`` (the thread is left to die on its own)."""
    if timeout_s is None:
        return fn()
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["model"] = fn()
        except BaseException as e:  # handed to the caller's thread
            out["error"] = e

    t = threading.Thread(target=target, name="timm-pretrained-load", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise ConfigError("paradigm.weights", "timm", f"weights for {name} loadable from the local cache within "
                          f"{timeout_s:.0f} s ({cache_locations()})")
    if "error" in out:
        e = out["error"]
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        raise ConfigError("paradigm.weights", "timm", f"loadable pretrained weights for {name} "
                          f"({type(e).__name__}: {first}; {cache_locations()})")
    return out["model"]


# ------------------------------------------------------------------------------------------ fine-tune
