"""Planning: which runs of a sweep need a job now, which are skipped, and why.

A run is submitted unless it is DONE or its last job (jobs.json) is still queued or running by the
scheduler's account (slurm.scheduler). Run directories are read, never written, here.
"""

from __future__ import annotations

from dataclasses import dataclass

from al_core.config import RunSpec, Sweep, config_diff
from al_core.errors import ConfigError
from al_core.rundir import RunDir
from al_core.results import DONE, is_done
from slurm.scheduler import JobState


@dataclass(frozen=True)
class Decision:
    spec: RunSpec
    submit: bool
    reason: str  # "new", "DONE", "job 12_3 RUNNING", "job 12_3 FAILED: resubmitted", ...
    job_id: str | None = None  # the run's last job, if any
    state: str | None = None  # that job's state
    hold_error: str | None = None  # the `error:` line of a job that could not run on its node (held run)

    @property
    def held(self) -> bool:
        return self.hold_error is not None and not self.submit

    @property
    def run_id(self) -> str:
        return self.spec.run_id


@dataclass(frozen=True)
class Plan:
    sweep: Sweep
    decisions: list[Decision]

    @property
    def to_submit(self) -> list[Decision]:
        return [d for d in self.decisions if d.submit]

    def tasks(self, k: int) -> list[list[Decision]]:
        """The runs to submit, k to a task (slurm.runs_per_task): they share its resources."""
        todo = self.to_submit
        return [todo[i : i + k] for i in range(0, len(todo), k)]

    @property
    def skipped(self) -> list[Decision]:
        return [d for d in self.decisions if not d.submit]

    @property
    def active(self) -> list[Decision]:
        """Skipped because a job of theirs is queued or running (a `--wait` watches these too)."""
        return [d for d in self.skipped if d.reason != DONE and not d.held]

    @property
    def held(self) -> list[Decision]:
        """Skipped because their last job found a node that could not serve them (exit 78)."""
        return [d for d in self.skipped if d.held]

    def summary(self) -> str:
        done = sum(d.reason == DONE for d in self.skipped)
        held = len(self.held)
        return (
            f"{len(self.to_submit)} to submit, {len(self.skipped)} skipped "
            f"({done} DONE, {len(self.skipped) - done - held} queued or running"
            + (f", {held} held: their node could not serve them" if held else "")
            + ")"
        )

    def held_note(self) -> str | None:
        """What to do about held runs, or None when there are none."""
        if not self.held:
            return None
        first = self.held[0]
        return (
            f"{len(self.held)} run{'s' if len(self.held) > 1 else ''} held (exit 78: the node could not serve "
            f"{'them' if len(self.held) > 1 else 'it'}), e.g. {first.run_id}: {first.hold_error}\n"
            "fix the cause (partition, GPU, PyTorch build, dataset), then resubmit them with --retry-failed "
            "(make sweep ARGS=--retry-failed)"
        )

    def lines(self) -> list[str]:
        width = max((len(d.run_id) for d in self.decisions), default=0)
        return [f"  {'submit' if d.submit else 'skip':<6}  {d.run_id:<{width}}  {d.reason}" for d in self.decisions]


@dataclass(frozen=True)
class Progress:
    """What a run directory says about a run."""

    done: bool
    cycles: int  # finished cycles (rows of cycles.jsonl)
    total: int  # al.cycles
    accuracy: float | None  # test accuracy of the latest finished cycle
    restarts: int  # starts of the run beyond the first (requeues and resubmissions), from run.json


def progress(sweep: Sweep, spec: RunSpec) -> Progress:
    run_dir = RunDir(sweep.run_dir(spec.run_id))
    cycles, acc, restarts = run_dir.progress()
    return Progress(run_dir.done, cycles, spec.config.al.cycles, acc, restarts)


def check_run_dirs(sweep: Sweep) -> None:
    """Refuse, before submitting anything, a sweep whose run directories hold runs of another config.

    al_core would refuse on the node; here the user learns it at once, with the keys that differ.
    """
    for spec in sweep.runs():
        run_dir = RunDir(sweep.run_dir(spec.run_id))
        stored = run_dir.stored_config(f"remove {run_dir.path} to start the run over")
        if stored is None:  # a new run: nothing to compare (the config's dict is not built for it)
            continue
        diff = config_diff(stored, spec.config.to_dict())
        if diff:
            raise ConfigError(
                f"{run_dir.path} holds run {spec.run_id} with a different config (differs in {', '.join(diff[:5])}); "
                "expected the same config: change `name` for a new sweep, or remove that run directory"
            )


def make_plan(
    sweep: Sweep,
    records: dict[str, dict],
    states: dict[str, JobState],
    held: dict[str, dict] | None = None,
    retry_failed: bool = False,
) -> Plan:
    """One decision per run. Held runs (`held`: run_id -> hold record) are skipped unless `retry_failed`."""
    held = held or {}
    decisions = []
    for spec in sweep.runs():
        rec = records.get(spec.run_id)
        job_id = rec["job_id"] if rec else None
        state = states.get(spec.run_id)
        hold = held.get(spec.run_id)
        if is_done(sweep.run_dir(spec.run_id)):
            decisions.append(Decision(spec, False, DONE, job_id, state.state if state else None))
        elif hold is not None and not (state is not None and state.active):
            reason = (
                f"held (job {hold.get('job_id', '-')}, exit 78): retried"
                if retry_failed
                else f"HELD: job {hold.get('job_id', '-')} on {hold.get('host', '?')} "
                "could not run (exit 78); --retry-failed resubmits"
            )
            error = str(hold.get("error", "?"))
            decisions.append(Decision(spec, retry_failed, reason, job_id, state.state if state else None, error))
        elif rec is None:
            p = progress(sweep, spec)
            reason = f"new (resumes at cycle {p.cycles + 1} from its run directory)" if p.cycles else "new"
            decisions.append(Decision(spec, True, reason))
        elif state is not None and state.active:
            decisions.append(Decision(spec, False, f"job {job_id} {state.state}", job_id, state.state))
        else:
            word = state.state if state is not None else "UNKNOWN"
            if word == "COMPLETED":
                word = "COMPLETED without DONE"
            decisions.append(
                Decision(spec, True, f"job {job_id} {word}: resubmit ({rec.get('submissions', 1)} so far)", job_id, word)
            )
    return Plan(sweep, decisions)
