"""Progress while waiting: one line redrawn in place on a terminal, timestamped lines in a log;
several runs in one local job process (RunChain)."""

import json
import re

from al_core.config import load_sweep
from slurm.watch import Watch


def finish_cycle(sweep, run_id, cycle):
    d = sweep.run_dir(run_id)
    d.mkdir(parents=True, exist_ok=True)
    rows = [{"run_id": run_id, "cycle": c, "test_accuracy": 0.5} for c in range(1, cycle + 1)]
    (d / "cycles.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_terminal_progress_is_one_line_redrawn_in_place(smoke_yaml, capsys):
    sweep = load_sweep(smoke_yaml, ["grid.optimizer=[sgd]", "grid.strategy=[random]"])
    ids = [s.run_id for s in sweep.runs()]
    watch = Watch(sweep, ids, tty=True)
    watch.update(ids[:1], [])
    finish_cycle(sweep, ids[0], 1)
    watch.update(ids[:1], [])
    watch.note(f"{ids[1]}: ended without DONE; see x.err")
    watch.close()
    out = capsys.readouterr().out
    draws = out.split("\r\033[K")
    assert draws[1].startswith(f"runs 0/{len(ids)} done, 1 running | cycles 0/{3 * len(ids)} |") and "ETA ?" in draws[1]
    assert "\n" not in draws[1] and "\n" not in draws[2]  # updates overwrite the line
    assert re.search(r"cycles 1/6 \| \d+s elapsed \| ETA \d+s$", draws[2])
    assert draws[3] == f"{ids[1]}: ended without DONE; see x.err\n" + draws[2] + "\n"  # the note, the line again, close()


def test_log_progress_is_plain_timestamped_lines(smoke_yaml):
    sweep = load_sweep(smoke_yaml, ["grid.optimizer=[sgd]", "grid.strategy=[random]"])
    ids = [s.run_id for s in sweep.runs()]
    lines = []
    watch = Watch(sweep, ids, print_fn=lines.append, tty=False)
    watch.update(ids[:1], [])
    watch.update(ids[:1], [])  # nothing changed: nothing printed
    watch.note(f"{ids[0]}: DONE")
    watch.close()
    assert len(lines) == 2
    assert re.match(r"\[\d\d:\d\d:\d\d\] 0/2 runs done, 1 running, 1 queued \| cycles 0/6 \| ETA \?", lines[0])
    assert re.match(rf"\[\d\d:\d\d:\d\d\] {ids[0]}: DONE$", lines[1])
    assert all("\r" not in line for line in lines)
