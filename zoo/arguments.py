"""A constructor's own arguments, for the classes that record or pass on every one of them (the training modules'
hyperparameters, the generated datasets' settings), as Lightning's ``save_hyperparameters`` reads them."""

from __future__ import annotations

import inspect
from collections.abc import Collection
from types import FrameType
from typing import Any


def own_arguments(frame: FrameType, exclude: Collection[str] = ()) -> dict[str, Any]:
    """The named arguments of the function running in ``frame``, in its signature's order, with the values they hold
    now; not the first (``self``), ``*args``/``**kwargs``, nor those in ``exclude``."""
    arguments = inspect.getargvalues(frame)
    return {name: arguments.locals[name] for name in arguments.args[1:] if name not in exclude}
