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

    Symbolic sizes (``torch.export``, ONNX export with dynamic height and width) keep the pad as an
    expression of the input size, also when it is 0 at the traced size, and the padded size as an
    explicit multiple (``multiple * ceil(H / multiple)``), so that the exporter can prove the strided
    stages' sizes match; sides of at least ``multiple`` (declare that minimum) always reflect.
    """
    height, width = tensor.shape[-2:]
    pad_h = (height + multiple - 1) // multiple * multiple - height  # = -height % multiple
    pad_w = (width + multiple - 1) // multiple * multiple - width
    if isinstance(height, int) and isinstance(width, int):  # eager
        if not (pad_h or pad_w):
            return tensor
        too_small = min(height, width) <= max(pad_h, pad_w)
    else:  # traced: SymInts, not ints
        too_small = height < multiple or width < multiple
    if mode == "reflect" and too_small:
        mode = "replicate"
    return F.pad(tensor, (0, pad_w, 0, pad_h), mode=mode)


def crop_to(tensor: torch.Tensor, size: tuple[int, int], scale: int = 1) -> torch.Tensor:
    """The top-left ``size`` × ``scale`` region of (..., H, W): undoes :func:`pad_to_multiple`."""
    height, width = size
    return tensor[..., : height * scale, : width * scale]
