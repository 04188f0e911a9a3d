"""Plugins: the examples through al_core.run and a local sweep; the three refusals; fingerprints."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from al_core.config import ConfigError, load_sweep
from tests._forked import run as forked_run

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "plugins"


@pytest.fixture
def plugin_sweep(tmp_path):
    """examples/plugins copied under tmp_path, its sweep writing there."""
    d = tmp_path / "plugins"
    shutil.copytree(EXAMPLES, d)
    y = d / "sweep.yaml"
    y.write_text(y.read_text().replace("output: results", f"output: {tmp_path / 'results'}"))
    return y


def sweep_cmd(python, *args):
    return subprocess.run([python, "-m", "slurm.sweep", *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_example_plugins_through_al_core_run(plugin_sweep, python, tmp_path):
    run_id = "tiny_cnn-sgd-farthest_first-t0"
    p = forked_run([plugin_sweep, "--run", run_id], {**os.environ, "AL_THREADS": "1"}, timeout=600)
    assert p.returncode == 0, p.stderr
    run_dir = tmp_path / "results" / "plugins-demo" / "runs" / run_id
    rows = [json.loads(line) for line in (run_dir / "cycles.jsonl").read_text().splitlines()]
    assert [r["cycle"] for r in rows] == [1, 2] and len(rows[1]["queried"]) == 100
    config = json.loads((run_dir / "run.json").read_text())["config"]
    assert set(config["plugins"]) == {"tiny_cnn.py", "farthest_first.py"}
    # A changed plugin is a changed config: the resume refuses (exit 2, one error line naming plugins).
    (run_dir / "DONE").unlink()
    f = plugin_sweep.parent / "farthest_first.py"
    f.write_text(f.read_text() + "\n# changed\n")
    p = forked_run([plugin_sweep, "--run", run_id], timeout=600)
    assert p.returncode == 2 and p.stderr.startswith("error:") and "plugins.farthest_first.py" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("cluster", ["local"])
def test_example_plugins_through_a_local_sweep(plugin_sweep, python, tmp_path, cluster):
    p = sweep_cmd(python, plugin_sweep, "grid.strategy=[farthest_first]", "--cluster", cluster, "--wait")
    assert p.returncode == 0, p.stdout + p.stderr
    assert (tmp_path / "results" / "plugins-demo" / "runs" / "tiny_cnn-sgd-farthest_first-t0" / "DONE").exists()


def write(d: Path, name: str, text: str) -> Path:
    path = d / name
    path.write_text(text)
    return path


def bad_sweep(tmp_path, plugin_file: str, text: str) -> Path:
    write(tmp_path, plugin_file, text)
    return write(
        tmp_path,
        "s.yaml",
        f"name: s\noutput: {tmp_path / 'out'}\nplugins: [{plugin_file}]\n"
        "dataset: {name: synthetic}\ngrid: {model: [resnet18], optimizer: [sgd], strategy: [random], trial: [0]}\n"
        "al: {cycles: 2, initial_size: 10, query_size: 10}\nslurm: {profile: local}\n",
    )


@pytest.mark.parametrize(
    "plugin_file,text,expected",
    [
        (
            "clash.py",
            "from al_core.strategies import STRATEGIES\nfrom al_core.strategies.random import RandomSampling\n"
            "STRATEGIES.register('entropy')(RandomSampling())\n",
            "name clash",
        ),
        ("broken.py", "import numpy\nraise RuntimeError('boom')\n", "import failed (line 2): RuntimeError: boom"),
        ("syntax.py", "def f(:\n", "import failed"),
        ("missing_dep.py", "import no_such_module_xyz\n", "ModuleNotFoundError"),
        ("idle.py", "x = 1\n", "registers nothing"),
        (
            "refuses.py",
            "from al_core.errors import ConfigError\nraise ConfigError('refuses.width: expected 3, got 4')\n",
            "plugin 'refuses.py': refuses.width: expected 3, got 4",
        ),
    ],
)
def test_plugin_errors_are_one_line_exit_2_nothing_submitted(tmp_path, python, plugin_file, text, expected):
    sweep = bad_sweep(tmp_path, plugin_file, text)
    for cmd in [[]] + ([["--dry-run"]] if plugin_file == "clash.py" else []):
        p = sweep_cmd(python, sweep, "--cluster", "local", *cmd)
        assert p.returncode == 2, p.stdout + p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: plugin {plugin_file!r}") and expected in lines[0], p.stderr
        assert "Traceback" not in p.stderr
    assert not (tmp_path / "out").exists()  # nothing submitted, nothing written


def test_plugin_paths_and_modules(tmp_path, monkeypatch):
    sweep = bad_sweep(tmp_path, "nowhere.py", "x = 1\n")
    (tmp_path / "nowhere.py").unlink()
    with pytest.raises(ConfigError, match="plugin 'nowhere.py': no such .py file"):
        load_sweep(sweep)
    text = sweep.read_text().replace("plugins: [nowhere.py]", "plugins: [no_such_plugin_module]")
    sweep.write_text(text)
    with pytest.raises(ConfigError, match="plugin 'no_such_plugin_module': no such module"):
        load_sweep(sweep)
    # A module name found in the sweep file's directory; imported once per process (validated twice).
    write(
        tmp_path,
        "mod_plugin_x.py",
        "from al_core.strategies import STRATEGIES\n"
        "from al_core.strategies.uncertainty import Uncertainty\nSTRATEGIES.register('entropy_copy_x')(Uncertainty('entropy'))\n",
    )
    sweep.write_text(
        text.replace("no_such_plugin_module", "mod_plugin_x").replace("strategy: [random]", "strategy: [entropy_copy_x]")
    )
    a = load_sweep(sweep).runs()[0].config
    b = load_sweep(sweep).runs()[0].config
    assert a.fingerprint() == b.fingerprint() and "plugins" in a.to_dict()
    # Without plugins the config has no plugins key: existing runs keep their fingerprint.
    assert "plugins" not in load_sweep(ROOT / "jobs" / "smoke.yaml").runs()[0].config.to_dict()
    del sys.modules["mod_plugin_x"]


def test_a_job_refuses_a_plugin_changed_after_validation(plugin_sweep):
    import dataclasses

    from al_core.plugins import load_plugins

    cfg = load_sweep(plugin_sweep).runs()[0].config
    load_plugins(cfg)  # the same sources: imported once per process, accepted
    changed = dataclasses.replace(cfg, plugins={**cfg.plugins, "farthest_first.py": "0" * 16})
    with pytest.raises(ConfigError, match="plugin 'farthest_first.py': its source .* changed since the sweep was validated"):
        load_plugins(changed)
    gone = dataclasses.replace(cfg, plugin_files={**cfg.plugin_files, "tiny_cnn.py": str(plugin_sweep.parent / "gone.py")})
    with pytest.raises(ConfigError, match="plugin 'tiny_cnn.py': source .* not found"):
        load_plugins(gone)


@pytest.mark.slurm
def test_example_plugins_in_slurm_jobs(plugin_sweep, tmp_path):
    """The plugins are imported inside each SLURM job (a fresh process on the node), not only at submission."""
    from slurm import ledger, scheduler

    p = subprocess.run(
        [sys.executable, "-m", "slurm.sweep", str(plugin_sweep), "--cluster", "slurm", "--wait"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    sweep_dir = tmp_path / "results" / "plugins-demo"
    try:
        assert p.returncode == 0, p.stdout + p.stderr
        for run_id in ("tiny_cnn-sgd-farthest_first-t0", "tiny_cnn-sgd-coreset-t0"):
            assert (sweep_dir / "runs" / run_id / "DONE").exists()
    finally:
        scheduler.cancel([rec["job_id"] for rec in ledger.read(sweep_dir).values()])


def test_configs_without_plugins_or_dropout_keep_their_fingerprint():
    smoke = load_sweep(ROOT / "jobs" / "smoke.yaml").runs()[0].config
    d = smoke.to_dict()
    assert "plugins" not in d and "dropout" not in d["train"]
    assert load_sweep(ROOT / "jobs" / "smoke.yaml", ["train.dropout=0.2"]).runs()[0].config.to_dict()["train"]["dropout"] == 0.2


def test_a_project_module_is_not_a_plugin(tmp_path):
    sweep = bad_sweep(tmp_path, "x.py", "x = 1\n")
    sweep.write_text(sweep.read_text().replace("plugins: [x.py]", "plugins: [al_core.models]"))
    with pytest.raises(ConfigError, match="plugin 'al_core.models': already imported"):
        load_sweep(sweep)
    from al_core.models import MODELS

    assert "resnet18" in MODELS
