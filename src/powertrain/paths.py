"""Where powertrain's own files live, whatever the working directory or install mode."""

from __future__ import annotations

from pathlib import Path


def conf_dir() -> Path:
    """The Hydra config directory: packaged in a wheel as ``powertrain/conf``, else the repo's ``conf/``."""
    here = Path(__file__).resolve().parent
    packaged = here / "conf"
    if packaged.is_dir():
        return packaged
    return here.parents[1] / "conf"  # editable install / source checkout: <repo>/src/powertrain
