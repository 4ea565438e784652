"""Errors a user can fix: a wrong path, layout, file, weights or download.

The ``rezoo`` commands print such an error's message alone (its line breaks kept) and exit with
status 2, without a traceback. Each class also derives from the built-in exception that describes
it, so ``except FileNotFoundError`` and the like keep working.
"""
from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user gave; the message says what was expected and what to do."""


class UnknownModelError(UserError, KeyError):
    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


class LayoutError(UserError, FileNotFoundError):
    """A dataset root or input path that is missing or not in the expected layout."""


class InputError(UserError, ValueError):
    """An input file or argument that cannot be used (unreadable image, missing mask, wrong size)."""


class WeightsError(UserError, RuntimeError):
    """Weights that cannot be read, or that belong to another model or architecture."""


class DownloadError(UserError, RuntimeError):
    """A download that failed: offline, not found, timed out, or a hash mismatch."""


class UnverifiedWeightsWarning(UserWarning):
    """Weights downloaded without a sha256 to check them against (the ``rezoo`` commands print it as
    one ``warning:`` line)."""
