"""Image I/O shared by the tools, the metrics and the datamodules (the data package imports it from
here; the model package never imports the data package)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from zoo.errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class BadSampleError(InputError, RuntimeError):
    """A sample that cannot be used (unreadable, corrupt, inconsistent); the message names the file."""


def read_image(path: str | os.PathLike | io.BytesIO, mode: str = "RGB", name: str | None = None) -> np.ndarray:
    """Read an image fully (so truncated files fail here) as uint8 HxWxC (RGB) or HxW (L); ``name`` names an
    in-memory file in the error."""
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(image.convert(mode))
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise BadSampleError(f"cannot read image {name or path}: {error}") from error


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 HxWxC / HxW -> float CxHxW in [0,1]."""
    if array.ndim == 2:
        array = array[:, :, None]
    chw = np.ascontiguousarray(array.transpose(2, 0, 1))
    if not chw.flags.writeable:  # a read-only buffer (a decoded file, a Gradio upload): torch would warn
        chw = chw.copy()
    return torch.from_numpy(chw).float().div_(255)


def list_images(folder: Path) -> dict[str, Path]:
    """``{stem: path}`` for the images in ``folder``; two files with one stem are an error."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            if path.stem in found:
                raise InputError(
                    f"two images share the stem {path.stem!r} in {folder}: {found[path.stem].name}, {path.name}"
                )
            found[path.stem] = path
    return found


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """(...,C,H,W) float [0,1] -> (...,H,W,C) uint8 on the CPU: clamped to [0,1], ×255, rounded half to even. A
    view of the channels-first bytes (not C-contiguous): ``np.ascontiguousarray`` where a consumer needs one."""
    return (tensor.detach().float().clamp(0, 1) * 255).round().byte().movedim(-3, -1).cpu().numpy()


def to_pil(tensor: torch.Tensor) -> Image.Image:
    """(3|1,H,W) float [0,1] -> an 8-bit RGB PIL image (one channel repeated)."""
    array = to_uint8(tensor)
    return Image.fromarray(np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array)


def save_image(tensor: torch.Tensor, path: Path) -> None:
    """(3|1,H,W) float [0,1] -> 8-bit PNG/JPEG (parent folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(tensor).save(path)


def encode_png(tensor: torch.Tensor) -> bytes:
    """(3|1,H,W) float [0,1] -> the bytes :func:`save_image` writes to a ``.png`` file."""
    buffer = io.BytesIO()
    to_pil(tensor).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_image(data: bytes, name: str, mode: str = "RGB") -> np.ndarray:
    """:func:`read_image` for encoded bytes (a WebDataset sample's ``png``/``jpg``/``webp``); ``name`` names them
    in the error."""
    return read_image(io.BytesIO(data), mode, name)
