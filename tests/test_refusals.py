"""Inputs refused in one line, never a traceback: YAML the loader should not accept, image and idx
files too large to decode, and names a plugin registers that clash or cannot stand in a run id."""

from __future__ import annotations

import dataclasses
import gzip
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from al_core.config import ConfigError, load_sweep, yaml_load
from al_core.data import DataError
from al_core.data import files as data_files
from al_core.plugins import load_plugins
from al_core.registry import STRATEGIES, InvalidName

ROOT = Path(__file__).resolve().parents[1]


def sweep_cmd(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "slurm.sweep", *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


def one_error_line(p: subprocess.CompletedProcess, code: int = 2) -> str:
    lines = p.stderr.strip().splitlines()
    assert p.returncode == code and len(lines) == 1 and lines[0].startswith("error: "), p.stdout + p.stderr
    return lines[0]


# ----------------------------------------------------------------------------------------------
# YAML
BOMB = "a: &a [1,2,3,4,5,6,7,8,9]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi")
)
YAML_REFUSED = {
    "python tag": ('name: !!python/object/apply:os.system ["touch MARKER"]\n', "could not determine a constructor"),
    "python name": ("name: !!python/name:os.system\n", "could not determine a constructor"),
    "duplicate key": ("name: a\nal: {cycles: 2}\nname: b\n", "line 3: not valid YAML (duplicate key 'name'"),
    "nested duplicate": ("name: a\nal: {cycles: 2, cycles: 3}\n", "duplicate key 'cycles'"),
    "aliases bomb": (BOMB + "grid: {trial: *i}\n", "aliases expand it to over 100,000 values"),
    "recursive alias": ("name: &x [*x]\n", "an alias refers to the node that holds it"),
    "binary": ("name: !!binary aGVsbG8=\n", "the tag tag:yaml.org,2002:binary is not accepted"),
    "set": ("name: !!set {a, b}\n", "the tag tag:yaml.org,2002:set is not accepted"),
    "nested too deeply": ("name: " + "[" * 20000 + "\n", "nested too deeply"),
    "huge": ("# " + "x" * 1_000_001 + "\nname: a\n", "characters; expected a sweep file under 1,000,000"),
}


@pytest.mark.parametrize("case", list(YAML_REFUSED))
def test_yaml_the_loader_refuses_is_one_line(tmp_path, case):
    text, expected = YAML_REFUSED[case]
    path = tmp_path / "s.yaml"
    path.write_text(text.replace("MARKER", str(tmp_path / "ran")))
    with pytest.raises(ConfigError, match="not valid YAML") as e:
        load_sweep(path)
    assert expected in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "ran").exists()


def test_yaml_refusals_through_the_command_and_an_override(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(YAML_REFUSED["aliases bomb"][0])
    assert "aliases expand it" in one_error_line(sweep_cmd(path, "--dry-run"))
    line = one_error_line(sweep_cmd(ROOT / "jobs" / "smoke.yaml", "al.cycles=!!python/name:os.system", "--dry-run"))
    assert "override 'al.cycles=!!python/name:os.system'" in line


def test_plain_yaml_still_loads_as_before():
    assert yaml_load("a: 1e-3\nb: [1, 2]\nc: {d: .5}\ne: 2020-01-01\n") == {
        "a": 1e-3,
        "b": [1, 2],
        "c": {"d": 0.5},
        "e": "2020-01-01",
    }
    assert yaml_load("base: &b {x: 1, y: 2}\nother: {<<: *b, y: 3}\n")["other"] == {"x": 1, "y": 3}  # a merge is no duplicate
    assert yaml_load("shared: &s [1, 2]\nagain: *s\n") == {"shared": [1, 2], "again": [1, 2]}  # a small alias is fine
    for profile in sorted((ROOT / "jobs" / "profiles").glob("*.yaml")):
        assert isinstance(yaml_load(profile.read_text()), dict), profile
    for job in sorted((ROOT / "jobs").glob("*.yaml")):
        assert load_sweep(job).runs(), job


# ----------------------------------------------------------------------------------------------
# images and idx files too large to decode
def png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose header declares width x height pixels (a decompression bomb's header)."""
    from PIL import Image
    import io

    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


@pytest.mark.parametrize("size", [(9000, 9000), (40000, 40000)])  # over the project's limit; over PIL's own
def test_an_image_too_large_to_decode_is_one_line(tmp_path, size):
    from PIL import Image

    root = tmp_path / "imgs"
    for c in ("cat", "dog"):
        (root / "train" / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / "train" / c / f"{i}.png")
    (root / "train" / "dog" / "bomb.png").write_bytes(png_declaring(*size))
    with pytest.raises(DataError, match=r"bomb\.png: .*too large to decode"):
        data_files._decode(sorted((root / "train").rglob("*.png")), 8)
    w, h = size
    if w * h < Image.MAX_IMAGE_PIXELS:
        with pytest.raises(DataError, match=f"{w} x {h} = {w * h:,} pixels"):
            data_files._decode([root / "train" / "dog" / "bomb.png"], 8)


def test_an_idx_file_declaring_more_than_it_may_is_refused_before_reading(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(struct.pack(">IIII", 0x0803, 100000, 1000, 1000) + b"\0" * 1000))
    with pytest.raises(DataError, match=r"declares 100000 x 1000 x 1000 = 100,000,000,000 bytes, over the"):
        data_files.read_idx(path, 3)
    # A gzip bomb that declares a small shape: only what the header declares is decompressed.
    path.write_bytes(gzip.compress(struct.pack(">IIII", 0x0803, 2, 2, 2) + b"\0" * 50_000_000))
    with pytest.raises(DataError, match="more than 8 bytes of data, expected 8"):
        data_files.read_idx(path, 3)
    path.write_bytes(gzip.compress(struct.pack(">IIII", 0x0803, 2, 2, 2) + bytes(range(8))))
    assert np.array_equal(data_files.read_idx(path, 3).ravel(), np.arange(8))


# ----------------------------------------------------------------------------------------------
# names a plugin registers
@pytest.mark.parametrize("name", ["my-strategy", "margin+power", "a/b", "", "2fast", "with space", "x" * 65])
def test_a_name_that_cannot_stand_in_a_run_id_is_refused(name):
    with pytest.raises(InvalidName, match="cannot be registered"):
        STRATEGIES.register(name)
    assert name not in STRATEGIES


def plugin_sweep(tmp_path: Path, code: str) -> Path:
    (tmp_path / "plug.py").write_text(code)
    path = tmp_path / "s.yaml"
    path.write_text(
        f"name: s\noutput: {tmp_path / 'out'}\nplugins: [plug.py]\n"
        "dataset: {name: synthetic}\ngrid: {model: [resnet18], optimizer: [sgd], strategy: [random], trial: [0]}\n"
        "al: {cycles: 2, initial_size: 10, query_size: 10}\nslurm: {profile: local}\n"
    )
    return path


@pytest.mark.parametrize(
    "code, expected",
    [
        (
            "from al_core.strategies import STRATEGIES\nfrom al_core.strategies.random import RandomSampling\n"
            "STRATEGIES.register('my-random')(RandomSampling())\n",
            "plugin 'plug.py' (line 3): invalid name: strategy name 'my-random' cannot be registered",
        ),
        ("from al_core.models import MODELS\nMODELS.register(7)(lambda **k: None)\n", "invalid name: model name 7"),
        (
            "from al_core.models import MODELS\nMODELS.register('resnet34')(lambda **k: None)\n",
            "name clash: model 'resnet34' registered twice",
        ),
    ],
)
def test_a_plugin_registering_a_bad_or_clashing_name_is_one_line(tmp_path, code, expected):
    line = one_error_line(sweep_cmd(plugin_sweep(tmp_path, code), "--dry-run"))
    assert expected in line and not (tmp_path / "out").exists()


def test_a_plugin_changed_after_validation_runs_none_of_its_code(tmp_path):
    code = "from al_core.strategies import STRATEGIES\nfrom al_core.strategies.random import RandomSampling\n"
    path = plugin_sweep(tmp_path, code + "STRATEGIES.register('plug_random_z')(RandomSampling())\n")
    cfg = load_sweep(path).runs()[0].config
    marker = tmp_path / "ran"
    (tmp_path / "plug.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    fresh = dataclasses.replace(cfg)
    from al_core import plugins

    plugins._LOADED.pop(str((tmp_path / "plug.py").resolve()), None)  # as in a job: not imported in this process yet
    with pytest.raises(ConfigError, match="changed since the sweep was validated"):
        load_plugins(fresh)
    assert not marker.exists()
    STRATEGIES.forget("plug_random_z")
