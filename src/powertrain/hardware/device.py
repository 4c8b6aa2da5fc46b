"""The device a run trains on, and what the result says about the hardware."""

from __future__ import annotations

import os
import platform
from typing import Any, Optional

from powertrain.energy.estimate import cpu_model


def resolve_device(device: str) -> Any:
    """``auto`` → CUDA if present, else CPU. Returns a ``torch.device``.

    Raises:
        ConfigError: a CUDA device this machine does not have (no GPU, or ``cuda:N`` past its last one),
            before any work rather than at the first tensor moved there.
    """
    import torch

    from powertrain.config import ConfigError

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("hardware.device", device, "cpu or auto on a machine without a CUDA GPU")
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError("hardware.device", device,
                          f"cuda:0 ... cuda:{torch.cuda.device_count() - 1} (this machine's GPUs) or auto")
    return dev


def set_cpu_threads(requested: Optional[int]) -> int:
    """Size torch's intra-op thread pool; returns the thread count in use.

    Two OpenMP threads per job on a node already busy with other jobs can make a small model ten times
    slower (measured here with two array tasks on a 2-core node), so inside a Slurm job the pool follows
    the CPUs Slurm granted. An explicit ``$OMP_NUM_THREADS`` is the user's choice and is left alone.
    """
    import torch

    if requested is None and "OMP_NUM_THREADS" not in os.environ:
        slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
        requested = int(slurm) if slurm.isdigit() and int(slurm) > 0 else None
    if requested is not None:
        torch.set_num_threads(requested)
    return torch.get_num_threads()


def describe(device: Any, profile: Any) -> dict[str, Any]:
    """The ``hardware`` section of result.json."""
    import torch

    info: dict[str, Any] = {
        "device": str(device),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "ram_total_gb": _ram_total_gb(),
        "torch": torch.__version__,
        "profile": profile.name,
        "cpu_threads": torch.get_num_threads(),
        "gpus": [],
        "driver": None,
    }
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        info["gpus"] = [torch.cuda.get_device_name(idx)]
        info["gpu_count"] = torch.cuda.device_count()
        info["cuda"] = torch.version.cuda
        info["driver"] = _nvidia_driver()
    return info


def _ram_total_gb() -> Optional[float]:
    """The machine's memory in GB (MemTotal), or None where /proc/meminfo is unreadable."""
    from powertrain.energy.attribution import mem_total_bytes

    total = mem_total_bytes()
    return None if total is None else round(total / 1e9, 3)


def _nvidia_driver() -> Optional[str]:
    """The NVIDIA driver version from NVML, or None where NVML cannot say."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            v = pynvml.nvmlSystemGetDriverVersion()
            return v.decode() if isinstance(v, bytes) else str(v)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver, no NVML binding: the result says null rather than guess
        return None
