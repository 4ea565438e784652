"""One place for text masks (torch, numpy, cv2): reading a mask file, dilation, and polygons rasterised into a
mask. Masks are float {0,1}, 1 = text (to erase)."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from zoo.imaging.images import BadSampleError, read_image, to_tensor


def read_mask(
    file: str | os.PathLike | io.BytesIO,
    height: int,
    width: int,
    image_name: str,
    name: str | None = None,
    resize: bool = False,
    hint: str = "",
) -> torch.Tensor:
    """A mask file (white = text) as a (1,H,W) {0,1} tensor for an image of ``height`` x ``width`` (``image_name``):
    another size is a :class:`BadSampleError` naming both sizes and how to fix it (``hint``: the command's own
    option), or with ``resize`` scaled to it (nearest neighbour). ``name`` names an in-memory file."""
    name = name or str(file)
    array = read_image(file, "L", name)
    if array.shape != (height, width):
        if not resize:
            raise BadSampleError(
                f"mask {name} is {array.shape[1]}x{array.shape[0]}, image {image_name} is {width}x{height}: "
                f"resize the mask to {width}x{height}{hint}"
            )
        array = np.asarray(Image.fromarray(array).resize((width, height), Image.NEAREST))
    return (to_tensor(array) > 0.5).float()


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
