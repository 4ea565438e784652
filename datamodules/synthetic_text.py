"""Embedded default data for text removal: text rendered with Pillow on generated backgrounds.

Every sample is a function of ``(seed, split, index)``: the validation set is fixed, and training
samples are reproducible. Each text instance is described by an explicit :class:`TextStyle` (font,
size, colour, rotation, opacity, stroke, shadow, blur, position), drawn by :func:`sample_style` from
the ranges in :class:`StyleRanges`; :func:`render_scene` takes the styles as given, so a policy
network (STE) can choose them instead of the random sampler.

A sample holds ``image`` (text rendered on the background), ``target`` (the background), ``mask``
(1 where any instance changed the background, slightly dilated) and ``boxes`` (per-instance xyxy).
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from datamodules.base import GeneratedDataModule, SampleDataset, list_images, read_image, to_tensor
from zoo.imaging.colors import Color, alpha_blend, contrasting_color, uniform_color
from zoo.imaging.fonts import DEFAULT_FONT, find_fonts, load_font
from zoo.imaging.masks import dilate_mask

SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


@dataclass
class TextStyle:
    """Everything that decides how one text instance looks (and where it goes)."""

    text: str
    font: str = DEFAULT_FONT  # "default" or a path to a .ttf/.otf
    size: int = 24  # font size in pixels
    color: Color = (0, 0, 0)
    rotation: float = 0.0  # degrees, counter-clockwise
    opacity: float = 1.0
    stroke_width: int = 0
    stroke_color: Color = (255, 255, 255)
    shadow: bool = False
    shadow_offset: tuple[int, int] = (2, 2)
    shadow_color: Color = (0, 0, 0)
    shadow_blur: float = 1.5
    shadow_opacity: float = 0.6
    blur: float = 0.0  # Gaussian blur radius of the rendered text
    center: tuple[float, float] = (0.5, 0.5)  # relative (x, y) of the instance's centre


@dataclass
class StyleRanges:
    """Ranges :func:`sample_style` draws from (sizes relative to the image's shorter side)."""

    instances: tuple[int, int] = (1, 4)
    chars: tuple[int, int] = (2, 8)
    size: tuple[float, float] = (0.12, 0.3)
    rotation: tuple[float, float] = (-20.0, 20.0)
    opacity: tuple[float, float] = (0.75, 1.0)
    stroke_probability: float = 0.3
    stroke_width: tuple[int, int] = (1, 3)
    shadow_probability: float = 0.3
    shadow_blur: tuple[float, float] = (0.0, 2.5)
    blur_probability: float = 0.3
    blur: tuple[float, float] = (0.3, 1.0)
    min_contrast: float = 80.0  # minimum distance (0-255 RGB) between text and background colour
    alphabet: str = string.ascii_letters + string.digits


def from_overrides(cls: type, overrides: dict[str, Any] | None, what: str):
    """The dataclass ``cls`` with ``overrides`` (config lists become tuples); unknown keys are an error
    that names ``what`` and the known keys."""
    known = set(cls.__dataclass_fields__)
    unknown = set(overrides or {}) - known
    if unknown:
        raise ValueError(f"unknown {what} {sorted(unknown)}; known: {sorted(known)}")
    return cls(**{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in (overrides or {}).items()})


def make_ranges(overrides: dict[str, Any]) -> StyleRanges:
    """:class:`StyleRanges` with ``overrides`` (lists become tuples); unknown keys are an error."""
    return from_overrides(StyleRanges, overrides, "style ranges")


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of sample ``index`` of ``split``: every synthetic sample is a function of these three."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLIT_IDS[split], index]))


# ------------------------------------------------------------------------------------ backgrounds
BACKGROUND_KINDS = {"gradient": 0.45, "noise": 0.4, "flat": 0.15}


def generate_background(
    rng: np.random.Generator,
    height: int,
    width: int,
    kinds: dict[str, float] | None = None,
    shapes_probability: float = 0.5,
) -> np.ndarray:
    """A procedural background (float HxWx3, 0-255): a linear gradient, smooth colour noise or a flat
    colour (drawn with the weights ``kinds``), with random shapes on top with ``shapes_probability``."""
    kinds = kinds or BACKGROUND_KINDS
    weights = np.array([kinds.get(k, 0.0) for k in BACKGROUND_KINDS], dtype=np.float64)
    if weights.sum() <= 0 or set(kinds) - set(BACKGROUND_KINDS):
        raise ValueError(f"background kinds must weigh some of {sorted(BACKGROUND_KINDS)}, got {kinds}")
    kind = rng.choice(list(BACKGROUND_KINDS), p=weights / weights.sum())
    if kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        t = np.cos(angle) * xx / width + np.sin(angle) * yy / height
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        background = alpha_blend(uniform_color(rng), uniform_color(rng), t[..., None])
    elif kind == "noise":
        cells = int(rng.integers(2, 9))
        coarse = rng.uniform(0, 255, size=(cells, cells, 3)).astype(np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float32)
        base = uniform_color(rng)
        background = base + (smooth - smooth.mean(axis=(0, 1))) * rng.uniform(0.2, 0.8)
    else:
        background = np.broadcast_to(uniform_color(rng), (height, width, 3)).astype(np.float32)
    if rng.random() < shapes_probability:
        background = _draw_shapes(rng, background)
    background = background + rng.normal(0, rng.uniform(0, 4), size=background.shape)
    return np.clip(background, 0, 255).astype(np.float32)


def _draw_shapes(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    height, width = background.shape[:2]
    canvas = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(1, 5))):
        x0, x1 = sorted(rng.uniform(-0.2, 1.2, size=2) * width)
        y0, y1 = sorted(rng.uniform(-0.2, 1.2, size=2) * height)
        color = tuple(int(c) for c in uniform_color(rng))
        shape = rng.choice(["rectangle", "ellipse", "line"])
        if shape == "rectangle":
            draw.rectangle((x0, y0, x1, y1), fill=color)
        elif shape == "ellipse":
            draw.ellipse((x0, y0, x1, y1), fill=color)
        else:
            draw.line((x0, y0, x1, y1), fill=color, width=int(rng.integers(1, max(2, height // 16))))
    return np.asarray(canvas, dtype=np.float32)


def load_background(path: Path, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random crop of a user background, resized to ``height`` x ``width``."""
    image = read_image(path)
    h, w = image.shape[:2]
    scale = rng.uniform(0.5, 1.0)
    ch, cw = max(1, int(h * scale)), max(1, int(w * scale))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    crop = Image.fromarray(image[y : y + ch, x : x + cw]).resize((width, height), Image.BICUBIC)
    return np.asarray(crop, dtype=np.float32)


# ------------------------------------------------------------------------------------------ styles
def sample_style(
    rng: np.random.Generator, ranges: StyleRanges, fonts: Sequence[str], background: np.ndarray
) -> TextStyle:
    """Draw one :class:`TextStyle` from ``ranges``; colours contrast with the local background."""
    height, width = background.shape[:2]
    short = min(height, width)
    center = (float(rng.uniform(0.15, 0.85)), float(rng.uniform(0.15, 0.85)))
    cy, cx = int(center[1] * (height - 1)), int(center[0] * (width - 1))
    local = background[max(0, cy - 4) : cy + 5, max(0, cx - 4) : cx + 5].reshape(-1, 3).mean(axis=0)
    color = contrasting_color(rng, local, ranges.min_contrast, uniform_color)
    n_chars = int(rng.integers(ranges.chars[0], ranges.chars[1] + 1))
    style = TextStyle(
        text="".join(rng.choice(list(ranges.alphabet), size=n_chars)),
        font=str(rng.choice(list(fonts))),
        size=max(6, int(rng.uniform(*ranges.size) * short)),
        color=color,
        rotation=float(rng.uniform(*ranges.rotation)),
        opacity=float(rng.uniform(*ranges.opacity)),
        center=center,
    )
    if rng.random() < ranges.stroke_probability:
        style.stroke_width = int(rng.integers(ranges.stroke_width[0], ranges.stroke_width[1] + 1))
        style.stroke_color = contrasting_color(
            rng, np.asarray(color, dtype=np.float64), ranges.min_contrast, uniform_color
        )
    if rng.random() < ranges.shadow_probability:
        style.shadow = True
        style.shadow_offset = (int(rng.integers(-3, 4)), int(rng.integers(1, 4)))
        style.shadow_color = tuple(int(c) for c in rng.uniform(0, 80, size=3))
        style.shadow_blur = float(rng.uniform(*ranges.shadow_blur))
        style.shadow_opacity = float(rng.uniform(0.4, 0.8))
    if rng.random() < ranges.blur_probability:
        style.blur = float(rng.uniform(*ranges.blur))
    return style


# ---------------------------------------------------------------------------------------- rendering
def render_text_layer(style: TextStyle) -> np.ndarray:
    """The instance as a float RGBA array (0-255 colour, 0-1 alpha), rotated, blurred, with opacity."""
    font = load_font(style.font, style.size)
    pad = style.stroke_width + 2 + int(np.ceil(style.blur * 2))
    left, top, right, bottom = font.getbbox(style.text, stroke_width=style.stroke_width)
    layer = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad), (0, 0, 0, 0))
    ImageDraw.Draw(layer).text(
        (pad - left, pad - top),
        style.text,
        font=font,
        fill=(*style.color, 255),
        stroke_width=style.stroke_width,
        stroke_fill=(*style.stroke_color, 255),
    )
    if style.rotation:
        layer = layer.rotate(style.rotation, resample=Image.BICUBIC, expand=True)
    if style.blur > 0:
        layer = layer.filter(ImageFilter.GaussianBlur(style.blur))
    rgba = np.asarray(layer, dtype=np.float32).copy()
    rgba[..., 3] = rgba[..., 3] / 255.0 * style.opacity
    return rgba


def _shadow_layer(rgba: np.ndarray, style: TextStyle) -> np.ndarray:
    alpha = Image.fromarray(np.clip(rgba[..., 3] * 255, 0, 255).astype(np.uint8))
    if style.shadow_blur > 0:
        alpha = alpha.filter(ImageFilter.GaussianBlur(style.shadow_blur))
    shadow = np.empty_like(rgba)
    shadow[..., :3] = style.shadow_color
    shadow[..., 3] = np.asarray(alpha, dtype=np.float32) / 255.0 * style.shadow_opacity
    return shadow


def _paste(canvas: np.ndarray, coverage: np.ndarray, rgba: np.ndarray, x0: int, y0: int) -> None:
    """Alpha-blend ``rgba`` onto ``canvas`` at (x0, y0), clipped; accumulate alpha in ``coverage``."""
    h, w = rgba.shape[:2]
    H, W = canvas.shape[:2]
    ys, xs = slice(max(0, y0), min(H, y0 + h)), slice(max(0, x0), min(W, x0 + w))
    if ys.start >= ys.stop or xs.start >= xs.stop:
        return
    part = rgba[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
    alpha = part[..., 3:4]
    canvas[ys, xs] = alpha_blend(canvas[ys, xs], part[..., :3], alpha)
    coverage[ys, xs] = np.maximum(coverage[ys, xs], alpha[..., 0])


def render_scene(
    background: np.ndarray, styles: Sequence[TextStyle], alpha_threshold: float = 0.03
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Render ``styles`` onto ``background`` (float HxWx3, 0-255).

    Returns the composited image and one boolean coverage map per instance (pixels whose alpha, text
    or shadow, exceeds ``alpha_threshold``); instances entirely outside the image get an empty map.
    """
    canvas = background.astype(np.float32).copy()
    height, width = canvas.shape[:2]
    coverages = []
    for style in styles:
        rgba = render_text_layer(style)
        h, w = rgba.shape[:2]
        x0 = int(round(style.center[0] * (width - 1) - w / 2))
        y0 = int(round(style.center[1] * (height - 1) - h / 2))
        coverage = np.zeros((height, width), dtype=np.float32)
        if style.shadow:
            dx, dy = style.shadow_offset
            _paste(canvas, coverage, _shadow_layer(rgba, style), x0 + dx, y0 + dy)
        _paste(canvas, coverage, rgba, x0, y0)
        coverages.append(coverage > alpha_threshold)
    return canvas, coverages


# ----------------------------------------------------------------------------------------- dataset
class SyntheticTextDataset(SampleDataset):
    """``num_samples`` deterministic samples of rendered text (see the module docstring)."""

    def __init__(
        self,
        num_samples: int,
        size: int | Sequence[int] = 128,
        seed: int = 0,
        split: str = "train",
        ranges: StyleRanges | dict | None = None,
        font_dir: str | None = None,
        background_dir: str | None = None,
        mask_dilation: int = 1,
        background_kinds: dict[str, float] | None = None,
        shapes_probability: float = 0.5,
    ):
        super().__init__("raise")
        self.num_samples = num_samples
        self.height, self.width = (size, size) if isinstance(size, int) else tuple(size)
        self.seed = seed
        self.split = split
        self.ranges = ranges if isinstance(ranges, StyleRanges) else make_ranges(ranges or {})
        self.fonts = find_fonts(font_dir)
        self.backgrounds = list(list_images(Path(background_dir)).values()) if background_dir else []
        if background_dir and not self.backgrounds:
            raise FileNotFoundError(
                f"background_dir {background_dir} holds no images ({', '.join(('.png', '.jpg'))} ...)"
            )
        self.mask_dilation = mask_dilation
        self.background_kinds = dict(background_kinds or BACKGROUND_KINDS)
        self.shapes_probability = shapes_probability
        generate_background(np.random.default_rng(0), 2, 2, self.background_kinds)  # validate early

    def __len__(self) -> int:
        return self.num_samples

    def rng(self, index: int) -> np.random.Generator:
        return sample_rng(self.seed, self.split, index)

    def scene(self, index: int) -> tuple[np.ndarray, list[TextStyle]]:
        """The background and the text styles of sample ``index`` (before rendering)."""
        rng = self.rng(index)
        if self.backgrounds and rng.random() < 0.7:
            background = load_background(
                self.backgrounds[int(rng.integers(len(self.backgrounds)))], rng, self.height, self.width
            )
        else:
            background = generate_background(
                rng, self.height, self.width, self.background_kinds, self.shapes_probability
            )
        count = int(rng.integers(self.ranges.instances[0], self.ranges.instances[1] + 1))
        return background, [sample_style(rng, self.ranges, self.fonts, background) for _ in range(count)]

    def load(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_samples:
            raise IndexError(index)
        background, styles = self.scene(index)
        image, coverages = render_scene(background, styles)
        boxes = []
        mask = np.zeros(background.shape[:2], dtype=bool)
        for coverage in coverages:
            ys, xs = np.nonzero(coverage)
            if len(ys):
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                mask |= coverage
        mask = dilate_mask(torch.from_numpy(mask.astype(np.float32)), self.mask_dilation).numpy() > 0
        return {
            "image": to_tensor(np.clip(np.rint(image), 0, 255).astype(np.uint8)),
            "target": to_tensor(np.clip(np.rint(background), 0, 255).astype(np.uint8)),
            "mask": torch.from_numpy(mask[None].astype(np.float32)),
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "name": f"synthetic_{self.split}_{index:06d}",
        }


class SyntheticTextDataModule(GeneratedDataModule):
    """Rendered text on generated (or user) backgrounds; train samples vary, val/test are fixed."""

    dataset_class = SyntheticTextDataset

    def __init__(
        self,
        size: int | Sequence[int] = 128,
        train_samples: int = 4000,
        val_samples: int = 64,
        test_samples: int = 64,
        seed: int = 0,
        ranges: dict | None = None,
        font_dir: str | None = None,
        background_dir: str | None = None,
        mask_dilation: int = 1,
        background_kinds: dict[str, float] | None = None,
        shapes_probability: float = 0.5,
        **loader_kwargs: Any,
    ):
        super().__init__(train_samples, val_samples, test_samples, **loader_kwargs)
        self.dataset_kwargs = self.dataset_arguments()
