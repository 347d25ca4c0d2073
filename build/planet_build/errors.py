"""Errors the builder reports as one line and an exit status, never as a traceback."""

from __future__ import annotations

from planet_contracts.engines import EXIT_FAILED, EXIT_USAGE

__all__ = ["EXIT_FAILED", "EXIT_USAGE", "BuildError", "ComponentFailed", "UsageError"]


class BuildError(Exception):
    """A failure with a message meant for the user and the exit status the Job reports."""

    def __init__(self, message: str, *, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


class UsageError(BuildError):
    """The request is wrong or cannot run here; retrying the same Job will not help."""


class ComponentFailed(BuildError):
    """One component failed to export, check or build."""

    def __init__(self, component: str, reason: str) -> None:
        super().__init__(f"component {component}: {reason}", code=EXIT_FAILED)
        self.component = component
