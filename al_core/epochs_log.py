"""Per-epoch training curves of a run: <run_dir>/epochs.jsonl, one row per finished epoch
{cycle, epoch, train_loss, train_accuracy, lr}, and optionally TensorBoard event files.

The file is rewritten atomically once per cycle, just before the cycle's row goes to
cycles.jsonl: it keeps the epochs of the cycles cycles.jsonl already holds and adds this cycle's.
A kill between the two writes leaves epochs of an unfinished cycle, which the cycle's rerun
replaces; so after a resume the file is the same as after an uninterrupted run (on CPU).
"""

from __future__ import annotations

import math

from pathlib import Path

from al_core.io import atomic_write_jsonl, read_jsonl

FILE = "epochs.jsonl"
TENSORBOARD_DIR = "tensorboard"


def epoch_row(cycle: int, epoch: int, loss_acc: tuple, opt) -> dict:
    """The row of epoch `epoch` (1-based) of `cycle`: mean training loss and accuracy over the
    epoch, and the learning rate it trained at (before the scheduler steps)."""
    return {
        "cycle": int(cycle),
        "epoch": int(epoch),
        "train_loss": float(loss_acc[0]) if math.isfinite(loss_acc[0]) else None,  # None: diverged (trainer.end_epoch)
        "train_accuracy": float(loss_acc[1]),
        "lr": float(opt.param_groups[0]["lr"]),
    }


def read(run_dir: str | Path) -> list[dict]:
    """The rows of a run's epochs.jsonl ([] when it has none); ValueError on a damaged line."""
    return read_jsonl(Path(run_dir) / FILE)


def write(run_dir: str | Path, cycles_done: int, epochs: list[dict], tensorboard: bool = False, row: dict | None = None) -> None:
    """Replace epochs.jsonl with the epochs of cycles 1..cycles_done already there plus `epochs`
    (the cycle being finished); with `tensorboard`, also log them (and the cycle's test accuracy
    from `row`) as TensorBoard scalars under <run_dir>/tensorboard."""
    run_dir = Path(run_dir)
    try:
        kept = [r for r in read(run_dir) if isinstance(r, dict) and int(r.get("cycle", 0)) <= cycles_done]
    except ValueError:
        kept = []  # a damaged file (written by hand?) is replaced: the curves are a by-product
    atomic_write_jsonl(run_dir / FILE, kept + list(epochs), point="epochs")
    if tensorboard and epochs:
        _tensorboard(run_dir, epochs, row)


def _tensorboard(run_dir: Path, epochs: list[dict], row: dict | None) -> None:
    from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

    n = len(epochs)
    writer = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR))
    try:
        for e in epochs:
            step = (e["cycle"] - 1) * n + e["epoch"]  # epochs since the run began (n epochs per cycle)
            for key in ("train_loss", "train_accuracy", "lr"):
                writer.add_scalar(f"train/{key.removeprefix('train_')}", e[key], step)
        if row is not None:
            writer.add_scalar("test/accuracy", row["test_accuracy"], row["n_labeled"])
            writer.add_scalar("test/macro_f1", row["test_macro_f1"], row["n_labeled"])
    finally:
        writer.close()
