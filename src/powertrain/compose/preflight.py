"""The checks that otherwise wait until a job starts: the device exists, the model runs on the data's shape.

``validate`` checks every value and combination it can read from the config alone (ranges, names, the
dataset's files, timm names, DDP divisibility). What is left needs the machine or the data: a CUDA device
that is there, and a model whose forward accepts the dataset's input (``model.conv_blocks`` too deep for
8×8 digits, a layer whose input size does not match). A single run finds these while it builds,
before its first step; a sweep asks ``probe`` for every point before launching any (``launch.preflight``),
with a ``Probe`` cache so a big grid pays once per distinct device, dataset and (model, dataset) pair.
A point with the user's own model, data or step gets the check a run of it makes before its meter starts
(``run.build.check_model_on_data``: one real batch through the forward, the loss and the evaluation).

The model is built on PyTorch's ``meta`` device: shapes only, no memory, no weights, no arithmetic.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from powertrain.config import ConfigError, RunConfig


class Probe:
    """``probe(cfg)`` for many configs, sharing what they share (see the module doc)."""

    def __init__(self) -> None:
        self._devices: dict[str, Any] = {}
        self._shapes: dict[str, tuple[tuple[int, ...], int]] = {}
        self._models: dict[tuple[str, str], Any] = {}

    def __call__(self, cfg: RunConfig) -> None:
        """Raise the ConfigError the run would raise while building (None of them: return)."""
        self._once(self._devices, cfg.hardware.device, lambda: _device(cfg.hardware.device))
        if cfg.paradigm.name != "scratch":  # other paradigms build their models from runs or weights
            return
        from powertrain.run.build import check_model_on_data, uses_own_code

        if uses_own_code(cfg):  # the user's model, data or step: the run's own check, on one real batch
            key = (repr(asdict(cfg.model)), repr(asdict(cfg.dataset)), repr(asdict(cfg.task)))
            self._once(self._models, key, lambda: check_model_on_data(cfg))
            return
        data_key = repr(asdict(cfg.dataset))
        shape = self._once(self._shapes, data_key, lambda: _data_shape(cfg))
        self._once(self._models, (repr(asdict(cfg.model)), data_key), lambda: _model_runs(cfg, *shape))

    @staticmethod
    def _once(cache: dict, key: Any, fn: Any) -> Any:
        """``fn()`` once per key; a ConfigError is remembered and raised again for every config that shares it."""
        if key not in cache:
            try:
                cache[key] = fn()
            except ConfigError as e:
                cache[key] = e
        if isinstance(cache[key], ConfigError):
            raise cache[key]
        return cache[key]


def _device(device: str) -> None:
    from powertrain.hardware.device import resolve_device

    resolve_device(device)  # cuda without a GPU, or past its last one: ConfigError, as the run's


def _data_shape(cfg: RunConfig) -> tuple[tuple[int, ...], int]:
    """One input's shape ((C, H, W), or (F,) for features) and the number of classes (the dataset is read
    once for this)."""
    from powertrain.data import load_dataset

    data = load_dataset(cfg.dataset)  # a missing file or a bad class list: ConfigError, as in the run
    return data.input_shape, data.num_classes


def _model_runs(cfg: RunConfig, shape: tuple[int, ...], num_classes: int) -> None:
    import torch

    from powertrain.models import create_model

    what = f"{cfg.dataset.name} inputs of shape {'×'.join(map(str, shape))}"
    with torch.device("meta"):
        model = create_model(cfg.model, shape, num_classes)  # e.g. conv blocks too deep: ConfigError
        try:
            model(torch.zeros((2, *shape)))
        except ConfigError:
            raise
        except Exception as e:  # shapes that do not fit: a RuntimeError from deep inside torch
            why = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise ConfigError("model.family", cfg.model.family, f"a model whose forward runs on {what} ({why})") from None


__all__ = ["Probe"]
