"""Build a fake ``/sys/class/powercap`` tree in a temp dir, laid out like the kernel's.

The real class dir holds every zone as a top-level entry (``intel-rapl:0``, ``intel-rapl:0:0``, ...),
each with ``name``, ``energy_uj`` and ``max_energy_range_uj``; subzones are also nested in their parent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

# The value Intel server CPUs report: the counter wraps at about 262 kJ.
INTEL_MAX_RANGE_UJ = 262143328850


class FakePowercap:
    """A powercap tree; ``set_uj`` moves a counter as the hardware would."""

    def __init__(self, root: Path):
        self.root = root
        self.zones: dict[str, Path] = {}  # zone dir name -> path
        (root / "intel-rapl").mkdir(parents=True, exist_ok=True)  # the control type, not a zone
        (root / "intel-rapl" / "enabled").write_text("1\n")

    def add_zone(
        self,
        zone: str,
        name: str,
        energy_uj: int = 0,
        max_range_uj: Optional[int] = INTEL_MAX_RANGE_UJ,
    ) -> Path:
        parts = zone.split(":")
        if len(parts) == 3:  # a subzone: nested in its package and linked at the top, as sysfs does
            path = self.zones[":".join(parts[:2])] / zone
            path.mkdir()
            os.symlink(path, self.root / zone)
        else:
            path = self.root / zone
            path.mkdir()
        (path / "name").write_text(name + "\n")
        (path / "energy_uj").write_text(f"{energy_uj}\n")
        if max_range_uj is not None:
            (path / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
        (path / "enabled").write_text("1\n")
        self.zones[zone] = path
        return path

    def set_uj(self, zone: str, energy_uj: int) -> None:
        # atomic, like a sysfs read: the poll thread must never see a half-written file
        path = self.zones[zone] / "energy_uj"
        tmp = path.with_name(".energy_uj.tmp")
        tmp.write_text(f"{energy_uj}\n")
        os.replace(tmp, path)

    def add_uj(self, zone: str, delta_uj: int) -> None:
        path = self.zones[zone] / "max_energy_range_uj"
        max_uj = int(path.read_text()) if path.exists() else None
        now = int((self.zones[zone] / "energy_uj").read_text()) + delta_uj
        self.set_uj(zone, now % max_uj if max_uj else now)


def make_powercap(
    root: Path,
    sockets: int = 1,
    dram: bool = True,
    core: bool = True,
    max_range_uj: Optional[int] = INTEL_MAX_RANGE_UJ,
) -> FakePowercap:
    """A server-like tree: per socket a package zone, with ``dram`` (and ``core``) subzones."""
    pc = FakePowercap(root)
    for n in range(sockets):
        pc.add_zone(f"intel-rapl:{n}", f"package-{n}", 1_000_000 * (n + 1), max_range_uj)
        sub = 0
        if dram:
            pc.add_zone(f"intel-rapl:{n}:{sub}", "dram", 500_000, max_range_uj)
            sub += 1
        if core:
            pc.add_zone(f"intel-rapl:{n}:{sub}", "core", 700_000, max_range_uj)
    return pc
