"""The sweep file: typed, frozen config objects loaded from YAML plus dotted overrides.

Validated once, with errors that name the key; a run's resolved config (`RunConfig`) is its
identity, stored in run.json and in every checkpoint, and compared on resume.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import itertools
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from al_core import data, plugins, recipes, registry, results, study, tune
from al_core.data.spec import DatasetConfig
from al_core.errors import ConfigError  # noqa: F401  (re-exported: `from al_core.config import ConfigError`)


# ----------------------------------------------------------------------------------------------
# YAML: PyYAML follows YAML 1.1, where `1e-3` is a string. Researchers write 1e-3; accept it.
class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


YAML_MAX_CHARS = 1_000_000  # a sweep file or profile is a few kB
YAML_MAX_VALUES = 100_000  # values once aliases are expanded: a grid of thousands of runs stays far below


def yaml_load(text: str) -> Any:
    """A YAML document as plain data, or yaml.YAMLError saying what is refused (the callers turn it
    into one `error:` line). SafeLoader constructs no Python object (`!!python/...` tags are
    refused); beyond it, refused: a duplicate key in a mapping (YAML forbids it; PyYAML would keep
    the last silently), `!!binary`, `!!set`, `!!omap` and `!!pairs`, an alias that refers to its own
    node, a document whose aliases expand to more than YAML_MAX_VALUES values (an "aliases bomb"),
    one nested too deeply to parse, and a text over YAML_MAX_CHARS. Dates stay the text written."""
    if len(text) > YAML_MAX_CHARS:
        raise yaml.YAMLError(f"{len(text):,} characters; expected a sweep file under {YAML_MAX_CHARS:,}")
    try:
        data = yaml.load(text, Loader=_Loader)
    except RecursionError:
        raise yaml.YAMLError("nested too deeply to read; expected a few levels of mappings and lists") from None
    _count_values(data, {}, set())
    return data


def _count_values(node: Any, sizes: dict[int, int], path: set[int]) -> int:
    """The values of `node` with every alias expanded (memoised per shared node, so a bomb is
    counted without being expanded); yaml.YAMLError over YAML_MAX_VALUES or for a cycle."""
    if not isinstance(node, (dict, list)):
        return 1
    key = id(node)
    if key in path:
        raise yaml.YAMLError("an alias refers to the node that holds it; expected plain, finite data")
    if key not in sizes:
        path.add(key)
        children = list(node.values()) if isinstance(node, dict) else node
        sizes[key] = 1 + sum(_count_values(c, sizes, path) for c in children)
        path.discard(key)
    if sizes[key] > YAML_MAX_VALUES:
        raise yaml.YAMLError(f"aliases expand it to over {YAML_MAX_VALUES:,} values; expected a sweep of plain values")
    return sizes[key]


def _no_duplicate_keys(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *defaults`: keys given beside a merge override the merged ones, as YAML says
        key = loader.construct_object(key_node, deep=deep)
        try:
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"duplicate key {key!r}; expected each key once",
                    key_node.start_mark,
                )
            seen[key] = True
        except TypeError:
            pass  # an unhashable key: construct_mapping says so
    return loader.construct_mapping(node, deep=deep)


def _refused_tag(loader: _Loader, node: yaml.Node) -> None:
    raise yaml.constructor.ConstructorError(
        None,
        None,
        f"the tag {node.tag} is not accepted; expected plain values (strings, numbers, lists, mappings)",
        node.start_mark,
    )


_Loader.add_constructor("tag:yaml.org,2002:map", _no_duplicate_keys)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))
for _tag in ("binary", "set", "omap", "pairs"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refused_tag)


# ----------------------------------------------------------------------------------------------
# The sections of a sweep file. Each default carries its unit or meaning.
@dataclass(frozen=True)
class ALConfig:
    cycles: int = 10  # labelled-set sizes: initial_size + (cycle - 1) * query_size
    initial_size: int = 1000  # labelled samples of cycle 1
    query_size: int = 1000  # samples queried at the start of every later cycle
    initial: str = "random"  # random | strategy (first set chosen by the strategy, untrained model)
    subset: Optional[int] = None  # score only a random subset of the unlabelled pool this large


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 200  # per cycle
    batch_size: int = 128  # images per step
    width: int = 64  # channels of the first stage; 64 = the standard ResNet
    reset: bool = True  # re-initialise model each cycle; false: continue from the last cycle's weights
    schedule: str = "multistep"  # multistep | cosine | warmup_cosine | constant (stepped once per epoch)
    warmup: float = 0.05  # warmup_cosine: fraction of `epochs` of linear warm-up (at least 1 epoch)
    augment: str = "standard"  # standard (the dataset's crop / flip) | randaugment (then torchvision's RandAugment)
    swa: float = 0.0  # stochastic weight averaging over this last fraction of `epochs` (0: off; al_core.trainer)
    milestones: tuple[float, ...] = (0.8,)  # multistep: fractions of `epochs` (0.8 = epoch 160 of 200)
    gamma: float = 0.1  # multistep: lr factor at each milestone
    precision: str = "auto"  # auto (bf16 only on GPUs with native bf16, capability >= 8.0; else fp32) | fp32 | bf16
    score_precision: str = "fp32"  # pool scoring for selection: fp32 | train (the training precision)
    tf32: bool = False  # allow TF32 matmuls/convolutions on Ampere+ (faster, ~10-bit mantissa)
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda
    checkpoint_every: int = 10  # epochs between checkpoints inside a cycle (0: cycle ends only) ...
    checkpoint_min_s: float = 120.0  # ... and at least this many seconds since the last one (0: no floor)
    # images per no-grad batch when scoring the pool / the test set; auto: per device at run time
    # (al_core.train.eval_batch_size: 1024 on CUDA, a CPU's measured best below that)
    eval_batch_size: int | str = "auto"
    channels_last: bool = True  # NHWC memory format on CUDA (ignored on CPU)
    compile: bool = False  # torch.compile the model (CUDA only; off until measured)
    # replay each step's forward+backward from a CUDA graph (CUDA only; 2.7-3.3x faster ResNet training
    # on an H200, BENCHMARKS.md): auto = on where CUDA is, unless compile or dropout asks for eager steps
    cuda_graphs: bool | str = "auto"
    tensorboard: bool = False  # also write TensorBoard event files under <run_dir>/tensorboard (epochs.jsonl is always written)
    dropout: float = 0.0  # dropout probability before the classifier; MC-dropout strategies (bald) need > 0
    deterministic: bool = False  # cuDNN benchmark off, deterministic algorithms, fixed cuBLAS workspace (replications)

    @property
    def graphs(self) -> bool:
        """Whether a CUDA run replays its steps from CUDA graphs (cuda_graphs: true, or auto without compile or dropout)."""
        return self.cuda_graphs is True or (self.cuda_graphs == "auto" and not self.compile and not self.dropout)


@dataclass(frozen=True)
class LossPredConfig:
    """The loss-prediction module of Yoo & Kweon (CVPR 2019); trained only with learning_loss."""

    hidden: int = 128  # FC width per stage
    margin: float = 1.0  # margin of the pairwise ranking loss
    weight: float = 1.0  # weight of the ranking loss beside cross-entropy
    detach_at: float = 0.6  # from this fraction of `epochs` on, stage features are detached (0.6 = 120/200)
    train_module: str = "auto"  # auto: only strategies that query with it train it | always: every run does


@dataclass(frozen=True)
class SelectConfig:
    """How a strategy turns its inputs into a batch (README, Sweep keys: select.*)."""

    stochastic: str = "none"  # none (top k) | power | softmax | softrank: draw a scored strategy's batch (Kirsch et al. 2023)
    beta: float = 1.0  # stochastic: inverse temperature (weights score**beta, exp(beta*score), rank**-beta)
    batchbald_samples: int = (
        1000  # batchbald: exact joint entropy while classes**batch <= this, else this many sampled configurations
    )
    batchbald_candidates: int = 1000  # batchbald: only this many candidates, the highest BALD scores, enter the greedy steps
    probcover_delta: Optional[float] = (
        None  # probcover: ball radius; null: the largest with purity >= 0.95 (k-means pseudo-labels)
    )


STOCHASTIC_MODES = ("none", "power", "softmax", "softrank")
# The `select` keys that reach a run's identity only for the strategies that read them.
SELECT_KEYS_OF = {"batchbald_samples": ("batchbald",), "batchbald_candidates": ("batchbald",), "probcover_delta": ("probcover",)}


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's result: its identity (fingerprinted in run.json and checkpoints)."""

    model: str
    optimizer: str
    strategy: str
    trial: int
    dataset: DatasetConfig
    al: ALConfig
    train: TrainConfig
    ll: LossPredConfig
    optim: dict  # hyper-parameters of `optimizer`, registry defaults merged with the sweep's
    recipe: Optional[str] = None  # optim.recipe the values came from (al_core/recipes.py); None: registry defaults
    tune: Optional[dict] = None  # {"cycles", "folds", "grid"} of this run's optimizer (al_core/tune.py); None: no tuning
    decay_exclude_norm_bias: bool = False  # optim.decay_exclude_norm_bias resolved for this run's optimizer
    wd_normalized: bool = False  # optim.wd_normalized: weight_decay is L&H 2019's normalised value (al_core/optim.py)
    plugins: dict = field(default_factory=dict)  # plugin entry -> hash of its source (al_core.plugins)
    plugin_files: dict = field(default_factory=dict, compare=False)  # entry -> source file: where, not what
    select: SelectConfig = field(default_factory=SelectConfig)  # how the batch is drawn; strategy settings

    @property
    def stochastic(self) -> Optional[tuple[str, float]]:
        """(mode, beta) when the batch is drawn stochastically (a `NAME+MODE` strategy or select.stochastic), else None."""
        mode = strategy_mode(self.strategy)[1] or self.select.stochastic
        return None if mode == "none" else (mode, self.select.beta)

    @property
    def base_strategy(self) -> str:
        """The registered strategy: `margin` for `margin+power`."""
        return strategy_mode(self.strategy)[0]

    def to_dict(self) -> dict:
        d = _plain(dataclasses.asdict(self))
        # Keys added after runs were recorded are left out at their defaults, so the fingerprint
        # (and run.json) of a run that does not use them is what it was: old runs still resume.
        # recipe and tune are None unless set; a run without plugins keeps the config (and fingerprint) it always had
        for key in ("recipe", "tune", *OPTIM_FLAGS, "plugins"):
            if not d[key]:
                del d[key]
        if d["train"]["eval_batch_size"] == "auto":
            # Before `auto` the default was 1024 (what auto still means on CUDA): the recorded value
            # keeps the fingerprint of every run recorded then. The size in force on this device is
            # in run.json's provenance (`eval_batch_size`).
            d["train"]["eval_batch_size"] = EVAL_BATCH_RECORDED_AUTO
        if d["ll"]["train_module"] == "auto":
            del d["ll"]["train_module"]
        d.pop("plugin_files")
        if not d["train"]["dropout"]:
            d["train"].pop("dropout")  # likewise a run without dropout (runs started before the key existed resume)
        for section, key, default in ADDED_AT_DEFAULT:
            if key in d[section] and d[section][key] == default:
                d[section].pop(key)
        _prune_select(d, self.strategy)
        return d

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its id, grid values and resolved config."""

    run_id: str
    config: RunConfig
    axes: dict = field(default_factory=dict)  # extra grid axes: dotted key -> value
    # Not part of the run's identity (never fingerprinted): where its progress is also reported.
    tracking: Optional[dict] = None  # {"wandb": {project, entity, mode, group}} (al_core.tracking); None: untracked
    sweep_name: str = ""  # the sweep's `name`: with run_id, the tracking run's stable id

    model = property(lambda self: self.config.model, doc="str: the run's model")
    optimizer = property(lambda self: self.config.optimizer, doc="str: the run's optimizer")
    strategy = property(lambda self: self.config.strategy, doc="str: the run's strategy (`margin+power` included)")
    trial = property(lambda self: self.config.trial, doc="int: the run's trial")


# Keys added after studies had started, left out of a run's recorded config while at their
# default, so that runs recorded before them keep their fingerprint and resume.
ADDED_AT_DEFAULT = (
    ("train", "score_precision", "fp32"),
    ("train", "tf32", False),
    ("train", "tensorboard", False),
    ("dataset", "path", None),
    ("dataset", "size", 32),
    ("dataset", "test_fraction", None),
    ("dataset", "pad", None),
    ("dataset", "flip", None),
    ("dataset", "imbalance", None),
    ("train", "cuda_graphs", "auto"),
    ("train", "deterministic", False),
    ("train", "warmup", 0.05),
    ("train", "augment", "standard"),
    ("train", "swa", 0.0),
)
EVAL_BATCH_RECORDED_AUTO = 1024  # train.eval_batch_size: auto, as a run's config records it (see RunConfig.to_dict)

# Sweep-wide switches under `optim:` beside the per-optimizer mappings and `recipe`; each is
# true, false or a list of optimizer names it applies to, and resolves to a bool per run.
OPTIM_FLAGS = ("decay_exclude_norm_bias", "wd_normalized")
OPTIM_KEYS = ("recipe", "schedule", *OPTIM_FLAGS)
SCHEDULES = ("multistep", "cosine", "warmup_cosine", "constant")

GRID_REQUIRED = ("model", "optimizer", "strategy", "trial")
SECTIONS = {"dataset": DatasetConfig, "al": ALConfig, "train": TrainConfig, "ll": LossPredConfig, "select": SelectConfig}
TOP_KEYS = (
    "name",
    "output",
    "dataset",
    "grid",
    "al",
    "train",
    "ll",
    "optim",
    "slurm",
    "tune",
    "plugins",
    "tracking",
    "select",
    "analysis",
)
# tracking.wandb: its keys and defaults (group null: the sweep's name).
WANDB_DEFAULTS = {"project": "al-sweep", "entity": None, "mode": "offline", "group": None}


def _prune_select(d: dict, strategy: str) -> None:
    """Leave out of a run's recorded config the `select` keys at their default or read by another
    strategy, and the section when nothing is left: runs recorded before it keep their fingerprint."""
    sel, default = d["select"], dataclasses.asdict(SelectConfig())
    base, mode = strategy_mode(strategy)
    drawn = (mode or sel["stochastic"]) != "none"
    for key in list(sel):
        read = base in SELECT_KEYS_OF.get(key, (base,)) and (key != "beta" or drawn)
        if not read or sel[key] == default[key]:
            sel.pop(key)
    if not sel:
        d.pop("select")


def strategy_mode(strategy: str) -> tuple[str, Optional[str]]:
    """`margin+power` -> ("margin", "power"); `margin` -> ("margin", None)."""
    base, plus, mode = strategy.partition("+")
    return (base, mode) if plus else (strategy, None)


@dataclass(frozen=True)
class Sweep:
    name: str
    output: str
    dataset: DatasetConfig
    grid: dict  # axis -> list of values (model, optimizer, strategy, trial, then dotted keys)
    al: ALConfig
    train: TrainConfig
    ll: LossPredConfig
    select: SelectConfig
    optim: dict  # optimizer name -> hyper-parameter overrides
    slurm: dict  # profile name and resource overrides (validated by slurm.profiles)
    raw: dict  # the whole resolved sweep as plain data
    path: str = ""
    tracking: Optional[dict] = None  # validated `tracking:` section (check_tracking); None: no tracking

    @property
    def sweep_dir(self) -> Path:
        return Path(self.output) / self.name

    @property
    def runs_dir(self) -> Path:
        return self.sweep_dir / "runs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def runs(self) -> list[RunSpec]:
        """Every run of the grid, in grid order (model, optimizer, strategy, trial, extra axes).

        Expanded (and each run's config validated) once per Sweep object, however often a command asks.
        """
        return list(self._specs)

    @functools.cached_property
    def _specs(self) -> tuple[RunSpec, ...]:
        axes = list(self.grid)
        specs = []
        for values in itertools.product(*(self.grid[a] for a in axes)):
            point = dict(zip(axes, values))
            extra = {a: point[a] for a in axes if a not in GRID_REQUIRED}
            parts = tuple(_id_part(v) for v in extra.values())
            run_id = results.run_id(point["model"], point["optimizer"], point["strategy"], point["trial"], parts)
            specs.append(RunSpec(run_id, _run_config(self.raw, point), extra, self.tracking, self.name))
        return tuple(specs)

    def run(self, run_id: str) -> RunSpec:
        for spec in self._specs:
            if spec.run_id == run_id:
                return spec
        known = [s.run_id for s in self._specs]
        shown = ", ".join(known[:6]) + (f", ... ({len(known)} runs)" if len(known) > 6 else "")
        raise ConfigError(f"--run: no run {run_id!r} in this sweep; expected one of {shown}")


# ----------------------------------------------------------------------------------------------
# The example sweeps and cluster profiles travel with the package (al_core/job-files: in a clone, a
# link to the repository's jobs/), so an installed `al-sweep` finds `demo.yaml` from any directory.
PACKAGED_JOBS = (Path(__file__).parent / "job-files").resolve()


def find_sweep(path: str | Path) -> Path:
    """`path` itself when it exists; else, for a bare name such as `demo` or `jobs/demo.yaml`, the
    example sweep of that name shipped with the package; else `path` (the caller reports it missing)."""
    path = Path(path)
    if path.exists():
        return path
    name = path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml"
    packaged = PACKAGED_JOBS / name
    return packaged if packaged.is_file() and path.parent in (Path("."), Path("jobs")) else path


def packaged_sweeps() -> list[str]:
    return sorted(p.stem for p in PACKAGED_JOBS.glob("*.yaml"))


def load_sweep(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Sweep:
    """Read a sweep file, apply `key=value` overrides, validate everything once.

    Raises ConfigError with a one-line message naming the key and the expected value.
    """
    path = find_sweep(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"sweep file {str(path)!r} not found; expected a YAML file, or the name of an example "
            f"sweep: {', '.join(packaged_sweeps())}"
        ) from None
    except OSError as e:
        raise ConfigError(f"sweep file {str(path)!r} cannot be read ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"sweep file {str(path)!r} is not text (undecodable byte at offset {e.start}); "
            "expected a UTF-8 YAML file such as jobs/cifar10.yaml"
        ) from None
    if "\x00" in text:
        raise ConfigError(
            f"sweep file {str(path)!r} is not text (it holds NUL bytes); expected a YAML file such as jobs/cifar10.yaml"
        )
    try:
        raw = yaml_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"sweep file {str(path)!r}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"sweep file {str(path)!r}: expected a mapping of keys at the top level")
    raw = copy.deepcopy(raw)
    for item in overrides:
        apply_override(raw, item)
    return validate(raw, str(path))


def apply_override(raw: dict, item: str) -> None:
    """Apply one `dotted.key=yaml-value` override to a raw config dict, in place."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override {item!r}: expected key=value with a dotted key, e.g. al.cycles=3")
    try:
        parsed = yaml_load(value) if value.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"override {item!r}: the value is not valid YAML") from None
    parts = key.split(".")
    if parts[0] not in TOP_KEYS:
        raise ConfigError(f"unknown key {key!r}; expected one of {', '.join(TOP_KEYS)} at the top level")
    node = raw
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            if p in node and node[p] is not None:
                raise ConfigError(f"override {item!r}: {p!r} is not a mapping")
            node[p] = {}
        node = node[p]
    node[parts[-1]] = parsed


def _check_grid(grid: Any) -> dict:
    """The sweep's grid: the four required axes first, each a non-empty list of distinct known values."""
    if not isinstance(grid, dict):
        raise ConfigError("grid: expected a mapping of axis -> list of values (model, optimizer, strategy, trial)")
    grid = _flatten(grid)  # `grid.train.width=[..]` as an override nests; in a file it is `train.width: [..]`
    for axis in GRID_REQUIRED:
        if axis not in grid:
            raise ConfigError(f"grid.{axis}: missing; expected a list of values")
    ordered = {a: grid[a] for a in GRID_REQUIRED}
    ordered.update({a: v for a, v in grid.items() if a not in GRID_REQUIRED})
    for axis, values in ordered.items():
        if not isinstance(values, list):
            values = [values]
        if not values:
            raise ConfigError(f"grid.{axis}: expected a non-empty list of values")
        if len(set(map(_id_part, values))) != len(values):
            raise ConfigError(f"grid.{axis}: expected distinct values, got {values!r}")
        ordered[axis] = values
    for kind in ("model", "optimizer"):
        for value in ordered[kind]:
            registry.check_name(kind, value, f"grid.{kind}")
    for value in ordered["strategy"]:
        _check_strategy(value)
    for value in ordered["trial"]:
        if type(value) is not int or value < 0:
            raise ConfigError(f"grid.trial: expected non-negative integers, got {value!r}")
    for axis in ordered:
        if axis in GRID_REQUIRED:
            continue
        parts = axis.split(".")
        if parts[0] not in ("dataset", "al", "train", "ll", "optim", "select") or len(parts) < 2:
            raise ConfigError(
                f"grid.{axis}: unknown axis; expected model, optimizer, strategy, trial or a dotted key such as train.width"
            )
    return ordered


def check_finite(node: Any, key: str = "") -> None:
    """ConfigError naming the first NaN or infinite number anywhere in a sweep's raw config: no key
    of this project means anything by them, and a NaN slips through every `<` and `>` check."""
    if isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"{key or 'value'}: expected a finite number, got {node!r}")
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, (list, tuple)) else ()
    for k, v in items:
        check_finite(v, f"{key}.{k}" if key and isinstance(k, str) else f"{key}[{k}]" if key else str(k))


def validate(raw: dict, path: str = "") -> Sweep:
    unknown = [k for k in raw if k not in TOP_KEYS]
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r}; expected one of {', '.join(TOP_KEYS)} at the top level")
    check_finite(raw)
    # Plugins first: they add names the checks below accept.
    plugin_hashes, plugin_files = plugins.resolve(raw.get("plugins"), path)
    name = raw.get("name", "sweep")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ConfigError(f"name: expected a directory name of letters, digits, '_', '.', '-', got {name!r}")
    output = raw.get("output", "results")
    if not isinstance(output, str) or not output.strip():
        raise ConfigError(f"output: expected a directory path, got {output!r}")
    sections = {k: build(cls, raw.get(k), k) for k, cls in SECTIONS.items()}
    optim = raw.get("optim") or {}
    if not isinstance(optim, dict):
        raise ConfigError(f"optim: expected a mapping of optimizer name -> hyper-parameters, got {optim!r}")
    _check_recipe(optim.get("recipe"))
    for opt_name, params in optim.items():
        if opt_name in OPTIM_FLAGS:
            _optim_flag(opt_name, params, "")
        elif opt_name == "schedule":
            _optim_schedule(params, "")
        elif opt_name != "recipe":
            registry.optimizer_params(opt_name, params or {}, f"optim.{opt_name}")
    slurm = raw.get("slurm") or {}
    if not isinstance(slurm, dict):
        raise ConfigError(f"slurm: expected a mapping (profile: NAME and resource keys), got {slurm!r}")

    analysis = study.check(raw.get("analysis"), raw.get("grid"))
    if analysis and analysis["sequential"] and isinstance(raw.get("grid"), dict):
        # A sequential study's trials are its waves': the current wave's count (al_core.study).
        n = study.trials(Path(output) / name, analysis["sequential"])
        raw = {**raw, "grid": {**raw["grid"], "trial": list(range(n))}}
    ordered = _check_grid(raw.get("grid"))
    _check_sizes(sections["dataset"], sections["al"])
    resolved = {
        "name": name,
        "output": output,
        "dataset": dataclasses.asdict(sections["dataset"]),
        "grid": ordered,
        "al": dataclasses.asdict(sections["al"]),
        "train": _plain(dataclasses.asdict(sections["train"])),
        "ll": dataclasses.asdict(sections["ll"]),
        "select": dataclasses.asdict(sections["select"]),
        "optim": optim,
        "slurm": slurm,
        "plugins": plugin_hashes,
        "plugin_files": plugin_files,
    }
    if raw.get("tune") is not None:
        resolved["tune"] = raw["tune"]
    if analysis is not None:
        resolved["analysis"] = analysis
    tracking = check_tracking(raw.get("tracking"), name)
    sweep = Sweep(name, output, grid=ordered, optim=optim, slurm=slurm, raw=resolved, path=path, tracking=tracking, **sections)
    # Every run must validate too (extra axes may set any key): fail now, not on a GPU node.
    sweep.runs()
    return sweep


def check_tracking(section: Any, sweep_name: str) -> Optional[dict]:
    """The `tracking:` section with defaults filled in, or None when absent (whether wandb is
    installed is checked when runs are planned: al_core.tracking.require)."""
    if section is None:
        return None
    if not isinstance(section, dict) or set(section) - {"wandb"}:
        raise ConfigError(f"tracking: expected a mapping with the key wandb, got {section!r}")
    wandb = section.get("wandb")
    if wandb is None:
        return None
    if not isinstance(wandb, dict) or set(wandb) - set(WANDB_DEFAULTS):
        raise ConfigError(f"tracking.wandb: expected a mapping with keys among {', '.join(WANDB_DEFAULTS)}, got {wandb!r}")
    merged = {**WANDB_DEFAULTS, **wandb}
    for key in ("project", "entity", "group"):
        v = merged[key]
        if v is not None and (not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", v)):
            raise ConfigError(f"tracking.wandb.{key}: expected a name of letters, digits, '_', '.', '-', got {v!r}")
    if merged["project"] is None:
        raise ConfigError("tracking.wandb.project: expected a project name, got None")
    if merged["mode"] not in ("offline", "online"):
        raise ConfigError(f"tracking.wandb.mode: expected offline or online, got {merged['mode']!r}")
    merged["group"] = merged["group"] or sweep_name
    return {"wandb": merged}


def _check_sizes(ds: DatasetConfig, al: ALConfig) -> None:
    registry.check_name("dataset", ds.name, "dataset.name")
    for key in ("cycles", "initial_size", "query_size"):
        if getattr(al, key) < 1:
            raise ConfigError(f"al.{key}: expected an integer >= 1, got {getattr(al, key)}")
    if al.initial not in ("random", "strategy"):
        raise ConfigError(f"al.initial: expected random or strategy, got {al.initial!r}")
    if al.subset is not None and al.subset < al.query_size:
        raise ConfigError(f"al.subset: expected null or an integer >= al.query_size ({al.query_size}), got {al.subset}")
    pool = data.pool_size(ds)  # None: known only when the files are read (the run checks then)
    budget = al.initial_size + (al.cycles - 1) * al.query_size
    if pool is not None and budget > pool:
        raise ConfigError(
            f"al: initial_size + (cycles - 1) * query_size = {budget} exceeds the {ds.name} pool of {pool}; "
            "expected fewer cycles or smaller sizes"
        )


def _check_train(t: TrainConfig, ll: LossPredConfig) -> None:
    if isinstance(t.eval_batch_size, str) and t.eval_batch_size != "auto":
        raise ConfigError(f"train.eval_batch_size: expected auto or an integer >= 1, got {t.eval_batch_size!r}")
    positive = {"epochs": t.epochs, "batch_size": t.batch_size, "width": t.width}
    if t.eval_batch_size != "auto":
        positive["eval_batch_size"] = t.eval_batch_size
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"train.{key}: expected an integer >= 1, got {value}")
    if t.checkpoint_min_s < 0:
        raise ConfigError(f"train.checkpoint_min_s: expected seconds >= 0, got {t.checkpoint_min_s}")
    if t.checkpoint_every < 0:
        raise ConfigError(f"train.checkpoint_every: expected an integer >= 0 (0: only at cycle ends), got {t.checkpoint_every}")
    choices = {
        "schedule": SCHEDULES,
        "augment": ("standard", "randaugment"),
        "precision": ("auto", "fp32", "bf16"),
        "score_precision": ("fp32", "train"),
        "device": ("auto", "cpu", "cuda"),
    }
    for key, allowed in choices.items():
        if getattr(t, key) not in allowed:
            raise ConfigError(f"train.{key}: expected one of {', '.join(allowed)}, got {getattr(t, key)!r}")
    if any(not 0 < m <= 1 for m in t.milestones):
        raise ConfigError(f"train.milestones: expected fractions of the epochs in (0, 1], got {list(t.milestones)}")
    if t.gamma <= 0:
        raise ConfigError(f"train.gamma: expected a positive factor, got {t.gamma}")
    if not 0 <= t.swa <= 1:
        raise ConfigError(f"train.swa: expected a fraction of the epochs in [0, 1] (0: off), got {t.swa}")
    if not 0 <= t.warmup < 1:
        raise ConfigError(f"train.warmup: expected a fraction of the epochs in [0, 1), got {t.warmup}")
    if ll.hidden < 1:
        raise ConfigError(f"ll.hidden: expected an integer >= 1, got {ll.hidden}")
    if ll.margin < 0 or ll.weight < 0:
        raise ConfigError("ll.margin and ll.weight: expected non-negative numbers")
    if not 0 <= ll.detach_at <= 1:
        raise ConfigError(f"ll.detach_at: expected a fraction of the epochs in [0, 1], got {ll.detach_at}")
    if not 0 <= t.dropout < 1:
        raise ConfigError(f"train.dropout: expected a probability in [0, 1), got {t.dropout}")
    if t.cuda_graphs not in (True, False, "auto"):
        raise ConfigError(f"train.cuda_graphs: expected auto, true or false, got {t.cuda_graphs!r}")
    if t.cuda_graphs is True and (t.compile or t.dropout):
        raise ConfigError(
            "train.cuda_graphs: expected train.compile false and train.dropout 0 with it "
            f"(got compile {t.compile}, dropout {t.dropout}); graphs replay one fixed step"
        )
    if ll.train_module not in ("auto", "always"):
        raise ConfigError(f"ll.train_module: expected auto or always, got {ll.train_module!r}")


def _check_strategy(value: Any) -> None:
    """A registered strategy, or `NAME+MODE`: a scored strategy whose batch is drawn stochastically."""
    if not isinstance(value, str) or "+" not in value:
        registry.check_name("strategy", value, "grid.strategy")
        return
    base, mode = strategy_mode(value)
    registry.check_name("strategy", base, "grid.strategy")
    if mode not in STOCHASTIC_MODES[1:]:
        raise ConfigError(f"grid.strategy: {value!r}: expected NAME+MODE with MODE one of {', '.join(STOCHASTIC_MODES[1:])}")
    if not registry.STRATEGIES.fact(base, "scored", False):
        raise ConfigError(f"grid.strategy: {value!r}: {base} ranks no scores, so its batch cannot be drawn stochastically")


def _check_select(sel: SelectConfig, strategy: str) -> None:
    if sel.stochastic not in STOCHASTIC_MODES:
        raise ConfigError(f"select.stochastic: expected one of {', '.join(STOCHASTIC_MODES)}, got {sel.stochastic!r}")
    if not (sel.beta >= 0 and sel.beta != float("inf")):
        raise ConfigError(f"select.beta: expected a finite number >= 0, got {sel.beta}")
    if sel.batchbald_samples < 1 or sel.batchbald_candidates < 1:
        raise ConfigError(
            f"select.batchbald_samples and select.batchbald_candidates: expected integers >= 1, "
            f"got {sel.batchbald_samples} and {sel.batchbald_candidates}"
        )
    if sel.probcover_delta is not None and not 0 < sel.probcover_delta < float("inf"):
        raise ConfigError(f"select.probcover_delta: expected null or a positive number, got {sel.probcover_delta}")
    base, mode = strategy_mode(strategy)
    if mode is not None and sel.stochastic not in ("none", mode):
        raise ConfigError(f"select.stochastic: {sel.stochastic} contradicts strategy {strategy}; expected none or {mode}")
    if sel.stochastic != "none" and not registry.STRATEGIES.fact(base, "scored", False):
        raise ConfigError(
            f"select.stochastic: strategy {base} ranks no scores, so its batch cannot be drawn; "
            "expected none for it (or a grid.strategy value such as margin+power)"
        )


def _check_recipe(recipe: Any) -> None:
    if recipe is not None and recipe not in recipes.names():
        raise ConfigError(f"optim.recipe: expected one of {', '.join(recipes.names())} (or no recipe), got {recipe!r}")


def _optim_flag(key: str, value: Any, optimizer: str) -> bool:
    """`optim.<key>`: true, false, or a list of optimizer names; whether it applies to `optimizer`."""
    if isinstance(value, bool):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        for name in value:
            registry.check_name("optimizer", name, f"optim.{key}")
        return optimizer in value
    raise ConfigError(f"optim.{key}: expected true, false or a list of optimizer names, got {value!r}")


def _optim_schedule(value: Any, optimizer: str) -> Optional[str]:
    """`optim.schedule`: a schedule for every optimizer, or a mapping optimizer -> schedule; the
    schedule of `optimizer` (None: train.schedule applies)."""
    if value is None:
        return None
    if not isinstance(value, (str, dict)) or (isinstance(value, str) and value not in SCHEDULES):
        raise ConfigError(
            f"optim.schedule: expected one of {', '.join(SCHEDULES)} or a mapping optimizer -> schedule, got {value!r}"
        )
    if isinstance(value, str):
        return value
    for name, schedule in value.items():
        registry.check_name("optimizer", name, f"optim.schedule.{name}")
        if schedule not in SCHEDULES:
            raise ConfigError(f"optim.schedule.{name}: expected one of {', '.join(SCHEDULES)}, got {schedule!r}")
    return value.get(optimizer)


def _run_config(raw: dict, point: dict) -> RunConfig:
    """The resolved config of one grid point: the sweep's sections with the point's values set."""
    # The grid is read, never changed, here: copying its lists for every run made a sweep of n runs
    # cost O(n^2) (1,000 trials: a million list items copied).
    raw = {k: v if k == "grid" else copy.deepcopy(v) for k, v in raw.items()}
    for axis, value in point.items():
        if axis not in GRID_REQUIRED:
            apply_override(raw, f"{axis}={json.dumps(value)}")
    sections = {k: build(cls, raw.get(k), k) for k, cls in SECTIONS.items()}
    own = _optim_schedule((raw.get("optim") or {}).get("schedule"), point["optimizer"])
    if own is not None:  # optim.schedule: the optimizer's own schedule recipe over train.schedule
        sections["train"] = dataclasses.replace(sections["train"], schedule=own)
    _check_sizes(sections["dataset"], sections["al"])
    _check_train(sections["train"], sections["ll"])
    _check_select(sections["select"], point["strategy"])
    registry.check_name("model", point["model"], "grid.model")
    optimizer = point["optimizer"]
    registry.check_name("optimizer", optimizer, "grid.optimizer")
    _check_strategy(point["strategy"])
    registry.check_needs(strategy_mode(point["strategy"])[0], point["model"], sections["train"].dropout)
    optim = raw.get("optim") or {}
    recipe = optim.get("recipe")
    _check_recipe(recipe)
    for opt_name, params in optim.items():
        if opt_name not in OPTIM_KEYS:
            registry.optimizer_params(opt_name, params or {}, f"optim.{opt_name}")
    # The recipe's values, then the sweep's explicit optim.<name> values over them.
    chosen = {**recipes.recipe_params(recipe, optimizer), **(optim.get(optimizer) or {})}
    params = registry.optimizer_params(optimizer, chosen, f"optim.{optimizer}")
    tuning = tune.for_run(raw.get("tune"), optimizer, sections["al"].cycles)
    later = [c for c in (tuning or {}).get("cycles", []) if c > 1]
    if later and not sections["train"].reset:
        # With weights carried over, a fit at cycle c starts from a model already trained on the
        # labels of cycles < c, validation folds included: the choice would see its validation set.
        raise ConfigError(
            f"train.reset false with tune.cycles {tuning['cycles']}: tuning after cycle 1 would start its fits from "
            "weights trained on their own validation folds; expected tune.cycles: [1] or train.reset: true"
        )
    return RunConfig(
        model=point["model"],
        optimizer=optimizer,
        strategy=point["strategy"],
        trial=point["trial"],
        optim=params,
        recipe=recipe,
        tune=tuning,
        **{flag: _optim_flag(flag, optim.get(flag, False), optimizer) for flag in OPTIM_FLAGS},
        **sections,
        plugins=dict(raw.get("plugins") or {}),
        plugin_files=dict(raw.get("plugin_files") or {}),
    )


# ----------------------------------------------------------------------------------------------
# Generic dataclass-from-dict with type checks.
def build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {data!r}")
    hints, names = _fields(cls)
    for key in data:
        if key not in names:
            raise ConfigError(f"unknown key {where}.{key}; expected one of {', '.join(names)}")
    kwargs = {k: _coerce(data[k], hints[k], f"{where}.{k}") for k in names if k in data}
    return cls(**kwargs)


@functools.cache
def _fields(cls: type) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A dataclass's resolved type hints and field names (resolved once: a 1,000-run sweep builds
    each section 1,000 times)."""
    return typing.get_type_hints(cls), tuple(f.name for f in dataclasses.fields(cls))


# A scalar field's type -> the YAML values it accepts and what its error says was expected
# (true and false are no numbers: bool is an int subclass in Python, not in a sweep file).
SCALARS = {bool: (bool, "true or false"), int: (int, "an integer"), float: ((int, float), "a number"), str: (str, "a string")}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if inner in ([int, str], [bool, str]):  # a number or flag, or a keyword (eval_batch_size, cuda_graphs: auto)
            if isinstance(value, str):
                return value
            return _coerce(value, inner[0], key)
        return _coerce(value, inner[0], key)
    if origin is tuple:
        inner = typing.get_args(tp)[0]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list of {inner.__name__}, got {value!r}")
        return tuple(_coerce(v, inner, key) for v in value)
    if tp in SCALARS:
        accepted, what = SCALARS[tp]
        if not isinstance(value, accepted) or (isinstance(value, bool) and tp is not bool):
            raise ConfigError(f"{key}: expected {what}, got {value!r}")
        return float(value) if tp is float else value
    return value


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _id_part(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return re.sub(r"[^A-Za-z0-9_.]+", "_", text).strip("_") or "_"


def config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    keys = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, "<missing>"), b.get(k, "<missing>")
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += config_diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            keys.append(f"{prefix}{k}")
    return keys
