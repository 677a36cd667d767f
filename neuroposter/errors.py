"""User-facing errors: the CLI prints their message on one line and exits 1 (2 for usage errors)."""

from __future__ import annotations

__all__ = ["NeuroposterError", "ManifestError", "DataError", "UsageError", "ResourceError", "ArtifactBusyError"]


class NeuroposterError(Exception):
    """An expected failure whose message tells the user what went wrong and what to do."""


class ManifestError(NeuroposterError):
    """An input artifact is missing, stale, changed, or was produced by something other than expected."""


class DataError(NeuroposterError):
    """Input data (CSV, images, features) cannot be used as given."""


class UsageError(NeuroposterError):
    """A bad option, name, path or profile given by the user (exit code 2, like argparse's errors)."""


class ResourceError(NeuroposterError):
    """Not enough disk space or memory for what was asked; the message says how much is needed."""


class ArtifactBusyError(NeuroposterError):
    """Another neuroposter process is writing the same artifact (its lock is held)."""
