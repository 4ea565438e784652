"""Errors a user can fix: a wrong path, layout, file, weights or download.

The ``rezoo`` commands print such an error's message alone (its line breaks kept) and exit with
status 2, without a traceback. Each class also derives from the built-in exception that describes
it, so ``except FileNotFoundError`` and the like keep working.
"""

from __future__ import annotations

import importlib
from types import ModuleType


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


class MissingExtraError(UserError, ImportError):
    """A feature whose optional dependencies (a ``pip install "rezoo[<extra>]"`` extra) are not installed."""


def require_extra(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` of the optional extra ``extra``, or say in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(
            f'{feature} needs {module.split(".")[0]}, which is not installed: pip install -e ".[{extra}]" '
            f'(from a checkout) or pip install "rezoo[{extra}]"'
        ) from error


class UnverifiedWeightsWarning(UserWarning):
    """Weights downloaded without a sha256 to check them against (the ``rezoo`` commands print it as
    one ``warning:`` line)."""
