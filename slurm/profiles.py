"""Cluster resources: a profile (jobs/profiles/<name>.yaml) merged with the sweep's `slurm:` section.

Everything is validated before anything is submitted: a value that would break the sbatch script
(a newline, an empty partition, a non-positive time or memory), an unknown key or an unknown profile
is a ConfigError (one `error:` line, exit 2) that names the key and where it came from.

Each key is declared once, as a field of `Resources` (its meaning, its sbatch option, whether a
profile may leave it out and its check); KEYS, OPTIONAL, the validation and the table below
(`keys_table()`) are derived from those fields. Every profile defines every key not marked
optional; the sweep may override any of them under `slurm:`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from al_core.config import PACKAGED_JOBS, yaml_load
from al_core.errors import ConfigError
from al_core.preflight import BUILD_ARCHS, EXPECT_GPU_VAR, serves

ROOT = Path(__file__).resolve().parents[1]
PROFILES_DIR = PACKAGED_JOBS / "profiles"  # jobs/profiles in a clone; package data when installed

# SLURM's --mail-type values (sbatch(1), Slurm 22.05); a list of them is comma-separated.
MAIL_TYPES = ("NONE", "BEGIN", "END", "FAIL", "REQUEUE", "ALL", "INVALID_DEPEND", "STAGE_OUT")
MAIL_TYPES += ("TIME_LIMIT", "TIME_LIMIT_90", "TIME_LIMIT_80", "TIME_LIMIT_50", "ARRAY_TASKS")
REPORT_KEYS = ("partition", "cpus", "mem", "time")
# The report job's resources where neither profile nor sweep names them: one core, a few GB, an hour.
REPORT_DEFAULTS = {"partition": None, "cpus": 1, "mem": "4G", "time": 60}
_MAIL_USER = re.compile(r"^[^\s\"'`\\$;&|<>()]+$")
# sbatch options that submitit or this package writes itself; setting them through `extra` would
# break log paths, the array, the warning signal or the requeue.
MANAGED_OPTIONS = ("array", "output", "error", "open-mode", "signal", "job-name", "requeue", "no-requeue", "wrap")

_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")  # partition / account / qos names
_PARTITIONS = re.compile(r"^[A-Za-z0-9_.+-]+(,[A-Za-z0-9_.+-]+)*$")
_MEM = re.compile(r"^([0-9]+)(?:([KMGTkmgt])[Bb]?)?$")  # 32G, 32GB, 500M, 2048 (MB)
_OPTION = re.compile(r"^[a-z][a-z0-9-]*$")
# sbatch's --constraint: feature names joined by & | , and grouped by [] () (no spaces, no quotes)
_CONSTRAINT = re.compile(r"^[A-Za-z0-9_.+\-&|,\[\]():*!]+$")
_OWN_KEYS = (
    "partition",
    "gpus",
    "cpus_per_task",
    "mem",
    "time",
    "account",
    "qos",
    "constraint",
)  # sbatch options set by their own key
_UNSAFE_IN_QUOTES = ('"', "`", "\\", "\n", "\r", "\0")


class _Merged:
    """The merged raw values of one sweep while they are checked: `out` holds the checked ones so far."""

    def __init__(self, profile: str, m: dict, origin: dict) -> None:
        self.profile, self.m, self.origin, self.out = profile, m, origin, {}

    def bad(self, key: str, expected: str) -> ConfigError:
        return ConfigError(f"{self.origin[key]}: expected {expected}, got {self.m[key]!r}")

    def text(self, key: str, v: Any, what: str) -> str:
        """One line of shell text (no newline), for the sbatch script."""
        if not isinstance(v, str) or not v.strip() or any(c in v for c in "\n\r\0"):
            raise ConfigError(f"{self.origin[key]}: expected {what} (one line of text, no newline), got {v!r}")
        return v

    def substitute(self, key: str, line: str) -> str:
        """`{env_prefix}` in a setup line or the python command -> the (checked) quoted prefix."""
        if "{env_prefix}" in line:
            if self.out["env_prefix"] is None:
                raise ConfigError(
                    f"{self.origin[key]}: uses {{env_prefix}} but env_prefix is null; expected a path in env_prefix"
                )
            line = line.replace("{env_prefix}", f'"{self.out["env_prefix"]}"')
        return line


Check = Callable[[_Merged, str], Any]


def _amount(v: Any) -> str | None:
    """'32g' / '32GB' / 2048 -> '32G' / '2048' (sbatch's form); None when it is no positive amount."""
    match = _MEM.match(str(v)) if isinstance(v, (str, int)) and not isinstance(v, bool) else None
    return match.group(1) + (match.group(2) or "").upper() if match and int(match.group(1)) > 0 else None


def _name(pattern: re.Pattern = _NAME) -> Check:
    def check(c: _Merged, k: str) -> str | None:
        v = c.m[k]
        if v is not None and (not isinstance(v, str) or not pattern.match(v)):
            raise c.bad(k, "null or a non-empty name of letters, digits, '_', '.', '-' (no spaces or newlines)")
        return v

    return check


def _integer(low: int, nullable: bool = False, null: Any = None) -> Check:
    """An integer >= low (`nullable`: or null, read as `null`)."""

    def check(c: _Merged, k: str) -> int | None:
        v = c.m[k]
        if v is None and nullable:
            return null
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise c.bad(k, f"{'null or ' if nullable else ''}an integer >= {low}")
        return v

    return check


def _mem(example: str) -> Check:
    def check(c: _Merged, k: str) -> str | None:
        if c.m[k] is None:
            return None
        if (mem := _amount(c.m[k])) is None:
            raise c.bad(k, f"null or a positive amount such as {example}")
        return mem

    return check


def _signal_delay(c: _Merged, k: str) -> int:
    delay, time_min = _integer(0)(c, k), c.out["time_min"]
    if delay >= time_min * 60:
        raise ConfigError(
            f"{c.origin[k]}: expected fewer seconds than the time limit "
            f"({time_min * 60} s), got {delay}: the job would be told to stop as it starts"
        )
    return delay


def _required(c: _Merged, k: str) -> tuple[str, ...]:
    required = c.m[k]
    if not isinstance(required, list) or any(r not in KEYS for r in required):
        raise c.bad(k, f"a list of keys among {', '.join(KEYS)}")
    for r in required:
        if c.m[r] is None or c.m[r] == "":
            raise ConfigError(f"{c.origin[r]}: required by profile {c.profile} (expected a value, got {c.m[r]!r})")
    return tuple(required)


def _extra(c: _Merged, k: str) -> dict:
    extra = c.m[k] or {}
    if not isinstance(extra, dict):
        raise c.bad(k, "a mapping of sbatch option -> value")
    clean = {}
    for opt, v in extra.items():
        if not isinstance(opt, str) or not _OPTION.match(opt):
            raise ConfigError(f"{c.origin[k]}: option {opt!r}: expected a long sbatch option name such as constraint")
        if opt in MANAGED_OPTIONS or opt.replace("-", "_") in _OWN_KEYS:
            raise ConfigError(f"{c.origin[k]}: option {opt!r}: set by this package or by its own key; expected another option")
        if opt == "wckey" and v in (False, None, ""):
            clean[opt] = None  # no --wckey at all (submitit writes --wckey=submitit unless told otherwise)
            continue
        if v is False:
            continue
        if not isinstance(v, (bool, int, float)):
            c.text(k, v, f"a value for --{opt}")
        clean[opt] = v
    return clean


def _gpu_type(c: _Merged, k: str) -> str | None:
    v = _name()(c, k)
    if v is not None and not c.out["gpus"]:
        raise ConfigError(f"{c.origin[k]}: names a GPU type ({v}) but no GPU is asked for; expected slurm.gpus >= 1 with it")
    return v


def _constraint(c: _Merged, k: str) -> str | None:
    v = c.m[k]
    if v is not None and (not isinstance(v, str) or not _CONSTRAINT.match(v)):
        raise c.bad(k, "null or node features such as gpu32 or gpu16|gpu32 (letters, digits, & | , [ ] ( ); no spaces)")
    return v


def _env_prefix(c: _Merged, k: str) -> str | None:
    prefix = c.m[k]
    if prefix is None:
        return None
    c.text(k, prefix, "a directory path")
    if any(ch in prefix for ch in _UNSAFE_IN_QUOTES):
        raise c.bad(k, 'a path without ", `, or \\')
    return prefix.rstrip("/")


def _python(c: _Merged, k: str) -> str | None:
    if c.m[k] is not None:
        return c.substitute(k, c.text(k, c.m[k], "an interpreter command"))
    return f'"{c.out["env_prefix"]}/bin/python"' if c.out["env_prefix"] is not None else None


def _setup(c: _Merged, k: str) -> tuple[str, ...]:
    setup = [] if c.m[k] is None else c.m[k]
    if not isinstance(setup, list):
        raise c.bad(k, "a list of shell lines")
    return tuple(c.substitute(k, c.text(k, line, "a shell line")) for line in setup)


def _torch_build(c: _Merged, k: str) -> str | None:
    if c.m[k] is not None and c.m[k] not in BUILD_ARCHS:
        raise c.bad(k, f"null or one of {', '.join(BUILD_ARCHS)}")
    return c.m[k]


def _gpu_capabilities(c: _Merged, k: str) -> tuple[str, ...]:
    caps, build = c.m[k] or [], c.out["torch_build"]
    if not isinstance(caps, list) or not all(isinstance(x, str) and re.fullmatch(r"\d+\.\d", x) for x in caps):
        raise c.bad(k, 'a list of compute capabilities such as ["7.0", "8.0"]')
    unserved = [x for x in caps if not serves(BUILD_ARCHS[build], x)] if build is not None else []
    if unserved:
        raise ConfigError(
            f"{c.origin['torch_build']}: build {build} has no kernels for compute capability "
            f"{', '.join(unserved)} ({c.origin[k]}); expected a build that covers "
            f"every GPU of the partitions, e.g. cu126 for P6s (6.1) and V100s (7.0)"
        )
    return tuple(caps)


def _report_job(c: _Merged, k: str) -> bool:
    if not isinstance(c.m[k], bool):
        raise c.bad(k, "true or false")
    return c.m[k]


def _mail_user(c: _Merged, k: str) -> str | None:
    v = c.m[k]
    if v is not None and (not isinstance(v, str) or not _MAIL_USER.match(v)):
        raise c.bad(k, "null or an address such as me@example.org (no spaces or quotes)")
    return v


def _mail_type(c: _Merged, k: str) -> str | None:
    """SLURM's --mail-type: one value or several, comma-separated (a YAML list is accepted too)."""
    v = c.m[k]
    if v is None:
        return None
    words = v if isinstance(v, list) else str(v).split(",") if isinstance(v, str) else None
    words = [str(w).strip().upper() for w in words] if words is not None else None
    if not words or any(w not in MAIL_TYPES for w in words):
        raise ConfigError(f"{c.origin[k]}: expected null or comma-separated values among {', '.join(MAIL_TYPES)}, got {v!r}")
    return ",".join(words)


def _report(c: _Merged, k: str) -> ReportResources:
    section, where = c.m[k] if c.m[k] is not None else {}, c.origin[k]
    if not isinstance(section, dict) or any(x not in REPORT_KEYS for x in section):
        raise ConfigError(f"{where}: expected a mapping with keys among {', '.join(REPORT_KEYS)}, got {section!r}")
    r = {**REPORT_DEFAULTS, **{x: v for x, v in section.items() if v is not None or x in ("partition", "mem")}}
    checked = _Merged(c.profile, r, {x: f"{where}.{x}" for x in REPORT_KEYS})  # by the checks of the keys above
    if r["partition"] is not None and (not isinstance(r["partition"], str) or not _PARTITIONS.match(r["partition"])):
        raise checked.bad("partition", "null or a partition name")
    cpus, mem = _integer(1)(checked, "cpus"), _mem("4G")(checked, "mem")
    return ReportResources(r["partition"], cpus, mem, parse_time(r["time"], f"{where}.time"))


def key(meaning: str, check: Check, sbatch: str = "", name: str | None = None, **default: Any) -> Any:
    """A resource key as a field of `Resources`: `default=` (or `default_factory=`) makes it optional
    in a profile, with that value; `name`: the key's name where the field's differs (time -> time_min)."""
    meta = {"meaning": meaning, "check": check, "sbatch": sbatch, "key": name, "optional": bool(default)}
    return field(metadata=meta, **default)


@dataclass(frozen=True, kw_only=True)
class Resources:
    """The merged, validated resources of one sweep: one field per key (in the order of KEYS)."""

    profile: str  # profile name (or path)
    partition: str | None = key("partition(s), comma-separated; null = the cluster's default", _name(_PARTITIONS), "-p")
    gpus: int = key("GPUs per run; null or 0 = none", _integer(0, nullable=True, null=0), "--gpus")
    gpu_type: str | None = key("GPU model (gres type, e.g. v100): --gpus=TYPE:N; null = any", _gpu_type, "--gpus", default=None)
    constraint: str | None = key(
        "node features, e.g. gpu32 (Speed: gpu16 = P6, gpu32 = V100)", _constraint, "--constraint", default=None
    )
    cpus: int | None = key("cores per run (and its torch threads); null = the default", _integer(1, True), "--cpus-per-task")
    mem: str | None = key(
        "memory per run: 32G (K/M/G/T; plain = MB); null = the default", _mem("32G, 500M or 2048 (MB)"), "--mem"
    )
    time_min: int = key(
        "per job: minutes, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS", lambda c, k: parse_time(c.m[k], c.origin[k]), "--time", "time"
    )
    account: str | None = key("null = the default account", _name(), "--account")
    qos: str | None = key("null = the default QOS", _name(), "--qos")
    array_parallelism: int = key("at most P runs of one submission at once", _integer(1), "--array=0-N%P")
    signal_delay_s: int = key("warning before the time limit: checkpoint, then requeue", _signal_delay, "--signal=USR2@S")
    max_timeouts: int = key("time-limit requeues per run before submitit gives up", _integer(0), "max_num_timeout")
    required: tuple[str, ...] = key("keys that must not be null after merging (Speed: mem)", _required)
    extra: dict = key("mapping option -> value, e.g. {constraint: gpu32}", _extra, "further sbatch options")
    env_prefix: str | None = key("conda prefix on the node; `{env_prefix}` in setup/python is replaced", _env_prefix)
    python: str | None = key("interpreter on the node; null = {env_prefix}/bin/python, or this one", _python)
    setup: tuple[str, ...] = key("shell lines before the job, e.g. module load / conda activate", _setup)
    torch_build: str | None = key("PyTorch build `make env` installs (cu126, ...; null = pip's)", _torch_build, default=None)
    gpu_capabilities: tuple[str, ...] = key('e.g. ["7.0"]: checked against torch_build', _gpu_capabilities, default=())
    runs_per_task: int = key("K runs share one task and its resources, its GPU too (slurm.pack)", _integer(1), default=1)
    gpu_mem_per_run: str | None = key("GPU memory of one run (6G), checked x K; null = unchecked", _mem("6G"), default=None)
    max_resubmits: int = key(
        "the report job resubmits a run PREEMPTED or lost with its node at most this often", _integer(0), default=3
    )
    report_job: bool = key("true: after the arrays, a CPU job writes the report (slurm.report_job)", _report_job, default=True)
    mail_user: str | None = key("passed to the arrays and the report job", _mail_user, "--mail-user", default=None)
    mail_type: str | None = key("SLURM's values, comma-separated", _mail_type, "--mail-type", default=None)
    report: ReportResources | None = key("{partition, cpus, mem, time} of the report job", _report, default=None)

    def mail_options(self) -> dict[str, str]:
        """sbatch's mail options, for the arrays and the report job alike ({} when none are set)."""
        return {k: v for k, v in (("mail-user", self.mail_user), ("mail-type", self.mail_type)) if v}

    def executor_parameters(self, job_name: str) -> dict[str, Any]:
        """Parameters for submitit's SlurmExecutor.update_parameters (and `_make_sbatch_string`)."""
        extra: dict[str, Any] = {"requeue": True}  # node failures and `scontrol requeue` requeue the job
        if self.gpus:
            extra["gpus"] = f"{self.gpu_type}:{self.gpus}" if self.gpu_type else self.gpus
        extra.update({k: v for k, v in self.extra.items() if k != "wckey"})
        # The job's preflight: a job that asked for GPUs must find one it can use, or exit 78 at once.
        expect_gpu = [f"export {EXPECT_GPU_VAR}=1"] if self.gpus else []
        params: dict[str, Any] = {
            "job_name": job_name,
            "time": self.time_min,
            "signal_delay_s": self.signal_delay_s,
            "array_parallelism": self.array_parallelism,
            "additional_parameters": extra,
            # The callable is `slurm.job.RunJob`: the job imports it from the clone the sweep was
            # submitted from (none for an installed package: the job's interpreter has its own).
            "setup": [*self.setup, *pythonpath_setup(), *expect_gpu],
            # no --wckey unless extra.wckey names one: a cluster that tracks wckeys may refuse submitit's
            "wckey": self.extra.get("wckey"),
        }
        params.update({k.replace("-", "_"): v for k, v in self.mail_options().items()})
        if self.cpus:
            # Since Slurm 22.05 srun no longer inherits --cpus-per-task from sbatch: say it again,
            # or the run's step may be confined to one core.
            params["srun_args"] = [f"--cpus-per-task={self.cpus}"]
        named = {
            "partition": self.partition,
            "cpus_per_task": self.cpus,
            "mem": self.mem,
            "account": self.account,
            "qos": self.qos,
            "constraint": self.constraint,
        }
        params.update({k: v for k, v in named.items() if v is not None})
        return params

    def describe(self) -> str:
        parts = [f"profile {self.profile}", f"partition {self.partition or '(default)'}"]
        gpus = f"{self.gpus} {self.gpu_type + ' ' if self.gpu_type else ''}GPU" if self.gpus else "no GPU"
        gpus += f" (nodes with {self.constraint})" if self.constraint else ""
        parts += [gpus, f"{self.cpus} CPUs" if self.cpus else "default CPUs"]
        parts += [f"mem {self.mem or '(default)'}", f"time {format_minutes(self.time_min)}"]
        parts += [f"at most {self.array_parallelism} at once"] + [f"{self.runs_per_task} runs per task"] * (
            self.runs_per_task > 1
        )
        return ", ".join(parts)


_FIELDS = {f.metadata["key"] or f.name: f for f in fields(Resources) if f.metadata}
KEYS = tuple(_FIELDS)
# Keys a profile may leave out (profiles written before they existed keep working), with their defaults.
OPTIONAL = {k: f.default for k, f in _FIELDS.items() if f.metadata["optional"]}


def keys_table() -> str:
    """The keys as a Markdown table (key, sbatch / submitit, meaning), from the fields of Resources."""
    rows = [
        f"| {k} | {f.metadata['sbatch']} | {f.metadata['meaning']}"
        + (f"; optional, default {OPTIONAL[k]!r}" if k in OPTIONAL else "")
        + " |"
        for k, f in _FIELDS.items()
    ]
    return "\n".join(["| key | sbatch / submitit | meaning |", "| --- | --- | --- |", *rows])


__doc__ = f"{__doc__}\n{keys_table()}\n"


@dataclass(frozen=True)
class ReportResources:
    """What the report job asks for (the profile's `report:` section, overridable as slurm.report.KEY)."""

    partition: str | None = None
    cpus: int = 1
    mem: str | None = "4G"
    time_min: int = 60

    def sbatch_options(self) -> dict[str, str]:
        out = {"cpus-per-task": str(self.cpus), "time": str(self.time_min), "partition": self.partition, "mem": self.mem}
        return {k: v for k, v in out.items() if v}


def source_tree() -> str | None:
    """The clone the project is imported from (an editable install or PYTHONPATH), for jobs to import
    the same code; None for a package installed into site-packages."""
    return None if ROOT.name in ("site-packages", "dist-packages") else str(ROOT)


def pythonpath_setup() -> list[str]:
    """The job's setup line that puts `source_tree()` first on PYTHONPATH (none for an installed package)."""
    tree = source_tree()
    return [f"export PYTHONPATH={shlex.quote(tree)}${{PYTHONPATH:+:$PYTHONPATH}}"] if tree else []


def known_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def profile_path(name: Any) -> Path:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"slurm.profile: expected a profile name ({', '.join(known_profiles())}) or a .yaml path, got {name!r}")
    if name.endswith((".yaml", ".yml")):
        path = Path(name)
    elif _NAME.match(name):
        path = PROFILES_DIR / f"{name}.yaml"
    else:
        path = Path("/nonexistent")
    if not path.is_file():
        raise ConfigError(
            f"slurm.profile: unknown profile {name!r}; expected one of {', '.join(known_profiles())} "
            f"(files in {PROFILES_DIR}) or a path to a .yaml file"
        )
    return path


def load_profile(name: Any) -> tuple[Path, dict]:
    path = profile_path(name)
    try:
        raw = yaml_load(path.read_text())
    except Exception as e:  # YAMLError or OSError: a broken profile is bad input like a broken sweep
        raise ConfigError(f"{path}: not a readable YAML profile ({type(e).__name__})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of resource keys ({', '.join(KEYS)})")
    raw = {**OPTIONAL, **raw}
    missing = [k for k in KEYS if k not in raw]
    if missing:
        raise ConfigError(f"{path}: missing key {missing[0]}; a profile defines every key ({', '.join(KEYS)})")
    return path, raw


def resolve(slurm: dict | None) -> Resources:
    """Merge the sweep's `slurm:` section over its profile and validate every value.

    Example
    -------
    >>> resolve({"profile": "local", "time": 5}).time_min
    5
    """
    slurm = dict(slurm or {})
    name = slurm.pop("profile", "local")
    path, merged = load_profile(name)
    shown = str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    origin = {k: f"{shown}: {k}" for k in merged}
    for key, value in slurm.items():
        if key not in KEYS:
            raise ConfigError(f"unknown key slurm.{key}; expected profile or one of {', '.join(KEYS)}")
        if key == "report" and isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = {**merged[key], **value}  # slurm.report.mem=8G changes one key of the profile's section
        merged[key] = value
        origin[key] = f"slurm.{key}"
    for key in merged:
        if key not in KEYS:
            raise ConfigError(f"unknown key {origin[key]}; expected one of {', '.join(KEYS)}")
    return _validate(str(name), merged, origin)


def _validate(profile: str, m: dict, origin: dict) -> Resources:
    """Every key's check, in the order of KEYS (`required` first: it says which keys need a value)."""
    c = _Merged(profile, m, origin)
    for k, f in sorted(_FIELDS.items(), key=lambda kf: kf[0] != "required"):
        c.out[f.name] = f.metadata["check"](c, k)
    return Resources(profile=profile, **c.out)


_TIME = re.compile(r"^(?:(?P<d>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")


def parse_time(value: Any, where: str = "time") -> int:
    """A SLURM time limit as whole minutes (rounded up), from minutes or a SLURM time string.

    Example
    -------
    >>> parse_time("1-00:00:00"), parse_time("02:30:00"), parse_time(90), parse_time("0:30")
    (1440, 150, 90, 1)
    """
    expected = "a positive time limit: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"
    minutes = 0  # not a time limit: refused below
    if isinstance(value, int) and not isinstance(value, bool):
        minutes = value
    elif isinstance(value, str) and (match := _TIME.match(value.strip())):
        d, a, b, c = (int(x) if x is not None else None for x in match.group("d", "a", "b", "c"))
        if d is not None:  # D-HH[:MM[:SS]]
            seconds = ((d * 24 + a) * 60 + (b or 0)) * 60 + (c or 0)
        elif c is not None:  # HH:MM:SS
            seconds = (a * 60 + b) * 60 + c
        elif b is not None:  # MM:SS
            seconds = a * 60 + b
        else:  # minutes
            seconds = a * 60
        minutes = -(-seconds // 60)
    if minutes <= 0:
        raise ConfigError(f"{where}: expected {expected}, got {value!r}")
    return minutes


def format_minutes(minutes: int) -> str:
    d, rest = divmod(minutes, 1440)
    return f"{d}-{rest // 60:02d}:{rest % 60:02d}:00" if d else f"{rest // 60:02d}:{rest % 60:02d}:00"
