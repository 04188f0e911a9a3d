"""slurm: a sweep's runs fanned out with submitit, as one SLURM job array, or on this machine.

Owns planning (which runs need a job), cluster resources (profiles), submission, jobs.json and its
lock, requeue-safe job callables, status. Entry points: `python -m slurm.sweep`, `python -m slurm.status`.
"""

from __future__ import annotations

import importlib

# Public names, imported on first use: `python -m slurm.status` and dry runs need neither torch's
# training stack nor scikit-learn, which the job callable imports.
_EXPORTS = {
    "RunJob": "slurm.job",
    "Decision": "slurm.plan",
    "Plan": "slurm.plan",
    "make_plan": "slurm.plan",
    "Resources": "slurm.profiles",
    "resolve_resources": "slurm.profiles:resolve",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'slurm' has no attribute {name!r}")
    module, _, attr = _EXPORTS[name].partition(":")
    return getattr(importlib.import_module(module), attr or name)
