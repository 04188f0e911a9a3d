"""`al-sweep COMMAND ...`: the console script of an installed package, one word per entry point.

    al-sweep sweep  SWEEP.yaml [key=value ...] [--cluster ...] [--dry-run] [--wait] [--retry-failed]
    al-sweep status SWEEP.yaml [key=value ...]
    al-sweep run    SWEEP.yaml [key=value ...] --run RUN_ID
    al-sweep report SWEEP.yaml [key=value ...]
    al-sweep power  SWEEP.yaml [key=value ...] [--results DIR] [--effect POINTS]
    al-sweep data   SWEEP.yaml
    al-sweep sync   SWEEP.yaml [key=value ...]       # upload the sweep's offline W&B runs
    al-sweep bench  [bench options]

Each takes the same arguments as its module form (`python -m slurm.sweep`, ...).
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "sweep": "slurm.sweep",
    "status": "slurm.status",
    "run": "al_core.run",
    "report": "analysis.report",
    "power": "analysis.power",
    "data": "al_core.data.download",
    "sync": "slurm.sync",
    "bench": "bench.bench_train",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[command])
    except ModuleNotFoundError as e:
        print(
            f"error: al-sweep {command}: {e.name} is not installed here (it ships with the repository, "
            "not the package); run it from a clone: python -m " + COMMANDS[command],
            file=sys.stderr,
        )
        return 2
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
