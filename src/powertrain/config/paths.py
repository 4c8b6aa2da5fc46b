"""Where powertrain's own files live, whatever the working directory or install mode."""

from __future__ import annotations

from pathlib import Path


def conf_dir() -> Path:
    """The Hydra config directory: packaged in a wheel as ``powertrain/conf``, else the repo's ``conf/``."""
    package = Path(__file__).resolve().parents[1]  # src/powertrain (or site-packages/powertrain)
    packaged = package / "conf"
    if packaged.is_dir():
        return packaged
    return package.parents[1] / "conf"  # editable install / source checkout: <repo>/src/powertrain
