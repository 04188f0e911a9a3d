"""A sequential study (analysis.sequential) runs its trials in waves until its primary questions are
decided or its trials run out: locally in the foreground, each wave claimed exactly once, a kill
between waves resumed where it stopped."""

from __future__ import annotations

import pytest

from al_core import study
from al_core.config import load_sweep
from slurm import waves
from slurm.sweep import main as sweep_main

SWEEP = """
name: seq
output: {out}
dataset: {{name: synthetic, root: data}}
grid:
  model: [resnet18]
  optimizer: [sgd, adam]
  strategy: [random]
al: {{cycles: 2, initial_size: 60, query_size: 60, initial: random}}
train: {{epochs: 1, batch_size: 32, width: 4, checkpoint_min_s: 0, eval_batch_size: 256}}
analysis:
  primary: [optimizer]
  margin: {margin}
  sequential: {{first: 2, step: 2, max: 4}}
slurm: {{profile: local}}
"""


def _sweep(tmp_path, margin=0.001):
    path = tmp_path / "seq.yaml"
    path.write_text(SWEEP.format(out=tmp_path / "results", margin=margin))
    return path


def test_waves_run_to_the_maximum_when_undecided_and_each_is_claimed_once(tmp_path, capsys):
    path = _sweep(tmp_path)  # margin 0.001 points: never equivalent, no true difference
    assert sweep_main([str(path), "--cluster", "debug"]) == 0
    sweep = load_sweep(path)
    record = study.read(sweep.sweep_dir)
    assert [(w["wave"], w["trials"]) for w in record["waves"]] == [(1, 2), (2, 4)]
    looks = study.looks(sweep.sweep_dir)
    assert [lk["wave"] for lk in looks] == [1, 2] and looks[0]["next"]["action"] == "wave"
    assert looks[1]["next"]["action"] == "stop" and "maximum of 4 trials" in looks[1]["next"]["why"]
    assert looks[1]["verdicts"][0]["question"] == "optimizer" and looks[1]["verdicts"][0]["n_trials"] == 4
    assert len(sweep.runs()) == 8 and all((sweep.run_dir(s.run_id) / "DONE").exists() for s in sweep.runs())
    out = capsys.readouterr().out
    assert "wave 2 with 4 trials" in out and "stops: undecided (optimizer) at the maximum of 4 trials" in out
    # a second look at the last wave (a second report job) claims nothing
    assert waves.advance(sweep, note=lambda s: None) is False
    assert study.start_wave(sweep.sweep_dir, 2, 4, "again", 2) is False
    assert len(study.read(sweep.sweep_dir)["waves"]) == 2
    assert "look at wave 2" in waves.status_line(sweep)
    q = (sweep.sweep_dir / "report" / "questions.csv").read_text()
    assert "optimizer" in q and "undecided" in q


def test_a_kill_between_waves_resumes_the_same_wave(tmp_path, monkeypatch):
    path = _sweep(tmp_path)
    sweep = load_sweep(path)
    real = waves.advance

    def die_after_claim(s, note=print):
        assert real(s, note) is True  # wave 2 claimed and recorded ...
        raise KeyboardInterrupt  # ... and the process dies before running it

    monkeypatch.setattr(waves, "advance", die_after_claim)
    with pytest.raises(SystemExit) as stop:
        sweep_main([str(path), "--cluster", "debug"])
    assert stop.value.code == 130
    monkeypatch.setattr(waves, "advance", real)
    first = {s.run_id: (sweep.run_dir(s.run_id) / "DONE").stat().st_mtime_ns for s in sweep.runs()}
    assert len(first) == 4 and [w["trials"] for w in study.read(sweep.sweep_dir)["waves"]] == [2, 4]
    assert sweep_main([str(path), "--cluster", "debug"]) == 0  # the same command: wave 2, then its look
    resumed = load_sweep(path)
    assert len(resumed.runs()) == 8 and all((resumed.run_dir(s.run_id) / "DONE").exists() for s in resumed.runs())
    assert {r: (sweep.run_dir(r) / "DONE").stat().st_mtime_ns for r in first} == first  # wave 1 not run again
    assert [lk["wave"] for lk in study.looks(sweep.sweep_dir)] == [1, 2]
    assert not (sweep.sweep_dir / "study" / "wave-003").exists()


def test_an_unfinished_wave_is_never_looked_at(tmp_path):
    path = _sweep(tmp_path)
    sweep = load_sweep(path)
    notes = []
    assert waves.advance(sweep, note=notes.append) is False
    assert "has 4 run(s) without DONE" in notes[0] and not study.looks(sweep.sweep_dir)


def test_a_second_look_loaded_before_the_next_wave_was_claimed_submits_nothing(tmp_path):
    # Two report jobs of wave 1: the second loaded the sweep (2 trials) before the first claimed wave
    # 2, and looks after it did. It must not take wave 2 for its own and claim a wave 3.
    path = _sweep(tmp_path)
    stale = load_sweep(path)
    from al_core.loop import run

    for spec in stale.runs():
        run(spec, stale.run_dir(spec.run_id), log=lambda _: None)
    assert waves.advance(load_sweep(path), note=lambda s: None) is True  # the first report job: wave 2
    notes = []
    assert waves.advance(stale, note=notes.append) is False
    assert "nothing submitted here" in notes[-1]
    assert [(w["wave"], w["trials"]) for w in study.read(stale.sweep_dir)["waves"]] == [(1, 2), (2, 4)]
    assert [lk["wave"] for lk in study.looks(stale.sweep_dir)] == [1]
    assert study.wave_of(stale.sweep_dir, 4, 2) == 2 and study.wave_of(stale.sweep_dir, 3, 2) is None


@pytest.mark.parametrize("bad", ['{"waves": 3}', "not json"])
def test_a_damaged_study_record_is_one_error_line(tmp_path, bad, capsys):
    path = _sweep(tmp_path)
    folder = tmp_path / "results" / "seq" / "study"
    folder.mkdir(parents=True)
    (folder / "study.json").write_text(bad)
    with pytest.raises(SystemExit) as stop:
        waves.main([str(path)])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "study.json" in err[0]
