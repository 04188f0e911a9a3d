"""Command-line plumbing shared by every entry point: one `error:` line and exit 2 on bad input.

No traceback reaches the user for a mistake in a sweep file, a key or a value.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, NoReturn

from al_core.config import Sweep, load_sweep
from al_core.results import EXIT_FAILED as EXIT_IO, EXIT_NODE, EXIT_USAGE


class _Console(logging.Handler):
    """INFO lines to stdout and warnings to stderr, each flushed at once (a job's log is read live);
    the streams are looked up per record, so a replaced sys.stdout (a test's capture) is honoured."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging must never take the run down
            self.handleError(record)


PROJECT_LOGGERS = ("al_core", "slurm", "analysis", "bench")


def setup_logging(level: int = logging.INFO) -> None:
    """The project's library modules log through `logging`; a command shows their lines as plain text."""
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, _Console) for h in logger.handlers):
            logger.addHandler(_Console())
        logger.setLevel(level)


def fail(message: str, status: int = EXIT_USAGE) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one `error:` line (exit 2), like every other bad input."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {self.prog} --help)")

    def sweep_arguments(self, example: str = "jobs/cifar10.yaml", optional: bool = False, results: bool = False) -> None:
        """The sweep file and its key=value overrides (`results`: or --results, a results directory)."""
        self.add_argument("sweep", nargs="?" if optional else None, help=f"sweep file (YAML), e.g. {example}")
        self.add_argument("overrides", nargs="*", help="dotted key=value overrides, as given to slurm.sweep (e.g. al.cycles=3)")
        if results:
            self.add_argument("--results", metavar="DIR", help="a sweep's results directory <output>/<name> (holding runs/)")

    def parse_sweep(self, argv: list[str] | None) -> tuple[argparse.Namespace, Sweep]:
        """The arguments (options may come between the overrides) and the sweep they name."""
        args = self.parse_intermixed_args(argv)
        return args, load_sweep(args.sweep, args.overrides)


def guarded(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """Wrap a main(): ConfigError and DataError become `error:` + exit 2; a node that cannot serve
    the run (NodeError, DataMissing) `error:` + exit 78; OSError `error:` + exit 1."""

    def wrapper(argv: list[str] | None = None) -> int:
        from al_core.errors import ConfigError, DataError, DataMissing, NodeError

        setup_logging()
        try:
            return main(argv)
        except (NodeError, DataMissing) as e:
            fail(str(e), EXIT_NODE)
        except (ConfigError, DataError) as e:
            fail(str(e))
        except OSError as e:
            fail(io_error_line(e), EXIT_IO)
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return wrapper


def io_error_line(e: OSError) -> str:
    """The one line an I/O failure gets (exit 1): the file, and for a full disk the bytes needed."""
    from al_core.io import DiskFull

    where = f" {e.filename}" if getattr(e, "filename", None) else ""
    if isinstance(e, DiskFull):
        return f"cannot write{where}: {e.strerror}"
    return f"cannot write or read{where}: {e.strerror or e}; expected a writable output directory with free space"
