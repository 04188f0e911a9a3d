"""Training curves: each run's epochs.jsonl (per epoch: training loss, training accuracy, lr) read
into one table, and the figure of a chosen run, group or strategy.

Selection (`python -m analysis.report ... --curves SELECT`):
- a run id, e.g. resnet18-sgd-random-t0: that run;
- a group, e.g. resnet18-sgd-random: each of its trials;
- a strategy, e.g. random (the default: random when the sweep has it): every model x optimizer,
  mean over trials, a panel row per model and a line per optimizer, so that an optimizer that
  diverges stands out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from analysis.figures import _figure, _legend, _placeholder, _save, _styles
from analysis.load import warn

FILE = "epochs.jsonl"
COLUMNS = ["cycle", "epoch", "train_loss", "train_accuracy", "lr"]


def load_epochs(sweep_dir: str | Path, runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per run x epoch, with the run's keys and `step` = epochs since the run began."""
    frames = []
    for rec in runs.to_dict("records"):
        path = Path(sweep_dir) / "runs" / rec["run_id"] / FILE
        if not path.exists():
            continue
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            try:
                row = json.loads(line)
                rows.append({c: float(row[c]) for c in COLUMNS})
            except (ValueError, KeyError, TypeError):
                warn(f"{path}: line {number} is not an epoch row; skipped")
        if rows:
            f = pd.DataFrame(rows)
            for k in [*keys, "trial", "run_id"]:
                f[k] = rec[k]
            frames.append(f)
    if not frames:
        return pd.DataFrame(columns=["run_id", *keys, "trial", *COLUMNS, "step"])
    out = pd.concat(frames, ignore_index=True)
    per_cycle = out.groupby(["run_id", "cycle"])["epoch"].transform("max")
    out["step"] = (out["cycle"] - 1) * per_cycle + out["epoch"]
    return out


def select(epochs: pd.DataFrame, choice: Optional[str]) -> tuple[pd.DataFrame, str, str]:
    """(rows, line key, title) for a run id, a group (run id without -t<trial>) or a strategy."""
    if epochs.empty:
        return epochs, "optimizer", ""
    strategies = sorted(epochs["strategy"].unique())
    if choice is None:
        choice = "random" if "random" in strategies else strategies[0]
    if choice in set(epochs["run_id"]):
        return epochs[epochs["run_id"] == choice], "run_id", f"run {choice}"
    group = epochs["model"] + "-" + epochs["optimizer"] + "-" + epochs["strategy"]
    if choice in set(group):
        t = epochs[group == choice]
        return t.assign(trial_label="trial " + t["trial"].astype(str)), "trial_label", f"group {choice}, each trial"
    if choice in strategies:
        return epochs[epochs["strategy"] == choice], "optimizer", f"strategy {choice}, mean over trials"
    return epochs.iloc[0:0], "optimizer", f"{choice!r}: no such run, group or strategy"


def training_curves(epochs: pd.DataFrame, path: Path, choice: Optional[str] = None) -> Path:
    """Training loss, training accuracy and lr against epochs since the run began; a panel row per
    model; the cycles' boundaries are where the labelled set grows."""
    t, hue, what = select(epochs, choice)
    title = f"Training curves: {what}" if what else "Training curves"
    if t.empty:
        return _placeholder(
            path, title, "no epochs.jsonl in the selected runs" if what else "no run has written epochs.jsonl yet"
        )
    models = sorted(t["model"].unique(), key=str)
    styles = _styles(t[hue])
    fig, axes = _figure(title, (3.3 * 3 + 0.4, 2.3 * len(models) + 0.9), len(models), 3, sharex=True)
    for i, model in enumerate(models):
        m = t[t["model"] == model]
        for value, line in m.groupby(hue, sort=True):
            mean = line.groupby("step")[["train_loss", "train_accuracy", "lr"]].mean()
            for j, (col, scale) in enumerate((("train_loss", 1.0), ("train_accuracy", 100.0), ("lr", 1.0))):
                axes[i, j].plot(
                    mean.index,
                    mean[col] * scale,
                    linewidth=1.3,
                    markersize=0,
                    label=str(value),
                    color=styles[value]["color"],
                    linestyle=styles[value]["linestyle"],
                )
        per_cycle = m.groupby("cycle")["step"].max().to_numpy()
        for j, ylabel in enumerate(("training loss", "training accuracy (%)", "learning rate")):
            ax = axes[i, j]
            for boundary in per_cycle[:-1]:
                ax.axvline(boundary + 0.5, color="grey", linewidth=0.6, alpha=0.5)
            ax.set_title(f"{model}", fontsize=9)
            ax.set_ylabel(ylabel, fontsize=9)
            ax.tick_params(labelsize=8)
            ax.grid(True, linewidth=0.4, alpha=0.5)
            if i == len(models) - 1:
                ax.set_xlabel("epoch (all cycles)", fontsize=9)
        if np.nanmax(m["train_loss"].to_numpy(float)) > 20 * max(np.nanmin(m["train_loss"].to_numpy(float)), 1e-3):
            axes[i, 0].set_yscale("log")  # a diverging run would flatten the others
    _legend(fig, axes[0, 0].get_legend_handles_labels()[0])
    return _save(fig, path)
