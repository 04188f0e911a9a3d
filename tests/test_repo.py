"""The repository keeps its promises: README's make targets exist, environment.yml matches pyproject."""

import re
import subprocess
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9_-]*):", text, flags=re.M))


def test_every_make_target_named_in_readme_exists():
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"\bmake ([a-z][a-z0-9_-]*)", readme))
    assert {"demo", "test"} <= named
    missing = named - make_targets()
    assert not missing, f"README names make targets the Makefile lacks: {sorted(missing)}"


def test_contract_make_targets_exist():
    assert {"setup", "test", "demo", "data", "sweep", "status", "report", "bench"} <= make_targets()


def test_make_dry_run_of_every_target_parses():
    for target in ("setup", "test", "demo", "data", "sweep", "status", "report", "bench", "env"):
        out = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 0, (target, out.stderr)


def _env_pip() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    pinned = {"torch", "torchvision"}  # pinned to the cluster's CUDA build (next test)
    pip = {line for line in _env_pip() if not line.startswith("-")}
    name = lambda spec: re.split(r"[<>=!~ ]", spec, maxsplit=1)[0]  # noqa: E731
    assert {name(s) for s in pip} == {name(s) for s in wanted}
    assert {s for s in pip if name(s) not in pinned} == {s for s in wanted if name(s) not in pinned}


def test_environment_pins_a_torch_build_that_runs_on_every_gpu_of_the_speed_profile():
    from al_core.preflight import BUILD_ARCHS, serves

    pip = _env_pip()
    torch_pin = next(s for s in pip if s.startswith("torch=="))
    version, _, build = torch_pin.split("==")[1].partition("+")
    profile = yaml.safe_load((ROOT / "jobs" / "profiles" / "speed.yaml").read_text())
    assert build == profile["torch_build"], "environment.yml and the speed profile name the same build"
    assert any(line.endswith(f"/whl/{build}") for line in pip if line.startswith("--extra-index-url"))
    assert next(s for s in pip if s.startswith("torchvision==")).endswith(f"+{build}")
    assert serves(BUILD_ARCHS[build], "7.0"), "V100s (Speed's pg partition) need kernels for 7.0"
    for cap in profile["gpu_capabilities"]:
        assert serves(BUILD_ARCHS[build], cap), cap
    assert not serves(BUILD_ARCHS["cu130"], "7.0"), "pip's default CUDA 13 build would fail on the V100s"
    makefile = (ROOT / "Makefile").read_text()
    assert "torch_build" in makefile and "$(TORCH_BUILD)" in makefile


def test_readme_test_command_is_what_ci_runs():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_submitit_is_pinned_to_the_tested_minor_version():
    """slurm/ uses submitit's private names (_make_sbatch_string, JobEnvironment._usr_sig, SignalHandler):
    a new minor version may move them, so both dependency lists pin the minor version the tests ran."""
    import submitit

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    spec = next(s for s in project["dependencies"] if s.startswith("submitit"))
    assert re.fullmatch(r"submitit~=1\.5\.\d+", spec), spec
    assert spec in _env_pip()
    assert submitit.__version__.startswith("1.5."), f"installed submitit {submitit.__version__} is not the pinned minor"
