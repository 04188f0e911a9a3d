"""Command line of the report: `python -m analysis.report SWEEP.yaml [key=value ...]` or
`python -m analysis.report --results DIR`; writes <sweep_dir>/report/ and prints a summary.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence

from al_core.cli import Parser, setup_logging


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def sweep_dir_of(args) -> tuple[Optional[Path], object, Optional[str]]:
    """(sweep directory, loaded sweep or None, error message or None) of the arguments
    `SWEEP.yaml [key=value ...]` or `--results DIR` (args.sweep, args.overrides, args.results)."""
    if args.results is not None:
        if args.sweep or args.overrides:
            return None, None, "--results DIR takes no sweep file or key=value overrides"
        return Path(args.results), None, None
    if not args.sweep:
        return None, None, "no sweep given; expected SWEEP.yaml [key=value ...] or --results DIR"
    if not Path(args.sweep).is_file():
        return None, None, f"{args.sweep}: no such sweep file; expected a YAML sweep file such as jobs/demo.yaml"
    try:
        from al_core.config import ConfigError, load_sweep
    except ImportError as e:
        return None, None, f"cannot read sweep files ({e}); expected the project installed (make setup), or use --results DIR"
    try:
        sweep = load_sweep(args.sweep, list(args.overrides))
    except (ConfigError, OSError) as e:
        return None, None, str(e).removeprefix("error: ")
    return Path(sweep.sweep_dir), sweep, None


def main(argv: Optional[Sequence[str]] = None) -> int:
    setup_logging()
    parser = Parser(prog="python -m analysis.report", description="Report of an active-learning sweep.")
    parser.sweep_arguments("jobs/demo.yaml", optional=True, results=True)
    parser.add_argument(
        "--curves",
        metavar="SELECT",
        help="training curves of a run id, a group (run id without -t<trial>) or a strategy (default: random, mean over trials)",
    )
    parser.add_argument(
        "--include-mismatched",
        action="store_true",
        help="report runs whose run.json records another config than the sweep's (a deliberate merge; "
        "they are still named under 'Runs left out')",
    )
    args = parser.parse_args(argv)

    sweep_dir, sweep, error = sweep_dir_of(args)
    if error:
        return fail(error)
    if args.results is not None:
        command = f"python -m analysis.report --results {shlex.quote(args.results)}"
    else:
        command = "python -m analysis.report " + " ".join(shlex.quote(a) for a in [args.sweep, *args.overrides])
    if not (sweep_dir / "runs").is_dir():
        what = "a results directory" if sweep is None else "the results of this sweep"
        return fail(
            f"{sweep_dir / 'runs'}: no such directory; expected {what} (<output>/<name>/runs/<run_id>/), "
            "written once a run has started"
        )

    from analysis.build import compute_tables, load, write_report  # the heavy imports, after the checks
    from analysis.findings import summary_lines

    tables = compute_tables(load(sweep_dir, sweep, include_mismatched=args.include_mismatched))
    try:
        path = write_report(tables, command, curves=args.curves)
    except OSError as e:  # a read-only or full results directory: nothing half-written is left (write_text is atomic)
        where = e.filename or sweep_dir / "report"
        print(
            f"error: cannot write the report under {where} ({e.strerror or e}); expected a writable results "
            "directory (copy the sweep's runs/ somewhere writable and use --results DIR)",
            file=sys.stderr,
        )
        return 1
    print(path)
    for line in summary_lines(tables):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
