"""The four registries (models, optimizers, strategies, datasets) and the checks a sweep needs.

The names are the ones a sweep file uses; an unknown name is an error that lists the known ones.
This module imports neither torch nor the modules that fill the registries, so that validating a
sweep on a login node stays fast: the built-in models and strategies are *declared* here with
the few facts validation needs (their names; whether a model takes `dropout=`; whether a
strategy needs MC dropout), and their module (`home`) is imported only when an object is asked
for. Optimizers and datasets live in torch-free modules, imported on first use.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any, Callable, Generic, Iterator, TypeVar

from al_core.errors import ConfigError

T = TypeVar("T")


# A registered name becomes part of run ids (`<model>-<optimizer>-<strategy>-t<trial>`, split on
# '-'; a strategy's `+mode` suffix), of directory names and of report tables.
VALID_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


class InvalidName(ValueError):
    """A name that cannot be registered (not a string of letters, digits and '_')."""


def check_new_name(kind: str, name: object) -> None:
    """InvalidName unless `name` can stand in a run id and a directory name."""
    if not isinstance(name, str) or not VALID_NAME.match(name):
        raise InvalidName(
            f"{kind} name {name!r} cannot be registered; expected a letter, then letters, digits or '_' "
            "(at most 64 characters): names become part of run ids and directory names"
        )


class Registry(Generic[T]):
    """An ordered mapping from names to objects, filled with the `register` decorator.

    Example
    -------
    >>> TOYS = Registry("toy")
    >>> @TOYS.register("tiny")
    ... def tiny(): return 1
    >>> TOYS.get("tiny")()
    1
    """

    def __init__(self, kind: str, home: str | None = None) -> None:
        self.kind = kind
        self.home = home  # the module that registers the built-in objects (imported on first need)
        self._home = home
        self._items: dict[str, T] = {}
        self._declared: dict[str, dict] = {}  # name -> facts, for names whose object is not loaded yet

    def declare(self, name: str, **facts: Any) -> None:
        """A built-in name known before its module is imported (`facts`: what validation reads)."""
        self._declared[name] = facts

    def register(self, name: str) -> Callable[[T], T]:
        check_new_name(self.kind, name)

        def add(obj: T) -> T:
            if name in self._items or (name in self._declared and not self._is_home(obj)):
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            self._declared.pop(name, None)
            return obj

        return add

    def _is_home(self, obj: object) -> bool:
        """Whether `obj` comes from the module the declared built-ins live in (it fills their places)."""
        module = getattr(obj, "__module__", None) or type(obj).__module__
        return self._home is not None and (module == self._home or module.startswith(self._home + "."))

    def _load_home(self) -> None:
        if self.home is not None:
            home, self.home = self.home, None
            importlib.import_module(home)

    def forget(self, name: str) -> None:
        """Remove a registered name (a plugin that failed half-way)."""
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        if name not in self._items:
            self._load_home()
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def fact(self, name: str, key: str, default: Any = None) -> Any:
        """`key` of a declared name without importing its module; else the object's attribute."""
        if name in self._declared:
            return self._declared[name].get(key, default)
        return getattr(self.get(name), key, default)

    def names(self) -> list[str]:
        if not self._declared:
            self._load_home()
        return list(self._declared) + [n for n in self._items if n not in self._declared]

    def __contains__(self, name: object) -> bool:
        if name in self._items or name in self._declared:
            return True
        self._load_home()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


MODELS: Registry[Callable[..., Any]] = Registry("model", home="al_core.models")
OPTIMIZERS: Registry[Any] = Registry("optimizer", home="al_core.optim")
STRATEGIES: Registry[Any] = Registry("strategy", home="al_core.strategies")
DATASETS: Registry[Any] = Registry("dataset", home="al_core.data")

for _name in ("resnet18", "resnet34", "resnet50"):
    MODELS.declare(_name, takes_dropout=True)
for _name in ("least_confidence", "margin", "entropy", "learning_loss"):
    STRATEGIES.declare(_name, needs_dropout=False, scored=True)
for _name in ("random", "coreset", "badge"):
    STRATEGIES.declare(_name, needs_dropout=False, scored=False)
STRATEGIES.declare("bald", needs_dropout=True, scored=True)
STRATEGIES.declare("batchbald", needs_dropout=True, scored=False)
for _name in ("typiclust", "probcover"):
    STRATEGIES.declare(_name, needs_dropout=False, scored=False)

REGISTRIES = {"model": MODELS, "optimizer": OPTIMIZERS, "strategy": STRATEGIES, "dataset": DATASETS}


# ----------------------------------------------------------------------------------------------
# The checks config validation makes (torch-free for the built-ins).
def check_name(kind: str, name: object, key: str) -> None:
    registry = REGISTRIES[kind]
    if not isinstance(name, str) or name not in registry:
        raise ConfigError(f"{key}: unknown {kind} {name!r}; expected one of {', '.join(registry.names())}")


def takes_dropout(model: str) -> bool:
    """Whether the model's constructor accepts `dropout=` (declared for the built-ins; a plugin's signature tells)."""
    if model in MODELS._declared:
        return bool(MODELS.fact(model, "takes_dropout", False))
    try:
        params = inspect.signature(MODELS.get(model)).parameters
    except (TypeError, ValueError):
        return True  # a constructor that hides its signature is given the argument and judged by the run
    return "dropout" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def dropout_kwargs(model: str, dropout: float) -> dict:
    """`{"dropout": p}` for the model constructor when train.dropout > 0; a model that takes no
    `dropout` argument is refused then (with dropout 0 any constructor works)."""
    if dropout <= 0:
        return {}
    if takes_dropout(model):
        return {"dropout": dropout}
    raise ConfigError(
        f"train.dropout: model {model!r} takes no `dropout` argument; expected 0.0 for it, "
        "or a model constructor with dropout= (applied before its classifier)"
    )


def check_needs(strategy: str, model: str, dropout: float) -> None:
    """A strategy that needs MC dropout refuses train.dropout == 0; dropout > 0 needs a model that takes it."""
    if STRATEGIES.fact(strategy, "needs_dropout", False) and dropout <= 0:
        raise ConfigError(
            f"train.dropout: strategy {strategy} needs MC dropout; expected train.dropout > 0 (e.g. 0.3), got {dropout}"
        )
    dropout_kwargs(model, dropout)


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
