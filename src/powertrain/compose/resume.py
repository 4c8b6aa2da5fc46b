"""``resume=<run_dir>`` on the command line: continue a preempted run in its own directory.

Rewritten before Hydra composes anything into the run's overrides (``run.overrides`` of its
result.json; ``.hydra/overrides.yaml`` if it died before writing one) plus ``hydra.run.dir=<run_dir>``, so the new attempt composes the same config, finds
the preempted checkpoint there and continues it (``run.run`` does the resuming and carries the energy
ledger of every attempt). Equivalent by hand: the same overrides plus ``hydra.run.dir=<run_dir>``.
"""

from __future__ import annotations

from pathlib import Path

from powertrain.config.errors import ConfigError
from powertrain.results import CHECKPOINT_FILE, read_result

KEY = "resume="


def resume_argv(argv: list[str]) -> list[str]:
    """Expand ``resume=<dir>`` in ``argv``; other arguments are kept (and win over the saved overrides).

    Raises:
        ConfigError: the directory is not a preempted powertrain run.
    """
    hits = [a for a in argv if a.startswith(KEY)]
    if not hits:
        return argv
    raw = hits[-1][len(KEY):]
    if raw in ("", "null"):
        return [a for a in argv if not a.startswith(KEY)]
    run_dir = Path(raw).expanduser().resolve()
    saved = run_dir / ".hydra" / "overrides.yaml"
    try:
        result = read_result(run_dir)
    except (OSError, ValueError):
        result = None  # killed before result.json: the checkpoint decides (run.run checks the config)
    status = result.get("status") if result else None
    if result is None and not saved.exists():
        raise ConfigError("resume", raw, "a powertrain run directory (one holding result.json or .hydra/)")
    if status not in (None, "preempted") or not (run_dir / CHECKPOINT_FILE).exists():
        why = f"its last attempt ended {status}" if status else f"it has no {CHECKPOINT_FILE}"
        raise ConfigError("resume", raw, f"a preempted run with a checkpoint ({why}; nothing to resume)")
    if result is not None:
        # the preempted attempt's own record: Hydra rewrites .hydra/overrides.yaml on every start, also
        # for an attempt that was then refused because its overrides differed
        saved_overrides = [str(o) for o in result.get("run", {}).get("overrides", [])]
    else:
        import yaml  # comes with Hydra

        saved_overrides = [str(o) for o in yaml.safe_load(saved.read_text()) or []]
    extra = [a for a in argv if not a.startswith(KEY)]
    extra_keys = {a.split("=", 1)[0].lstrip("+~") for a in extra if "=" in a}
    kept = [o for o in saved_overrides if o.split("=", 1)[0].lstrip("+~") not in extra_keys]
    return kept + extra + [f"hydra.run.dir={run_dir}"]
