"""Errors that the CLI turns into a one-line message and exit code 2 (never a traceback)."""

from __future__ import annotations


class RiskModelError(Exception):
    """Base class: a problem the user can fix (bad file, bad argument, bad artifact)."""


class DataError(RiskModelError):
    """An input table is missing, unreadable or does not have the expected columns/values."""


class ArtifactError(RiskModelError):
    """A model artifact is missing, tampered with, malformed or built for other feature definitions."""
