"""User-facing errors: the CLI prints their message on one line and exits 1."""

from __future__ import annotations

__all__ = ["NeuroposterError", "ManifestError", "DataError"]


class NeuroposterError(Exception):
    """An expected failure whose message tells the user what went wrong and what to do."""


class ManifestError(NeuroposterError):
    """An input artifact is missing, stale, or was produced by something other than expected."""


class DataError(NeuroposterError):
    """Input data (CSV, images, features) cannot be used as given."""
