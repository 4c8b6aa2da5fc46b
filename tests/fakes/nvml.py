"""A fake ``pynvml`` module for tests: same function names, return types and error classes.

Error classes, error codes and constants are taken from the real ``pynvml`` (importing it does not
load the driver), so code under test catches exactly what it would catch on a GPU node. Functions
raise ``NVMLError_Uninitialized`` before ``nvmlInit``, like the real library. A GPU's energy counter
and power follow the wall clock: energy = ∫ power dt.

Use: ``fake = FakeNvml([FakeGpu(...)]); monkeypatch.setitem(sys.modules, "pynvml", fake.module)``.
"""

from __future__ import annotations

import threading
import time
import types
from dataclasses import dataclass, field
from typing import Optional

import pynvml as real

NOT_SUPPORTED = real.NVML_ERROR_NOT_SUPPORTED
GPU_IS_LOST = real.NVML_ERROR_GPU_IS_LOST
NOT_FOUND = real.NVML_ERROR_NOT_FOUND


@dataclass(eq=False)
class FakeGpu:
    """One physical GPU.

    Args:
        uuid: "GPU-..." as NVML reports it.
        power_w: constant draw until ``set_power_w``.
        has_counter: False for pre-Volta GPUs (energy query raises NOT_SUPPORTED).
        has_power: False for GPUs without a power sensor.
        power_limit_w: the enforced power limit (None: query raises NOT_SUPPORTED).
        util_percent: what ``nvmlDeviceGetUtilizationRates(...).gpu`` returns.
        mig_uuids: MIG instance UUIDs ("MIG-..."); non-empty enables MIG mode.
        minor: /dev/nvidiaN minor number (Slurm's id); defaults to the index.
    """

    uuid: str
    power_w: float = 100.0
    has_counter: bool = True
    has_power: bool = True
    power_limit_w: Optional[float] = 300.0
    util_percent: int = 50
    mig_uuids: list[str] = field(default_factory=list)
    minor: Optional[int] = None
    counter_start_mj: int = 123_456_789  # counters run since driver load, not since our start
    fail_code: Optional[int] = None  # when set, every query on this GPU raises NVMLError(fail_code)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._base_mj = float(self.counter_start_mj)
        self._t_base = time.perf_counter()

    def energy_mj(self) -> int:
        with self._lock:
            return int(self._base_mj + self.power_w * 1000.0 * (time.perf_counter() - self._t_base))

    def set_power_w(self, power_w: float) -> None:
        with self._lock:
            now = time.perf_counter()
            self._base_mj += self.power_w * 1000.0 * (now - self._t_base)
            self._t_base, self.power_w = now, power_w


@dataclass(eq=False)
class _Handle:
    gpu: FakeGpu
    mig_uuid: Optional[str] = None  # set on a MIG device handle


class FakeNvml:
    """Holds the GPUs and builds the module object standing in for ``pynvml``."""

    def __init__(self, gpus: list[FakeGpu], init_code: Optional[int] = None):
        self.gpus = gpus
        self.init_code = init_code  # e.g. NVML_ERROR_DRIVER_NOT_LOADED: nvmlInit fails
        self.init_count = 0
        self.calls: dict[str, int] = {}
        self.module = self._build()

    def _build(self) -> types.ModuleType:
        m = types.ModuleType("pynvml")
        for name in dir(real):
            if name.startswith(("NVMLError", "NVML_ERROR_", "NVML_DEVICE_MIG_", "NVML_SUCCESS")):
                setattr(m, name, getattr(real, name))
        m.c_nvmlUtilization_t = real.c_nvmlUtilization_t
        fake = self

        def api(fn):
            def wrapper(*args):
                fake.calls[fn.__name__] = fake.calls.get(fn.__name__, 0) + 1
                if fn.__name__ not in ("nvmlInit", "nvmlShutdown") and fake.init_count <= 0:
                    raise real.NVMLError(real.NVML_ERROR_UNINITIALIZED)
                if args and isinstance(args[0], _Handle) and args[0].gpu.fail_code is not None:
                    raise real.NVMLError(args[0].gpu.fail_code)
                return fn(*args)

            wrapper.__name__ = fn.__name__
            setattr(m, fn.__name__, wrapper)
            return wrapper

        def physical(handle: _Handle) -> FakeGpu:
            if handle.mig_uuid is not None:  # MIG handles have no energy or power of their own
                raise real.NVMLError(NOT_SUPPORTED)
            return handle.gpu

        @api
        def nvmlInit():
            if fake.init_code is not None:
                raise real.NVMLError(fake.init_code)
            fake.init_count += 1

        @api
        def nvmlShutdown():
            if fake.init_count <= 0:
                raise real.NVMLError(real.NVML_ERROR_UNINITIALIZED)
            fake.init_count -= 1

        @api
        def nvmlDeviceGetCount():
            return len(fake.gpus)

        @api
        def nvmlDeviceGetHandleByIndex(index):
            if not 0 <= index < len(fake.gpus):
                raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
            return _Handle(fake.gpus[index])

        @api
        def nvmlDeviceGetUUID(handle):
            return handle.mig_uuid or handle.gpu.uuid

        @api
        def nvmlDeviceGetName(handle):
            return "NVIDIA Fake GPU"

        @api
        def nvmlDeviceGetMinorNumber(handle):
            gpu = handle.gpu
            return gpu.minor if gpu.minor is not None else fake.gpus.index(gpu)

        @api
        def nvmlDeviceGetMigMode(handle):
            gpu = physical(handle)
            mode = real.NVML_DEVICE_MIG_ENABLE if gpu.mig_uuids else real.NVML_DEVICE_MIG_DISABLE
            return [mode, mode]

        @api
        def nvmlDeviceGetMaxMigDeviceCount(handle):
            return 7 if physical(handle).mig_uuids else 0

        @api
        def nvmlDeviceGetMigDeviceHandleByIndex(handle, index):
            gpu = physical(handle)
            if index >= len(gpu.mig_uuids):
                raise real.NVMLError(NOT_FOUND)
            return _Handle(gpu, mig_uuid=gpu.mig_uuids[index])

        @api
        def nvmlDeviceGetTotalEnergyConsumption(handle):
            gpu = physical(handle)
            if not gpu.has_counter:
                raise real.NVMLError(NOT_SUPPORTED)
            return gpu.energy_mj()  # mJ

        @api
        def nvmlDeviceGetPowerUsage(handle):
            gpu = physical(handle)
            if not gpu.has_power:
                raise real.NVMLError(NOT_SUPPORTED)
            return int(gpu.power_w * 1000)  # mW

        @api
        def nvmlDeviceGetEnforcedPowerLimit(handle):
            gpu = physical(handle)
            if gpu.power_limit_w is None:
                raise real.NVMLError(NOT_SUPPORTED)
            return int(gpu.power_limit_w * 1000)  # mW

        @api
        def nvmlDeviceGetUtilizationRates(handle):
            return real.c_nvmlUtilization_t(gpu=physical(handle).util_percent, memory=10)

        return m
