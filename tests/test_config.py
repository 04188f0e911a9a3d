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


# ---------------------------------------------------------------------------------------------
# Keys added with issue 21 (optim.decay_exclude_norm_bias, optim.wd_normalized,
# train.deterministic) and issue 26 (train.eval_batch_size: auto): at their defaults they leave
# every recorded config, and so every fingerprint, as it was.
ADDED_BAD = [
    (["optim.decay_exclude_norm_bias=maybe"], "optim.decay_exclude_norm_bias: expected true, false or a list"),
    (["optim.wd_normalized=[lion]"], "optim.wd_normalized: unknown optimizer 'lion'"),
    (["train.deterministic=1"], "train.deterministic: expected true or false"),
    (["train.eval_batch_size=big"], "train.eval_batch_size: expected auto or an integer >= 1"),
    (["train.eval_batch_size=0"], "train.eval_batch_size: expected an integer >= 1"),
    (
        ["train.reset=false", "tune={cycles: [1, 3], grid: {sgd: {lr: [0.1]}, adam: {}}}"],
        "train.reset false with tune.cycles [1, 3]",
    ),
]


@pytest.mark.parametrize("overrides,message", ADDED_BAD)
def test_added_keys_refuse_bad_values_with_one_error_line(smoke_yaml, tmp_path, capsys, overrides, message):
    test_bad_values_exit_2_with_one_error_line(smoke_yaml, tmp_path, capsys, overrides, message)


def test_reset_false_may_tune_at_cycle_1_only(smoke_yaml):
    cfg = load_sweep(smoke_yaml, ["train.reset=false", "tune={cycles: [1], grid: {sgd: {lr: [0.1]}, adam: {}}}"])
    assert cfg.run("resnet18-sgd-random-t0").config.tune["cycles"] == [1]


# Recorded before these keys existed (commit f6ecedb): pinned so no later key moves them.
OLD_FINGERPRINTS = {
    ("cifar10", "resnet18-sgd-random-t0"): "3fdecc13bbc5f5ad",
    ("smoke", "resnet18-adam-learning_loss-t1"): "d1f15bc49225f9e1",
}


@pytest.mark.parametrize("sweep_name,run_id", list(OLD_FINGERPRINTS))
@pytest.mark.parametrize(
    "defaults",
    [
        [],
        ["optim.decay_exclude_norm_bias=false", "optim.wd_normalized=false", "train.deterministic=false"],
        ["optim.decay_exclude_norm_bias=[adamw]", "optim.wd_normalized=[rmsprop]"],  # not this run's optimizer
    ],
)
def test_added_keys_at_their_defaults_keep_old_fingerprints(sweep_name, run_id, defaults):
    root = Path(__file__).resolve().parents[1]
    cfg = load_sweep(root / "jobs" / f"{sweep_name}.yaml", defaults).run(run_id).config
    assert cfg.fingerprint() == OLD_FINGERPRINTS[(sweep_name, run_id)]
    d = cfg.to_dict()
    assert "deterministic" not in d["train"] and "decay_exclude_norm_bias" not in d and "wd_normalized" not in d


def test_eval_batch_size_auto_records_the_old_default(smoke_yaml):
    auto = load_sweep(smoke_yaml, ["train.eval_batch_size=auto"]).run("resnet18-sgd-random-t0").config
    old = load_sweep(smoke_yaml, ["train.eval_batch_size=1024"]).run("resnet18-sgd-random-t0").config
    assert auto.train.eval_batch_size == "auto" and auto.to_dict()["train"]["eval_batch_size"] == 1024
    assert auto.fingerprint() == old.fingerprint()  # runs recorded with the old default 1024 resume


def test_added_keys_when_set_are_part_of_the_identity(smoke_yaml):
    base = load_sweep(smoke_yaml).run("resnet18-adam-random-t0").config
    for extra, where in [
        (["train.deterministic=true"], lambda d: d["train"]["deterministic"] is True),
        (["optim.decay_exclude_norm_bias=true"], lambda d: d["decay_exclude_norm_bias"] is True),
        (["optim.wd_normalized=[adam]"], lambda d: d["wd_normalized"] is True),
    ]:
        cfg = load_sweep(smoke_yaml, extra).run("resnet18-adam-random-t0").config
        assert where(cfg.to_dict()) and cfg.fingerprint() != base.fingerprint(), extra
    # A list names the optimizers a flag applies to; resolved per run.
    sweep = load_sweep(smoke_yaml, ["optim.decay_exclude_norm_bias=[adam]"])
    assert sweep.run("resnet18-adam-random-t0").config.decay_exclude_norm_bias is True
    assert sweep.run("resnet18-sgd-random-t0").config.decay_exclude_norm_bias is False


def test_fair_and_replication_sweeps_pin_precision_and_determinism():
    root = Path(__file__).resolve().parents[1]
    fair = load_sweep(root / "jobs" / "cifar10-fair.yaml")
    for spec in fair.runs():
        assert spec.config.train.precision == "fp32"
        assert spec.config.decay_exclude_norm_bias == (spec.optimizer == "adamw")
    ll4al = load_sweep(root / "jobs" / "ll4al.yaml")
    assert all(s.config.train.precision == "fp32" and s.config.train.deterministic for s in ll4al.runs())


def test_the_fair_sweep_normalises_decay_and_its_ranges_are_the_raw_ones_at_the_first_fits():
    # jobs/cifar10-fair.yaml tunes normalised weight decay: a cycle-1 fit (2 of 3 folds of 1,000
    # labels, 200 epochs, batches of 128) turns each range back into the raw one it replaced.
    from al_core.optim import normalized_decay

    root = Path(__file__).resolve().parents[1]
    fair = load_sweep(root / "jobs" / "cifar10-fair.yaml")
    raw = {"sgd": (1e-5, 1e-3), "adam": (1e-6, 1e-3), "adamw": (1e-3, 0.5), "rmsprop": (1e-6, 1e-3)}
    for spec in fair.runs():
        cfg = spec.config
        assert cfg.wd_normalized is True
        n_fit = cfg.al.initial_size * (cfg.tune["folds"] - 1) // cfg.tune["folds"]
        rng = cfg.tune["grid"]["weight_decay"]
        got = [normalized_decay(rng[k], cfg.train.batch_size, n_fit, cfg.train.epochs) for k in ("low", "high")]
        assert got == pytest.approx(raw[spec.optimizer], rel=0.02), spec.run_id
