"""A fake ``pynvml`` module for tests: same function names, return types and error classes.

Error classes, error codes, structs and constants are taken from the real ``pynvml`` (importing it does
not load the driver), so code under test catches exactly what it would catch on a GPU node;
tests/test_nvml_contract.py checks every function here against the real module's signature. Functions
raise ``NVMLError_Uninitialized`` before ``nvmlInit``, like the real library.

Where the real library is awkward, so is the fake:
- the energy counter advances in discrete ticks (``counter_period_s``), so a short window can read 0 J;
- ``nvmlDeviceGetPowerUsage`` is a 1-s average on Ampere (except GA100) and newer; the instantaneous
  figure is the field ``NVML_FI_DEV_POWER_INSTANT`` of ``nvmlDeviceGetFieldValues``;
- utilisation raises NotSupported on a MIG-enabled GPU; opening a handle can raise NoPermission or
  GpuIsLost (``handle_error``);
- setting limits and clocks needs root (``FakeNvml(privileged=True)``) and stays within constraints.

Time comes from ``clock`` (default ``time.perf_counter``); pass a ``FakeClock`` for deterministic tests.

Use: ``fake = FakeNvml([FakeGpu(...)]); monkeypatch.setitem(sys.modules, "pynvml", fake.module)``.
"""

from __future__ import annotations

import math
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

import pynvml as real

NOT_SUPPORTED = real.NVML_ERROR_NOT_SUPPORTED
GPU_IS_LOST = real.NVML_ERROR_GPU_IS_LOST
NOT_FOUND = real.NVML_ERROR_NOT_FOUND
NO_PERMISSION = real.NVML_ERROR_NO_PERMISSION
INVALID_ARGUMENT = real.NVML_ERROR_INVALID_ARGUMENT
VOLTA, AMPERE, HOPPER = (
    real.NVML_DEVICE_ARCH_VOLTA,
    real.NVML_DEVICE_ARCH_AMPERE,
    real.NVML_DEVICE_ARCH_HOPPER,
)


class FakeClock:
    """A clock that moves only when told: ``clock()`` reads it, ``clock.advance(s)`` moves it."""

    def __init__(self, t_s: float = 1000.0):
        self.t_s = t_s

    def __call__(self) -> float:
        return self.t_s

    def advance(self, dt_s: float) -> None:
        self.t_s += dt_s


@dataclass(eq=False)
class FakeGpu:
    """One physical GPU.

    Args:
        uuid: "GPU-..." as NVML reports it (torch reports the same without the "GPU-" prefix).
        power_w: constant draw until ``set_power_w``.
        has_counter: False for pre-Volta GPUs (energy query raises NOT_SUPPORTED).
        has_power: False for GPUs without a power sensor.
        power_limit_w: the enforced power limit (None: query raises NOT_SUPPORTED).
        util_percent: what ``nvmlDeviceGetUtilizationRates(...).gpu`` returns.
        mig_uuids: MIG instance UUIDs ("MIG-..."); non-empty enables MIG mode.
        mig_slices: GPU-instance slices of each MIG instance (default 1 each, of 7).
        minor: /dev/nvidiaN minor number (Slurm's id); defaults to the index.
        architecture: NVML_DEVICE_ARCH_*; Ampere and newer average ``GetPowerUsage`` over 1 s.
        counter_period_s: how often the energy counter advances (real GPUs: ~10-100 ms).
        has_instant_power: the driver has the ``NVML_FI_DEV_POWER_INSTANT`` field.
        handle_error: an NVML error code raised when a handle to this GPU is opened.
        other_pids: other processes computing on this GPU.
        power_limit_range_w: NVML's (min, max) constraints on the power limit.
        graphics_clocks_mhz: supported graphics clocks; empty = locking clocks is not supported.
    """

    uuid: str
    power_w: float = 100.0
    has_counter: bool = True
    has_power: bool = True
    power_limit_w: Optional[float] = 300.0
    util_percent: int = 50
    mig_uuids: list[str] = field(default_factory=list)
    mig_slices: Optional[list[int]] = None
    minor: Optional[int] = None
    counter_start_mj: int = 123_456_789  # counters run since driver load, not since our start
    fail_code: Optional[int] = None  # when set, every query on this GPU raises NVMLError(fail_code)
    architecture: int = VOLTA
    counter_period_s: float = 0.005
    has_instant_power: bool = True
    handle_error: Optional[int] = None
    other_pids: list[int] = field(default_factory=list)
    power_limit_range_w: tuple[float, float] = (100.0, 300.0)
    graphics_clocks_mhz: list[int] = field(default_factory=lambda: list(range(210, 1981, 15)))
    name: str = "NVIDIA Fake GPU"
    clock: Callable[[], float] = time.perf_counter

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._t0 = self.clock()
        self._segments: list[tuple[float, float]] = [(self._t0, self.power_w)]  # (from time, watts)
        self.default_power_limit_w = self.power_limit_w
        self.locked_clocks_mhz: Optional[tuple[int, int]] = None

    def energy_at_mj(self, t: float) -> float:
        """Exact energy (mJ) at time ``t``; before the first segment the first power is assumed."""
        total_mj = float(self.counter_start_mj) + self._segments[0][1] * 1000.0 * (
            min(t, self._t0) - self._t0
        )
        for i, (start, power_w) in enumerate(self._segments):
            end = self._segments[i + 1][0] if i + 1 < len(self._segments) else math.inf
            if t > start:
                total_mj += power_w * 1000.0 * (min(t, end) - start)
        return total_mj

    def energy_mj(self) -> int:
        """What the counter shows now: the energy at its last tick."""
        with self._lock:
            now = self.clock()
            if self.counter_period_s > 0:
                now = self._t0 + math.floor((now - self._t0) / self.counter_period_s) * self.counter_period_s
            return int(self.energy_at_mj(now))

    def instant_power_w(self) -> float:
        return self._segments[-1][1]

    def average_power_w(self, over_s: float = 1.0) -> float:
        with self._lock:
            now = self.clock()
            return (self.energy_at_mj(now) - self.energy_at_mj(now - over_s)) / 1000.0 / over_s

    @property
    def averages_power(self) -> bool:
        return self.architecture >= AMPERE

    def set_power_w(self, power_w: float) -> None:
        with self._lock:
            self._segments.append((self.clock(), power_w))
            self.power_w = power_w


@dataclass(eq=False)
class _Handle:
    gpu: FakeGpu
    mig_uuid: Optional[str] = None  # set on a MIG device handle


@dataclass
class _Process:
    pid: int
    usedGpuMemory: Optional[int] = None  # noqa: N815 - the real struct's field name


class FakeNvml:
    """Holds the GPUs and builds the module object standing in for ``pynvml``."""

    def __init__(self, gpus: list[FakeGpu], init_code: Optional[int] = None, privileged: bool = False):
        self.gpus = gpus
        self.init_code = init_code  # e.g. NVML_ERROR_DRIVER_NOT_LOADED: nvmlInit fails
        self.privileged = privileged  # root or CAP_SYS_ADMIN: may set limits and clocks
        self.init_count = 0
        self.calls: dict[str, int] = {}
        self.module = self._build()

    def _build(self) -> types.ModuleType:  # noqa: C901 - one nested function per NVML call
        m = types.ModuleType("pynvml")
        for name in dir(real):
            if name.startswith(("NVMLError", "NVML_", "c_nvml")):
                setattr(m, name, getattr(real, name))
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
            wrapper.__wrapped__ = fn  # the contract test reads the signature through this
            setattr(m, fn.__name__, wrapper)
            return wrapper

        def physical(handle: _Handle) -> FakeGpu:
            if handle.mig_uuid is not None:  # MIG handles have no energy, power or knobs of their own
                raise real.NVMLError(NOT_SUPPORTED)
            return handle.gpu

        def open_handle(gpu: FakeGpu) -> _Handle:
            if gpu.handle_error is not None:
                raise real.NVMLError(gpu.handle_error)
            return _Handle(gpu)

        def need_root() -> None:
            if not fake.privileged:
                raise real.NVMLError(NO_PERMISSION)

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
        def nvmlSystemGetDriverVersion():
            return "550.54.15"

        @api
        def nvmlDeviceGetCount():
            return len(fake.gpus)

        @api
        def nvmlDeviceGetHandleByIndex(index):
            if not 0 <= index < len(fake.gpus):
                raise real.NVMLError(INVALID_ARGUMENT)
            return open_handle(fake.gpus[index])

        @api
        def nvmlDeviceGetHandleByUUID(uuid):
            uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
            for gpu in fake.gpus:
                if gpu.uuid == uuid:
                    return open_handle(gpu)
                if uuid in gpu.mig_uuids:
                    return _Handle(gpu, mig_uuid=uuid)
            raise real.NVMLError(NOT_FOUND)

        @api
        def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(migDevice):  # noqa: N803 - real name
            if migDevice.mig_uuid is None:
                raise real.NVMLError(INVALID_ARGUMENT)
            return _Handle(migDevice.gpu)

        @api
        def nvmlDeviceGetUUID(handle):
            return handle.mig_uuid or handle.gpu.uuid

        @api
        def nvmlDeviceGetIndex(handle):
            return fake.gpus.index(physical(handle))

        @api
        def nvmlDeviceGetName(handle):
            return handle.gpu.name

        @api
        def nvmlDeviceGetArchitecture(device):
            return device.gpu.architecture

        @api
        def nvmlDeviceGetMinorNumber(handle):
            gpu = handle.gpu
            return gpu.minor if gpu.minor is not None else fake.gpus.index(gpu)

        @api
        def nvmlDeviceGetMigMode(device):
            gpu = physical(device)
            mode = real.NVML_DEVICE_MIG_ENABLE if gpu.mig_uuids else real.NVML_DEVICE_MIG_DISABLE
            return [mode, mode]

        @api
        def nvmlDeviceGetMaxMigDeviceCount(device):
            return 7 if physical(device).mig_uuids else 0

        @api
        def nvmlDeviceGetMigDeviceHandleByIndex(device, index):
            gpu = physical(device)
            if index >= len(gpu.mig_uuids):
                raise real.NVMLError(NOT_FOUND)
            return _Handle(gpu, mig_uuid=gpu.mig_uuids[index])

        @api
        def nvmlDeviceGetAttributes(device):
            if device.mig_uuid is None:
                raise real.NVMLError(NOT_SUPPORTED)  # only MIG handles are asked here
            slices = device.gpu.mig_slices or [1] * len(device.gpu.mig_uuids)
            n = slices[device.gpu.mig_uuids.index(device.mig_uuid)]
            return real.c_nvmlDeviceAttributes(
                multiprocessorCount=14 * n, gpuInstanceSliceCount=n, computeInstanceSliceCount=n
            )

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
            power_w = gpu.average_power_w() if gpu.averages_power else gpu.instant_power_w()
            return int(power_w * 1000)  # mW

        @api
        def nvmlDeviceGetFieldValues(handle, fieldIds):  # noqa: N803 - real name
            gpu = physical(handle)
            values = (real.c_nvmlFieldValue_t * len(fieldIds))()
            for value, field_id in zip(values, fieldIds, strict=True):
                value.fieldId = field_id
                value.valueType = real.NVML_VALUE_TYPE_UNSIGNED_INT
                if field_id == real.NVML_FI_DEV_POWER_INSTANT and gpu.has_power and gpu.has_instant_power:
                    value.nvmlReturn = real.NVML_SUCCESS
                    value.value.uiVal = int(gpu.instant_power_w() * 1000)  # mW
                else:  # an unknown field fails in its own slot; the call itself succeeds
                    value.nvmlReturn = NOT_SUPPORTED
            return values

        @api
        def nvmlDeviceGetEnforcedPowerLimit(handle):
            gpu = physical(handle)
            if gpu.power_limit_w is None:
                raise real.NVMLError(NOT_SUPPORTED)
            return int(gpu.power_limit_w * 1000)  # mW

        @api
        def nvmlDeviceGetPowerManagementLimit(handle):
            return nvmlDeviceGetEnforcedPowerLimit.__wrapped__(handle)

        @api
        def nvmlDeviceGetPowerManagementDefaultLimit(handle):
            gpu = physical(handle)
            if gpu.default_power_limit_w is None:
                raise real.NVMLError(NOT_SUPPORTED)
            return int(gpu.default_power_limit_w * 1000)

        @api
        def nvmlDeviceGetPowerManagementLimitConstraints(handle):
            gpu = physical(handle)
            if gpu.power_limit_w is None:
                raise real.NVMLError(NOT_SUPPORTED)
            return [int(gpu.power_limit_range_w[0] * 1000), int(gpu.power_limit_range_w[1] * 1000)]

        @api
        def nvmlDeviceSetPowerManagementLimit(handle, limit):
            gpu = physical(handle)
            if gpu.power_limit_w is None:
                raise real.NVMLError(NOT_SUPPORTED)
            need_root()
            lo_mw, hi_mw = (int(x * 1000) for x in gpu.power_limit_range_w)
            if not lo_mw <= limit <= hi_mw:
                raise real.NVMLError(INVALID_ARGUMENT)
            gpu.power_limit_w = limit / 1000.0

        @api
        def nvmlDeviceGetSupportedMemoryClocks(handle):
            gpu = physical(handle)
            if not gpu.graphics_clocks_mhz:
                raise real.NVMLError(NOT_SUPPORTED)
            return [1593]

        @api
        def nvmlDeviceGetSupportedGraphicsClocks(handle, memoryClockMHz):  # noqa: N803 - real name
            gpu = physical(handle)
            if not gpu.graphics_clocks_mhz or memoryClockMHz != 1593:
                raise real.NVMLError(NOT_SUPPORTED if not gpu.graphics_clocks_mhz else INVALID_ARGUMENT)
            return sorted(gpu.graphics_clocks_mhz, reverse=True)

        @api
        def nvmlDeviceSetGpuLockedClocks(handle, minGpuClockMHz, maxGpuClockMHz):  # noqa: N803
            gpu = physical(handle)
            if not gpu.graphics_clocks_mhz:
                raise real.NVMLError(NOT_SUPPORTED)
            need_root()
            if minGpuClockMHz > maxGpuClockMHz:
                raise real.NVMLError(INVALID_ARGUMENT)
            gpu.locked_clocks_mhz = (minGpuClockMHz, maxGpuClockMHz)

        @api
        def nvmlDeviceResetGpuLockedClocks(handle):
            gpu = physical(handle)
            if not gpu.graphics_clocks_mhz:
                raise real.NVMLError(NOT_SUPPORTED)
            need_root()
            gpu.locked_clocks_mhz = None

        @api
        def nvmlDeviceGetUtilizationRates(handle):
            gpu = physical(handle)
            if gpu.mig_uuids:  # utilisation is not reported for a GPU split into MIG instances
                raise real.NVMLError(NOT_SUPPORTED)
            return real.c_nvmlUtilization_t(gpu=gpu.util_percent, memory=10)

        @api
        def nvmlDeviceGetComputeRunningProcesses(handle):
            return [_Process(pid) for pid in physical(handle).other_pids]

        return m
