"""The training step, the per-epoch batch plan, evaluation and pool scoring.

One epoch's order, crop offsets and flips are drawn once from (trial, cycle, epoch) and moved to
the device in one transfer; the step reads them by slice, so nothing syncs with the host per step.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from al_core import seeding
from al_core.data.device import DeviceData
from al_core.models import LossNet, ResNet, loss_pred_loss, scoring_model
from al_core.strategies import Scores


class Interrupted(Exception):
    """Raised after a stop request was honoured: the current step finished and a checkpoint was written."""

    def __init__(self, signame: str, where: str) -> None:
        super().__init__(f"interrupted by {signame} at {where}; checkpoint written")
        self.signame = signame


@dataclass
class StopFlag:
    """Set from a signal handler; the training loop checks it after every step (no host sync)."""

    signame: str | None = None

    def request(self, signame: str) -> None:
        self.signame = self.signame or signame


# Images per scoring batch under train.eval_batch_size: auto. On CUDA a large batch fills the GPU.
# On a CPU, blocks of activations this large are returned to the OS after every batch and faulted
# in again on the next; smaller batches stay in the allocator's reuse range (BENCHMARKS.md, issue 26).
EVAL_BATCH_AUTO = {"cuda": 1024, "cpu": 64}


def eval_batch_size(setting: int | str, device: torch.device) -> int:
    """`train.eval_batch_size` in force on `device`: an explicit size wins; auto picks per device."""
    if setting != "auto":
        return int(setting)
    return EVAL_BATCH_AUTO.get(device.type, EVAL_BATCH_AUTO["cuda"])


def set_deterministic(on: bool) -> None:
    """`train.deterministic`: deterministic algorithms (and cuBLAS's fixed workspace) for this process.

    warn_only: some CUDA backward kernels have no deterministic version (adaptive_avg_pool2d's,
    which every ResNet here uses); torch then warns once naming the op instead of failing the
    run. cuDNN benchmark is turned off by the caller. CUBLAS_WORKSPACE_CONFIG must be set before
    cuBLAS starts; a job's environment may set it earlier (it is left as given). The switch is
    flipped only when it changes: setting it imports torch._inductor (1.6 s of a CPU run's start).
    """
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if torch.are_deterministic_algorithms_enabled() != on or torch.is_deterministic_algorithms_warn_only_enabled() != on:
        torch.use_deterministic_algorithms(on, warn_only=True)
    torch.backends.cudnn.deterministic = on


AUGMENTS = ("standard", "randaugment")  # train.augment


def randaugment(x: torch.Tensor, seed: int) -> torch.Tensor:
    """torchvision's RandAugment (Cubuk et al. 2020; 2 operations at magnitude 9, its defaults) on
    each uint8 image of a batch, every image drawing its own operations; the draws come from `seed`
    (from (trial, cycle, epoch, step)), so a resumed step and a tuning fit draw the same."""
    from torchvision.transforms import v2

    op = v2.RandAugment()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.stack([op(img) for img in x])


@dataclass
class EpochPlan:
    order: torch.Tensor  # pool indices in this epoch's shuffled order (device)
    shifts: torch.Tensor | None  # n x 2 crop offsets (device)
    flips: torch.Tensor | None  # n bools (device)
    batch_size: int
    seed_of_step: Callable[[int], int] | None = None  # train.augment randaugment: the seed of step i's draws

    @property
    def n_steps(self) -> int:
        # A short last batch makes noisy BatchNorm statistics (and a batch of one cannot train):
        # a remainder under half a batch is merged into the batch before it.
        n, bs = self.order.shape[0], self.batch_size
        full, rest = divmod(n, bs)
        if full == 0:
            return 1 if n > 1 else 0
        return full + (1 if 2 * rest >= bs else 0)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        last = step == self.n_steps - 1
        sl = slice(step * self.batch_size, None if last else (step + 1) * self.batch_size)
        return tuple(None if t is None else t[sl] for t in (self.order, self.shifts, self.flips))

    def inputs(self, data: DeviceData, step: int, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The augmented, normalised images of batch `step` (in the model's memory format) and their labels."""
        idx, shifts, flips = self.batch(step)
        strong = None if self.seed_of_step is None else (lambda u: randaugment(u, self.seed_of_step(step)))
        x = data.train_batch(idx, shifts, flips, strong)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, data.pool_y[idx]


def epoch_plan(
    data: DeviceData, labelled: torch.Tensor, trial: int, cycle: int, epoch: int, batch_size: int, augment: str = "standard"
) -> EpochPlan:
    """The shuffled order and augmentation of one epoch, derived from (trial, cycle, epoch, "train");
    with augment randaugment also RandAugment's draws, from (trial, cycle, epoch, "randaugment-<step>")."""
    g = seeding.torch_generator(trial, cycle, epoch, "train")
    n = labelled.shape[0]
    perm = torch.randperm(n, generator=g)
    pad = data.spec.pad
    shifts = torch.randint(0, 2 * pad + 1, (n, 2), generator=g) if pad > 0 else None
    flips = torch.rand(n, generator=g) < 0.5 if data.spec.flip else None
    dev = data.pool_x.device
    to = lambda t: None if t is None else t.to(dev, non_blocking=True)  # noqa: E731
    strong = None
    if augment == "randaugment":
        strong = lambda step: seeding.torch_seed(trial, cycle, epoch, f"randaugment-{step}")  # noqa: E731
    return EpochPlan(labelled[perm].to(dev), to(shifts), to(flips), batch_size, strong)


def autocast(device: torch.device, precision: str, cache: bool = True):
    """The precision context, chosen once: bf16 autocast on CUDA, plain fp32 elsewhere.

    `cache=False` for CUDA-graph capture: autocast's cast cache must not outlive the capture.
    """
    if device.type == "cuda" and precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext()


def train_step(
    model: ResNet,
    lossnet: LossNet | None,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    detach: bool,
    margin: float,
    weight: float,
    amp,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step; returns (summed loss, number correct) as device tensors (no sync)."""
    opt.zero_grad(set_to_none=True)
    out = _forward_backward(model, lossnet, x, y, detach, margin, weight, amp)
    opt.step()
    return out


def step_for(model, lossnet, opt, detach: bool, margin: float, weight: float, amp, graphed=None) -> Callable:
    """`step(x, y)` for `train_epoch`: the CUDA-graph step when there is one, else `train_step`."""
    if graphed is not None:
        return lambda x, y: graphed(x, y, detach)
    return lambda x, y: train_step(model, lossnet, opt, x, y, detach, margin, weight, amp)


@dataclass
class EpochStretch:
    """What `train_epoch` trained: device accumulators (read once, by the caller), images, where it stopped."""

    loss_sum: torch.Tensor  # summed per-image loss (float64, on the device)
    correct: torch.Tensor  # images classified correctly (on the device)
    seen: int  # images trained in this stretch
    next_step: int  # the first step not trained (plan.n_steps at the end of the epoch)
    stopped: bool  # a stop was requested after step next_step - 1


def train_epoch(
    model,
    lossnet,
    data: DeviceData,
    labelled: torch.Tensor,
    trial: int,
    cycle: int,
    epoch: int,
    batch_size: int,
    step: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    first_step: int = 0,
    channels_last: bool = False,
    dropout_tag: str | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    augment: str = "standard",
) -> EpochStretch:
    """The epoch loop, written once: the run's cycles, tuning fits and the benchmark all train with it.

    Trains epoch `epoch` of (trial, cycle) from `first_step` with `step(x, y)` (`train_step` or a
    `GraphedStep`), nothing synced with the host per step. `dropout_tag`: dropout masks drawn from
    (trial, cycle, epoch, tag + step), so a resumed step draws the same. Returns after the step at
    which `should_stop()` turns true, or at the end of the epoch. `augment`: train.augment."""
    plan = epoch_plan(data, labelled, trial, cycle, epoch, batch_size, augment)
    model.train()
    if lossnet is not None:
        lossnet.train()
    dev = data.pool_x.device
    loss_sum = torch.zeros((), device=dev, dtype=torch.float64)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    seen = 0
    for i in range(first_step, plan.n_steps):
        x, y = plan.inputs(data, i, channels_last)
        if dropout_tag is not None:
            torch.manual_seed(seeding.torch_seed(trial, cycle, epoch, f"{dropout_tag}{i}"))
        batch_loss, batch_correct = step(x, y)
        loss_sum += batch_loss
        correct += batch_correct
        seen += y.shape[0]
        if should_stop():
            return EpochStretch(loss_sum, correct, seen, i + 1, True)
    return EpochStretch(loss_sum, correct, seen, plan.n_steps, False)


def _forward_backward(model, lossnet, x, y, detach: bool, margin: float, weight: float, amp):
    """Forward, loss and backward of `train_step`, without the optimizer: what a CUDA graph holds."""
    with amp:
        logits, features = model(x)
        target_loss = F.cross_entropy(logits.float(), y, reduction="none")
        loss = target_loss.mean()
        if lossnet is not None:
            if detach:  # LL4AL: late in training, the ranking loss no longer shapes the features
                features = [f.detach() for f in features]
            pred_loss = lossnet(features).float()
            loss = loss + weight * loss_pred_loss(pred_loss, target_loss, margin)
    loss.backward()
    return target_loss.detach().sum(), (logits.detach().argmax(1) == y).sum()


_CAPTURE_WARNED = False  # the fallback's warning, once per process


class GraphedStep:
    """`train_step` with forward, loss and backward replayed from a CUDA graph (`train.cuda_graphs`).

    At 1,000 labels an epoch is 8 steps whose arithmetic takes a few milliseconds on a modern GPU;
    launching some 200 kernels per step from Python costs more than that. One graph per
    (batch size, detach) replays the whole forward and backward with one launch; the optimizer
    step stays eager (fused kernels), so learning-rate schedules and every optimizer work
    unchanged. The gradients the graph writes are the parameters' `.grad` tensors, assigned (not
    accumulated) on every replay; a batch of another size (the merged last batch of an epoch)
    runs eagerly into the same gradient tensors. Warm-up passes before capture change neither the
    weights (no optimizer step) nor the BatchNorm statistics (restored afterwards).
    CUDA only; `train_step` is used everywhere else.
    """

    WARMUP = 3  # eager passes on a side stream before capture (cuDNN autotuning, lazy allocations)

    def __init__(self, model, lossnet, opt: torch.optim.Optimizer, batch_size: int, margin: float, weight: float, precision: str):
        self.model, self.lossnet, self.opt, self.batch = model, lossnet, opt, batch_size
        self.margin, self.weight = margin, weight
        self.amp = autocast(torch.device("cuda"), precision, cache=False)
        self.key: tuple | None = None  # (batch shape, memory format, detach) of the captured graph
        self.graph: torch.cuda.CUDAGraph | None = None
        self.replays = 0  # steps served by the graph (for tests and the benchmark)
        self.failed = False  # a capture failed: every step runs eagerly (one warning line per process)

    def _forward_backward(self, x: torch.Tensor, y: torch.Tensor, detach: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return _forward_backward(self.model, self.lossnet, x, y, detach, self.margin, self.weight, self.amp)

    def _capture(self, x: torch.Tensor, y: torch.Tensor, detach: bool) -> None:
        self.graph = None  # the old graph's pool (and the gradients in it) go first
        buffers = [b for m in (self.model, self.lossnet) if m is not None for b in m.buffers()]
        saved = [b.detach().clone() for b in buffers]
        self.static_x, self.static_y = x.detach().clone(), y.detach().clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP):
                self.opt.zero_grad(set_to_none=True)
                self._forward_backward(self.static_x, self.static_y, detach)
        torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad():
            for b, v in zip(buffers, saved):
                b.copy_(v)  # warm-up forwards moved the BatchNorm running statistics
        self.opt.zero_grad(set_to_none=True)  # captured backward allocates .grad in the graph's pool
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.out = self._forward_backward(self.static_x, self.static_y, detach)
        self.graph = graph

    def _give_up(self, e: Exception) -> None:
        global _CAPTURE_WARNED
        self.failed, self.graph, self.key = True, None, None
        self.opt.zero_grad(set_to_none=True)  # gradients in the abandoned graph's pool
        if not _CAPTURE_WARNED:
            _CAPTURE_WARNED = True
            why = " ".join(str(e).split())[:200]
            print(
                f"warning: CUDA graph capture failed ({type(e).__name__}: {why}); training eagerly", file=sys.stderr, flush=True
            )

    def __call__(self, x: torch.Tensor, y: torch.Tensor, detach: bool) -> tuple[torch.Tensor, torch.Tensor]:
        key = (tuple(x.shape), x.stride(), detach)
        if self.failed:
            return train_step(self.model, self.lossnet, self.opt, x, y, detach, self.margin, self.weight, self.amp)
        if x.shape[0] != self.batch:
            # Another size (the merged last batch): eager, into the graph's gradient tensors.
            self.opt.zero_grad(set_to_none=False)
            s, k = self._forward_backward(x, y, detach)
            self.opt.step()
            return s, k
        if key != self.key:
            try:
                self._capture(x, y, detach)
            except RuntimeError as e:  # e.g. an operation a graph cannot hold: train eagerly instead
                self._give_up(e)
                return self(x, y, detach)
            self.key = key
        self.static_x.copy_(x)
        self.static_y.copy_(y)
        self.graph.replay()
        self.replays += 1
        self.opt.step()
        # The graph overwrites its outputs on the next replay: hand out copies.
        return self.out[0].clone(), self.out[1].clone()


@torch.no_grad()
def predict(
    model: ResNet,
    lossnet: LossNet | None,
    data: DeviceData,
    images: torch.Tensor,
    batch_size: int,
    amp,
    check_stop: Callable[[], None] | None = None,
) -> Scores:
    """Class probabilities (and predicted losses) of un-augmented uint8 `images`, in eval mode.

    `check_stop` is called between batches; it raises to abandon the pass (a stop request).
    """
    return _predict(model, lossnet, data, images.shape[0], lambda sl: images[sl], batch_size, amp, check_stop)


def score_pool(
    model, lossnet, data: DeviceData, pool_idx: np.ndarray, batch_size: int, amp, check_stop: Callable[[], None] | None = None
) -> Scores:
    """`predict` over pool indices, gathered one batch at a time."""
    idx = torch.as_tensor(pool_idx, dtype=torch.long).to(data.pool_x.device)
    return _predict(model, lossnet, data, idx.shape[0], lambda sl: data.pool_x[idx[sl]], batch_size, amp, check_stop)


@torch.no_grad()
def _predict(model, lossnet, data: DeviceData, n: int, images, batch_size: int, amp, check_stop=None) -> Scores:
    model = scoring_model(model)
    if lossnet is not None:
        lossnet.eval()
    probs, preds = [], []
    for x in data.batches(images, n, batch_size, model, check_stop):
        with amp:
            logits, features = model(x)
            if lossnet is not None:
                preds.append(lossnet(features).float())
        probs.append(torch.softmax(logits.float(), dim=1))
    return Scores(
        probs=torch.cat(probs).cpu() if probs else torch.empty(0, data.n_classes),
        pred_loss=torch.cat(preds).cpu() if preds else None,
    )
