"""What the scheduler says about a sweep's jobs: one `squeue` (live jobs) and one `sacct` (the rest).

squeue comes first because slurmdbd may not know a job that was submitted a moment ago; sacct
answers for jobs that have left the queue. A job neither knows (a purged id, a reset test cluster,
no accounting) reads UNKNOWN; one whose name is not the sweep's (an id reused after a reset) too.
Local jobs (submitit's local executor) are controller processes: alive = RUNNING.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

# States in which a job still holds, or will again hold, the run: never submit a second job then.
ACTIVE = frozenset(
    "PENDING RUNNING REQUEUED REQUEUE_HOLD REQUEUE_FED CONFIGURING COMPLETING SUSPENDED RESIZING SIGNALING "
    "STAGE_OUT STOPPED SPECIAL_EXIT RESV_DEL_HOLD POWER_UP_NODE UPDATE_DB".split()
)
# Everything else (COMPLETED without DONE, FAILED, CANCELLED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY,
# BOOT_FAIL, DEADLINE, PREEMPTED, UNKNOWN) leaves the run free to be submitted again.

_ARRAY_RANGE = re.compile(r"^(?P<base>\d+)_\[(?P<ranges>[0-9,\-:]+)(%\d+)?\]$")
TIMEOUT_S = 60
# How far the submitting node's clock may be ahead of the controller's: sacct is asked about jobs
# active since a record's submission less this.
SKEW_S = 600


@dataclass(frozen=True)
class JobState:
    state: str  # SLURM's state word (first word: "CANCELLED by 0" -> CANCELLED), or RUNNING/EXITED/UNKNOWN
    source: str  # squeue | sacct | process | none
    reason: str = field(default="", compare=False)  # squeue's %r for a waiting job (QOSMaxGRESPerUser, Resources, ...)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


UNKNOWN = JobState("UNKNOWN", "none")


class SchedulerError(RuntimeError):
    """The scheduler could not be asked; nothing may be submitted on a guess."""


def own_environment() -> None:
    """For a process inside a job that submits jobs (the report job): its SLURM_*/SBATCH_*/SRUN_*
    variables must not reach them (sbatch and the new jobs' srun read them), SLURM_CONF excepted."""
    for k in [k for k in os.environ if k.startswith(("SLURM_", "SBATCH_", "SRUN_")) and k != "SLURM_CONF"]:
        del os.environ[k]


def have_slurm() -> bool:
    return shutil.which("sbatch") is not None


def states(records: dict[str, dict], job_name: str | None = None) -> dict[str, JobState]:
    """run_id -> JobState of the run's last job, for every record (slurm and local alike)."""
    out: dict[str, JobState] = {}
    slurm = [rec for rec in records.values() if rec.get("cluster") == "slurm"]
    by_job = slurm_states([rec["job_id"] for rec in slurm], job_name, since(slurm)) if slurm else {}
    for run, rec in records.items():
        if rec.get("cluster") == "slurm":
            out[run] = by_job.get(rec["job_id"], UNKNOWN)
        elif rec.get("cluster") == "local":
            out[run] = local_state(rec["job_id"], rec.get("task_log") or rec.get("log_out", ""))  # packed: the task's log
        else:  # debug: ran inside a process that has finished
            out[run] = JobState("EXITED", "process")
    return out


def since(records: Iterable[dict]) -> str | None:
    """The earliest `submitted_at` of ledger records (ISO, UTC): what sacct is asked about. None
    when a record lacks a readable time (then sacct's whole history is read)."""
    times = [_instant(rec.get("submitted_at")) for rec in records]
    if not times or None in times:
        return None
    return datetime.fromtimestamp(min(t for t in times if t is not None), timezone.utc).isoformat(timespec="seconds")


def _sacct(fields: str, bases: Iterable[str], since_iso: str | None, steps: bool = False) -> str:
    """`sacct -n -P -o FIELDS -j BASES` (`-X`: jobs and array tasks alone, unless `steps`), of the
    jobs still pending, running or ending after `since_iso` less SKEW_S when given: job ids restart
    after a controller loses its state (or wrap at MaxJobId), and sacct answers for a base id with
    every array task of every job that once had it, so a new job's tasks would be read from an old
    job's records. '' when sacct fails."""
    cmd = ["sacct", *(() if steps else ("-X",)), "-n", "-P", "-o", fields, "-j", ",".join(sorted(set(bases), key=int))]
    if (t := _instant(since_iso)) is not None:
        cmd += ["-S", datetime.fromtimestamp(t - SKEW_S).strftime("%Y-%m-%dT%H:%M:%S")]  # sacct reads local time
    return _run(cmd) or ""


def _instant(iso: str | None) -> float | None:
    """An ISO time (naive: local) as a POSIX timestamp; None when it is not one."""
    try:
        return datetime.fromisoformat(iso).timestamp()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def slurm_states(job_ids: Iterable[str], job_name: str | None = None, since_iso: str | None = None) -> dict[str, JobState]:
    """job id ("123" or "123_4") -> JobState; ids the scheduler does not know are left out.
    `since_iso`: when the earliest of these jobs was submitted (sacct then ignores older jobs of the
    same ids)."""
    wanted = set(job_ids)
    if not wanted or not have_slurm():
        return {}
    found = parse_states(_squeue("-t", "all"), wanted, job_name, "squeue")
    rest = wanted - set(found)
    if rest:
        out = _sacct("JobID,State,JobName", (j.split("_")[0] for j in rest), since_iso)
        found.update(parse_states(out, rest, job_name, "sacct"))
    return found


def active_jobs(job_name: str) -> dict[str, JobState]:
    """Every job (array tasks one by one) of this user named `job_name` that squeue still holds:
    what a lost ledger is rebuilt from. SchedulerError when squeue cannot be asked."""
    if not have_slurm():
        return {}
    out = _squeue("-n", job_name)
    ids = {one for line in out.splitlines() if line.count("|") >= 2 for one in _expand(line.split("|", 1)[0].strip())}
    return parse_states(out, ids, job_name, "squeue")


def _squeue(*args: str) -> str:
    """`squeue -o %i|%T|%j|%r` of this user's jobs (%r: why a pending job waits); SchedulerError
    when it fails: without the live queue every job would look finished, and resubmitting could double-run."""
    out = _run(["squeue", "-h", "-r", *args, "-u", _user(), "-o", "%i|%T|%j|%r"])
    if out is None:
        raise SchedulerError("squeue failed: cannot tell which runs are queued or running; is the SLURM controller up?")
    return out


def parse_states(text: str, wanted: set[str], job_name: str | None, source: str) -> dict[str, JobState]:
    """job id -> JobState from `squeue -o %i|%T|%j|%r` or `sacct -P -o JobID,State,JobName` lines,
    for the ids in `wanted` (array ranges expanded) whose job name is `job_name` (any if None).
    A line that is not three fields (a warning, a blank) is ignored; an id listed twice keeps its
    first line (squeue lists the live job once; sacct without --duplicates its latest record)."""
    found: dict[str, JobState] = {}
    for line in text.splitlines():
        parts = line.split("|", 2)
        if len(parts) != 3:
            continue
        jid, state, name = (p.strip() for p in parts)
        reason = ""
        if source == "squeue" and "|" in name:  # squeue's reason after the name (a reason has no '|')
            name, reason = (p.strip() for p in name.rsplit("|", 1))
        for one in _expand(jid):
            if one in wanted and one not in found and (job_name is None or name == job_name):
                found[one] = JobState(state.split()[0] if state else "UNKNOWN", source, reason)
    return found


def _expand(jid: str) -> list[str]:
    """'12_[3-5,7%2]' -> ['12_3', '12_4', '12_5', '12_7']; steps too ('12_[0-6:3]' -> 12_0, 12_3,
    12_6); '12_3' and '12' as they are."""
    m = _ARRAY_RANGE.match(jid)
    if not m:
        return [jid]
    ids = []
    for part in m.group("ranges").split(","):
        span, _, step = part.partition(":")
        lo, _, hi = span.partition("-")
        ids += [f"{m.group('base')}_{i}" for i in range(int(lo), int(hi or lo) + 1, int(step or 1))]
    return ids


def _run(cmd: list[str]) -> str | None:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout if p.returncode == 0 else None


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return str(os.getuid())


def local_state(job_id: str, log_out: str = "") -> JobState:
    """A local job is its controller process (`python -m submitit.local._local FOLDER`)."""
    folder = str(Path(log_out).parent) if log_out else ""
    try:
        args = [a.decode(errors="replace") for a in Path(f"/proc/{int(job_id)}/cmdline").read_bytes().split(b"\0")]
        ours = "submitit.local._local" in args and (not folder or folder in args)
        # its controller process, and not a zombie (a zombie has finished)
        running = ours and Path(f"/proc/{int(job_id)}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (ValueError, OSError):
        running = False
    return JobState("RUNNING" if running else "EXITED", "process")


def cancel(job_ids: Iterable[str]) -> None:
    ids = list(job_ids)
    if ids and have_slurm():
        _run(["scancel", *ids])


DEFAULT_MAX_ARRAY_SIZE = 1001  # SLURM's default MaxArraySize (array indices 0..1000)


def max_array_size() -> int:
    """The cluster's MaxArraySize (`scontrol show config`): an array may hold indices 0..N-1."""
    out = _run(["scontrol", "show", "config"]) or ""
    m = re.search(r"^\s*MaxArraySize\s*=\s*(\d+)", out, flags=re.M)
    return int(m.group(1)) if m and int(m.group(1)) > 0 else DEFAULT_MAX_ARRAY_SIZE


def submit_allowance() -> int | None:
    """How many more jobs (array tasks count one each) this user may submit, where the cluster
    shows a per-user limit (the association's MaxSubmitJobs in `sacctmgr show assoc`); None where
    it shows none. A QOS's MaxSubmitJobsPerUser is not read: sbatch then refuses the excess, and the
    arrays accepted before the refusal stay recorded."""
    user = _user()
    out = _run(["sacctmgr", "-n", "-P", "show", "assoc", f"user={user}", "format=MaxSubmitJobs"]) or ""
    limits = [int(v) for v in out.split() if v.strip().isdigit()]
    if not limits:
        return None
    queued = _run(["squeue", "-h", "-r", "-u", user, "-o", "%i"]) or ""
    return max(min(limits) - len(queued.split()), 0)


_GPU_TRES = re.compile(r"(?:^|,)gres/gpu=(\d+)(?:,|$)")


def gpu_cap() -> int | None:
    """The GPUs this user may hold at once where the cluster shows a limit: the smallest gres/gpu of
    the MaxTRESPerUser of its associations' QOS and of the associations' GrpTRES (sacctmgr); None
    where it shows none (or sacctmgr cannot be asked)."""
    if not have_slurm():
        return None
    assoc = _run(["sacctmgr", "-n", "-P", "show", "assoc", f"user={_user()}", "format=QOS,GrpTRES"]) or ""
    names = {q for line in assoc.splitlines() for q in line.split("|", 1)[0].split(",") if q.strip()}
    caps = [int(m.group(1)) for line in assoc.splitlines() if (m := _GPU_TRES.search(line.partition("|")[2]))]
    if names:
        qos = _run(["sacctmgr", "-n", "-P", "show", "qos", "format=Name,MaxTRESPU"]) or ""
        for line in qos.splitlines():
            name, _, tres = line.partition("|")
            if name.strip() in names and (m := _GPU_TRES.search(tres.strip())):
                caps.append(int(m.group(1)))
    return min(caps) if caps else None


_RSS_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _seconds(elapsed: str) -> int | None:
    """sacct's Elapsed ('1-02:03:04', '02:03:04', '03:04') as seconds."""
    m = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)", elapsed.strip())
    if not m:
        return None
    d, h, mi, s = (int(x) if x else 0 for x in m.groups())
    return ((d * 24 + h) * 60 + mi) * 60 + s


def usage(job_ids: Iterable[str], since_iso: str | None = None) -> dict[str, tuple[int | None, int | None]]:
    """job id -> (elapsed seconds, MaxRSS bytes: the largest of its steps) from sacct; ids sacct does
    not know are left out. MaxRSS is what sets --mem right for the next sweep. `since_iso` as in
    slurm_states."""
    wanted = set(job_ids)
    if not wanted or not have_slurm():
        return {}
    out = _sacct("JobID,Elapsed,MaxRSS", (j.split("_")[0] for j in wanted), since_iso, steps=True)
    found: dict[str, tuple[int | None, int | None]] = {}
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) != 3:
            continue
        job, _, _step = parts[0].partition(".")
        if job not in wanted:
            continue
        elapsed, rss = found.get(job, (None, None))
        if not _step:
            elapsed = _seconds(parts[1])
        if m := re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", parts[2].strip()):
            rss = max(rss or 0, int(float(m.group(1)) * _RSS_UNITS[m.group(2)]))
        found[job] = (elapsed, rss)
    return found


def exit_codes(job_ids: Iterable[str], since_iso: str | None = None) -> dict[str, int]:
    """job id -> the exit status of its batch script (sacct's ExitCode, before the ':'); ids sacct
    does not know, or that ended by a signal, are left out. `since_iso` as in slurm_states."""
    wanted = set(job_ids)
    if not wanted or not have_slurm():
        return {}
    out = _sacct("JobID,ExitCode", (j.split("_")[0] for j in wanted), since_iso)
    codes = {}
    for line in out.splitlines():
        job, _, code = line.partition("|")
        status, _, signal = code.partition(":")
        if job in wanted and status.isdigit() and signal in ("", "0"):
            codes[job] = int(status)
    return codes


# Node states in which no process of the node can still be running (a trailing `*` on any state:
# the node does not respond).
NODE_GONE_STATES = frozenset({"DOWN", "FAIL", "NOT_RESPONDING", "POWERED_DOWN", "POWER_DOWN", "POWERING_DOWN"})


def node_gone(host: str, since: str) -> str | None:
    """Why the scheduler says that a process `host` ran since `since` (an ISO time) cannot be
    alive: the node is down, failed or not responding, or it booted after `since`. None when the
    node is up and has not booted since. SchedulerError when `scontrol show node` cannot answer
    (under the host's full or short name)."""
    from datetime import datetime

    out = None
    for name in dict.fromkeys([host, host.split(".")[0]]):
        out = _run(["scontrol", "show", "node", name, "-o"]) if have_slurm() else None
        if out and "NodeName=" in out:
            break
    else:
        raise SchedulerError(f"scontrol show node {host} failed: cannot tell whether that node is up")
    fields = dict(re.findall(r"(\w+)=(\S*)", out))
    state = fields.get("State", "")
    words = set(filter(None, re.split(r"[+*]", state)))
    if "*" in state or words & NODE_GONE_STATES:
        return f"node {host} is {state}"
    try:
        boot = datetime.fromisoformat(fields.get("BootTime", "")).astimezone()
        started = datetime.fromisoformat(since).astimezone()
    except ValueError:
        return None
    return f"node {host} booted at {fields['BootTime']}, after the lock was taken ({since})" if boot > started else None
