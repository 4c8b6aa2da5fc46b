"""The fake pynvml must not drift from the real one: names, signatures, constants, error classes, structs.

Runs without a GPU: importing the real pynvml (nvidia-ml-py) does not load the driver.
"""

from __future__ import annotations

import inspect
import re

import pynvml as real
import pytest

from fakes.nvml import FakeGpu, FakeNvml

FAKE = FakeNvml([FakeGpu("GPU-aaaaaaaa-1111-2222-3333-444444444444")]).module
FUNCTIONS = sorted(n for n in dir(FAKE) if n.startswith("nvml") and callable(getattr(FAKE, n)))


def test_the_fake_covers_every_nvml_call_powertrain_makes():
    import powertrain.energy.nvml as nvml
    import powertrain.energy.nvml_devices as devices
    import powertrain.hardware.device as hardware
    import powertrain.hardware.knobs as knobs

    used = set()
    for module in (nvml, devices, knobs, hardware):
        used |= set(re.findall(r"\b(?:nv|pynvml)\.(nvml[A-Z]\w*)", inspect.getsource(module)))
    assert {"nvmlDeviceGetHandleByUUID", "nvmlDeviceSetPowerManagementLimit"} <= used
    assert used - set(FUNCTIONS) == set(), "powertrain calls NVML functions the fake does not have"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_fake_function_has_the_real_signature(name):
    real_fn = getattr(real, name, None)
    assert real_fn is not None, f"pynvml has no {name}"
    fake_params = list(inspect.signature(getattr(FAKE, name).__wrapped__).parameters)
    assert fake_params == list(inspect.signature(real_fn).parameters)


def test_constants_errors_and_structs_are_the_real_ones():
    names = [n for n in dir(FAKE) if n.startswith(("NVML_", "NVMLError", "c_nvml"))]
    assert "NVML_FI_DEV_POWER_INSTANT" in names and "NVMLError_NoPermission" in names
    for name in names:
        assert getattr(FAKE, name) is getattr(real, name) or getattr(FAKE, name) == getattr(real, name), name


def test_errors_raised_by_the_fake_are_caught_as_the_real_classes():
    FAKE.nvmlInit()
    try:
        with pytest.raises(real.NVMLError_InvalidArgument):
            FAKE.nvmlDeviceGetHandleByIndex(99)
        with pytest.raises(real.NVMLError_NotFound):
            FAKE.nvmlDeviceGetHandleByUUID("GPU-nope")
        with pytest.raises(real.NVMLError_NoPermission):  # not root
            FAKE.nvmlDeviceSetPowerManagementLimit(FAKE.nvmlDeviceGetHandleByIndex(0), 200_000)
    finally:
        FAKE.nvmlShutdown()
    with pytest.raises(real.NVMLError_Uninitialized):
        FAKE.nvmlDeviceGetCount()
