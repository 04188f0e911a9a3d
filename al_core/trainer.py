"""The trainer: one run's device, precision, models, optimizers and epochs.

Built once per run (`Trainer(cfg, stop, with_lossnet)`: the node checked, the device and precision
resolved, cuDNN and TF32 set); then fresh weights from (trial, cycle), the optimizer with tuned and
budget-scaled values, and a cycle trained to the end of its epochs with al_core.train.train_epoch.
The run loop (al_core.loop) and the tuning fits (al_core.tuning) train through it.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from al_core import checkpoint, epochs_log, optim, preflight, seeding
from al_core.config import RunConfig
from al_core.data.device import DeviceData
from al_core.models import MODELS, LossNet
from al_core.registry import dropout_kwargs
from al_core.train import (
    GraphedStep,
    Interrupted,
    StopFlag,
    autocast,
    eval_batch_size,
    predict,
    set_deterministic,
    step_for,
    train_epoch,
)


@dataclass
class Cycle:
    """The mutable state of the cycle being trained."""

    cycle: int
    labelled: np.ndarray  # sorted pool indices this cycle trains on
    queried: list[int]  # indices added this cycle, in the order they were chosen
    model: torch.nn.Module
    lossnet: torch.nn.Module | None
    opt: torch.optim.Optimizer
    sched: object
    epoch: int = 0  # epochs finished
    step: int = 0  # steps finished in epoch `epoch`
    stats: checkpoint.EpochStats = field(default_factory=checkpoint.EpochStats)  # the epoch in progress
    timing: dict = field(default_factory=lambda: {"select_time_s": 0.0, "train_time_s": 0.0, "energy_j": None})
    last_epoch: tuple = (float("nan"), float("nan"))  # mean loss and accuracy of the last finished epoch
    img_per_s: float = float("nan")  # training throughput of this process's stretch of the cycle
    tuned: dict | None = None  # hyper-parameters chosen by tuning (al_core/tune.py) this cycle trains with
    tune_record: dict | None = None  # the grid's validation scores, at a cycle where tuning chose them
    epochs: list = field(default_factory=list)  # per finished epoch: loss, accuracy, lr (epochs.jsonl)
    graphed: GraphedStep | None = None  # the CUDA-graph step of this cycle's model (train.cuda_graphs; not saved)
    swa: torch.optim.swa_utils.AveragedModel | None = None  # train.swa: the running average of the model's weights


def after_epoch(cur: Cycle, t, data: DeviceData, device: torch.device) -> None:
    """After epoch `cur.epoch`: the schedule's step and, with train.swa, the weight average."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cur.sched.step()
    swa_update(cur, t, data, device)


def swa_update(cur: Cycle, t, data: DeviceData, device: torch.device) -> None:
    """`train.swa` after epoch `cur.epoch` (Izmailov et al., UAI 2018; torch.optim.swa_utils).

    Over the last `swa` fraction of the epochs (at least one) the model's weights after each epoch
    enter an equal average; after the last epoch the average's BatchNorm statistics are recomputed
    on the cycle's training images (un-augmented, `update_bn`) and the average becomes the cycle's
    model (selection, evaluation, the checkpoint). The schedule runs unchanged (no SWALR): with a
    multistep or constant schedule the averaged epochs keep a useful lr. The loss-prediction module
    keeps its last weights.
    """
    if not t.swa or cur.epoch <= t.epochs - max(1, round(t.swa * t.epochs)):
        return
    from torch.optim.swa_utils import AveragedModel, update_bn

    if cur.swa is None:
        cur.swa = AveragedModel(cur.model)
    cur.swa.update_parameters(cur.model)
    if cur.epoch == t.epochs:
        idx = torch.as_tensor(cur.labelled, dtype=torch.long, device=data.pool_x.device)
        update_bn(data.batches(lambda sl: data.pool_x[idx[sl]], len(idx), t.batch_size, cur.model), cur.swa, device=device)
        cur.model.load_state_dict(cur.swa.module.state_dict())


def weights(cur: Cycle) -> dict:
    """A copy of the cycle's model (and loss module) weights, on their device."""
    copy = {"model": {k: v.detach().clone() for k, v in cur.model.state_dict().items()}}
    if cur.lossnet is not None:
        copy["lossnet"] = {k: v.detach().clone() for k, v in cur.lossnet.state_dict().items()}
    return copy


def diverged_at(cur: Cycle) -> dict | None:
    """{"cycle", "epoch"} of the epoch at which `cur` diverged (its epoch row says so), else None."""
    for row in cur.epochs:
        if row.get("diverged") and row.get("cycle") == cur.cycle:
            return {"cycle": int(cur.cycle), "epoch": int(row["epoch"])}
    return None


def end_epoch(cur: Cycle, before: dict, where: str, t, data: DeviceData, device: torch.device) -> None:
    """Close the epoch just trained: its row, the scheduler's step. An epoch whose mean training
    loss is not finite has diverged (README, "Diverged runs"): the cycle stops training there and
    keeps the weights it had before that epoch, and its epoch row says `diverged`."""
    cur.last_epoch = cur.stats.means()
    cur.epochs.append(epochs_log.epoch_row(cur.cycle, cur.epoch + 1, cur.last_epoch, cur.opt))
    cur.stats = checkpoint.EpochStats()
    cur.step = 0
    if not math.isfinite(cur.last_epoch[0]):
        cur.model.load_state_dict(before["model"])
        if cur.lossnet is not None:
            cur.lossnet.load_state_dict(before["lossnet"])
        cur.epochs[-1]["diverged"] = True
        logging.getLogger(__name__).warning(
            "warning: cycle %d %sepoch %d: training loss not finite (diverged); the cycle keeps the weights of "
            "the epoch before and trains no further, the run goes on",
            cur.cycle,
            where,
            cur.epoch + 1,
        )
        cur.epoch = t.epochs
        return
    cur.epoch += 1
    after_epoch(cur, t, data, device)


def placement(t) -> tuple[torch.device, str]:
    """The device and precision of a run's `train:` section, this process's determinism, cuDNN and
    TF32 settings. Before anything is written: a job that asked for a GPU it cannot use stops here
    (NodeError, exit 78)."""
    node = preflight.check(t.device, t.precision)
    want_cuda = t.device == "cuda" or (t.device == "auto" and node.cuda_available)
    device = torch.device("cuda" if want_cuda else "cpu")
    set_deterministic(t.deterministic)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not t.deterministic  # autotuning may pick another kernel per process
        torch.backends.cuda.matmul.allow_tf32 = t.tf32
        torch.backends.cudnn.allow_tf32 = t.tf32
    return device, preflight.resolve_precision(t.precision, device.type, node.capability)


class Trainer:
    def __init__(self, cfg: RunConfig, stop: StopFlag, with_lossnet: bool) -> None:
        self.cfg, self.stop, self.with_lossnet = cfg, stop, with_lossnet
        self.data: DeviceData | None = None  # set once the run has loaded it
        self.device, self.precision = placement(cfg.train)
        self.amp = autocast(self.device, self.precision)
        # Selection ranks scores: fp32 by default, so bf16 rounding does not make ties of distinct scores.
        self.score_amp = autocast(self.device, "fp32" if cfg.train.score_precision == "fp32" else self.precision)
        self.eval_batch_size = eval_batch_size(cfg.train.eval_batch_size, self.device)

    def fresh_model(self, c: int):
        """Initial weights from (trial, cycle): the same for every optimizer and strategy of a trial."""
        t, trial = self.cfg.train, self.cfg.trial
        spec = self.data.spec
        hidden = self.cfg.ll.hidden if self.with_lossnet else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seeding.torch_seed(trial, c, 0, "init-model"))
            model = MODELS.get(self.cfg.model)(
                num_classes=spec.n_classes, in_channels=spec.channels, width=t.width, **dropout_kwargs(self.cfg.model, t.dropout)
            )
            lossnet = None
            if hidden:
                torch.manual_seed(seeding.torch_seed(trial, c, 0, "init-lossnet"))
                lossnet = LossNet(model.stage_channels, hidden)
        model = model.to(self.device)
        if self.device.type == "cuda" and t.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.device.type == "cuda" and t.compile:
            model.compile()  # in place: state_dict keys stay those of the plain model
        if lossnet is not None:
            lossnet = lossnet.to(self.device)
        return model, lossnet

    def build_optimizer(self, model, lossnet, n_train: int, tuned: dict | None = None):
        """The optimizer and schedule of a fit on `n_train` images (al_core.optim.for_run)."""
        return optim.for_run(self.cfg, [model] + ([lossnet] if lossnet is not None else []), n_train, tuned, self.device)

    def restore(self, cycle: int, epoch: int, step: int, saved) -> Cycle:
        """The Cycle a checkpoint saved (`checkpoint.unpack`'s), at (cycle, epoch, step); the
        scheduler is re-derived from the epoch."""
        model, lossnet = self.fresh_model(cycle)
        model.load_state_dict(saved.model)
        if lossnet is not None:
            lossnet.load_state_dict(saved.lossnet)
        opt, sched = self.build_optimizer(model, lossnet, len(saved.labelled), saved.tuned)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(epoch):
                sched.step()
        opt.load_state_dict(saved.optimizer)
        kept = {k: getattr(saved, k) for k in ("stats", "timing", "last_epoch", "tuned", "tune_record", "epochs")}
        cur = Cycle(cycle, saved.labelled, saved.queried, model, lossnet, opt, sched, epoch=epoch, step=step, **kept)
        if saved.swa is not None and epoch < self.cfg.train.epochs:  # train.swa: the average so far
            cur.swa = torch.optim.swa_utils.AveragedModel(model)
            cur.swa.load_state_dict(saved.swa)
        return cur

    # ------------------------------------------------------------------------------------------
    def train(self, cur: Cycle, save: Callable[[Cycle, bool], None], tag: str = "dropout-", where: str = "") -> None:
        """Train `cur` from where it stands to the end of its epochs. `save(cur, must)` after every
        epoch, and before an interruption: `must` at the last epoch and on a stop request. Dropout
        masks come from (trial, cycle, epoch, `tag` + step); `where` names the fit in an interruption."""
        t, ll = self.cfg.train, self.cfg.ll
        if cur.epoch >= t.epochs:
            return
        labelled = torch.as_tensor(cur.labelled, dtype=torch.long)
        channels_last = self.device.type == "cuda" and t.channels_last
        detach_epoch = math.ceil(ll.detach_at * t.epochs)
        t0 = time.perf_counter()
        seen, train_s0 = 0, cur.timing["train_time_s"]
        if self.device.type == "cuda" and t.graphs and cur.graphed is None:
            cur.graphed = GraphedStep(cur.model, cur.lossnet, cur.opt, t.batch_size, ll.margin, ll.weight, self.precision)
        while cur.epoch < t.epochs:
            before = weights(cur)  # what the cycle keeps should this epoch diverge
            detach = cur.epoch >= detach_epoch
            step = step_for(cur.model, cur.lossnet, cur.opt, detach, ll.margin, ll.weight, self.amp, cur.graphed)
            stretch = train_epoch(
                cur.model,
                cur.lossnet,
                self.data,
                labelled,
                self.cfg.trial,
                cur.cycle,
                cur.epoch,
                t.batch_size,
                step,
                first_step=cur.step,
                channels_last=channels_last,
                dropout_tag=tag if t.dropout > 0 else None,
                should_stop=lambda: bool(self.stop.signame),
                augment=t.augment,
            )
            cur.stats.seen += stretch.seen
            seen += stretch.seen
            cur.step = stretch.next_step
            self.flush(cur, stretch.loss_sum, stretch.correct, t0)
            if stretch.stopped:
                save(cur, True)
                raise Interrupted(self.stop.signame, f"cycle {cur.cycle} {where}epoch {cur.epoch + 1} step {cur.step}")
            t0 = time.perf_counter()
            end_epoch(cur, before, where, t, self.data, self.device)
            done = cur.epoch == t.epochs
            save(cur, done or bool(self.stop.signame))
            if self.stop.signame and not done:
                raise Interrupted(self.stop.signame, f"cycle {cur.cycle} {where}after epoch {cur.epoch}")
        cur.img_per_s = seen / max(cur.timing["train_time_s"] - train_s0, 1e-9)

    def evaluate(self, cur: Cycle) -> dict:
        """Test accuracy, macro F1 (scikit-learn) and per-class accuracy of `cur`'s model, and the seconds it took."""
        data = self.data
        t0 = time.perf_counter()
        where = f"cycle {cur.cycle} evaluation"
        scores = predict(
            cur.model, cur.lossnet, data, data.test_x, self.eval_batch_size, self.amp, lambda: self.check_stop(where)
        )
        pred = scores.probs.argmax(1).numpy()
        y = data.test_y.cpu().numpy()
        eval_time = time.perf_counter() - t0
        from sklearn.metrics import confusion_matrix, f1_score  # deferred: seconds of import in every process

        cm = confusion_matrix(y, pred, labels=list(range(data.n_classes)))
        support = cm.sum(1)
        per_class = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
        return {
            "test_accuracy": float((pred == y).mean()),
            "test_macro_f1": float(f1_score(y, pred, average="macro")),
            "per_class_accuracy": [float(v) for v in per_class],
            "eval_time_s": round(eval_time, 4),
        }

    def check_stop(self, where: str) -> None:
        """Honour a stop request between scoring batches: selection and evaluation are re-derived
        on resume from the checkpoint that precedes them, so nothing needs writing first."""
        if self.stop.signame:
            raise Interrupted(self.stop.signame, where)

    def flush(self, cur: Cycle, loss_sum, correct, t0: float) -> None:
        """Move this stretch's device accumulators and clocks into `cur` (one host sync)."""
        cur.stats.loss_sum += float(loss_sum)
        cur.stats.correct += float(correct)
        loss_sum.zero_()
        correct.zero_()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        cur.timing["train_time_s"] += time.perf_counter() - t0
