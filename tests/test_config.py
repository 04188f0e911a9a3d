"""The sweep file: validation errors name the key, exit 2, one line, nothing written."""

import subprocess
import sys
from pathlib import Path

import pytest

from al_core.config import ConfigError, load_sweep
from al_core.run import main as run_main

BAD = [
    (["colour=red"], "unknown key 'colour'"),
    (["train.epoch=3"], "unknown key train.epoch"),
    (["train.epochs=0"], "train.epochs"),
    (["train.batch_size=-4"], "train.batch_size"),
    (["train.epochs=three"], "train.epochs: expected an integer"),
    (["train.reset=maybe"], "train.reset: expected true or false"),
    (["grid.model=[resnet9]"], "grid.model: unknown model 'resnet9'; expected one of resnet18, resnet34, resnet50"),
    (["grid.optimizer=[lion]"], "grid.optimizer: unknown optimizer 'lion'"),
    (["grid.strategy=[bayes]"], "grid.strategy: unknown strategy 'bayes'"),
    (["dataset.name=imagenet"], "dataset.name: unknown dataset 'imagenet'"),
    (["al.cycles=20", "al.query_size=100"], "exceeds the synthetic pool of 1200"),
    (["al.initial=smart"], "al.initial: expected random or strategy"),
    (["optim.sgd.lr=0"], "optim.sgd.lr"),
    (["optim.adam.momentum=0.9"], "unknown key optim.adam.momentum"),
    (["train.precision=fp8"], "train.precision"),
    (["grid.colour=[1]"], "grid.colour: unknown axis"),
    (["al.subset=10"], "al.subset"),
    (["noequals"], "expected key=value"),
    (["select.stochastic=gumbel"], "select.stochastic: expected one of none, power, softmax, softrank"),
    (["select.stochastic=power", "grid.strategy=[margin]", "select.beta=-1"], "select.beta: expected a finite number >= 0"),
    (["select.stochastic=power"], "select.stochastic: strategy random ranks no scores"),
    (["grid.strategy=[margin+gumbel]"], "grid.strategy: 'margin+gumbel': expected NAME+MODE"),
    (["grid.strategy=[coreset+power]"], "coreset ranks no scores"),
    (["grid.strategy=[margin+power]", "select.stochastic=softmax"], "contradicts strategy margin+power"),
    (["select.batchbald_samples=0"], "select.batchbald_samples"),
    (["select.probcover_delta=-1"], "select.probcover_delta"),
    (["select.colour=1"], "unknown key select.colour"),
]


@pytest.mark.parametrize("overrides,message", BAD)
def test_bad_values_exit_2_with_one_error_line(smoke_yaml, tmp_path, capsys, overrides, message):
    with pytest.raises(SystemExit) as e:
        run_main([str(smoke_yaml), *overrides, "--run", "resnet18-sgd-random-t0"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "results").exists()  # nothing written


def test_missing_file_and_unknown_run(smoke_yaml, capsys):
    with pytest.raises(SystemExit):
        run_main(["nope.yaml", "--run", "x"])
    assert "sweep file 'nope.yaml' not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_main([str(smoke_yaml), "--run", "resnet99-sgd-random-t0"])
    assert "no run 'resnet99-sgd-random-t0'" in capsys.readouterr().err


def test_bad_yaml_subprocess_has_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [unclosed\n")
    out = subprocess.run([sys.executable, "-m", "al_core.run", str(bad), "--run", "x"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr and len(out.stderr.splitlines()) == 1


def test_overrides_and_scientific_notation(smoke_yaml):
    s = load_sweep(smoke_yaml, ["optim.adam.lr=3e-4", "grid.trial=[4]", "al.cycles=2"])
    runs = {r.run_id: r for r in s.runs()}
    assert runs["resnet18-adam-random-t4"].config.optim["lr"] == 3e-4
    assert runs["resnet18-sgd-random-t4"].config.optim["lr"] == 0.1  # registry default
    assert s.al.cycles == 2 and len(runs) == 6


def test_extra_grid_axes_are_appended_to_run_ids(smoke_yaml):
    s = load_sweep(
        smoke_yaml,
        ["grid.model=[resnet18]", "grid.optimizer=[sgd]", "grid.strategy=[random]", "grid.trial=[0]", "grid.train.width=[4,8]"],
    )
    runs = s.runs()
    assert [r.run_id for r in runs] == ["resnet18-sgd-random-t0-4", "resnet18-sgd-random-t0-8"]
    assert [r.config.train.width for r in runs] == [4, 8]
    assert runs[0].config.fingerprint() != runs[1].config.fingerprint()


def test_select_keys_stay_out_of_the_fingerprint_at_their_defaults(smoke_yaml):
    """Runs recorded before the `select` section existed keep their fingerprint (and resume)."""
    base = load_sweep(smoke_yaml).runs()[0].config
    assert "select" not in base.to_dict()
    same = ["select.stochastic=none", "select.beta=2.0", "select.batchbald_samples=50", "select.probcover_delta=1.5"]
    assert load_sweep(smoke_yaml, same).runs()[0].config.fingerprint() == base.fingerprint()  # keys others read
    one = ["grid.optimizer=[sgd]", "grid.trial=[0]"]
    drawn = load_sweep(smoke_yaml, [*one, "grid.strategy=[margin, margin+power, margin+softrank]", "select.beta=2.0"]).runs()
    assert [r.run_id for r in drawn] == [
        "resnet18-sgd-margin-t0",
        "resnet18-sgd-margin+power-t0",
        "resnet18-sgd-margin+softrank-t0",
    ]
    assert [r.config.stochastic for r in drawn[:3]] == [None, ("power", 2.0), ("softrank", 2.0)]
    assert drawn[1].config.to_dict()["select"] == {"beta": 2.0} and "select" not in drawn[0].config.to_dict()
    axis = load_sweep(smoke_yaml, [*one, "grid.strategy=[margin]", "grid.select.stochastic=[none, power]"]).runs()
    assert [r.config.stochastic for r in axis[:2]] == [None, ("power", 1.0)]
    assert axis[1].config.to_dict()["select"] == {"stochastic": "power"} and "select" not in axis[0].config.to_dict()
    bb = load_sweep(smoke_yaml, ["grid.strategy=[batchbald]", "train.dropout=0.3", "select.batchbald_samples=50"]).runs()[0]
    assert bb.config.to_dict()["select"] == {"batchbald_samples": 50}


def test_every_sweep_file_validates():
    from pathlib import Path

    files = sorted(Path(__file__).resolve().parents[1].joinpath("jobs").glob("*.yaml"))
    assert files
    for f in files:
        try:
            load_sweep(f)
        except ConfigError as e:
            raise AssertionError(f"{f.name}: {e}") from None


def test_validating_and_planning_a_sweep_imports_no_torch():
    """A login node validates and dry-runs a sweep without importing torch (seconds on a shared file system)."""
    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys\nfrom al_core.config import load_sweep\nfrom slurm import sweep\n"
        "for path in ('jobs/cifar10.yaml', 'jobs/cifar10-fair.yaml', 'jobs/demo.yaml', 'jobs/smoke.yaml'):\n"
        "    load_sweep(path).runs()\n"
        "assert sweep.main(['jobs/cifar10.yaml', '--dry-run']) == 0\n"
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not loaded, loaded[:5]\n"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]


def test_a_plugin_cannot_take_a_declared_built_in_name_before_its_module_is_imported():
    from al_core.registry import STRATEGIES, Registry

    toys = Registry("toy", home="al_core.strategies")
    toys.declare("entropy", needs_dropout=False)
    with pytest.raises(ValueError, match="registered twice"):
        toys.register("entropy")(object())
    assert STRATEGIES.fact("bald", "needs_dropout") is True and "entropy" in STRATEGIES


def test_declared_built_ins_are_the_registered_ones_with_the_same_facts():
    """The names and facts al_core.registry declares (torch-free) are what the modules register."""
    code = """
import inspect
from al_core.registry import MODELS, STRATEGIES
declared = {"model": dict(MODELS._declared), "strategy": dict(STRATEGIES._declared)}
assert len(declared["model"]) == 3 and len(declared["strategy"]) == 11, declared
import al_core.models, al_core.strategies
for name in declared["model"]:
    assert "dropout" in inspect.signature(MODELS.get(name)).parameters, name
for name, facts in declared["strategy"].items():
    assert STRATEGIES.get(name).needs_dropout == facts["needs_dropout"], name
    assert STRATEGIES.get(name).scored == facts["scored"], name
assert not MODELS._declared and not STRATEGIES._declared, "a declaration no module filled"
"""
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
