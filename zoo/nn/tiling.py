"""Tiled inference with blended overlaps, for images larger than memory allows (torch only)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    return list(range(0, length - tile, stride)) + [length - tile]


def _ramp(length: int, overlap: int, ramp_start: bool, ramp_end: bool, device: torch.device) -> torch.Tensor:
    """1-D blending weights: a linear ramp over ``overlap`` pixels at the ends that touch another
    tile, 1 elsewhere (image borders keep full weight)."""
    weight = torch.ones(length, device=device)
    if overlap > 0:
        ramp = torch.linspace(0, 1, overlap + 2, device=device)[1:-1]
        if ramp_start:
            weight[:overlap] = ramp
        if ramp_end:
            weight[-overlap:] = torch.minimum(weight[-overlap:], ramp.flip(0))
    return weight


@torch.no_grad()
def tiled_forward(
    fn: Callable[..., torch.Tensor],
    image: torch.Tensor,
    mask: torch.Tensor | None = None,
    tile: int = 512,
    overlap: int = 32,
    scale: int = 1,
) -> torch.Tensor:
    """Run ``fn(image_tile, mask_tile)`` over overlapping tiles and blend the outputs.

    Where tiles overlap, outputs are averaged with linear ramps so that no seam shows; ``scale`` is
    the output/input size ratio (super-resolution). The result has the input's size (times ``scale``).
    """
    if overlap >= tile:
        raise ValueError(f"overlap ({overlap}) must be smaller than tile ({tile})")
    batch, _, height, width = image.shape
    h, w = min(tile, height), min(tile, width)
    ys, xs = _starts(height, tile, tile - overlap), _starts(width, tile, tile - overlap)
    output = weight_sum = None
    for y in ys:
        for x in xs:
            out = fn(
                image[..., y : y + h, x : x + w], None if mask is None else mask[..., y : y + h, x : x + w]
            ).float()
            if output is None:
                output = image.new_zeros(batch, out.shape[1], height * scale, width * scale, dtype=torch.float32)
                weight_sum = image.new_zeros(1, 1, height * scale, width * scale, dtype=torch.float32)
            wy = _ramp(h * scale, overlap * scale, y > 0, y + h < height, image.device)
            wx = _ramp(w * scale, overlap * scale, x > 0, x + w < width, image.device)
            weight = (wy[:, None] * wx[None, :])[None, None]
            region = (..., slice(y * scale, (y + h) * scale), slice(x * scale, (x + w) * scale))
            output[region] += out * weight
            weight_sum[region] += weight
    return output / weight_sum
