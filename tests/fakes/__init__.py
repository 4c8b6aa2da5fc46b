"""Faithful stand-ins for hardware interfaces (the NVML binding, the powercap sysfs tree)."""
