"""The report end to end on small synthetic sweeps: files of README's Results layout, figures, the
self-contained HTML, compile-safe LaTeX, results.json, and the command line's error handling.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import types
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from analysis import build_report, compute_tables, load_sweep_dir, results_json, summary_lines
from analysis.figures import FIGURES
from analysis.render import latex_escape
from analysis.report import main
from bench.synthetic_sweep import write_synthetic_sweep

ROOT = Path(__file__).resolve().parent.parent
RUN_KEYS = ["run_id", "dataset", "model", "optimizer", "strategy", "trial"]  # a run's columns, first in the per-run tables
REQUIRED_COLUMNS = {  # README, Results layout
    "cycles.csv": [
        *RUN_KEYS,
        "cycle",
        "n_labeled",
        "n_pool",
        "test_accuracy",
        "test_macro_f1",
        "train_time_s",
        "select_time_s",
        "eval_time_s",
        "peak_mem_bytes",
        "energy_j",
        "device",
        "label_efficiency",
    ],
    "summary.csv": [
        "dataset",
        "model",
        "optimizer",
        "strategy",
        "n_labeled",
        "n_trials",
        "acc_mean",
        "acc_std",
        "acc_ci95",
        "f1_mean",
        "f1_std",
        "f1_ci95",
    ],
    "runs.csv": [
        *RUN_KEYS,
        "cycles_done",
        "done",
        "final_acc",
        "final_f1",
        "aubc",
        "labels_to_target",
        "train_time_s",
        "peak_mem_bytes",
        "energy_j",
    ],
    "vs_random.csv": [
        "dataset",
        "model",
        "optimizer",
        "strategy",
        "n_labeled",
        "n_pairs",
        "diff_mean",
        "diff_std",
        "diff_ci95",
        "p_value",
    ],
}
NASTY_DATASET = "cifar_10 50%&#$"  # every character LaTeX treats specially in one name


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One report of a 2 x 2 x 2 x 3 sweep whose last two runs are still in progress."""
    sweep_dir = tmp_path_factory.mktemp("sweep") / "demo"
    write_synthetic_sweep(sweep_dir, cycles=4, in_progress=2, device="NVIDIA H100", dataset=NASTY_DATASET)
    html_path = build_report(sweep_dir)
    return sweep_dir / "report", html_path


def test_csv_tables_have_the_contract_columns(report):
    report_dir, _ = report
    for name, columns in REQUIRED_COLUMNS.items():
        frame = pd.read_csv(report_dir / name)
        assert set(columns) <= set(frame.columns), name
        assert len(frame) > 0, name
    cycles = pd.read_csv(report_dir / "cycles.csv")
    assert len(cycles) == 22 * 4 + 2 * 2 and cycles["test_accuracy"].between(0, 1).all()  # fractions
    assert "queried" not in cycles and "queried_class_counts" not in cycles
    runs = pd.read_csv(report_dir / "runs.csv")
    assert len(runs) == 24 and runs["done"].sum() == 22
    assert set(runs.loc[~runs["done"], "status"]) == {"in progress"}


def test_every_figure_is_a_non_empty_png(report):
    report_dir, _ = report
    for name, *_ in FIGURES:
        data = (report_dir / "figures" / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000, name


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def test_html_parses_and_embeds_every_figure(report):
    report_dir, html_path = report
    assert html_path == report_dir / "report.html"
    parser = _Images()
    parser.feed(html_path.read_text(encoding="utf-8"))
    parser.close()
    assert {"html", "table", "figure"} <= set(parser.tags)
    embedded = [base64.b64decode(src.split(",", 1)[1]) for src in parser.sources]
    assert all(src.startswith("data:image/png;base64,") for src in parser.sources)  # no network, no file links
    for name, *_ in FIGURES:
        assert (report_dir / "figures" / name).read_bytes() in embedded, name


def test_report_md_marks_unfinished_runs_and_says_how_to_reproduce(report):
    report_dir, _ = report
    text = (report_dir / "report.md").read_text(encoding="utf-8")
    assert "22 of 24 runs done, 2 in progress" in text
    assert "resnet34-adam-random-t2 | in progress | 2/4" in text
    assert text.rstrip().splitlines()[-1].startswith("Regenerate this report with: python -m analysis.report --results ")
    for link in re.findall(r"\]\(([^)]+)\)", text):
        assert (report_dir / link).is_file(), link


def _assert_latex_safe(tex: str) -> None:
    body = [line for line in tex.splitlines() if not line.startswith("%")]
    columns = None
    for line in body:
        bare = re.sub(r"\\[&%$#_{}]", "", line)  # escaped specials are fine
        bare = re.sub(r"\$\\pm\$", "", bare)
        bare = re.sub(r"\\[A-Za-z]+(\{\})?", "", bare)  # commands
        assert not re.search(r"[%#_$^~]", bare), line
        if line.endswith(r"\\") and not line.startswith((r"\caption", r"\toprule")):
            cells = len(re.findall(r"(?<!\\)&", line)) + 1
            columns = columns or cells
            assert cells == columns, line
        assert line.count("{") - line.count(r"\{") == line.count("}") - line.count(r"\}"), line


def test_latex_tables_are_booktabs_and_compile_safe(report):
    report_dir, _ = report
    with pytest.raises(AssertionError):  # the check itself catches an unescaped cell
        _assert_latex_safe("a & b_c & 5% \\\\")
    texs = sorted((report_dir / "tables").glob("*.tex"))
    assert {p.stem for p in texs} >= {"summary", "runs", "vs_random"}
    for path in texs:
        tex = path.read_text(encoding="utf-8")
        assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
        assert r"cifar\_10 50\%\&\#\$" in tex or path.stem == "runs", path.name
        _assert_latex_safe(tex)
    assert r"$\pm$" in (report_dir / "tables" / "summary.tex").read_text()  # accuracy in percent +- CI
    assert (report_dir / "tables" / "summary.md").read_text().count("|") > 10


def test_latex_escape_of_every_special_character():
    assert latex_escape(r"a_b 5% R&D #1 $x {y} ~^\ <>") == (
        r"a\_b 5\% R\&D \#1 \$x \{y\} \textasciitilde{}\textasciicircum{}\textbackslash{} \textless{}\textgreater{}"
    )


def test_results_json_has_the_group_layout_in_percent(report):
    report_dir, _ = report
    for strategy in ("learning_loss", "random"):
        data = json.loads((report_dir / f"results_{strategy}.json").read_text())
        assert sorted(data) == ["adam", "sgd"] and sorted(data["sgd"]) == ["resnet18", "resnet34"]
        entry = data["sgd"]["resnet18"]
        assert entry["labeled_sizes"] == [[100, 200, 300, 400]] * 3
        assert len(entry["accuracies"]) == 3 and all(1 < a <= 100 for acc in entry["accuracies"] for a in acc)
    cycles = pd.read_csv(report_dir / "cycles.csv")
    first = cycles[(cycles["run_id"] == "resnet18-sgd-random-t0")].sort_values("n_labeled")["test_accuracy"] * 100
    assert json.loads((report_dir / "results_random.json").read_text())["sgd"]["resnet18"]["accuracies"][0] == pytest.approx(
        first.tolist()
    )
    assert not (report_dir / "results.json").exists()


def test_one_strategy_writes_results_json(tmp_path):
    write_synthetic_sweep(tmp_path, strategies=("entropy",), trials=(0, 1), cycles=2)
    files = results_json(load_sweep_dir(tmp_path).cycles, ["dataset", "model", "optimizer", "strategy"])
    assert list(files) == ["results.json"]
    assert len(files["results.json"]["adam"]["resnet34"]["accuracies"]) == 2


def test_no_temporary_files_are_left(report):
    report_dir, _ = report
    assert not [p for p in report_dir.rglob("*") if p.name.endswith(".tmp")]


def test_report_of_a_sweep_without_any_finished_cycle(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "resnet18-sgd-random-t0"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"run_id": run_dir.name, "config": {"model": "resnet18"}}))
    html_path = build_report(tmp_path)
    assert "cycles.jsonl: missing" in capsys.readouterr().err
    for name, *_ in FIGURES:
        assert (tmp_path / "report" / "figures" / name).stat().st_size > 1000
    assert "0 of 1 runs done, 1 in progress" in html_path.read_text()
    runs = pd.read_csv(tmp_path / "report" / "runs.csv")
    assert runs.loc[0, "model"] == "resnet18" and runs.loc[0, "cycles_done"] == 0


def test_summary_lines_name_the_best_pair_and_the_test_against_random(tmp_path):
    write_synthetic_sweep(tmp_path, cycles=3, trials=(0, 1, 2))
    lines = summary_lines(compute_tables(load_sweep_dir(tmp_path)))
    assert lines[0].startswith("24 of 24 runs done") and "compute so far: " in lines[0]
    assert re.match(
        r"best by AUBC \(descriptive\): learning_loss resnet\d+ \+ \w+ \d+\.\d\d ± \d+\.\d\d% \(n=3\); random resnet\d+ \+ \w+ ",
        lines[1],
    )
    assert re.match(
        r"(Differences between optimizers in AUBC \(\d+ of 4 pairs|No evidence of a difference between optimizers)", lines[2]
    )
    assert "model x optimizer interaction" in lines[3] and "models" in lines[3]
    assert lines[4].startswith("learning_loss vs random (AUBC, paired by trial, Holm over 4 tests): ")
    assert len(lines) == 6 and lines[5].startswith("verdicts (study-wide 5%): optimizer ")


# --------------------------------------------------------------------------------------------
# The command line
def test_cli_results_prints_the_html_path_and_a_summary(tmp_path, capsys):
    write_synthetic_sweep(tmp_path / "s", cycles=2, trials=(0, 1))
    assert main(["--results", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(tmp_path / "s" / "report" / "report.html")
    assert len(out) - 1 == 6 and out[-1].startswith("verdicts (study-wide 5%): ")


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--results", "{tmp}/nowhere"], "nowhere/runs: no such directory"),
        (["{tmp}/missing.yaml"], "missing.yaml: no such sweep file"),
        ([], "no sweep given"),
        (["--results", "{tmp}", "x=1"], "takes no sweep file"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_cli_bad_input_is_one_error_line_and_exit_2(tmp_path, argv, says):
    argv = [a.format(tmp=tmp_path) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "analysis.report", *argv], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert says in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert not list(tmp_path.rglob("report"))


class _ConfigError(ValueError):
    pass


@pytest.fixture
def fake_config(monkeypatch, tmp_path):
    """al_core.config as the CLI uses it (load_sweep, ConfigError), over a synthetic sweep."""
    sweep_dir = tmp_path / "results" / "demo"
    ids = write_synthetic_sweep(sweep_dir, models=("resnet18",), trials=(0, 1), cycles=2)
    grid = {"model": ["resnet18"], "optimizer": ["sgd", "adam"], "strategy": ["learning_loss", "random"], "trial": [0, 1, 2]}

    def load_sweep(path, overrides=()):
        if "al.cycles=oops" in overrides:
            raise _ConfigError("al.cycles: expected an integer >= 1, got 'oops'")
        runs = [
            types.SimpleNamespace(run_id=f"resnet18-{o}-{s}-t{t}", model="resnet18", optimizer=o, strategy=s, trial=t)
            for o in grid["optimizer"]
            for s in grid["strategy"]
            for t in grid["trial"]
        ]
        raw = {
            "name": "demo",
            "output": str(tmp_path / "results"),
            "dataset": {"name": "synthetic"},
            "grid": grid,
            "al": {"cycles": 2},
        }
        return types.SimpleNamespace(
            name="demo", sweep_dir=sweep_dir, raw=raw, runs=lambda: runs, al=types.SimpleNamespace(cycles=2)
        )

    module = types.ModuleType("al_core.config")
    module.load_sweep, module.ConfigError = load_sweep, _ConfigError
    package = types.ModuleType("al_core")
    package.config = module
    monkeypatch.setitem(sys.modules, "al_core", package)
    monkeypatch.setitem(sys.modules, "al_core.config", module)
    sweep_file = tmp_path / "demo.yaml"
    sweep_file.write_text("name: demo\n")
    return sweep_file, sweep_dir, ids


def test_cli_sweep_file_counts_missing_runs(fake_config, capsys):
    sweep_file, sweep_dir, ids = fake_config
    assert main([str(sweep_file), "al.cycles=2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("8 of 12 runs done, 0 in progress, 4 missing; 16 cycles finished of 24; compute so far: ")
    md = (sweep_dir / "report" / "report.md").read_text()
    assert f"python -m analysis.report {sweep_file} al.cycles=2" in md
    assert "grid:" in md  # the sweep's config is printed


def test_cli_config_error_exits_2_and_writes_nothing(fake_config, capsys):
    sweep_file, sweep_dir, _ = fake_config
    assert main([str(sweep_file), "al.cycles=oops"]) == 2
    err = capsys.readouterr().err
    assert err == "error: al.cycles: expected an integer >= 1, got 'oops'\n"
    assert not (sweep_dir / "report").exists()
