"""Why a job waits: squeue's reason code (%r) in words, with what to do about it.

The codes are SLURM's (squeue(1), "JOB REASON CODES"; resource_limits.html for the QOS and
association limits); `make status` prints each waiting run's code and, once per code, these words.
A code not listed here is shown as SLURM prints it, with where to read about it.
"""

from __future__ import annotations

_GPU_PACK = "slurm.runs_per_task=K packs K runs per GPU"

# code -> (what it means, what to do); {cap} is the per-user GPU cap where the cluster shows one.
REASONS: dict[str, tuple[str, str]] = {
    "QOSMaxGRESPerUser": ("at most {cap} GPUs at once for your account (QOS limit)", f"they start as others end; {_GPU_PACK}"),
    "QOSMaxGRESPerJob": ("one job asks more GPUs than the QOS allows", "lower slurm.gpus"),
    "QOSGrpGRES": ("the QOS's GPUs are all in use by its users", f"they start as others end; {_GPU_PACK}"),
    "AssocGrpGRES": (
        "your account's GPU limit is reached; a limit of 0 means it has no GPU access yet",
        f"ask the cluster's administrators for GPU access if no GPU job of yours ever started; {_GPU_PACK}",
    ),
    "AssocMaxGRESPerJob": ("one job asks more GPUs than your account allows", "lower slurm.gpus"),
    "QOSMaxCpuPerUserLimit": ("at most this many cores at once for your account (QOS)", "lower slurm.cpus"),
    "AssocGrpCpuLimit": ("your account's core limit is reached", "lower slurm.cpus, or wait"),
    "QOSMaxMemoryPerUser": ("your account's memory limit is reached (QOS)", "lower slurm.mem (see the MaxRSS of finished runs)"),
    "AssocGrpMemLimit": ("your account's memory limit is reached", "lower slurm.mem (see the MaxRSS of finished runs)"),
    "QOSMaxJobsPerUserLimit": ("at most this many jobs at once for your account (QOS)", "they start as others end"),
    "AssocMaxJobsLimit": ("at most this many jobs at once for your account", "they start as others end"),
    "AssocGrpJobsLimit": ("your account's running-job limit is reached", "they start as others end"),
    "JobArrayTaskLimit": ("slurm.array_parallelism caps the tasks of one array at once", "raise it if the cluster allows"),
    "Resources": ("waiting for free resources in the partition", "a smaller slurm.mem, slurm.cpus or slurm.time starts sooner"),
    "Priority": ("other jobs come first (fair share)", "nothing; it starts in its turn"),
    "Dependency": ("waits for other jobs to end", "nothing (the report job waits for the arrays)"),
    "DependencyNeverSatisfied": ("a job it waits for failed", "scancel it; make sweep submits again"),
    "BeginTime": ("its start time has not come", "nothing"),
    "JobHeldUser": ("held by you", "scontrol release JOBID"),
    "JobHeldAdmin": ("held by an administrator", "ask the cluster's administrators"),
    "PartitionTimeLimit": ("slurm.time is above the partition's limit", "lower slurm.time (a run requeues from its checkpoint)"),
    "PartitionNodeLimit": ("asks more nodes than the partition allows", "check slurm.partition"),
    "PartitionDown": ("the partition is down", "wait, or choose another slurm.partition"),
    "PartitionInactive": ("the partition is inactive", "choose another slurm.partition"),
    "ReqNodeNotAvail": ("no node it may use is available now (down, drained or reserved)", "wait, or relax slurm.constraint"),
    "BadConstraints": ("no node of the partition has the features asked", "check slurm.constraint against `sinfo -o '%P %f'`"),
    "InvalidQOS": ("the QOS is not yours", "check slurm.qos"),
    "InvalidAccount": ("the account is not yours", "check slurm.account"),
    "NodeDown": ("a node it needs is down", "wait"),
    "Reservation": ("waits for a reservation", "nothing"),
    "launch failed requeued held": ("its launch failed and it was requeued held", "read its log, then scontrol release JOBID"),
}


def explain(code: str, gpu_cap: int | None = None) -> str:
    """'QOSMaxGRESPerUser' -> 'QOSMaxGRESPerUser: at most 4 GPUs at once ...: they start as ...'."""
    if code in REASONS:
        meaning, todo = REASONS[code]
        return f"{code}: {meaning.format(cap=gpu_cap if gpu_cap is not None else 'N')}: {todo}"
    return f"{code}: see JOB REASON CODES in `man squeue`"
