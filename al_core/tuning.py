"""The tuning fits at a listed cycle (torch): every configuration of the run's search trained on the folds of
the labelled set and scored on the held-out fold, resumable fit by fit. What the `tune:` section
means, its folds and side files: al_core.tune (no torch)."""

from __future__ import annotations

import copy
import hashlib
import time

import numpy as np
import torch

from al_core import tune
from al_core.io import atomic_write_json
from al_core.train import score_pool
from al_core.trainer import Cycle


def for_cycle(run, c: int, prev: Cycle | None, labelled: np.ndarray, model, lossnet):
    """Cycle `c`'s tuned hyper-parameters, record and seconds: from its row on replay, selected now
    at a listed cycle, else the last chosen ones (None before the first selection or without tuning)."""
    if run.cfg.tune is None:
        return None, None, 0.0
    if c <= len(run.rows):
        return run.rows[c - 1].get("tuned"), run.rows[c - 1].get("tune"), 0.0
    if c in run.cfg.tune["cycles"]:
        return select(run, c, labelled, model, lossnet)
    if prev is not None:
        return prev.tuned, None, 0.0
    earlier = [r.get("tuned") for r in run.rows[: c - 1] if r.get("tuned") is not None]
    return (earlier[-1] if earlier else None), None, 0.0


def select(run, cycle: int, labelled: np.ndarray, model, lossnet) -> tuple[dict, dict, float]:
    """Score the run's grid at `cycle` on the labelled set; returns (chosen values, record, seconds).

    `model` / `lossnet` are the cycle's starting weights (fresh, or the last cycle's with
    train.reset false); they are copied, never trained here.
    """
    cfg, spec = run.cfg, run.cfg.tune
    points = tune.configurations(spec, cfg.trial, cycle)
    y = run.trainer.data.pool_y[torch.as_tensor(labelled, dtype=torch.long, device=run.trainer.data.pool_y.device)].cpu().numpy()
    folds = tune.splits(y, spec["folds"], cfg.trial, cycle)
    start = copy.deepcopy({"model": model.state_dict(), "lossnet": lossnet.state_dict() if lossnet is not None else None})
    path = tune.side_file(run.run_dir, cycle)
    sha = hashlib.sha256(np.asarray(labelled, dtype=np.int64).tobytes()).hexdigest()
    scores, spent = tune.read_side(path, run.fingerprint, sha, points)
    side = {"format": tune.FORMAT, "fingerprint": run.fingerprint, "cycle": cycle, "labelled_sha256": sha, "points": points}
    if scores:
        run.log(f"{run.spec.run_id}: cycle {cycle} tuning resumes with {len(scores)} of {len(points) * len(folds)} fits done")
    for p, hp in enumerate(points):
        for f, (tr, va) in enumerate(folds):
            key = f"{p}:{f}"
            if key in scores:
                continue
            t0 = time.perf_counter()
            acc = fit_and_score(run, cycle, hp, labelled[tr], labelled[va], start, f"point {p + 1}/{len(points)} fold {f + 1}")
            spent += time.perf_counter() - t0
            scores[key] = acc
            atomic_write_json(path, {**side, "scores": scores, "time_s": spent}, point="tune")
    table = []
    for p, hp in enumerate(points):
        fold_acc = [float(scores[f"{p}:{f}"]) for f in range(len(folds))]
        table.append({"params": hp, "val_accuracy": float(np.mean(fold_acc)), "fold_accuracy": fold_acc})
    best = max(range(len(table)), key=lambda p: table[p]["val_accuracy"])  # ties: the first in order
    chosen = dict(points[best])
    record = {
        "cycle": cycle,
        "folds": spec["folds"],
        "n_val": [int(len(va)) for _, va in folds],
        "val_accuracy": table[best]["val_accuracy"],
        "scores": table,
        "space": spec["grid"],
        "edges": tune.edges(spec, chosen),
    }
    run.log(
        f"{run.spec.run_id}: cycle {cycle} tuned {chosen} (validation accuracy {record['val_accuracy']:.4f}, "
        f"{len(points)} points x {len(folds)} folds, {spent:.1f}s)"
    )
    return chosen, record, spent


def fit_and_score(run, cycle: int, hp: dict, train_idx: np.ndarray, val_idx: np.ndarray, start: dict, where: str) -> float:
    """Train a copy of the cycle's starting model on `train_idx` with `hp`; accuracy on `val_idx`."""
    trainer = run.trainer
    model, lossnet = trainer.fresh_model(cycle)
    model.load_state_dict(start["model"])
    if lossnet is not None and start["lossnet"] is not None:
        lossnet.load_state_dict(start["lossnet"])
    # The run's optimizer and schedule, with `hp` over its values; with optim.wd_normalized the decay
    # is scaled to this fit's training folds, as the cycle's model will be to the whole labelled set.
    opt, sched = trainer.build_optimizer(model, lossnet, len(train_idx), hp)
    # Trained as the cycle's model is (same epochs, batches, augmentation, graphs, precision); dropout
    # masks from (trial, cycle, epoch, fit, step); nothing saved: the side file keeps finished fits.
    fit = Cycle(cycle, np.asarray(train_idx, dtype=np.int64), [], model, lossnet, opt, sched)
    trainer.train(fit, lambda cur, must: None, tag=f"tune-dropout-{where}-", where=f"tuning {where}, ")

    check = lambda: trainer.check_stop(f"cycle {cycle} tuning, {where}")  # noqa: E731
    probs = score_pool(model, lossnet, run.trainer.data, val_idx, trainer.eval_batch_size, trainer.amp, check).probs
    y = run.trainer.data.pool_y[torch.as_tensor(val_idx, dtype=torch.long, device=run.trainer.data.pool_y.device)].cpu()
    return float((probs.argmax(1) == y).double().mean())
