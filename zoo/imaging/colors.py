"""Colours of synthetic text (a colour that stands out from a reference) and alpha blending of a layer (also the
composite of an output inside a mask, ``zoo.metrics.text_removal.composite``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch

Color = tuple[int, int, int]
Array = TypeVar("Array", np.ndarray, torch.Tensor)


def byte_color(rng: np.random.Generator) -> np.ndarray:
    """Three integers drawn uniformly in [0, 255]."""
    return rng.integers(0, 256, size=3)


def uniform_color(rng: np.random.Generator) -> np.ndarray:
    """Three floats drawn uniformly in [0, 255)."""
    return rng.uniform(0, 255, size=3)


def contrasting_color(
    rng: np.random.Generator,
    reference: np.ndarray,
    min_distance: float = 80.0,
    draw: Callable[[np.random.Generator], np.ndarray] = byte_color,
) -> Color:
    """A colour at least ``min_distance`` (RGB Euclidean) from ``reference``: up to 20 candidates from ``draw``, else
    black or white, whichever is further."""
    for _ in range(20):
        color = draw(rng)
        if np.linalg.norm(color - reference) >= min_distance:
            return tuple(int(c) for c in color)  # type: ignore[return-value]
    return (0, 0, 0) if reference.mean() > 127 else (255, 255, 255)


def alpha_blend(base: Array, layer: Array, alpha: Array | float) -> Array:
    """``base`` under ``layer`` with opacity ``alpha`` (broadcast): base·(1 − α) + layer·α (NumPy or torch)."""
    return base * (1 - alpha) + layer * alpha
