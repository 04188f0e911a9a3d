"""The project's exceptions, in one torch-free module that every layer may import.

Each message is the whole `error:` line a user sees: what was wrong, and what was expected.
The command-line layer (`al_core.cli`) maps them to exit codes: 2 for a bad sweep or input, 78
for a node that cannot serve a job.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad sweep file, key or value. The message names the key and what was expected."""


class DataError(RuntimeError):
    """A dataset that is missing or damaged on disk; the message says what to do."""


class DataMissing(DataError):
    """The dataset's files are not on this node (exit 78 in a job: this node cannot serve the run)."""


class NodeError(RuntimeError):
    """This node cannot serve the run; the message says which node, which GPU and what to do."""
