"""The hardware a run uses: the device (``device``), its profile with TDP and life-cycle figures
(``profiles``, one YAML per profile under conf/hardware), and the GPU settings a run may change and
always restores (``knobs``: power limit, locked clocks).

Control, not metering: energy/ reads the hardware, this package picks and sets it.
Layer: imports ``config`` and ``energy`` (CPU model, NVML handles).
"""
