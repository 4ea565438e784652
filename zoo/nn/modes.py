"""Eval mode for a call made from anywhere, training included (torch only)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block (batch norm with its running statistics, no dropout);
    afterwards every submodule's ``training`` flag is what it was, so a recognizer or detector called
    from a training loop changes nothing."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
