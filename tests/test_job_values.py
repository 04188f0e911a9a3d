"""No value chosen on the test set: every fixed optimizer hyper-parameter in jobs/ says, in a
comment, the command that chose it on validation folds of the labelled set (`chosen-by:`), or the
protocol it replicates (`replication:`). A sweep that tunes its optimizers itself (`tune:`) may
start from a recipe without either; a synthetic smoke sweep claims no result and is exempt."""

import re
import shlex
from pathlib import Path

import pytest

from al_core.config import load_sweep, yaml_load

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted((ROOT / "jobs").glob("*.yaml"))
TAG = re.compile(r"#\s*(chosen-by|replication):\s*(.+)$")
SIBLING = re.compile(r"\s+[a-z_]+: \{.*\}\s*$")  # another optimizer's values on one line


def fixed_values(text: str) -> list[tuple[str, int]]:
    """(key, line number) of each `optim.<optimizer>` mapping and `optim.recipe` in a sweep file."""
    raw = yaml_load(text) or {}
    optim = raw.get("optim") or {}
    tuned = set((raw.get("tune") or {}).get("grid") or {})
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(r"optim:", line)), None)
    out = []
    for key in optim:
        if key in ("decay_exclude_norm_bias", "wd_normalized", "schedule"):
            continue
        if key == "recipe" and set(raw["grid"]["optimizer"]) <= tuned:
            continue  # starting values of the sweep's own tuning
        line = next(i for i in range(start + 1, len(lines)) if re.match(rf"\s+{re.escape(key)}:", lines[i]))
        out.append((key, line))
    return out


def tag_of(lines: list[str], line: int) -> tuple[str, str] | None:
    """The tag on the value's line, or in the comment block right above it (a block may cover
    several optimizers' lines: `sgd: {...}` then `adam: {...}` under one comment)."""
    found = TAG.search(lines[line])
    i = line - 1
    while not found and i >= 0 and (lines[i].strip().startswith("#") or SIBLING.match(lines[i])):
        found = TAG.search(lines[i])
        i -= 1
    return found.groups() if found else None


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_every_fixed_optimizer_value_says_how_it_was_chosen(path):
    text = path.read_text()
    raw = yaml_load(text)
    if raw["dataset"]["name"] == "synthetic":
        return
    lines = text.splitlines()
    for key, line in fixed_values(text):
        tag = tag_of(lines, line)
        assert tag is not None, (
            f"{path.name}:{line + 1}: optim.{key} carries no '# chosen-by: COMMAND' or '# replication: SOURCE'"
        )
        kind, value = tag
        if kind == "chosen-by":
            check_command(value, key, raw["grid"]["optimizer"])


def check_command(command: str, key: str, optimizers: list[str]) -> None:
    """The command runs the project's tuning (a tune: section) for the value's optimizer(s)."""
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "slurm.sweep"], command
    sweep_file, overrides = argv[3], [a for a in argv[4:] if "=" in a and not a.startswith("--")]
    sweep = load_sweep(ROOT / sweep_file, overrides)
    names = optimizers if key == "recipe" else [key]
    for name in names:
        runs = [s for s in sweep.runs() if s.optimizer == name]
        assert runs and all(s.config.tune is not None for s in runs), f"{command}: does not tune {name}"


def test_the_check_fails_on_a_value_without_its_command(tmp_path):
    text = (ROOT / "jobs" / "fmnist-randaugment.yaml").read_text()
    lines = text.splitlines()
    ((key, line),) = fixed_values(text)
    assert key == "sgd" and tag_of(lines, line)[0] == "chosen-by"
    stripped = "\n".join(x for x in lines if "chosen-by" not in x)
    ((_, line2),) = fixed_values(stripped)
    assert tag_of(stripped.splitlines(), line2) is None
    with pytest.raises(AssertionError, match="does not tune"):
        check_command("python -m slurm.sweep jobs/fmnist-cpu.yaml", "sgd", ["sgd"])
    tagged = "optim:\n  # replication: Yoo & Kweon 2019\n  sgd: {lr: 0.1}\n"
    assert tag_of(tagged.splitlines(), 2) == ("replication", "Yoo & Kweon 2019")
