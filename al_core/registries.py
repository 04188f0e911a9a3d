"""The four registries in one place, with the checks the config validation needs.

Importing this module imports the model, optimizer, strategy and dataset modules, which fill them.
"""
from __future__ import annotations

from al_core.config import ConfigError
from al_core.data import DATASETS
from al_core.models import MODELS
from al_core.optim import OPTIMIZERS
from al_core.strategies import STRATEGIES

_BY_KIND = {"model": MODELS, "optimizer": OPTIMIZERS, "strategy": STRATEGIES, "dataset": DATASETS}


def check_name(kind: str, name: object, key: str) -> None:
    registry = _BY_KIND[kind]
    if not isinstance(name, str) or name not in registry:
        raise ConfigError(f"{key}: unknown {kind} {name!r}; expected one of {', '.join(registry.names())}")


def check_needs(strategy: str, model: str, dropout: float) -> None:
    """A strategy that needs MC dropout refuses train.dropout == 0; dropout > 0 needs a model that takes it."""
    if getattr(STRATEGIES.get(strategy), "needs_dropout", False) and dropout <= 0:
        raise ConfigError(f"train.dropout: strategy {strategy} needs MC dropout; expected train.dropout > 0 "
                          f"(e.g. 0.3), got {dropout}")
    from al_core.plugins import dropout_kwargs

    dropout_kwargs(model, dropout)


def pool_size(dataset: str) -> int:
    return DATASETS.get(dataset).pool_size


def dataset_pool_size(ds) -> int | None:
    """The pool size of the sweep's dataset (a DatasetConfig), its keys checked; None if the files must tell."""
    from al_core.datasets_real import check_config

    check_config(ds)
    spec = DATASETS.get(ds.name)
    return spec.pool_size_of(ds) if spec.pool_size_of is not None else spec.pool_size


def optimizer_params(name: str, params: dict, key: str) -> dict:
    """The optimizer's documented defaults updated with `params`, type-checked against them."""
    check_name("optimizer", name, key)
    if not isinstance(params, dict):
        raise ConfigError(f"{key}: expected a mapping of hyper-parameters, got {params!r}")
    defaults = OPTIMIZERS.get(name).defaults
    merged = dict(defaults)
    for k, v in params.items():
        if k not in defaults:
            raise ConfigError(f"unknown key {key}.{k}; expected one of {', '.join(defaults)}")
        d = defaults[k]
        if isinstance(d, bool):
            ok = isinstance(v, bool)
        elif isinstance(d, (int, float)):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            v = float(v) if ok and isinstance(d, float) else v
        elif isinstance(d, list):
            ok = isinstance(v, list) and len(v) == len(d) and all(isinstance(x, (int, float)) for x in v)
        else:
            ok = isinstance(v, type(d))
        if not ok:
            raise ConfigError(f"{key}.{k}: expected a value like {d!r}, got {v!r}")
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
            raise ConfigError(f"{key}.{k}: expected a non-negative number, got {v!r}")
        merged[k] = v
    if merged.get("lr", 1) <= 0:
        raise ConfigError(f"{key}.lr: expected a positive learning rate, got {merged['lr']!r}")
    return merged
