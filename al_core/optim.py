"""Optimizers by name, each with defaults sensible for it, and the per-epoch lr schedules.

An SGD learning rate is not an Adam learning rate: every optimizer carries its own defaults,
overridable from the sweep file under `optim.<name>`. torch is imported when an optimizer is
built, not when the module is: validating a sweep reads only the defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

from al_core import tune
from al_core.registry import OPTIMIZERS

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class OptimizerSpec:
    defaults: dict
    make: Callable[[Iterable["torch.nn.Parameter"], dict, dict], "torch.optim.Optimizer"]


def _register(name: str, cls: str, defaults: dict, fused: bool = True) -> None:
    """A built-in optimizer: `torch.optim.<cls>` given every hyper-parameter of `defaults` by keyword
    (lists as tuples: betas); a class without fused kernels (`fused=False`: RMSprop) gets foreach ones."""

    def make(params, h: dict, fast: dict):
        import torch

        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in h.items()}
        speed = fast if fused else {"foreach": fast.get("foreach", fast.get("fused"))}
        return getattr(torch.optim, cls)(params, **kwargs, **speed)

    OPTIMIZERS.register(name)(OptimizerSpec(defaults, make))


# SGD: the LL4AL / CIFAR ResNet recipe.
_register("sgd", "SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": False})
# Adam: the usual 1e-3 with L2 weight decay off (Adam's coupled decay interacts badly with its scaling).
_register("adam", "Adam", {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0})
# AdamW: decoupled decay of 0.05 at lr 1e-3 (decay per step = lr * wd, so 5e-4 at lr 1e-4 is almost none).
_register("adamw", "AdamW", {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.05})
# RMSprop: alpha 0.99 as in the study; 1e-3 diverges often on BN ResNets, 5e-4 trains reliably.
_register("rmsprop", "RMSprop", {"lr": 5e-4, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "weight_decay": 0.0}, fused=False)


def normalized_decay(weight_decay: float, batch_size: int, n_train: int, epochs: int) -> float:
    """The weight decay in force for L&H's normalised value `weight_decay` (`optim.wd_normalized`).

    Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019 (their normalized
    weight decay): lambda = lambda_norm * sqrt(b / (B * T)), with b the
    batch size, B the training points per epoch and T the epochs. b / (B * T) is one over the
    number of steps, so one lambda_norm means the same total decay at any budget: here B is the
    labelled set of the cycle (or, in tuning, the fit's training folds), which grows every cycle.
    """
    return weight_decay * math.sqrt(batch_size / (n_train * epochs))


def decay_groups(modules: Iterable["torch.nn.Module"]) -> list[dict]:
    """The parameters of `modules` in two groups: decayed, and biases and norm parameters with
    weight_decay 0 (`optim.decay_exclude_norm_bias`).

    Excluded: every parameter of at most one dimension, i.e. every bias (convolutions, the
    classifier, the loss-prediction module's layers) and BatchNorm / GroupNorm / LayerNorm scales
    and shifts, the rule of the AdamW image recipes (DeiT, ConvNeXt via timm). Decay pulls a
    norm scale or a bias towards 0 without regularising the function (the following norm undoes a
    weight's scale; a bias has no scale to restrain). The loss-prediction module (al_core.models.
    LossNet) follows the same rule: its fully connected weights decay, its biases do not.
    """
    decay, no_decay = [], []
    for module in modules:
        for _, p in module.named_parameters():
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(name: str, params: list, hparams: dict, device) -> "torch.optim.Optimizer":
    """The optimizer `name` over `params` (tensors or param-group dicts); on CUDA the fused (or
    foreach) kernels."""
    fast = {"fused": True} if device.type == "cuda" else {}
    return OPTIMIZERS.get(name).make(params, hparams, fast)


def make_scheduler(opt, schedule: str, epochs: int, milestones: tuple[float, ...], gamma: float, warmup: float = 0.0):
    """A scheduler stepped once per epoch; milestones and warm-up are fractions of `epochs`.

    warmup_cosine: the lr rises linearly from 1 / (w + 1) of its value to all of it over the first
    w = max(1, round(warmup * epochs)) epochs, then follows a cosine to 0 over the rest (torch's
    LinearLR then CosineAnnealingLR); the Adam-family image recipes' schedule, available to all.
    """
    import torch

    lr_scheduler = torch.optim.lr_scheduler
    if schedule == "multistep":
        steps = sorted({max(1, round(m * epochs)) for m in milestones})
        return lr_scheduler.MultiStepLR(opt, milestones=steps, gamma=gamma)
    if schedule == "cosine":
        return lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    if schedule == "warmup_cosine" and epochs > 1:
        w = min(max(1, round(warmup * epochs)), epochs - 1)
        ramp = lr_scheduler.LinearLR(opt, start_factor=1 / (w + 1), end_factor=1.0, total_iters=w)
        decay = lr_scheduler.CosineAnnealingLR(opt, T_max=epochs - w)
        return lr_scheduler.SequentialLR(opt, [ramp, decay], milestones=[w])
    return lr_scheduler.LambdaLR(opt, lambda epoch: 1.0)


def for_run(cfg, modules: list, n_train: int, tuned: dict | None, device) -> tuple:
    """A run's optimizer and schedule (`cfg`: its RunConfig) for a fit of `modules` on `n_train`
    images: the config's hyper-parameters with `tuned` values over them, with optim.wd_normalized
    the decay scaled to the fit's steps, and with optim.decay_exclude_norm_bias two groups."""
    t = cfg.train
    h = tune.as_params(cfg.optim, tuned)
    if cfg.wd_normalized and "weight_decay" in h:
        h["weight_decay"] = normalized_decay(h["weight_decay"], t.batch_size, n_train, t.epochs)
    params = decay_groups(modules) if cfg.decay_exclude_norm_bias else [p for m in modules for p in m.parameters()]
    opt = make_optimizer(cfg.optimizer, params, h, device)
    return opt, make_scheduler(opt, t.schedule, t.epochs, t.milestones, t.gamma, t.warmup)
