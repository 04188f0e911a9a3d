"""One active-learning run: choose -> build or reset -> train -> evaluate -> row -> checkpoint.

The rows in cycles.jsonl are the truth about what was labelled; checkpoints only cache model state.
A run resumes from the newest good checkpoint, or re-derives the model it needs by training again
(deterministically) when none is usable, so an interruption never changes the result.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from al_core import checkpoint, epochs_log, query, results, tracking, tuning
from al_core.config import RunConfig, RunSpec
from al_core.data.device import DeviceData, load as load_data
from al_core.errors import DataError
from al_core.io import atomic_write_bytes, atomic_write_jsonl
from al_core.rundir import RunDir, RunDirLock
from al_core.plugins import load_plugins
from al_core.strategies import STRATEGIES
from al_core.telemetry import CycleMeter, device_name
from al_core.trainer import Cycle, Trainer, diverged_at
from al_core.train import StopFlag


class Run:
    def __init__(self, spec: RunSpec, run_dir: Path, stop: StopFlag | None = None, log: Callable[[str], None] | None = None):
        self.spec = spec
        self.cfg: RunConfig = spec.config
        self.run_dir = Path(run_dir)
        self.dir = RunDir(self.run_dir)
        self.stop = stop or StopFlag()
        self.log = log or logging.getLogger("al_core.run").info
        self.fingerprint = self.cfg.fingerprint()
        load_plugins(self.cfg)  # in every job: before the registries are read; checks the sources' hashes
        self.strategy = STRATEGIES.get(self.cfg.base_strategy)  # `margin` for `margin+power`
        with_lossnet = self.strategy.needs_lossnet or self.cfg.ll.train_module == "always"
        self.trainer = Trainer(self.cfg, self.stop, with_lossnet)  # the node checked, the device chosen
        self.device = self.trainer.device
        self.rows: list[dict] = []
        self.meter = CycleMeter(self.device)  # peak memory and energy of the cycle in progress
        self.saver = checkpoint.Saver(self.run_dir, spec.run_id, self.fingerprint, self.cfg.train, self.meter)

    # ------------------------------------------------------------------------------------------
    @property
    def rows_path(self) -> Path:
        return self.dir.rows_path

    def execute(self, restart: bool = False) -> str:
        """Run or resume to the end. Returns "done" or "already done"; raises Interrupted, ConfigError,
        RunLocked (another live process holds the run directory)."""
        self._lock: RunDirLock | None = None
        self.tracker: tracking.Tracker = tracking.NullTracker()
        try:
            return self._execute(restart)
        finally:
            self.tracker.close()
            if self._lock is not None:
                self._lock.release()

    def _execute(self, restart: bool) -> str:
        if restart or not self.dir.done:
            # Before the run directory is touched: a node without the dataset, or bad data, leaves nothing behind.
            self.trainer.data = load_checked(self.cfg, self.device)
        if not restart and self.dir.done:
            self.dir.check_config(self.cfg.to_dict())  # a finished run started again: compare, write nothing, take no lock
            self.log(f"{self.spec.run_id}: already done ({self.run_dir / results.DONE}); nothing to do")
            return "already done"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock = RunDirLock(self.run_dir).acquire()  # one writer per run directory, until this run ends
        if restart:  # start the directory afresh; the cycles are logged to a tracker again
            self.dir.clear(epochs_log.TENSORBOARD_DIR, epochs_log.FILE, tracking.STATE_FILE)
        else:  # refuse to mix two configs in one directory
            self.dir.remove_stale_temps()
            self.dir.check_config(self.cfg.to_dict())
        if self.dir.done:  # finished by another process while this one waited for nothing
            self.log(f"{self.spec.run_id}: already done ({self.run_dir / results.DONE}); nothing to do")
            return "already done"
        self.rows = self.dir.read_rows(self.spec.run_id, self.cfg.al.cycles)
        if self.trainer.data is None:  # DONE was there before the lock and is gone now (another process restarted the run)
            self.trainer.data = load_checked(self.cfg, self.device)
        self.dir.write_run_json(self.spec.run_id, self.fingerprint, self.cfg.to_dict(), self.spec.axes, provenance(self.trainer))
        self.log(
            f"{self.spec.run_id}: {self.cfg.dataset.name} pool {self.trainer.data.n_pool}, {self.cfg.al.cycles} cycles, "
            f"{self.cfg.train.epochs} epochs/cycle, device {device_name(self.device)} ({self.trainer.precision}), "
            f"{len(self.rows)} cycles already done"
        )
        self.t_start = time.perf_counter()
        self.cycles_at_start = len(self.rows)
        self.tracker = tracking.open_tracker(self.spec, self.run_dir, self.log)
        if self.rows:  # cycles finished by an earlier job but not logged (killed between the row and the log)
            self.tracker.catch_up(self.rows, epochs_log.read(self.run_dir))
        self._loop()
        # A finished run needs no model state: its rows are final. This keeps a study in the
        # megabytes per run instead of hundreds of megabytes of weights and optimizer state.
        for path in checkpoint.list_checkpoints(self.run_dir):
            path.unlink(missing_ok=True)
        atomic_write_bytes(self.run_dir / results.DONE, f"{datetime.now(timezone.utc).isoformat()}\n".encode(), point="done")
        self.log(f"{self.spec.run_id}: done; final test accuracy {self.rows[-1]['test_accuracy']:.4f}")
        return "done"

    def _loop(self) -> None:
        al = self.cfg.al
        restored = checkpoint.latest_good(self.run_dir, self.fingerprint)
        where = checkpoint.resume_point(
            len(self.rows), al.cycles, self.cfg.train.reset, restored[0].cycle if restored is not None else None
        )
        if where.ignored:
            self.log(f"warning: {where.ignored}")
        prev: Cycle | None = None
        for c in range(where.start, al.cycles + 1):
            if where.restore and c == where.start:
                pos, state = restored
                self.meter.start()
                cur = self.trainer.restore(pos.cycle, pos.epoch, pos.step, checkpoint.unpack(state))
                self.log(f"{self.spec.run_id}: resumed at cycle {pos.cycle}, epoch {pos.epoch}, step {pos.step}")
            else:
                cur = self._begin_cycle(c, prev)
            self.trainer.train(cur, self.saver)
            if c > len(self.rows):
                self._finish_cycle(cur)
            prev = cur

    # ------------------------------------------------------------------------------------------
    def _begin_cycle(self, c: int, prev: Cycle | None) -> Cycle:
        """Choose this cycle's labelled set (or read it from the rows on replay) and build the model."""
        self.meter.start()
        t0 = time.perf_counter()
        if c <= len(self.rows):  # replaying a finished cycle to re-derive its model: its rows say what was labelled
            queried = list(self.rows[c - 1]["queried"])
            labelled = np.sort(np.concatenate([np.asarray(r["queried"], dtype=np.int64) for r in self.rows[:c]]))
        else:
            if c == 1:
                queried = query.initial_set(self.cfg, self.strategy, self.trainer)
            else:
                queried = query.query(
                    self.cfg, self.strategy, self.trainer, c, prev.model, prev.lossnet, prev.labelled, self.cfg.al.query_size
                )
            base = prev.labelled if prev is not None else np.empty(0, dtype=np.int64)
            labelled = np.sort(np.concatenate([base, np.asarray(queried, dtype=np.int64)]))
        select_time = time.perf_counter() - t0
        model, lossnet = self.trainer.fresh_model(c) if (self.cfg.train.reset or prev is None) else (prev.model, prev.lossnet)
        tuned, record, tune_s = tuning.for_cycle(self, c, prev, labelled, model, lossnet)
        opt, sched = self.trainer.build_optimizer(model, lossnet, len(labelled), tuned)
        cur = Cycle(c, labelled, [int(i) for i in queried], model, lossnet, opt, sched, tuned=tuned, tune_record=record)
        cur.timing.update(select_time_s=select_time, tune_time_s=tune_s)
        return cur

    # ------------------------------------------------------------------------------------------
    def _finish_cycle(self, cur: Cycle) -> None:
        """Evaluate on the whole test set, append the row, replace cycles.jsonl atomically."""
        metrics = self.trainer.evaluate(cur)  # test accuracy, macro F1, per class, eval_time_s
        row = cycle_row(self.spec, cur, self.trainer, metrics, *self.meter.cycle_costs(cur.timing))
        # before the row: see epochs_log
        epochs_log.write(self.run_dir, len(self.rows), cur.epochs, self.cfg.train.tensorboard, row)
        self.rows.append(row)
        atomic_write_jsonl(self.rows_path, self.rows, point="rows")
        self.tracker.log_cycle(row, cur.epochs)  # after the row: a tracking failure cannot change it
        done_now, left = len(self.rows) - self.cycles_at_start, self.cfg.al.cycles - len(self.rows)
        self.log(progress_line(row, self.cfg.al.cycles, time.perf_counter() - self.t_start, done_now, left))


def run(spec: RunSpec, run_dir: Path, restart: bool = False, stop: StopFlag | None = None, log=None) -> str:
    """Run or resume `spec` in `run_dir` in this process (see `Run.execute`)."""
    return Run(spec, run_dir, stop=stop, log=log).execute(restart=restart)


def cycle_row(spec: RunSpec, cur: Cycle, trainer: Trainer, metrics: dict, peak_mem: int | None, energy: float | None) -> dict:
    """The cycles.jsonl row of finished cycle `cur` (al_core.results.cycle_row): its keys, what was
    queried, the test metrics, and what the cycle cost."""
    cfg, data = spec.config, trainer.data
    queried_y = data.pool_y[torch.as_tensor(cur.queried, dtype=torch.long, device=data.pool_y.device)].cpu().numpy()
    optional = {}
    if cfg.stochastic is not None:  # the batch was drawn (Kirsch et al. 2023), not the top k
        optional["stochastic"] = {"mode": cfg.stochastic[0], "beta": cfg.stochastic[1]}
    if cfg.wd_normalized:  # the decay in force for this cycle's budget (optim.wd_normalized)
        optional["weight_decay"] = cur.opt.param_groups[0]["weight_decay"]
    if diverged_at(cur) is not None:  # README, "Diverged runs"
        optional["diverged"] = diverged_at(cur)
    if cfg.tune is not None:
        optional["tune"] = cur.tune_record  # the grid's validation scores at a cycle that chose `tuned`
        optional["tune_time_s"] = round(cur.timing.get("tune_time_s", 0.0), 4)
    return results.cycle_row(
        spec.axes,  # extra grid axes under their dotted keys, e.g. "train.width"
        run_id=spec.run_id,
        dataset=cfg.dataset.name,
        model=cfg.model,
        optimizer=cfg.optimizer,
        strategy=cfg.strategy,
        trial=cfg.trial,
        cycle=cur.cycle,
        n_labeled=int(len(cur.labelled)),
        n_pool=data.n_pool,
        queried=cur.queried,
        queried_class_counts=np.bincount(queried_y, minlength=data.n_classes).tolist(),
        train_loss=float(cur.last_epoch[0]) if math.isfinite(cur.last_epoch[0]) else None,  # None: diverged
        train_accuracy=float(cur.last_epoch[1]),
        epochs=cfg.train.epochs,
        train_time_s=round(cur.timing["train_time_s"], 4),
        select_time_s=round(cur.timing["select_time_s"], 4),
        train_img_per_s=round(cur.img_per_s, 1),
        peak_mem_bytes=peak_mem,
        energy_j=None if energy is None else round(energy, 3),
        device=device_name(trainer.device),
        precision=trainer.precision,
        deterministic=cfg.train.deterministic,
        recipe=cfg.recipe,
        tuned=cur.tuned,
        **metrics,
        **optional,
    )


def load_checked(cfg: RunConfig, device) -> DeviceData:
    """The run's dataset on `device`; DataError when its pool is smaller than the labelling budget."""
    ds, al = cfg.dataset, cfg.al
    data = load_data(ds.name, ds.root, device, ds)
    budget = al.initial_size + (al.cycles - 1) * al.query_size
    if budget > data.n_pool:
        raise DataError(f"dataset {ds.name} at {ds.root}: pool of {data.n_pool} is smaller than the labelling budget {budget}")
    return data


def progress_line(row: dict, cycles: int, elapsed: float, done_now: int, left: int) -> str:
    """A finished cycle's log line, with the run's ETA from this process's pace."""
    eta = f"{elapsed / done_now * left:.0f}s" if done_now and left else "0s"
    return (
        f"{row['run_id']} cycle {row['cycle']}/{cycles} | labelled {row['n_labeled']} | "
        f"acc {100 * row['test_accuracy']:.2f}% | F1 {row['test_macro_f1']:.4f} | "
        f"{row['train_img_per_s']:.0f} img/s | train {row['train_time_s']:.1f}s select {row['select_time_s']:.2f}s "
        f"eval {row['eval_time_s']:.2f}s | ETA {eta}"
    )


def provenance(trainer: Trainer) -> dict:
    """What run.json records of how this process trains (device, precision, threads, scoring batch)."""
    return {
        "device": device_name(trainer.device),
        "precision": trainer.precision,
        "torch_threads": torch.get_num_threads(),
        "eval_batch_size": trainer.eval_batch_size,
        "deterministic": trainer.cfg.train.deterministic,
    }
