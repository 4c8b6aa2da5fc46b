"""``python -m powertrain.experiments NAME [overrides]`` = ``python -m powertrain experiment=NAME [overrides]``.

Kept for the command line it has always offered; the studies themselves live in ``powertrain.studies``.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Forward to the entry point with ``experiment=NAME``."""
    from powertrain.config.paths import conf_dir

    names = sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))
    if len(sys.argv) < 2 or sys.argv[1] not in names:
        print(f"usage: python -m powertrain.experiments {{{','.join(names)}}} [overrides]", file=sys.stderr)
        sys.exit(2)
    from powertrain.__main__ import main as powertrain_main

    sys.argv = [sys.argv[0], f"experiment={sys.argv[1]}", *sys.argv[2:]]
    powertrain_main()


if __name__ == "__main__":
    main()
