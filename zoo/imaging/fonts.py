"""Fonts for rendering text (synthetic text data, STE's synthesizer): Pillow's built-in scalable font
plus any .ttf/.otf/.ttc files a user points at."""

from __future__ import annotations

import functools
from pathlib import Path

from PIL import ImageFont

from zoo.errors import LayoutError

DEFAULT_FONT = "default"  # Pillow's built-in scalable font
FONT_EXTENSIONS = (".ttf", ".otf", ".ttc")


@functools.lru_cache(maxsize=256)
def load_font(font: str, size: int) -> ImageFont.FreeTypeFont:
    if font == DEFAULT_FONT:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(font, size=size)


def find_fonts(font_dir: str | Path | None) -> list[str]:
    """The built-in font plus every .ttf/.otf/.ttc under ``font_dir``."""
    fonts = [DEFAULT_FONT]
    if font_dir:
        folder = Path(font_dir)
        if not folder.is_dir():
            raise LayoutError(f"font_dir {folder} is not a folder of .ttf/.otf fonts")
        fonts += sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in FONT_EXTENSIONS)
    return fonts
