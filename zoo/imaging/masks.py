"""One place for text-mask derivation (torch, numpy, cv2): dilation, and polygons rasterised into a
mask. Masks are float {0,1}, 1 = text (to erase)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def dilate_mask(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Grow a (..., H, W) {0,1} mask by ``radius`` pixels (a (2r+1)² square structuring element, the
    max-pool form of binary dilation). ``radius`` 0 returns the mask unchanged."""
    if radius <= 0:
        return mask
    shape = mask.shape
    flat = mask.reshape(-1, 1, *shape[-2:])
    return F.max_pool2d(flat.float(), 2 * radius + 1, stride=1, padding=radius).to(mask.dtype).reshape(shape)


def rasterize(polygons: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """uint8 (H,W) mask, 255 inside any polygon ((K,2) x,y points in pixels; filled, clipped to the image)."""
    mask = np.zeros((height, width), np.uint8)
    if len(polygons):
        cv2.fillPoly(mask, [np.round(np.asarray(p, np.float64).reshape(-1, 2)).astype(np.int32) for p in polygons], 255)
    return mask


def polygons_to_mask(polygons: Sequence[np.ndarray], height: int, width: int, dilation: int = 0) -> torch.Tensor:
    """(1,H,W) float {0,1} mask of the polygons (a detector's boxes or an annotation), dilated by
    ``dilation`` pixels."""
    return dilate_mask(torch.from_numpy(rasterize(polygons, height, width) > 0).float()[None], dilation)
