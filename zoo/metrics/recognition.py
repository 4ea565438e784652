"""Word accuracy of a text recognizer, as the TextZoom super-resolution papers score it (TSRN, TBSRN,
TATT): a prediction is correct when it equals the label after both are lower-cased and stripped of
every character outside 0-9a-z (TATT's ``str_filt(s, 'lower')``)."""

from __future__ import annotations

import string
from collections.abc import Sequence

import torch

KEPT = frozenset(string.digits + string.ascii_lowercase)


def str_filt(text: str) -> str:
    """``text`` lower-cased, with only its characters in 0-9a-z kept (``"Hello!"`` -> ``"hello"``)."""
    return "".join(char for char in text.lower() if char in KEPT)


def word_correct(predictions: Sequence[str], labels: Sequence[str]) -> torch.Tensor:
    """Per-sample 1.0 (exact match after :func:`str_filt` on both sides) or 0.0, as a (B,) float tensor;
    its mean is the word accuracy."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    return torch.tensor([float(str_filt(p) == str_filt(t)) for p, t in zip(predictions, labels)], dtype=torch.float32)
