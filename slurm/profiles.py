"""Cluster resources: a profile (jobs/profiles/<name>.yaml) merged with the sweep's `slurm:` section.

Everything is validated before anything is submitted: a value that would break the sbatch script
(a newline, an empty partition, a non-positive time or memory), an unknown key or an unknown profile
is a ConfigError (one `error:` line, exit 2) that names the key and where it came from.

Keys (every profile must define them all; the sweep may override any of them under `slurm:`):

| key | sbatch / submitit | meaning |
| --- | --- | --- |
| partition | -p | partition(s), comma-separated; null = the cluster's default |
| gpus | --gpus | GPUs per run; null or 0 = none |
| cpus | --cpus-per-task | cores per run (also the run's torch threads); null = the cluster's default |
| mem | --mem | memory per run, e.g. 32G (K/M/G/T suffix, plain number = MB); null = the cluster's default |
| time | --time | per job: minutes, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS |
| account, qos | --account, --qos | null = the defaults |
| array_parallelism | --array=0-N%P | at most P runs of one submission at once |
| signal_delay_s | --signal=USR2@S | warning before the time limit: checkpoint, then requeue |
| max_timeouts | submitit max_num_timeout | time-limit requeues per run before submitit gives up |
| required | | keys that must not be null after merging (Speed: mem) |
| extra | additional sbatch options | mapping option -> value, e.g. {constraint: gpu32} |
| env_prefix | | environment (conda prefix) on the node; `{env_prefix}` in setup/python is replaced |
| python | | interpreter on the node; null = {env_prefix}/bin/python, or this interpreter |
| setup | lines before the job | shell lines, e.g. module load / conda activate |
| torch_build | | the PyTorch wheel build `make env` installs (cu126, cu128, cu130; null = pip's default); must have kernels for every capability in gpu_capabilities |
| gpu_capabilities | | compute capabilities of the partitions' GPUs, e.g. ["7.0", "8.0"]; checked against torch_build before submitting |
| runs_per_task | | K runs share one array task and its resources, its GPU included (slurm.pack); default 1 |
| gpu_mem_per_run | | GPU memory one run needs (e.g. 6G): K x this must fit the task's GPU, checked before the runs start; null = unchecked |
| report_job | | true: after the arrays, one CPU job (`--dependency=afterany:` on each) writes the report (slurm.report_job); default true |
| mail_user, mail_type | --mail-user, --mail-type | passed to the arrays and the report job; mail_type: SLURM's values, comma-separated |
| report | the report job | {partition, cpus, mem, time} of the report job (null values: the cluster's defaults) |
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from al_core.config import PACKAGED_JOBS, yaml_load
from al_core.errors import ConfigError
from al_core.preflight import BUILD_ARCHS, EXPECT_GPU_VAR, serves

ROOT = Path(__file__).resolve().parents[1]
PROFILES_DIR = PACKAGED_JOBS / "profiles"  # jobs/profiles in a clone; package data when installed

KEYS = (
    "partition",
    "gpus",
    "cpus",
    "mem",
    "time",
    "account",
    "qos",
    "array_parallelism",
    "signal_delay_s",
    "max_timeouts",
    "required",
    "extra",
    "env_prefix",
    "python",
    "setup",
    "torch_build",
    "gpu_capabilities",
    "runs_per_task",
    "gpu_mem_per_run",
    "report_job",
    "mail_user",
    "mail_type",
    "report",
)
# Keys a profile may leave out (profiles written before they existed keep working), with their defaults.
OPTIONAL = {
    "torch_build": None,
    "gpu_capabilities": [],
    "runs_per_task": 1,
    "gpu_mem_per_run": None,
    "report_job": True,
    "mail_user": None,
    "mail_type": None,
    "report": None,
}
# SLURM's --mail-type values (sbatch(1), Slurm 22.05); a list of them is comma-separated.
MAIL_TYPES = (
    "NONE",
    "BEGIN",
    "END",
    "FAIL",
    "REQUEUE",
    "ALL",
    "INVALID_DEPEND",
    "STAGE_OUT",
    "TIME_LIMIT",
    "TIME_LIMIT_90",
    "TIME_LIMIT_80",
    "TIME_LIMIT_50",
    "ARRAY_TASKS",
)
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
_UNSAFE_IN_QUOTES = ('"', "`", "\\", "\n", "\r", "\0")


@dataclass(frozen=True)
class Resources:
    """The merged, validated resources of one sweep."""

    profile: str  # profile name (or path)
    partition: str | None
    gpus: int  # 0 = none
    cpus: int | None
    mem: str | None  # as sbatch writes it, e.g. "32G"
    time_min: int  # minutes (submitit's unit)
    account: str | None
    qos: str | None
    array_parallelism: int
    signal_delay_s: int
    max_timeouts: int
    extra: dict = field(default_factory=dict)
    env_prefix: str | None = None
    python: str | None = None  # shell words, already quoted; None = the submitting interpreter
    setup: tuple[str, ...] = ()
    torch_build: str | None = None
    gpu_capabilities: tuple[str, ...] = ()
    runs_per_task: int = 1
    gpu_mem_per_run: str | None = None
    report_job: bool = True
    mail_user: str | None = None
    mail_type: str | None = None
    report: "ReportResources | None" = None

    def mail_options(self) -> dict[str, str]:
        """sbatch's mail options, for the arrays and the report job alike ({} when none are set)."""
        out = {}
        if self.mail_user:
            out["mail-user"] = self.mail_user
        if self.mail_type:
            out["mail-type"] = self.mail_type
        return out

    def executor_parameters(self, job_name: str, python_path: str | None = None) -> dict[str, Any]:
        """Parameters for submitit's SlurmExecutor.update_parameters (and `_make_sbatch_string`)."""
        extra: dict[str, Any] = {"requeue": True}  # node failures and `scontrol requeue` requeue the job
        if self.gpus:
            extra["gpus"] = self.gpus
        extra.update(self.extra)
        params: dict[str, Any] = {
            "job_name": job_name,
            "time": self.time_min,
            "signal_delay_s": self.signal_delay_s,
            "array_parallelism": self.array_parallelism,
            "additional_parameters": extra,
            # The callable is `slurm.job.RunJob`: the job imports it from the clone the sweep was
            # submitted from (none for an installed package: the job's interpreter has its own).
            "setup": [
                *self.setup,
                *(
                    [f"export PYTHONPATH={shlex.quote(python_path)}${{PYTHONPATH:+:$PYTHONPATH}}"]
                    if (python_path := python_path or source_tree())
                    else []
                ),
            ]
            # The job's preflight: a job that asked for GPUs must find one it can use, or exit 78 at once.
            + ([f"export {EXPECT_GPU_VAR}=1"] if self.gpus else []),
        }
        if self.mail_user:
            params["mail_user"] = self.mail_user
        if self.mail_type:
            params["mail_type"] = self.mail_type
        if self.cpus:
            # Since Slurm 22.05 srun no longer inherits --cpus-per-task from sbatch: say it again,
            # or the run's step may be confined to one core.
            params["srun_args"] = [f"--cpus-per-task={self.cpus}"]
        for key, value in (
            ("partition", self.partition),
            ("cpus_per_task", self.cpus),
            ("mem", self.mem),
            ("account", self.account),
            ("qos", self.qos),
        ):
            if value is not None:
                params[key] = value
        return params

    def describe(self) -> str:
        parts = [f"profile {self.profile}", f"partition {self.partition or '(default)'}"]
        parts.append(f"{self.gpus} GPU" if self.gpus else "no GPU")
        parts.append(f"{self.cpus} CPUs" if self.cpus else "default CPUs")
        parts.append(f"mem {self.mem or '(default)'}")
        parts.append(f"time {format_minutes(self.time_min)}")
        parts.append(f"at most {self.array_parallelism} at once")
        if self.runs_per_task > 1:
            parts.append(f"{self.runs_per_task} runs per task")
        return ", ".join(parts)


@dataclass(frozen=True)
class ReportResources:
    """What the report job asks for (the profile's `report:` section, overridable as slurm.report.KEY)."""

    partition: str | None = None
    cpus: int = 1
    mem: str | None = "4G"
    time_min: int = 60

    def sbatch_options(self) -> dict[str, str]:
        out = {"cpus-per-task": str(self.cpus), "time": str(self.time_min)}
        if self.partition:
            out["partition"] = self.partition
        if self.mem:
            out["mem"] = self.mem
        return out


def source_tree() -> str | None:
    """The clone the project is imported from (an editable install or PYTHONPATH), for jobs to import
    the same code; None for a package installed into site-packages."""
    root = Path(__file__).resolve().parents[1]
    return None if root.name in ("site-packages", "dist-packages") else str(root)


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
    try:
        shown = str(path.relative_to(ROOT))
    except ValueError:
        shown = str(path)
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
    def bad(key: str, expected: str) -> ConfigError:
        return ConfigError(f"{origin[key]}: expected {expected}, got {m[key]!r}")

    def name(key: str, pattern: re.Pattern = _NAME) -> str | None:
        v = m[key]
        if v is None:
            return None
        if not isinstance(v, str) or not pattern.match(v):
            raise bad(key, "null or a non-empty name of letters, digits, '_', '.', '-' (no spaces or newlines)")
        return v

    def integer(key: str, low: int, nullable: bool = False) -> int | None:
        v = m[key]
        if v is None and nullable:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise bad(key, f"{'null or ' if nullable else ''}an integer >= {low}")
        return v

    def shell_text(key: str, v: Any, what: str) -> str:
        if not isinstance(v, str) or not v.strip() or any(c in v for c in "\n\r\0"):
            raise ConfigError(f"{origin[key]}: expected {what} (one line of text, no newline), got {v!r}")
        return v

    required = m["required"]
    if not isinstance(required, list) or any(k not in KEYS for k in required):
        raise bad("required", f"a list of keys among {', '.join(KEYS)}")
    for key in required:
        if m[key] is None or m[key] == "":
            raise ConfigError(f"{origin[key]}: required by profile {profile} (expected a value, got {m[key]!r})")

    partition = name("partition", _PARTITIONS)
    account = name("account")
    qos = name("qos")
    gpus = integer("gpus", 0, nullable=True) or 0
    cpus = integer("cpus", 1, nullable=True)
    mem = m["mem"]
    if mem is not None:
        if isinstance(mem, int) and not isinstance(mem, bool):
            mem = str(mem)
        match = _MEM.match(mem) if isinstance(mem, str) else None
        if not match or int(match.group(1)) <= 0:
            raise bad("mem", "null or a positive amount such as 32G, 500M or 2048 (MB)")
        mem = match.group(1) + (match.group(2) or "").upper()
    time_min = parse_time(m["time"], origin["time"])
    parallel = integer("array_parallelism", 1)
    delay = integer("signal_delay_s", 0)
    if delay >= time_min * 60:
        raise ConfigError(
            f"{origin['signal_delay_s']}: expected fewer seconds than the time limit "
            f"({time_min * 60} s), got {delay}: the job would be told to stop as it starts"
        )
    max_timeouts = integer("max_timeouts", 0)

    extra = m["extra"] or {}
    if not isinstance(extra, dict):
        raise bad("extra", "a mapping of sbatch option -> value")
    clean_extra = {}
    for k, v in extra.items():
        if not isinstance(k, str) or not _OPTION.match(k):
            raise ConfigError(f"{origin['extra']}: option {k!r}: expected a long sbatch option name such as constraint")
        if k in MANAGED_OPTIONS or k.replace("-", "_") in ("partition", "gpus", "cpus_per_task", "mem", "time", "account", "qos"):
            raise ConfigError(f"{origin['extra']}: option {k!r}: set by this package or by its own key; expected another option")
        if isinstance(v, bool):
            if not v:
                continue
        elif isinstance(v, (int, float)):
            pass
        else:
            shell_text("extra", v, f"a value for --{k}")
        clean_extra[k] = v

    env_prefix = m["env_prefix"]
    if env_prefix is not None:
        shell_text("env_prefix", env_prefix, "a directory path")
        if any(c in env_prefix for c in _UNSAFE_IN_QUOTES):
            raise bad("env_prefix", 'a path without ", `, or \\')
        env_prefix = env_prefix.rstrip("/")

    def substitute(key: str, line: str) -> str:
        if "{env_prefix}" in line:
            if env_prefix is None:
                raise ConfigError(f"{origin[key]}: uses {{env_prefix}} but env_prefix is null; expected a path in env_prefix")
            line = line.replace("{env_prefix}", f'"{env_prefix}"')
        return line

    python = m["python"]
    if python is not None:
        python = substitute("python", shell_text("python", python, "an interpreter command"))
    elif env_prefix is not None:
        python = f'"{env_prefix}/bin/python"'

    setup = m["setup"]
    if setup is None:
        setup = []
    if not isinstance(setup, list):
        raise bad("setup", "a list of shell lines")
    lines = tuple(substitute("setup", shell_text("setup", line, "a shell line")) for line in setup)

    build = m["torch_build"]
    if build is not None and build not in BUILD_ARCHS:
        raise bad("torch_build", f"null or one of {', '.join(BUILD_ARCHS)}")
    caps = m["gpu_capabilities"] or []
    if not isinstance(caps, list) or not all(isinstance(c, str) and re.fullmatch(r"\d+\.\d", c) for c in caps):
        raise bad("gpu_capabilities", 'a list of compute capabilities such as ["7.0", "8.0"]')
    if build is not None:
        unserved = [c for c in caps if not serves(BUILD_ARCHS[build], c)]
        if unserved:
            raise ConfigError(
                f"{origin['torch_build']}: build {build} has no kernels for compute capability "
                f"{', '.join(unserved)} ({origin['gpu_capabilities']}); expected a build that covers "
                f"every GPU of the partitions, e.g. cu126 for V100s (7.0)"
            )

    runs_per_task = integer("runs_per_task", 1)
    gpu_mem = m["gpu_mem_per_run"]
    if gpu_mem is not None:
        gmatch = _MEM.match(str(gpu_mem)) if isinstance(gpu_mem, (str, int)) and not isinstance(gpu_mem, bool) else None
        if not gmatch or int(gmatch.group(1)) <= 0:
            raise bad("gpu_mem_per_run", "null or a positive amount such as 6G")
        gpu_mem = gmatch.group(1) + (gmatch.group(2) or "").upper()

    return Resources(
        report_job=_report_job(m, origin),
        mail_user=_mail_user(m, origin),
        mail_type=_mail_type(m, origin),
        report=_report_resources(m, origin),
        runs_per_task=runs_per_task,
        gpu_mem_per_run=gpu_mem,
        torch_build=build,
        gpu_capabilities=tuple(caps),
        profile=profile,
        partition=partition,
        gpus=gpus,
        cpus=cpus,
        mem=mem,
        time_min=time_min,
        account=account,
        qos=qos,
        array_parallelism=parallel,
        signal_delay_s=delay,
        max_timeouts=max_timeouts,
        extra=clean_extra,
        env_prefix=env_prefix,
        python=python,
        setup=lines,
    )


def _report_job(m: dict, origin: dict) -> bool:
    if not isinstance(m["report_job"], bool):
        raise ConfigError(f"{origin['report_job']}: expected true or false, got {m['report_job']!r}")
    return m["report_job"]


def _mail_user(m: dict, origin: dict) -> str | None:
    v = m["mail_user"]
    if v is not None and (not isinstance(v, str) or not _MAIL_USER.match(v)):
        raise ConfigError(
            f"{origin['mail_user']}: expected null or an address such as me@example.org (no spaces or quotes), got {v!r}"
        )
    return v


def _mail_type(m: dict, origin: dict) -> str | None:
    """SLURM's --mail-type: one value or several, comma-separated (a YAML list is accepted too)."""
    v = m["mail_type"]
    if v is None:
        return None
    words = v if isinstance(v, list) else str(v).split(",") if isinstance(v, str) else None
    words = [str(w).strip().upper() for w in words] if words is not None else None
    if not words or any(w not in MAIL_TYPES for w in words):
        raise ConfigError(
            f"{origin['mail_type']}: expected null or comma-separated values among {', '.join(MAIL_TYPES)}, got {v!r}"
        )
    return ",".join(words)


def _report_resources(m: dict, origin: dict) -> ReportResources:
    section = m["report"] if m["report"] is not None else {}
    where = origin["report"]
    if not isinstance(section, dict) or any(k not in REPORT_KEYS for k in section):
        raise ConfigError(f"{where}: expected a mapping with keys among {', '.join(REPORT_KEYS)}, got {section!r}")
    r = {**REPORT_DEFAULTS, **{k: v for k, v in section.items() if v is not None or k in ("partition", "mem")}}
    if r["partition"] is not None and (not isinstance(r["partition"], str) or not _PARTITIONS.match(r["partition"])):
        raise ConfigError(f"{where}.partition: expected null or a partition name, got {r['partition']!r}")
    if isinstance(r["cpus"], bool) or not isinstance(r["cpus"], int) or r["cpus"] < 1:
        raise ConfigError(f"{where}.cpus: expected an integer >= 1, got {r['cpus']!r}")
    mem = r["mem"]
    if mem is not None:
        match = _MEM.match(str(mem)) if isinstance(mem, (str, int)) and not isinstance(mem, bool) else None
        if not match or int(match.group(1)) <= 0:
            raise ConfigError(f"{where}.mem: expected null or a positive amount such as 4G, got {mem!r}")
        mem = match.group(1) + (match.group(2) or "").upper()
    return ReportResources(r["partition"], r["cpus"], mem, parse_time(r["time"], f"{where}.time"))


_TIME = re.compile(r"^(?:(?P<d>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")


def parse_time(value: Any, where: str = "time") -> int:
    """A SLURM time limit as whole minutes (rounded up), from minutes or a SLURM time string.

    Example
    -------
    >>> parse_time("1-00:00:00"), parse_time("02:30:00"), parse_time(90), parse_time("0:30")
    (1440, 150, 90, 1)
    """
    expected = "a positive time limit: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"{where}: expected {expected}, got {value!r}")
    if isinstance(value, int):
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
    else:
        raise ConfigError(f"{where}: expected {expected}, got {value!r}")
    if minutes <= 0:
        raise ConfigError(f"{where}: expected {expected}, got {value!r}")
    return minutes


def format_minutes(minutes: int) -> str:
    d, rest = divmod(minutes, 1440)
    return f"{d}-{rest // 60:02d}:{rest % 60:02d}:00" if d else f"{rest // 60:02d}:{rest % 60:02d}:00"
