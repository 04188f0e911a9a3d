"""`python -m analysis.power SWEEP.yaml [key=value ...] [--results DIR] [--effect POINTS]`
(also `al-sweep power`): per question, the trials needed for 80% power for a difference of
POINTS AUBC points (default 1); prints the table and writes <sweep_dir>/report/power.csv.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from al_core.cli import Parser, setup_logging
from analysis.report import fail, sweep_dir_of
from analysis.write import write_text


def main(argv: Optional[Sequence[str]] = None) -> int:
    setup_logging()
    parser = Parser(prog="python -m analysis.power", description="Trials needed for 80% power, per question of a sweep.")
    parser.sweep_arguments("jobs/demo.yaml", optional=True, results=True)
    parser.add_argument(
        "--effect", type=float, default=1.0, metavar="POINTS", help="difference to detect, AUBC points (default 1)"
    )
    args = parser.parse_args(argv)
    if not args.effect > 0:
        return fail(f"--effect: {args.effect}; expected a positive number of AUBC points")
    sweep_dir, sweep, error = sweep_dir_of(args)
    if error:
        return fail(error)
    if not (sweep_dir / "runs").is_dir():
        return fail(f"{sweep_dir / 'runs'}: no such directory; expected a sweep's results (<output>/<name>/runs/<run_id>/)")

    from analysis.build import compute_tables, load  # the heavy imports, after the checks
    from analysis.planning import power_table

    table = power_table(compute_tables(load(sweep_dir, sweep)), effect=args.effect)
    (sweep_dir / "report").mkdir(parents=True, exist_ok=True)
    path = write_text(sweep_dir / "report" / "power.csv", table.to_csv(index=False))
    shown = table.to_string(index=False, float_format=lambda v: f"{v:.4g}")
    print(shown if len(table) else "no question has paired finished runs to plan from yet")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
