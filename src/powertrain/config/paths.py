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


def group_options(group: str) -> tuple[str, ...]:
    """The options conf/ ships for a config group: its YAML files' names, sorted."""
    return tuple(sorted(p.stem for p in (conf_dir() / group).glob("*.yaml")))


RUN_SUFFIX_RESOLVER = "powertrain.unique"
_suffix: list[str] = []  # this process's, once drawn


def run_suffix() -> str:
    """A short suffix that keeps run and sweep directories apart when they start in the same second.

    conf/config.yaml names them ``outputs/<date>/<H-M-S>_<suffix>``: still sorted by start time, and two
    runs (or sweeps) started at the same moment, on one machine or on many nodes, never share one. Six
    random base-32 characters (2^30 values): a clash needs two of about a thousand runs started in the same
    second to draw the same, one chance in about two thousand. The ranks of one distributed run
    (torchrun, a multi-task Slurm step) share their world's rendezvous and so derive the same suffix. One
    value per process, so a config resolved twice names one directory.
    """
    if not _suffix:
        import hashlib
        import os
        import secrets

        world = [os.environ.get(k, "") for k in ("MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID", "SLURM_JOB_ID",
                                                 "SLURM_STEP_ID")]
        shared = os.environ.get("WORLD_SIZE", "1") not in ("", "1") or os.environ.get("SLURM_STEP_NUM_TASKS", "1") not in ("", "1")
        seed = hashlib.sha256("|".join(world).encode()).digest() if shared and any(world) else secrets.token_bytes(8)
        _suffix.append(_encode(seed))
    return _suffix[0]


def fresh_suffix() -> str:
    """A new suffix in ``run_suffix``'s format, drawn on every call: for a process that starts several runs
    itself (``run_job`` in a notebook), where one value per process would put two runs in one directory."""
    import secrets

    return _encode(secrets.token_bytes(8))


def _encode(seed: bytes) -> str:
    import base64

    return base64.b32encode(seed).decode()[:6].lower()


def register_resolvers() -> None:
    """Register ``${powertrain.unique:}`` (``run_suffix``) with OmegaConf; cached, so Hydra's copies of the
    config (a sweep's jobs, a Slurm task's unpickled launcher) resolve the directory as the launcher did."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(RUN_SUFFIX_RESOLVER):
        OmegaConf.register_new_resolver(RUN_SUFFIX_RESOLVER, lambda: run_suffix(), use_cache=True)
