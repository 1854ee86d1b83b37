"""The errors of the engine layer, importable without loading Prefect.

Entry points catch these to show the operator one readable line; keeping them apart from
`deployments.client` lets the CLI recognise them without paying for Prefect's import.
"""

from __future__ import annotations


class EngineError(RuntimeError):
    """An operation on the engine failed; the message is meant for the operator."""


class PrefectUnavailableError(EngineError):
    """The Prefect API could not be reached (or answered with a server error)."""


class RunRefusedError(EngineError):
    """A run or retry that cannot be started, e.g. because its job no longer exists."""
