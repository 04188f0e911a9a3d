"""`python -m analysis.power SWEEP.yaml [key=value ...] [--results DIR] [--effect POINTS]`
(also `al-sweep power`): per question, the trials needed for 80% power for a difference of
POINTS AUBC points (default 1); prints the table and writes <sweep_dir>/report/power.csv.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

from al_core.cli import Parser, setup_logging


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _sweep_dir(args) -> tuple[Optional[Path], object, Optional[str]]:
    """(sweep directory, loaded sweep or None, error message or None)."""
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
        return None, None, f"cannot read sweep files ({e}); use --results DIR"
    try:
        sweep = load_sweep(args.sweep, list(args.overrides))
    except (ConfigError, OSError) as e:
        return None, None, str(e).removeprefix("error: ")
    return Path(sweep.sweep_dir), sweep, None


def main(argv: Optional[Sequence[str]] = None) -> int:
    setup_logging()
    parser = Parser(prog="python -m analysis.power", description="Trials needed for 80% power, per question of a sweep.")
    parser.add_argument("sweep", nargs="?", help="sweep file (YAML), e.g. jobs/demo.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. grid.trial=[0,1]")
    parser.add_argument("--results", metavar="DIR", help="a sweep's results directory <output>/<name> (holding runs/)")
    parser.add_argument(
        "--effect", type=float, default=1.0, metavar="POINTS", help="difference to detect, AUBC points (default 1)"
    )
    args = parser.parse_args(argv)
    if not args.effect > 0:
        return _fail(f"--effect: {args.effect}; expected a positive number of AUBC points")
    sweep_dir, sweep, error = _sweep_dir(args)
    if error:
        return _fail(error)
    if not (sweep_dir / "runs").is_dir():
        return _fail(f"{sweep_dir / 'runs'}: no such directory; expected a sweep's results (<output>/<name>/runs/<run_id>/)")

    from analysis.build import compute_tables, load  # the heavy imports, after the checks
    from analysis.planning import power_table
    from analysis.write import write_text

    table = power_table(compute_tables(load(sweep_dir, sweep)), effect=args.effect)
    (sweep_dir / "report").mkdir(parents=True, exist_ok=True)
    path = write_text(sweep_dir / "report" / "power.csv", table.to_csv(index=False))
    shown = table.to_string(index=False, float_format=lambda v: f"{v:.4g}")
    print(shown if len(table) else "no question has paired finished runs to plan from yet")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
