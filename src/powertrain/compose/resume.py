"""``resume=<run_dir>`` on the command line: continue a run that stopped before its end, in its own directory.

Preempted, interrupted (Ctrl-C) and lost runs (killed: result.json still says ``running`` but its process is
gone) continue from their last checkpoint; a failed run too, if it saved progress (e.g. a full disk).

Rewritten before Hydra composes anything into the run's overrides (``run.overrides`` of its
result.json; ``.hydra/overrides.yaml`` if it died before writing one) plus ``hydra.run.dir=<run_dir>``, so the new attempt composes the same config, finds
the preempted checkpoint there and continues it (``run.run`` does the resuming and carries the energy
ledger of every attempt). Equivalent by hand: the same overrides plus ``hydra.run.dir=<run_dir>``.
"""

from __future__ import annotations

import os
from pathlib import Path

from powertrain.config.errors import ConfigError
from powertrain.results import CHECKPOINT_FILE, ENV_RESUME, RESUMABLE, load_result

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
    # killed before result.json: the checkpoint decides (run.run checks the config); "lost": dead but
    # still saying running
    result, status, _ = load_result(run_dir)
    if result is None and not saved.exists():
        raise ConfigError("resume", raw, "a powertrain run directory (one holding result.json or .hydra/)")
    if status == "running":
        run = result.get("run") or {} if result else {}
        raise ConfigError("resume", raw, f"a run that is not training right now (pid {run.get('pid')} on "
                          f"{run.get('host')} is; wait for it to end)")
    resumable = status in RESUMABLE or status in ("missing", "failed")
    if not resumable or not (run_dir / CHECKPOINT_FILE).exists():
        # a resumable status fails only for want of the file: say that, not the status it could resume from
        why = f"it has no {CHECKPOINT_FILE}" if resumable else f"its last attempt ended {status}"
        raise ConfigError("resume", raw, "a run that stopped before its end with a checkpoint (preempted, "
                          f"interrupted, lost or failed; {why}; nothing to resume)")
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
    os.environ[ENV_RESUME] = str(run_dir)  # a failed run's progress checkpoint may be continued too
    return kept + extra + [f"hydra.run.dir={run_dir}"]
