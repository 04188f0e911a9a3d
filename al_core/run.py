"""`python -m al_core.run SWEEP.yaml [key=value ...] --run RUN_ID`: run or resume one run here.

Exit status: 0 done (or already done), 2 bad input, 75 interrupted by a signal after writing a
checkpoint, or the run directory is in use by another live process (run the same command again
later), 78 this node cannot serve the run, 1 an I/O failure (disk full, not writable).
"""

from __future__ import annotations

import signal
import sys

from al_core import tracking
from al_core.cli import Parser, guarded
from al_core.loop import run
from al_core.train import Interrupted, StopFlag
from al_core.results import EXIT_INTERRUPTED, EXIT_OK
from al_core.rundir import RunLocked

STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR2")


def configure_threads(share: int | None = None) -> int:
    """Fix torch's CPU threads, the one policy of every run (here, in a SLURM job, in a packed task):
    `share` (a local or packed task's cores / runs), else AL_THREADS, else SLURM_CPUS_PER_TASK,
    else SLURM_CPUS_ON_NODE, else torch's default. Returns the count in force.

    CPU results are bit-reproducible only at a fixed thread count, so a job pins it from its
    allocation rather than from whatever the node happens to have.
    """
    import os

    import torch

    candidates = [str(share) if share else ""] + [
        os.environ.get(v, "") for v in ("AL_THREADS", "SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE")
    ]
    for value in candidates:
        if value.isdigit() and int(value) > 0:
            torch.set_num_threads(int(value))
            break
    return torch.get_num_threads()


def install_stop_handlers(stop: StopFlag, names=STOP_SIGNALS) -> None:
    """Turn the named signals into a stop request honoured after the current training step."""

    def handler(signum, frame):
        stop.request(signal.Signals(signum).name)

    for name in names:
        signal.signal(getattr(signal, name), handler)


@guarded
def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m al_core.run", description="Run or resume one active-learning run in this process.")
    p.sweep_arguments("jobs/smoke.yaml")
    p.add_argument("--run", required=True, metavar="RUN_ID", help="e.g. resnet18-sgd-random-t0")
    p.add_argument("--restart", action="store_true", help="discard what the run directory holds and start over")
    args, sweep = p.parse_sweep(argv)
    tracking.require(sweep.tracking)
    spec = sweep.run(args.run)
    configure_threads()
    stop = StopFlag()
    install_stop_handlers(stop)
    try:
        run(spec, sweep.run_dir(spec.run_id), restart=args.restart, stop=stop)
    except Interrupted as e:
        print(f"{spec.run_id}: {e}; run the same command again to resume", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except RunLocked as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
