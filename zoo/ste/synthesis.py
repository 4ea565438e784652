"""STE's style-aware text synthesis (Sec. 3.2): new text drawn onto a real image, whose original
pixels are then the ground truth for the added text.

For each placement (where the new text goes, its string, the original font size and direction, and
candidate colours), one style — the 18 decisions of :mod:`zoo.ste.policy` — decides how it is drawn:

* **copy** (``T=0``, original text larger than 20 px, a source text box known): the real strokes of the
  placement's source box are found with MSER (OpenCV; the official detector parameters and filtering:
  regions wider/taller than two characters or larger than 30 % of the box are dropped, nested regions
  are merged into the largest) and pasted at the new position, offset by (−5, −10) px as the official code;
* **render** (otherwise): the string is drawn with font ``F`` at a size chosen by ``S`` relative to the
  original (smaller by 3–14, equal, larger by 3–14, larger by 8–22, smaller by 8–22), colour ``C`` from
  the candidates, feathering ``Gau`` (Gaussian blur of the glyph alpha, the official levels), optional
  italic (shear), curved baseline (characters on a parabola, each rotated to its tangent), random 0–3 px
  character spacing, vertical layout for vertical originals; art effects when the text is larger than
  20 px: a stroke (colour rule ``A1_C``: contrasting black/white, random, or blended with the background;
  width 2/5/7/9 px) and a shadow (angle π/4·(``A2_R`` ± 0.5), distance from ``A2_D``'s range, colour
  black/random/darkened background, blur 0/6/9/12/15, opacity 1/.9/.7/.5/.3); ``Poi`` blends the result
  into the image with Poisson image editing (``cv2.seamlessClone``).

Placements come from the dataset's annotations (PosterErase's ``place`` field: OCR'd strings and sizes,
five candidate anchors with candidate colours; anchor 0 is used, as the official adversarial training)
or, without them, from the real text boxes (each box gets a new string of similar size somewhere else,
colours estimated from the box and the new neighbourhood), or, on a clean image, from random sizes and
positions. The synthetic-text mask is derived from the rendered difference as the official
``get_mask``: grayscale |Δ| >= 20, then bounding rectangles (``mask_mode="boxes"``, posters) or rotated
rectangles (``"rotated"``, scene text) of the changed regions, or the changed pixels (``"pixels"``);
regions under 20 px² are dropped; the mask is dilated by ``mask_dilation`` (3x3 = the official erosion
of the white-background mask).

Fonts: Pillow's built-in font plus every font under ``font_dir``. The official 12 fonts (Alibaba
PuHuiTi, FZ*, JCyuan) are not redistributable; put them in one folder and pass it as ``font_dir``:
files named as in :data:`OFFICIAL_FONTS` are ordered like the official list, so ``F`` means the same font.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw

from zoo.imaging.colors import Color, alpha_blend, contrasting_color
from zoo.imaging.fonts import find_fonts, load_font

__all__ = [
    "Placement",
    "TextSynthesizer",
    "extract_strokes",
    "synthetic_text_mask",
    "parse_place",
    "placements_from_boxes",
    "OFFICIAL_FONTS",
]

OFFICIAL_FONTS = (
    "Alibaba-PuHuiTi-B.ttf",
    "Alibaba-PuHuiTi-Medium.ttf",
    "Alibaba-PuHuiTi-Regular.ttf",
    "Alibaba-PuHuiTi-H.ttf",
    "FZBaiZRZTJW.TTF",
    "FZFWTongQPOPTJW.TTF",
    "FZFWZhuZLSHTJWB.TTF",
    "Alibaba-PuHuiTi-Light.ttf",
    "FZHuaSJSJW-R.TTF",
    "FZLiuBSLSJW.TTF",
    "FZsong.ttf",
    "JCyuan.ttf",
)
ART_MIN_SIZE = 20  # art effects (and copying) only for text larger than this (official base_size)
STROKE_WIDTHS = (2, 5, 7, 9, 11, 14)
SHADOW_SHIFTS = (1, 3, 5, 7, 9, 12, 15, 18)
SHADOW_BLURS = (0, 6, 9, 12, 15)
SHADOW_OPACITIES = (1.0, 0.9, 0.7, 0.5, 0.3)
COPY_OFFSET = (-5, -10)  # official paste anchor (x − 5, y − 10)


@dataclass
class Placement:
    """One piece of new text: where (top-left), what, how big the original was, candidate colours."""

    text: str
    size: int
    x: int
    y: int
    vertical: bool = False
    colors: list[Color] = field(default_factory=list)
    source_box: tuple[int, int, int, int] | None = None  # x1, y1, x2, y2 of real text to copy strokes from


# ------------------------------------------------------------------------------------- placements
def _parse_color(value: Any) -> Color:
    parts = [int(float(v)) for v in str(value).split(",")[:3]]
    if len(parts) != 3:
        raise ValueError(f"a colour must be 'r,g,b', got {value!r}")
    return tuple(int(np.clip(v, 0, 255)) for v in parts)  # type: ignore[return-value]


def parse_place(
    place: dict, boxes: np.ndarray, scale: tuple[float, float] = (1.0, 1.0), index: int = 0
) -> list[Placement]:
    """PosterErase ``place`` -> placements for anchor set ``index``; coordinates and sizes are scaled by
    ``scale`` (x, y) to the training size. Object j copies from real box j (``boxes`` xyxy, training size)."""
    anchors = place.get("text") or []
    if not anchors:
        return []
    anchor_set = anchors[min(index, len(anchors) - 1)]
    objects = [o for o in str(place.get("obj", "")).split(";")]
    sx, sy = scale
    placements = []
    for j, anchor in enumerate(anchor_set):
        if j >= len(objects):
            break
        fields = objects[j].split(",")
        if len(fields) < 3:
            continue
        text, size, direction = ",".join(fields[:-2]), fields[-2], fields[-1]
        if not text:
            continue
        try:
            x, y, colors = anchor[0], anchor[1], anchor[2]
            size_px = float(size)
            vertical = int(float(direction)) == 1
        except (IndexError, TypeError, ValueError):
            raise ValueError(
                f"place: object {j} must be 'text,size,direction' with an anchor [x, y, ['r,g,b', ...]]; "
                f"got {objects[j]!r}, {anchor!r}"
            ) from None
        source = tuple(int(v) for v in boxes[j]) if j < len(boxes) else None
        placements.append(
            Placement(
                text,
                max(1, int(round(size_px * math.sqrt(sx * sy)))),
                int(round(float(x) * sx)),
                int(round(float(y) * sy)),
                vertical,
                [_parse_color(c) for c in colors],
                source,  # type: ignore[arg-type]
            )
        )
    return placements


def _local_color(image: np.ndarray, x: int, y: int, radius: int = 4) -> np.ndarray:
    h, w = image.shape[:2]
    x, y = int(np.clip(x, 0, w - 1)), int(np.clip(y, 0, h - 1))
    return image[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1].reshape(-1, 3).mean(0)


def _text_color(image: np.ndarray, box: Sequence[int], rng: np.random.Generator) -> Color:
    """Colour of the strokes in a text box: the median of the pixels far from the box border's median."""
    x1, y1, x2, y2 = (int(v) for v in box)
    crop = image[max(0, y1) : max(y1 + 1, y2), max(0, x1) : max(x1 + 1, x2)].reshape(-1, 3).astype(np.float32)
    if len(crop) == 0:
        return contrasting_color(rng, np.full(3, 127.0))
    border = np.concatenate(
        [image[max(0, y1), max(0, x1) : x2], image[min(image.shape[0] - 1, y2 - 1), max(0, x1) : x2]]
    ).reshape(-1, 3)
    background = np.median(border, axis=0) if len(border) else np.median(crop, axis=0)
    far = crop[np.linalg.norm(crop - background, axis=1) > 40]
    if not len(far):
        return contrasting_color(rng, background)
    return tuple(int(c) for c in np.median(far, axis=0))  # type: ignore[return-value]


def placements_from_boxes(
    image: np.ndarray,
    boxes: np.ndarray,
    rng: np.random.Generator,
    alphabet: str,
    max_instances: int = 4,
    size_range: tuple[float, float] = (0.08, 0.2),
) -> list[Placement]:
    """Placements without annotations: one per real text box (same size and direction, a new string, a
    new position, colours [the box's text colour, a contrasting colour, a random one]); on an image
    without text boxes 1–3 placements with sizes ``size_range`` of the shorter side."""
    height, width = image.shape[:2]
    specs = []
    for box in boxes[:max_instances]:
        x1, y1, x2, y2 = (int(v) for v in box)
        w, h = max(1, x2 - x1), max(1, y2 - y1)
        vertical = h > 1.5 * w
        size = max(8, min(w, h) if vertical else h)
        specs.append((size, vertical, max(1, round((h if vertical else w) / size)), (x1, y1, x2, y2)))
    if not specs:
        for _ in range(int(rng.integers(1, 4))):
            size = max(8, int(rng.uniform(*size_range) * min(height, width)))
            specs.append((size, False, int(rng.integers(2, 8)), None))
    placements = []
    for size, vertical, chars, box in specs:
        chars = int(np.clip(chars, 1, 12))
        extent_w, extent_h = (size, size * chars) if vertical else (int(size * 0.6 * chars), size)
        x = int(rng.integers(0, max(1, width - extent_w)))
        y = int(rng.integers(0, max(1, height - extent_h)))
        local = _local_color(image, x + extent_w // 2, y + extent_h // 2)
        colors = [
            _text_color(image, box, rng) if box is not None else contrasting_color(rng, local),
            contrasting_color(rng, local),
            tuple(int(c) for c in rng.integers(0, 256, 3)),
        ]
        text = "".join(rng.choice(list(alphabet), size=chars))
        placements.append(Placement(text, int(size), x, y, vertical, colors, box))  # type: ignore[arg-type]
    return placements


# --------------------------------------------------------------------------------------- rendering
def _font_size(original: int, mode: int, rng: np.random.Generator) -> int:
    """The official size modes: smaller by 3–14, equal, larger by 3–14, larger by 8–22, smaller by 8–22."""
    if mode == 0:
        return max(9, original - 3 - int(rng.random() * 12))
    if mode == 2:
        return original + 3 + int(rng.random() * 12)
    if mode == 3:
        return original + 8 + int(rng.random() * 15)
    if mode == 4:
        return max(6, original - 8 - int(rng.random() * 15))
    return original


def _feather(alpha: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """The official feathering levels of the glyph alpha (0: none, 1: 1x1 σ .25, 2: 3x3, 3: 5x5)."""
    if level <= 1:
        return alpha  # level 1 is a 1x1 kernel: the identity
    if level == 2:
        return cv2.GaussianBlur(alpha, (3, 3), max(0.30, 0.5 + 0.1 * rng.standard_normal()))
    return cv2.GaussianBlur(alpha, (5, 5), max(0.5, 1.5 + 0.5 * rng.standard_normal()))


def glyph_alpha(
    text: str, font_path: str, size: int, vertical: bool, italic: bool, curved: bool, rng: np.random.Generator
) -> np.ndarray:
    """The text's coverage (float HxW in [0,1]), laid out character by character (random 0–3 px
    spacing; vertical stacking; curved: on a parabola, each character rotated to the tangent;
    italic: 0.25 shear)."""
    font = load_font(font_path, size)
    chars = list(text.strip()) or ["?"]
    glyphs = []
    for char in chars:
        left, top, right, bottom = font.getbbox(char)
        w, h = (max(1, right - left), max(1, bottom - top)) if not char.isspace() else (max(1, size // 3), 1)
        layer = Image.new("L", (w + 2, h + 2), 0)
        ImageDraw.Draw(layer).text((1 - left, 1 - top), char, font=font, fill=255)
        glyphs.append((layer, top))
    positions, cursor = [], 0
    for glyph, _ in glyphs:
        positions.append(cursor)
        cursor += (glyph.height if vertical else glyph.width) + int(rng.integers(0, 4))
    length = max(cursor, 1)
    bend = float(rng.uniform(0.15, 0.35)) * size * (1 if rng.random() < 0.5 else -1) if curved and not vertical else 0.0
    margin = int(abs(bend)) + size // 2 + 4
    canvas = Image.new(
        "L",
        (
            (size + 2 * margin) if vertical else (length + 2 * margin),
            (length + 2 * margin) if vertical else (size + 2 * margin),
        ),
        0,
    )
    for (glyph, top), position in zip(glyphs, positions):
        if vertical:
            canvas.paste(255, (margin + (size - glyph.width) // 2, margin + position), glyph)
            continue
        offset_y = margin + top  # keeps the baseline (descenders below it)
        if bend:
            t = (position + glyph.width / 2) / length * 2 - 1  # -1 .. 1 along the line
            offset_y += int(round(bend * (t * t - 1)))
            angle = -math.degrees(math.atan(2 * bend * t * 2 / length))
            glyph = glyph.rotate(angle, resample=Image.BICUBIC, expand=True)
        canvas.paste(255, (margin + position, offset_y), glyph)
    alpha = np.asarray(canvas, dtype=np.float32) / 255.0
    if italic:
        shear = 0.25
        h, w = alpha.shape
        matrix = np.float32([[1, -shear, shear * h], [0, 1, 0]])
        alpha = cv2.warpAffine(alpha, matrix, (w + int(shear * h) + 1, h), flags=cv2.INTER_LINEAR)
    ys, xs = np.nonzero(alpha > 0)
    if len(ys) == 0:
        return np.zeros((1, 1), np.float32)
    return alpha[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _place_layer(layer: np.ndarray, height: int, width: int, x: int, y: int) -> np.ndarray:
    """``layer`` (h,w) placed with its top-left at (x, y) on an empty HxW map (clipped)."""
    out = np.zeros((height, width), np.float32)
    h, w = layer.shape
    ys, xs = slice(max(0, y), min(height, y + h)), slice(max(0, x), min(width, x + w))
    if ys.start < ys.stop and xs.start < xs.stop:
        out[ys, xs] = layer[ys.start - y : ys.stop - y, xs.start - x : xs.stop - x]
    return out


def _shift(alpha: np.ndarray, dx: int, dy: int) -> np.ndarray:
    return cv2.warpAffine(alpha, np.float32([[1, 0, dx], [0, 1, dy]]), (alpha.shape[1], alpha.shape[0]))


def _poisson(result: np.ndarray, original: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Poisson-blend ``result`` into ``original`` inside ``region`` (padded so it never touches the border)."""
    if not region.any():
        return result
    pad = 4
    src = cv2.copyMakeBorder(np.clip(result, 0, 255).astype(np.uint8), pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    dst = cv2.copyMakeBorder(np.clip(original, 0, 255).astype(np.uint8), pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    mask = np.zeros(src.shape[:2], np.uint8)
    mask[pad:-pad, pad:-pad] = region.astype(np.uint8) * 255
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    center = ((x0 + x1) // 2, (y0 + y1) // 2)
    patch, patch_mask = src[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    blended = cv2.seamlessClone(patch, dst, patch_mask, center, cv2.NORMAL_CLONE)
    return blended[pad:-pad, pad:-pad].astype(np.float32)


def extract_strokes(image: np.ndarray, box: Sequence[int], n_chars: int) -> tuple[np.ndarray, np.ndarray]:
    """The copy mechanism's stroke extraction (official ``img_mser``): MSER regions in the box (margin
    1 px in x, 2 px in y) -> (crop HxWx3, stroke mask HxW bool)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    crop = image[max(0, y1 - 2) : min(image.shape[0] - 1, y2 + 2), max(0, x1 - 1) : min(image.shape[1] - 1, x2 + 1)]
    strokes = np.zeros(crop.shape[:2], bool)
    if crop.size == 0:
        return crop, strokes
    vertical = (y2 - y1) > (x2 - x1)
    gray = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
    regions, _ = cv2.MSER_create(7, 5, 14400, 0.5).detectRegions(gray)
    candidates = []
    for points in regions:
        x, y, w, h = cv2.boundingRect(cv2.convexHull(points.reshape(-1, 1, 2)))
        if (not vertical and w > 2 * crop.shape[1] / n_chars) or (vertical and h > 2 * crop.shape[0] / n_chars):
            continue  # wider (taller) than two characters
        if w * h > crop.shape[0] * crop.shape[1] * 0.3:
            continue
        candidates.append((w * h, (x, y, w, h), points))
    kept: list[tuple[int, int, int, int]] = []
    for _, (x, y, w, h), points in sorted(candidates, key=lambda c: -c[0]):
        if any(x > kx - 2 and y > ky - 2 and x + w < kx + kw + 2 and y + h < ky + kh + 2 for kx, ky, kw, kh in kept):
            continue  # nested in a region already taken
        kept.append((x, y, w, h))
        strokes[points[:, 1], points[:, 0]] = True
    return crop, strokes


def synthetic_text_mask(
    original: np.ndarray,
    synthesized: np.ndarray,
    mode: str = "boxes",
    threshold: float = 20.0,
    min_area: int = 20,
    dilation: int = 3,
) -> np.ndarray:
    """Where text was added (bool HxW): grayscale |Δ| >= ``threshold``; then per changed region its
    bounding rectangle (``boxes``), rotated rectangle (``rotated``) or its pixels (``pixels``); regions
    under ``min_area`` px² dropped; dilated by a ``dilation`` x ``dilation`` square (official ``get_mask``)."""
    original, synthesized = (
        cv2.cvtColor(np.clip(a, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
        for a in (original, synthesized)
    )
    changed = (np.abs(original - synthesized) >= threshold).astype(np.uint8)
    if mode == "pixels":
        mask = changed
    elif mode in ("boxes", "rotated"):
        mask = np.zeros_like(changed)
        contours, _ = cv2.findContours(changed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for contour in contours:
            if mode == "boxes":
                x, y, w, h = cv2.boundingRect(contour)
                if w * h >= min_area:
                    mask[y : y + h, x : x + w] = 1
            else:
                corners = cv2.boxPoints(cv2.minAreaRect(contour))
                w, h = np.linalg.norm(corners[0] - corners[1]), np.linalg.norm(corners[1] - corners[2])
                if w * h >= min_area:
                    cv2.fillPoly(mask, [np.round(corners).astype(np.int32)], 1)
    else:
        raise ValueError(f"mask_mode must be boxes, rotated or pixels, got {mode!r}")
    if dilation > 1:
        mask = cv2.dilate(mask, np.ones((dilation, dilation), np.uint8))
    return mask.astype(bool)


# --------------------------------------------------------------------------------------- synthesizer
class TextSynthesizer:
    """Draws placements onto an image with a policy's style (see the module docstring)."""

    def __init__(
        self,
        font_dir: str | None = None,
        mask_mode: str = "boxes",
        mask_threshold: float = 20.0,
        mask_min_area: int = 20,
        mask_dilation: int = 3,
        placement_index: int = 0,
        max_instances: int = 4,
        alphabet: str = string.ascii_letters + string.digits,
    ):
        fonts = find_fonts(font_dir)
        order = {name.lower(): i for i, name in enumerate(OFFICIAL_FONTS)}
        self.fonts = sorted(
            fonts, key=lambda f: (order.get(Path(f).name.lower(), len(order)), f)
        )  # official order first
        if mask_mode not in ("boxes", "rotated", "pixels"):
            raise ValueError(f"mask_mode must be boxes, rotated or pixels, got {mask_mode!r}")
        self.mask_options = dict(
            mode=mask_mode, threshold=mask_threshold, min_area=mask_min_area, dilation=mask_dilation
        )
        self.placement_index, self.max_instances, self.alphabet = placement_index, max_instances, alphabet

    def placements(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        place: dict | None,
        scale: tuple[float, float],
        rng: np.random.Generator,
    ) -> list[Placement]:
        if place:
            found = parse_place(place, boxes, scale, self.placement_index)
            if found:
                return found
        return placements_from_boxes(image, boxes, rng, self.alphabet, self.max_instances)

    def __call__(
        self,
        image: np.ndarray,
        style: dict[str, int],
        rng: np.random.Generator,
        boxes: np.ndarray | None = None,
        place: dict | None = None,
        scale: tuple[float, float] = (1.0, 1.0),
    ) -> tuple[np.ndarray, np.ndarray]:
        """uint8 HxWx3 image -> (image with new text uint8, synthetic-text mask bool HxW)."""
        boxes = np.zeros((0, 4)) if boxes is None else np.asarray(boxes).reshape(-1, 4)
        canvas = image.astype(np.float32)
        for placement in self.placements(image, boxes, place, scale, rng):
            canvas = self.draw(canvas, placement, style, rng)
        result = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
        return result, synthetic_text_mask(image, result, **self.mask_options)

    def draw(
        self, canvas: np.ndarray, placement: Placement, style: dict[str, int], rng: np.random.Generator
    ) -> np.ndarray:
        """One placement onto ``canvas`` (float HxWx3) with ``style``."""
        if style["T"] == 0 and placement.size > ART_MIN_SIZE and placement.source_box is not None:
            return self.copy(canvas, placement)
        return self.render(canvas, placement, style, rng)

    @staticmethod
    def copy(canvas: np.ndarray, placement: Placement) -> np.ndarray:
        crop, strokes = extract_strokes(
            np.clip(canvas, 0, 255).astype(np.uint8), placement.source_box, max(1, len(placement.text))
        )  # type: ignore[arg-type]
        x0, y0 = max(placement.x + COPY_OFFSET[0], 0), max(placement.y + COPY_OFFSET[1], 0)
        h, w = min(crop.shape[0], canvas.shape[0] - y0), min(crop.shape[1], canvas.shape[1] - x0)
        if h <= 0 or w <= 0:
            return canvas
        canvas = canvas.copy()
        region = canvas[y0 : y0 + h, x0 : x0 + w]
        region[strokes[:h, :w]] = crop[:h, :w][strokes[:h, :w]]
        return canvas

    def render(
        self, canvas: np.ndarray, placement: Placement, style: dict[str, int], rng: np.random.Generator
    ) -> np.ndarray:
        height, width = canvas.shape[:2]
        colors = placement.colors or [contrasting_color(rng, _local_color(canvas, placement.x, placement.y))]
        color = np.asarray(colors[min(style["C"], len(colors) - 1)], np.float32)
        size = _font_size(placement.size, style["S"], rng)
        font = self.fonts[style["F"] % len(self.fonts)]
        glyphs = glyph_alpha(
            placement.text, font, size, placement.vertical, bool(style["Ital"]), bool(style["Cur"]), rng
        )
        text = _feather(_place_layer(glyphs, height, width, placement.x, placement.y), style["Gau"], rng)
        background = _local_color(canvas, placement.x, placement.y, radius=0)
        result, covered = canvas, text
        if style["A"] == 1 and size > ART_MIN_SIZE:
            stroke = None
            if style["A1"] == 1:
                kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * STROKE_WIDTHS[style["A1_S"]] + 1,) * 2)
                stroke = cv2.dilate(text, kernel)
                stroke_color = self._stroke_color(style["A1_C"], color, background, rng)
            if style["A2"] == 1:
                theta = math.pi / 4 * (style["A2_R"] + rng.random() - 0.5)
                shift = int(rng.integers(SHADOW_SHIFTS[style["A2_D"]], SHADOW_SHIFTS[style["A2_D"] + 1]))
                shadow = text if stroke is None else np.maximum(text, stroke)
                blur = SHADOW_BLURS[style["A2_G"]]
                if blur:
                    shadow = cv2.GaussianBlur(shadow, (0, 0), blur / 3)
                shadow = (
                    _shift(shadow, int(round(shift * math.sin(theta))), int(round(-shift * math.cos(theta))))
                    * SHADOW_OPACITIES[style["A2_A"]]
                )
                shadow_color = (
                    (0, 0, 0)
                    if style["A2_C"] == 0
                    else (tuple(rng.integers(0, 256, 3)) if style["A2_C"] == 1 else 0.35 * background)
                )
                result = alpha_blend(result, np.asarray(shadow_color, np.float32), shadow[..., None])
                covered = np.maximum(covered, shadow)
            if stroke is not None:
                result = alpha_blend(result, np.asarray(stroke_color, np.float32), stroke[..., None])
                covered = np.maximum(covered, stroke)
        result = alpha_blend(result, np.asarray(color, np.float32), text[..., None])
        if style["Poi"] == 1:
            region = cv2.dilate((covered > 0.02).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            result = _poisson(result, canvas, region)
        return result

    @staticmethod
    def _stroke_color(rule: int, color: np.ndarray, background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """0: white on dark text, black on light text (official luminance weights); 1: random; 2: 30 % text
        colour + 70 % background."""
        if rule == 1:
            return rng.integers(0, 256, 3).astype(np.float32)
        if rule == 2:
            return 0.3 * color + 0.7 * background
        dark = 0.11 * color[0] + 0.59 * color[1] + 0.3 * color[2] < 128
        return np.full(3, 255.0 if dark else 0.0, np.float32)
