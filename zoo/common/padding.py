"""One pad-to-multiple / crop-back helper for every family (torch only).

Networks with strided stages need H and W divisible by their total stride; the eval forwards pad the
bottom and right edges, run, and crop the output back (times the model's scale for super-resolution).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_to_multiple(tensor: torch.Tensor, multiple: int, mode: str = "reflect") -> torch.Tensor:
    """Pad (..., H, W) on the bottom/right to multiples of ``multiple``.

    ``mode``: ``reflect`` (images; falls back to ``replicate`` when a side is too small to reflect,
    i.e. not larger than its pad) or ``constant`` (masks: zeros outside the image).
    """
    height, width = tensor.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if not (pad_h or pad_w):
        return tensor
    if mode == "reflect" and min(height, width) <= max(pad_h, pad_w):
        mode = "replicate"
    return F.pad(tensor, (0, pad_w, 0, pad_h), mode=mode)


def crop_to(tensor: torch.Tensor, size: tuple[int, int], scale: int = 1) -> torch.Tensor:
    """The top-left ``size`` × ``scale`` region of (..., H, W): undoes :func:`pad_to_multiple`."""
    height, width = size
    return tensor[..., : height * scale, : width * scale]
