"""The device a run trains on, and what the result says about the hardware."""

from __future__ import annotations

import os
import platform
from typing import Any

from powertrain.energy.estimate import cpu_model


def resolve_device(device: str) -> Any:
    """``auto`` → CUDA if present, else CPU. Returns a ``torch.device``."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        from powertrain.config import ConfigError

        raise ConfigError("hardware.device", device, "cpu or auto on a machine without a CUDA GPU")
    return torch.device(device)


def describe(device: Any, profile: Any) -> dict[str, Any]:
    """The ``hardware`` section of result.json."""
    import torch

    info: dict[str, Any] = {
        "device": str(device),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "profile": profile.name,
        "gpus": [],
        "driver": None,
    }
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        info["gpus"] = [torch.cuda.get_device_name(idx)]
        info["cuda"] = torch.version.cuda
    return info
