"""A seeded fuzz pass: sweep files, overrides, result shards and checkpoints built from valid ones,
then damaged. The property everywhere: the same result as the undamaged input, or one `error:`
line (ConfigError / BadCheckpoint / a run left out, named); never a traceback, a silent wrong
row, or a written DONE.

The damage is structural (what crashes, partial writes, copies and hand edits do): a digit
changed inside a valid number is another valid row, which no reader can tell from the real one.
"""

from __future__ import annotations

import copy
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from al_core import checkpoint, results
from al_core.config import ConfigError, load_sweep, yaml_load
from analysis.build import load
from tests.test_report_integrity import _row, _write

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "jobs" / "smoke.yaml"
VALUES = [None, True, False, 0, -1, 7, 10**12, 0.5, -0.5, 1e-3, 1e308, float("nan"), float("inf"), -float("inf"),
          "", "abc", "1e-3", "resnet18", [], [1, "x"], [0.1, 0.2], {}, {"a": 1}, {"lr": 0.1}]  # fmt: skip


def _paths(node, prefix=()):
    """Every (path, value) in a nested dict."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*prefix, k), v
            yield from _paths(v, (*prefix, k))


def _mutate(raw: dict, rng: random.Random) -> dict:
    raw = copy.deepcopy(raw)
    for _ in range(rng.randint(1, 3)):
        paths = list(_paths(raw))
        path, _ = rng.choice(paths)
        parent = raw
        for p in path[:-1]:
            parent = parent[p]
        op = rng.random()
        if op < 0.6:
            parent[path[-1]] = copy.deepcopy(rng.choice(VALUES))
        elif op < 0.8:
            del parent[path[-1]]
        else:
            parent[rng.choice(["bogus", "lr", "epochs", "1", "name"])] = rng.choice(VALUES)
    return raw


def _damage_text(text: str, rng: random.Random) -> str:
    i = rng.randrange(len(text))
    op = rng.random()
    if op < 0.3:
        return text[:i]
    if op < 0.6:
        return text[:i] + rng.choice(["{", "[", ":", "- ", "\t", "&a", "*a", "!!python/object:os.system", "\x00", "'"]) + text[i:]
    return text[:i] + text[i + rng.randint(1, 20) :]


def _check_sweep(path: Path, overrides=()) -> str:
    """'ok' or 'refused'; fails the test on anything but a Sweep or a one-line ConfigError."""
    try:
        sweep = load_sweep(path, list(overrides))
    except ConfigError as e:
        message = str(e)
        assert message and "\n" not in message and "Traceback" not in message, message
        return "refused"
    runs = sweep.runs()
    assert runs and all(r.run_id for r in runs)
    return "ok"


def test_damaged_sweep_files_load_or_give_one_error_line(tmp_path):
    rng = random.Random(20261207)
    raw = yaml_load(SMOKE.read_text())
    seen = {"ok": 0, "refused": 0}
    for i in range(150):
        text = yaml.safe_dump(_mutate(raw, rng), allow_unicode=True) if i % 3 else _damage_text(SMOKE.read_text(), rng)
        path = tmp_path / f"sweep{i}.yaml"
        path.write_text(text)
        seen[_check_sweep(path)] += 1
    assert seen["refused"] > 50 and seen["ok"] > 5  # the damage is neither always fatal nor always harmless


def test_random_overrides_apply_or_give_one_error_line(tmp_path):
    rng = random.Random(7)
    keys = [".".join(p) for p, _ in _paths(yaml_load(SMOKE.read_text()))] + ["optim.sgd.lr", "optim.adam.eps", "tune.cycles"]
    texts = ["0", "-1", ".nan", ".inf", "-.inf", "1e-3", "[1, 2]", "{a: 1}", "x", "", "[", "!!python/name:os.system", "null"]
    seen = {"ok": 0, "refused": 0}
    for _ in range(150):
        overrides = [f"{rng.choice(keys)}={rng.choice(texts)}" for _ in range(rng.randint(1, 3))]
        seen[_check_sweep(SMOKE, overrides)] += 1
    assert seen["refused"] > 50 and seen["ok"] >= 3


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_command_line_refuses_a_damaged_sweep_in_one_line(tmp_path, seed):
    rng = random.Random(seed)
    raw = yaml_load(SMOKE.read_text())
    while True:  # a damaged file that the loader refuses (checked in process first: cheap)
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(_mutate(raw, rng)))
        if _check_sweep(path) == "refused":
            break
    out = subprocess.run(
        [sys.executable, "-m", "slurm.sweep", str(path), "--cluster", "local", "--dry-run"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), out.stderr


# ---------------------------------------------------------------------------------------------- shards
LINE_DAMAGE = ["drop", "duplicate", "conflict", "truncate", "garbage", "char", "nan", "type", "relabel", "cycle", "empty"]


def _damage_rows(lines: list[str], rng: random.Random, kind: str) -> list[str]:
    i = rng.randrange(len(lines))
    row = json.loads(lines[i])
    if kind == "drop":
        return lines[:i] + lines[i + 1 :]
    if kind == "duplicate":
        return [*lines, lines[i]]
    if kind == "conflict":
        return [*lines, json.dumps(dict(row, test_accuracy=row["test_accuracy"] / 2))]
    if kind == "truncate":
        return [*lines[:i], lines[i][: rng.randrange(len(lines[i]))]]
    if kind == "garbage":
        return [*lines[:i], "\x00{not json", *lines[i:]]
    if kind == "char":  # a structural character replaced: the line stops being JSON, or a string changes
        j = rng.randrange(len(lines[i]))
        return [*lines[:i], lines[i][:j] + rng.choice('{}[]":,x') + lines[i][j + 1 :], *lines[i + 1 :]]
    if kind == "nan":
        return [*lines[:i], json.dumps(dict(row, test_accuracy=float("nan"))), *lines[i + 1 :]]
    if kind == "type":
        key = rng.choice(["cycle", "n_labeled", "test_accuracy", "trial", "model"])
        return [*lines[:i], json.dumps(dict(row, **{key: rng.choice(["3", None, [1], 2.5, True])})), *lines[i + 1 :]]
    if kind == "relabel":
        key, value = rng.choice([("strategy", "random"), ("optimizer", "adam"), ("trial", 1), ("dataset", "cifar10")])
        return [*lines[:i], json.dumps(dict(row, **{key: value})), *lines[i + 1 :]]
    if kind == "cycle":
        return [*lines[:i], json.dumps(dict(row, cycle=row["cycle"] + 5)), *lines[i + 1 :]]
    return []


def test_damaged_shards_report_the_true_rows_or_leave_the_run_out(tmp_path):
    rng = random.Random(11)
    sweep = load_sweep(SMOKE, [f"output={tmp_path}"])
    for i, spec in enumerate(sweep.runs()):
        _write(sweep.run_dir(spec.run_id), spec.config.to_dict(), [_row(spec, c, 0.3 + 0.1 * c + 0.01 * i) for c in (1, 2, 3)])

    def measures(cycles):
        cols = ["run_id", "dataset", "model", "optimizer", "strategy", "trial", "cycle", "n_labeled", "test_accuracy"]
        return {tuple(r) for r in cycles[cols].itertuples(index=False)}

    truth = measures(load(sweep.sweep_dir, sweep).cycles)
    specs = sweep.runs()
    for n in range(60):
        spec = rng.choice(specs)
        path = sweep.run_dir(spec.run_id) / results.CYCLES
        original = path.read_text()
        kind = LINE_DAMAGE[n % len(LINE_DAMAGE)]
        path.write_text("".join(line + "\n" for line in _damage_rows(original.splitlines(), rng, kind)))
        data = load(sweep.sweep_dir, sweep)
        got = measures(data.cycles)
        assert got <= truth, f"{kind}: a row that is not the run's own is reported: {sorted(got - truth)[:2]}"
        mine = {r for r in got if r[0] == spec.run_id}
        if mine:  # reported: every cycle it had (done), or a prefix of them (a run in progress)
            assert sorted(r[6] for r in mine) == list(range(1, len(mine) + 1)), kind
        others = {r for r in truth if r[0] != spec.run_id}
        assert others <= got, f"{kind}: damage to one run changed another's rows"
        assert len(data.runs) == len(specs)
        path.write_text(original)


# ---------------------------------------------------------------------------------------------- checkpoints
def test_damaged_checkpoints_verify_or_are_set_aside(tmp_path):
    rng = random.Random(5)
    state = {"model": {"w": torch.arange(12.0).reshape(3, 4)}, "accum": [1.0, 2.0, 3], "epochs": [{"cycle": 1}]}
    pos = checkpoint.Position(2, 1, 0)
    fp = "f" * 16
    good = checkpoint.save(tmp_path, pos, fp, state).read_bytes()
    header, _, payload = good.partition(b"\n")
    head = json.loads(header)
    damages = [
        lambda: good[: rng.randrange(len(good))],
        lambda: good + b"trailing",
        lambda: header + b"\n" + bytes(b ^ 0xFF if rng.random() < 0.01 else b for b in payload),
        lambda: b"\n".join([header[: rng.randrange(len(header))], payload]),
        lambda: json.dumps(dict(head, **{rng.choice(list(head)): rng.choice(VALUES[:19])})).encode() + b"\n" + payload,
        lambda: b"",
        lambda: b"\x80\x04K\x01." + payload,  # a pickle where the header belongs
    ]
    for n in range(70):
        blob = damages[n % len(damages)]()
        path = tmp_path / pos.filename()
        path.write_bytes(blob)
        try:
            got_pos, got = checkpoint.read(path, fp)
        except checkpoint.BadCheckpoint as e:
            assert "\n" not in str(e)
            assert checkpoint.latest_good(tmp_path, fp) is None  # set aside, never raised
            assert not (tmp_path / results.DONE).exists()
            for p in tmp_path.glob("*.bad"):
                p.unlink()
        else:  # verified: it is the checkpoint that was written
            assert got_pos == pos and torch.equal(got["model"]["w"], state["model"]["w"])
