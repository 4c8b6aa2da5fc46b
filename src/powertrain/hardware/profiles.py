"""Hardware profiles: the life-cycle figures of a device, read from ``conf/hardware/*.yaml``.

The YAML files are the single copy of the figures (Hydra composes them for ``hardware=<name>``);
``hardware=auto`` reads the same files here to pick the profile matching the detected device.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from pathlib import Path
from typing import Any, Optional

from powertrain.config import HardwareConfig
from powertrain.config.paths import conf_dir

NUMBERS = ("tdp_w", "embodied_kgco2e", "lifetime_years", "utilization")
GENERIC = ("auto", "cpu", "cuda")


def profile_dir() -> Path:
    """The directory holding one YAML file per hardware profile."""
    return conf_dir() / "hardware"


def load_profile(name: str) -> HardwareConfig:
    """The profile ``conf/hardware/<name>.yaml`` as a ``HardwareConfig`` (its values only).

    Raises:
        FileNotFoundError: there is no such profile.
    """
    return HardwareConfig(**copy.deepcopy(_read_profile(profile_dir() / f"{name}.yaml")))


@functools.cache
def _read_profile(path: Path) -> dict[str, Any]:
    # hardware=auto reads every profile to match the GPU, then the chosen one and auto.yaml again:
    # parse each file once per process (callers get a deep copy, so the cache cannot be mutated)
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    assert isinstance(raw, dict)
    raw.pop("defaults", None)
    return raw


def profile_names() -> list[str]:
    """Names of all packaged profiles."""
    return sorted(p.stem for p in profile_dir().glob("*.yaml"))


def match_device_name(device_name: str) -> Optional[str]:
    """The profile whose ``match`` substrings occur in ``device_name`` (case-insensitive), if any."""
    lowered = device_name.lower()
    for name in profile_names():
        if name in GENERIC:
            continue
        if any(m.lower() in lowered for m in load_profile(name).match):
            return name
    return None


def _device_name(device: Any) -> Optional[str]:
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(device)
    return None


def tdp_split(profile: HardwareConfig, on_gpu: bool) -> dict[str, Optional[float]]:
    """The profile's one TDP as the meter's keywords (``energy.build_meter``): a GPU run's profile is its
    GPU's, so it estimates the GPU and the CPU gets none of it; a CPU run's is the CPU's."""
    return {"cpu_tdp_w": None if on_gpu else profile.tdp_w, "gpu_tdp_w": profile.tdp_w if on_gpu else None}


def select_profile(cfg: HardwareConfig, device: Any, device_name: Optional[str] = None) -> HardwareConfig:
    """The hardware profile a run is accounted with.

    ``hardware=auto`` picks the profile matching the device (by GPU name, else generic ``cuda``, or
    ``cpu``). For any profile, a number that differs from its YAML file was set on the command line:
    its source then says so and it is no longer listed as an assumption.

    Args:
        cfg: the composed hardware config.
        device: the resolved ``torch.device`` (or its string, e.g. ``"cuda:0"``).
        device_name: the GPU's name; asked from torch when None (tests pass it).
    """
    kind = "gpu" if str(device).startswith("cuda") else "cpu"
    if cfg.name == "auto":
        name = "cpu"
        if kind == "gpu":
            device_name = device_name or _device_name(device) or ""
            name = match_device_name(device_name) or "cuda"
        base = load_profile(name)
        # auto has no numbers of its own: any number in cfg came from the command line
        reference = load_profile("auto") if (profile_dir() / "auto.yaml").exists() else HardwareConfig()
    else:
        base = cfg
        try:
            reference = load_profile(cfg.name)
        except FileNotFoundError:
            return cfg  # a profile composed some other way: nothing to compare with
    sources = dict(base.sources)
    assumptions = list(base.assumptions)
    values: dict[str, Any] = {}
    for key in NUMBERS:
        given = getattr(cfg, key)
        if given is not None and given != getattr(reference, key):
            values[key] = given
            sources[key] = f"set on the command line (hardware.{key}={given})"
            assumptions = [a for a in assumptions if key not in a.split(":")[0]]
    return dataclasses.replace(
        base, device=str(device), kind=kind, sources=sources, assumptions=assumptions, **values
    )
