"""Which physical GPUs a run uses, as NVML handles: the mapping from CUDA ordinals to NVML devices.

Two ways, best first:
1. By UUID: torch knows each CUDA ordinal's UUID (``torch.cuda.get_device_properties(i).uuid``) and NVML
   opens the same GPU with ``nvmlDeviceGetHandleByUUID``. This is the only mapping that is right on a
   node mixing GPU models, where CUDA's default order (fastest first) differs from NVML's (PCI bus).
2. From the environment, where torch cannot say: ``CUDA_VISIBLE_DEVICES`` (indices, ``GPU-`` UUIDs or
   unique prefixes, ``MIG-`` ids), else Slurm's ``SLURM_STEP_GPUS``/``SLURM_JOB_GPUS``, else all GPUs.
   Indices there are taken in NVML (PCI bus) order, right with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``.

A GPU NVML cannot open (NoPermission, GpuIsLost) becomes a target with ``error`` set, so it alone is
estimated and the others are still measured. pynvml is imported only here and in nvml.py.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Optional


def load_pynvml() -> ModuleType:
    """Import pynvml (raises ImportError if nvidia-ml-py is not installed)."""
    import pynvml

    return pynvml


def text(value: Any) -> str:
    """NVML strings arrive as bytes from old bindings and str from new ones."""
    return value.decode() if isinstance(value, bytes) else str(value)


class Session:
    """One ``nvmlInit`` shared by the sources built together; the last to stop shuts NVML down."""

    def __init__(self, nv: ModuleType):
        self.nv, self.users = nv, 0
        self._lock = threading.Lock()  # a sampler thread may build its fallback while others stop

    def lease(self) -> Callable[[], None]:
        """Count one more user; returns its release, which acts once however often it is called."""
        with self._lock:
            self.users += 1
        held = True

        def release() -> None:
            nonlocal held
            with self._lock:
                if not held:
                    return
                held = False
                self.users -= 1
                last = self.users == 0
            if last:
                try:
                    self.nv.nvmlShutdown()
                except self.nv.NVMLError:
                    pass  # shutting down a failed driver must not end the run

        return release


@dataclass
class GpuTarget:
    """A physical GPU this process uses, as it will be metered."""

    ordinal: int  # the CUDA ordinal (torch's cuda:N) of its first visible entry
    nvml_index: Optional[int]
    handle: Any  # the physical GPU (MIG instances are metered through their parent); None if unopenable
    uuid: str
    mig_enabled: bool = False
    mig_uuids: list[str] = field(default_factory=list)  # the MIG instances the run uses on it
    mig_handles: list[Any] = field(default_factory=list)
    error: Optional[str] = None  # why NVML could not open this GPU


@dataclass
class _Device:
    index: int
    handle: Any
    uuid: str
    minor: Optional[int]
    mig_enabled: bool
    mig: dict[str, Any]  # MIG uuid -> handle
    error: Optional[str] = None


def _err(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _mig_instances(nv: ModuleType, handle: Any) -> tuple[bool, dict[str, Any]]:
    try:
        enabled = nv.nvmlDeviceGetMigMode(handle)[0] == nv.NVML_DEVICE_MIG_ENABLE
    except nv.NVMLError:  # NotSupported on GPUs without MIG
        return False, {}
    out: dict[str, Any] = {}
    if enabled:
        for j in range(nv.nvmlDeviceGetMaxMigDeviceCount(handle)):
            try:
                mig_handle = nv.nvmlDeviceGetMigDeviceHandleByIndex(handle, j)
            except nv.NVMLError:  # NotFound: no instance in this slot
                continue
            out[text(nv.nvmlDeviceGetUUID(mig_handle))] = mig_handle
    return enabled, out


def _enumerate(nv: ModuleType) -> list[_Device]:
    devices = []
    for i in range(nv.nvmlDeviceGetCount()):
        try:  # per device: one GPU this user may not open must not take the others down with it
            handle = nv.nvmlDeviceGetHandleByIndex(i)
            uuid = text(nv.nvmlDeviceGetUUID(handle))
        except nv.NVMLError as err:
            devices.append(_Device(i, None, "", None, False, {}, error=_err(err)))
            continue
        try:
            minor: Optional[int] = nv.nvmlDeviceGetMinorNumber(handle)
        except nv.NVMLError:
            minor = None
        enabled, mig = _mig_instances(nv, handle)
        devices.append(_Device(i, handle, uuid, minor, enabled, mig))
    return devices


def _resolve(token: str, devices: list[_Device]) -> Optional[tuple[_Device, Optional[str]]]:
    """The device (and MIG id) a CUDA_VISIBLE_DEVICES entry names, or None if CUDA would reject it."""
    if token.isdigit():
        i = int(token)
        return (devices[i], None) if i < len(devices) else None
    if token.startswith("MIG-") and "/" in token:
        # the pre-R470 form MIG-GPU-<uuid>/<gi>/<ci> names its parent GPU directly
        parent = token[len("MIG-") :].split("/")[0]
        matches = [(d, token) for d in devices if d.uuid == parent]
    elif token.startswith("MIG-"):
        matches = [(d, m) for d in devices for m in d.mig if m.startswith(token)]
    elif token.startswith("GPU-"):
        # CUDA accepts any unique prefix of a UUID
        matches = [(d, None) for d in devices if d.uuid and d.uuid.startswith(token)]
    else:
        return None
    return matches[0] if len(matches) == 1 else None


def _int_list(spec: str) -> list[int]:
    """Parse Slurm's GPU list: "0,2" or "0-3" (entries that are not numbers are skipped)."""
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        if lo.isdigit() and (not hi or hi.isdigit()):
            out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def _add(targets: list[GpuTarget], target: GpuTarget) -> None:
    """Append, merging MIG instances of one physical GPU so its energy is not counted twice."""
    for t in targets:
        if t.error is None and target.error is None and t.uuid == target.uuid:
            t.mig_uuids += [u for u in target.mig_uuids if u not in t.mig_uuids]
            t.mig_handles += target.mig_handles
            return
    targets.append(target)


def _visible(nv: ModuleType, environ: Optional[Mapping[str, str]]) -> tuple[list[GpuTarget], str]:
    """One target per visible CUDA ordinal (MIG instances of one GPU not yet merged)."""
    env = os.environ if environ is None else environ
    devices = _enumerate(nv)
    picks: list[tuple[_Device, Optional[str]]] = []
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    slurm_var = next((v for v in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS") if env.get(v)), None)
    if cvd is not None:
        source = f"CUDA_VISIBLE_DEVICES={cvd!r}"
        for token in cvd.split(","):
            resolved = _resolve(token.strip(), devices)
            if resolved is None:
                break  # CUDA ignores an invalid entry and every entry after it
            picks.append(resolved)
    elif slurm_var is not None:
        source = f"{slurm_var}={env[slurm_var]!r}"
        # Slurm's ids are the /dev/nvidiaN minor numbers from gres.conf, not NVML indices
        by_id = {d.minor if d.minor is not None else d.index: d for d in devices}
        picks = [(by_id[i], None) for i in _int_list(env[slurm_var]) if i in by_id]
    else:
        source = "all GPUs NVML reports"
        picks = [(d, None) for d in devices]
    targets: list[GpuTarget] = []
    for ordinal, (dev, mig) in enumerate(picks):
        target = GpuTarget(ordinal, dev.index, dev.handle, dev.uuid, dev.mig_enabled, error=dev.error)
        if mig is not None:
            target.mig_uuids, target.mig_handles = [mig], [dev.mig[mig]] if mig in dev.mig else []
        targets.append(target)
    return targets, source


def visible_gpus(nv: ModuleType, environ: Optional[Mapping[str, str]] = None) -> tuple[list[GpuTarget], str]:
    """The physical GPUs this process may use, in CUDA order, and which setting decided it.

    Several visible MIG instances of one GPU become one target, so its energy is not counted twice.
    """
    targets: list[GpuTarget] = []
    picks, source = _visible(nv, environ)
    for target in picks:
        _add(targets, target)
    return targets, source


def torch_cuda_uuid(ordinal: int) -> Optional[str]:
    """The UUID CUDA reports for ``cuda:<ordinal>``, or None where torch or CUDA cannot say.

    Asks only a torch the run has already imported (a GPU run, which initialises CUDA anyway).
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_available():
            return None
        return str(torch.cuda.get_device_properties(ordinal).uuid)
    except Exception:  # an old torch without .uuid, a broken CUDA install: fall back to the environment
        return None


def _by_uuid(nv: ModuleType, ordinal: int, cuda_uuid: str) -> GpuTarget:
    """Open the GPU CUDA calls ``cuda_uuid`` (torch omits NVML's "GPU-"/"MIG-" prefix)."""
    names = (
        [cuda_uuid] if cuda_uuid.startswith(("GPU-", "MIG-")) else [f"GPU-{cuda_uuid}", f"MIG-{cuda_uuid}"]
    )
    last: Optional[BaseException] = None
    for name in names:
        try:
            handle = nv.nvmlDeviceGetHandleByUUID(name)
        except nv.NVMLError as err:
            last = err
            if isinstance(err, nv.NVMLError_NotFound):
                continue
            return GpuTarget(ordinal, None, None, name, error=_err(err))
        try:
            mig_handles: list[Any] = []
            if name.startswith("MIG-"):
                mig_handles = [handle]
                handle = nv.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle)
            uuid = text(nv.nvmlDeviceGetUUID(handle))
            index = nv.nvmlDeviceGetIndex(handle)
            enabled, _ = _mig_instances(nv, handle)
        except nv.NVMLError as err:
            return GpuTarget(ordinal, None, None, name, error=_err(err))
        mig_uuids = [name] if mig_handles else []
        return GpuTarget(ordinal, index, handle, uuid, enabled or bool(mig_handles), mig_uuids, mig_handles)
    return GpuTarget(ordinal, None, None, names[0], error=f"NVML has no GPU with CUDA's UUID ({last})")


def run_gpus(
    nv: ModuleType,
    ordinals: Optional[Sequence[int]],
    environ: Optional[Mapping[str, str]] = None,
    cuda_uuid: Optional[Callable[[int], Optional[str]]] = None,
) -> tuple[list[GpuTarget], str]:
    """The physical GPUs behind the CUDA ``ordinals`` a run uses (None: every GPU it may use).

    Args:
        nv: the pynvml module, initialised.
        ordinals: CUDA ordinals (torch's ``cuda:N``) the run computes on.
        environ: environment for the fallback mapping (default ``os.environ``).
        cuda_uuid: ordinal -> CUDA's UUID (default: torch's, when CUDA is initialised).
    """
    lookup = torch_cuda_uuid if cuda_uuid is None else cuda_uuid
    uuids = {o: lookup(o) for o in ordinals} if ordinals is not None else {}
    if ordinals is not None and uuids and all(uuids.values()):
        targets: list[GpuTarget] = []
        for o in ordinals:
            _add(targets, _by_uuid(nv, o, uuids[o] or ""))
        return targets, "CUDA device UUIDs"
    picks, decided_by = _visible(nv, environ)
    wanted = set(ordinals) if ordinals is not None else None
    targets = []
    for target in picks:
        if wanted is None or target.ordinal in wanted:
            _add(targets, target)
    return targets, decided_by
