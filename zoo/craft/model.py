"""CRAFT: Character Region Awareness For Text detection (Baek et al., CVPR 2019).

The network of clovaai/CRAFT-pytorch as EasyOCR ships it (``craft_mlt_25k.pth``):

* **Backbone**: VGG16 with batch norm, cut into the four slices of torchvision's ``vgg16_bn().features``
  numbering (``slice1`` = layers 0-11 up to conv2_2's batch norm, ``slice2`` = 12-18, ``slice3`` = 19-28,
  ``slice4`` = 29-38, each slice ending on a batch norm and the next one starting with its ReLU), then
  ``slice5``: max-pool 3/1/1, the dilated "fc6" convolution (1024 channels, 3x3, padding and dilation 6)
  and the 1x1 "fc7" convolution (1024).
* **U-shaped decoder**: four double convolutions (1x1 then 3x3, batch norm and ReLU after each) on the
  concatenation of the upsampled deeper map (bilinear, ``align_corners=False``) with the backbone map of
  the same size; ``conv_cls`` turns the 32 channels at half resolution into two scores.

Upstream's ReLUs are in-place, so the skip features that a following slice starts with a ReLU on
(conv2_2, conv3_2, conv4_2) reach the decoder rectified, while conv5_2's (followed by a max-pool) does
not; :meth:`VGG16BNBackbone.forward` applies those ReLUs explicitly and gives the same values.

Parameter names equal the official ones once DataParallel's ``module.`` prefix is stripped
(``basenet.slice1.0.weight``, ``upconv1.conv.0.weight``, ``conv_cls.0.weight``, ...), so the released
file loads with no remapping.

:meth:`CRAFT.forward` takes RGB in [0,1] and returns (B,2,H/2,W/2) scores: channel 0 the region (text)
score, channel 1 the affinity (link) score — upstream's ``y`` (B,H/2,W/2,2) channels-first, without its
second output (the decoder's 32-channel feature map, used by CRAFT's refiner only). :meth:`CRAFT.detect`
is EasyOCR's detection path (``detection.test_net``: ``imgproc.resize_aspect_ratio``,
``normalizeMeanVariance``, ``craft_utils.getDetBoxes`` and ``adjustResultCoordinates``), reimplemented here.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoo.imaging.images import to_uint8
from zoo.nn.modes import evaluating
from zoo.registry import register_model

__all__ = ["CRAFT", "DoubleConv", "VGG16BNBackbone", "boxes_from_scores", "craft", "fit_to_canvas", "polygon_from_box"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's vgg16_bn configuration up to conv5_2 (the last layer CRAFT uses): channels, "M" = 2x2 max-pool
VGG16_UP_TO_CONV5_2 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512)
SLICE_ENDS = (12, 19, 29, 39)  # slice k holds layers SLICE_ENDS[k-2]..SLICE_ENDS[k-1]-1 (torchvision numbering)
CANVAS_MULTIPLE = 32  # resize_aspect_ratio pads the canvas to a multiple of 32
SCORE_STRIDE = 2  # the scores are at half the canvas resolution
MIN_COMPONENT_AREA = 10  # connected components smaller than this (score-map pixels) are dropped
# getPoly_core's constants: pivot points per side, ..., and the search for the polygon's end lines
POLY_PIVOTS = 5
POLY_MAX_HEIGHT_RATIO = 0.7
POLY_EXPAND = 1.45
POLY_MAX_R = 2.0
POLY_STEP_R = 0.2


def _init_weights(modules) -> None:
    """Upstream's ``init_weights``: Xavier-uniform convolutions with zero bias, batch norm 1/0."""
    for module in modules:
        if isinstance(module, nn.Conv2d):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def _vgg16_bn_layers() -> list[nn.Module]:
    """VGG16-BN feature layers 0..38 in torchvision's order (conv, batch norm, ReLU per convolution),
    without the ReLU that would follow conv5_2's batch norm (upstream's slice4 ends on it)."""
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG16_UP_TO_CONV5_2:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.BatchNorm2d(item), nn.ReLU()]
            channels = item
    return layers[: SLICE_ENDS[-1]]


class VGG16BNBackbone(nn.Module):
    """CRAFT's ``basenet``: VGG16-BN slices 1-4 and the fc6/fc7 ``slice5``.

    ``forward(x)`` -> (fc7, conv5_2, conv4_2, conv3_2, conv2_2): 1024 channels at 1/16, 512 at 1/16, 512
    at 1/8, 256 at 1/4, 128 at 1/2 of the input size; all but conv5_2 rectified (see the module docstring).
    """

    def __init__(self):
        super().__init__()
        layers = _vgg16_bn_layers()
        for index, (start, end) in enumerate(zip((0, *SLICE_ENDS[:-1]), SLICE_ENDS), start=1):
            self.add_module(f"slice{index}", nn.Sequential(OrderedDict((str(i), layers[i]) for i in range(start, end))))
        self.slice5 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
            nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6),  # fc6, atrous
            nn.Conv2d(1024, 1024, kernel_size=1),  # fc7
        )
        _init_weights(self.modules())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        conv2 = self.slice1(x)
        conv3 = self.slice2(conv2)
        conv4 = self.slice3(conv3)
        conv5 = self.slice4(conv4)
        fc7 = self.slice5(conv5)
        return fc7, conv5, F.relu(conv4), F.relu(conv3), F.relu(conv2)


class DoubleConv(nn.Module):
    """Decoder stage: 1x1 conv (in + mid -> mid), BN, ReLU, 3x3 conv (mid -> out), BN, ReLU."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels + mid_channels, mid_channels, kernel_size=1),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def fit_to_canvas(image: np.ndarray, canvas_size: int, mag_ratio: float) -> tuple[np.ndarray, float]:
    """EasyOCR's ``resize_aspect_ratio`` of a (H,W,3) uint8 image: the longer side scaled to
    ``mag_ratio`` x itself, at most ``canvas_size`` (``cv2.INTER_LINEAR`` on the uint8 image), pasted at the
    top left of a zero float32 canvas whose sides are multiples of 32. Returns (canvas, scale)."""
    height, width = image.shape[:2]
    longest = max(height, width)
    scale = min(mag_ratio * longest, canvas_size) / longest
    new_height, new_width = int(height * scale), int(width * scale)
    resized = cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_LINEAR)
    canvas = np.zeros(
        (-(-new_height // CANVAS_MULTIPLE) * CANVAS_MULTIPLE, -(-new_width // CANVAS_MULTIPLE) * CANVAS_MULTIPLE, 3),
        np.float32,
    )
    canvas[:new_height, :new_width] = resized
    return canvas, scale


def _word_box(points: np.ndarray) -> np.ndarray:
    """The (4,2) float32 box of a word's (x, y) pixels: the minimum-area rectangle, an axis-aligned box
    instead when that rectangle is nearly square (its orientation is then arbitrary: "diamond"
    alignment), starting at the corner nearest the top left and going clockwise."""
    box = cv2.boxPoints(cv2.minAreaRect(points))
    side_a, side_b = np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[1] - box[2])
    if abs(1 - max(side_a, side_b) / (min(side_a, side_b) + 1e-5)) <= 0.1:
        left, top = points.min(axis=0)
        right, bottom = points.max(axis=0)
        box = np.array([[left, top], [right, top], [right, bottom], [left, bottom]], dtype=np.float32)
    return np.roll(box, 4 - box.sum(axis=1).argmin(), axis=0)


def boxes_from_scores(
    text: np.ndarray, link: np.ndarray, text_threshold: float, link_threshold: float, low_text: float
) -> tuple[list[np.ndarray], np.ndarray, list[int]]:
    """Word boxes from (h,w) float32 region and affinity scores (EasyOCR's ``getDetBoxes_core``).

    Pixels with region score > ``low_text`` or affinity > ``link_threshold`` form 4-connected
    components; a component of at least 10 pixels whose peak region score reaches ``text_threshold`` is
    a word. Its pixels, less those that are link only, are dilated by a square of side 1 + n,
    n = int(2 sqrt(area min(w, h) / (w h))) for its w x h bounding box, and boxed by
    :func:`_word_box`. Returns the (4,2) float32 boxes in score-map pixels, the component labels and
    each box's label (for :func:`polygon_from_box`).
    """
    height, width = text.shape
    _, text_on = cv2.threshold(text, low_text, 1, cv2.THRESH_BINARY)
    _, link_on = cv2.threshold(link, link_threshold, 1, cv2.THRESH_BINARY)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        np.clip(text_on + link_on, 0, 1).astype(np.uint8), connectivity=4
    )
    link_only = (link_on == 1) & (text_on == 0)
    boxes, box_labels = [], []
    for label in range(1, count):
        left, top, w, h, area = (
            stats[label, key]
            for key in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT, cv2.CC_STAT_AREA)
        )
        if area < MIN_COMPONENT_AREA:
            continue
        inside = labels[top : top + h, left : left + w] == label
        if np.max(text[top : top + h, left : left + w][inside]) < text_threshold:
            continue
        grow = int(math.sqrt(area * min(w, h) / (w * h)) * 2)
        x0, y0 = max(left - grow, 0), max(top - grow, 0)
        x1, y1 = min(left + w + grow + 1, width), min(top + h + grow + 1, height)
        segment = np.where((labels[y0:y1, x0:x1] == label) & ~link_only[y0:y1, x0:x1], 255, 0).astype(np.uint8)
        segment = cv2.dilate(segment, cv2.getStructuringElement(cv2.MORPH_RECT, (1 + grow, 1 + grow)))
        rows, columns = np.nonzero(segment)
        boxes.append(_word_box(np.stack([columns + x0, rows + y0], axis=1)))
        box_labels.append(label)
    return boxes, labels, box_labels


def polygon_from_box(box: np.ndarray, labels: np.ndarray, label: int) -> np.ndarray | None:
    """A curved word's polygon (EasyOCR's ``getPoly_core``): (14,2) float64 points in score-map pixels,
    or None when the word is small, not much longer than high, or its outline cannot be traced.

    The word's component is warped upright into its box; the box's width is cut into 11 segments;
    in the 5 odd ones the tallest column is a pivot; a line through each pivot, perpendicular to the
    direction between the neighbouring even segments' centres and 1.45 x the median pivot height long,
    gives a top and a bottom point; the ends are pushed out along the mean slope until they clear the
    word (at most 2 pivot heights). Points go along the top then back along the bottom.
    """
    width = int(np.linalg.norm(box[0] - box[1]) + 1)
    height = int(np.linalg.norm(box[1] - box[2]) + 1)
    if width < 10 or height < 10:
        return None
    warp = cv2.getPerspectiveTransform(box, np.float32([[0, 0], [width, 0], [width, height], [0, height]]))
    word = cv2.warpPerspective(labels, warp, (width, height), flags=cv2.INTER_NEAREST) == label
    try:
        unwarp = np.linalg.inv(warp)
    except np.linalg.LinAlgError:
        return None

    columns, tallest = [], -1  # (x, first row, last row) of the columns the word covers at least twice
    for x in range(width):
        rows = np.nonzero(word[:, x])[0]
        if len(rows) >= 2:
            columns.append((x, rows[0], rows[-1]))
            tallest = max(tallest, rows[-1] - rows[0] + 1)
    if height * POLY_MAX_HEIGHT_RATIO < tallest:
        return None

    segments = 2 * POLY_PIVOTS + 1
    segment_width = width / segments
    pivots: list[tuple | None] = [None] * POLY_PIVOTS
    pivot_heights = [0] * POLY_PIVOTS
    centres = [[0, 0]] * segments  # per segment: sums, then means, of (x, centre y) over its columns
    segment, members, previous_height = 0, 0, -1
    for x, first, last in columns:
        if (segment + 1) * segment_width <= x and segment <= segments:  # moves on by one segment at most
            if members == 0:
                break
            centres[segment] = [centres[segment][0] / members, centres[segment][1] / members]
            segment, members, previous_height = segment + 1, 0, -1
        centre_y, column_height = (first + last) * 0.5, last - first + 1
        centres[segment] = [centres[segment][0] + x, centres[segment][1] + centre_y]
        members += 1
        if segment % 2 == 1 and previous_height < column_height:
            pivots[(segment - 1) // 2] = (x, centre_y)
            pivot_heights[(segment - 1) // 2] = column_height
            previous_height = column_height
    if members != 0:  # upstream averages the last of the 11 entries, whichever segment was reached
        centres[-1] = [centres[-1][0] / members, centres[-1][1] / members]
    if None in pivots or segment_width < np.max(pivot_heights) * 0.25:
        return None

    half = np.median(pivot_heights) * POLY_EXPAND / 2
    spans = []  # (x_top, y_top, x_bottom, y_bottom) through each pivot
    for i, (x, centre_y) in enumerate(pivots):
        dx = centres[i * 2 + 2][0] - centres[i * 2][0]
        dy = centres[i * 2 + 2][1] - centres[i * 2][1]
        if dx == 0:
            spans.append([x, centre_y - half, x, centre_y + half])
            continue
        angle = -math.atan2(dy, dx)
        c, s = half * math.cos(angle), half * math.sin(angle)
        spans.append([x - s, centre_y - c, x + s, centre_y + c])

    def slope(a, b) -> float:
        return (pivots[b][1] - pivots[a][1]) / (pivots[b][0] - pivots[a][0])

    slopes = {"start": slope(0, 1) + slope(1, 2), "end": slope(-1, -2) + slope(-2, -3)}
    ends: dict[str, np.ndarray] = {}
    for r in np.arange(0.5, POLY_MAX_R, POLY_STEP_R):
        dx = 2 * half * r
        for side, span, sign in (("start", spans[0], -1), ("end", spans[-1], 1)):
            if side in ends:
                continue
            dy = slopes[side] * dx
            line = np.array(span) + sign * np.array([dx, dy, dx, dy])
            canvas = np.zeros(word.shape, dtype=np.uint8)
            cv2.line(canvas, (int(line[0]), int(line[1])), (int(line[2]), int(line[3])), 1, thickness=1)
            if np.sum(np.logical_and(word, canvas)) == 0 or r + 2 * POLY_STEP_R >= POLY_MAX_R:
                ends[side] = line
        if len(ends) == 2:
            break
    if len(ends) < 2:
        return None

    def back(x: float, y: float) -> list[float]:
        point = np.matmul(unwarp, (x, y, 1))
        return [point[0] / point[2], point[1] / point[2]]

    start, end = ends["start"], ends["end"]
    top = [back(start[0], start[1])] + [back(p[0], p[1]) for p in spans] + [back(end[0], end[1])]
    bottom = [back(end[2], end[3])] + [back(p[2], p[3]) for p in reversed(spans)] + [back(start[2], start[3])]
    return np.array(top + bottom)


class CRAFT(nn.Module):
    """CRAFT text detector (clovaai/CRAFT-pytorch ``CRAFT()``, as EasyOCR loads ``craft_mlt_25k.pth``).

    ``forward(x)``: (B,3,H,W) RGB in [0,1] -> (B,2,H/2,W/2) region (channel 0) and affinity (channel 1)
    scores (sizes rounded down). ``detect(images)``: EasyOCR's detection path -> word boxes in input pixels.
    """

    def __init__(self):
        super().__init__()
        self.basenet = VGG16BNBackbone()
        self.upconv1 = DoubleConv(1024, 512, 256)
        self.upconv2 = DoubleConv(512, 256, 128)
        self.upconv3 = DoubleConv(256, 128, 64)
        self.upconv4 = DoubleConv(128, 64, 32)
        self.conv_cls = nn.Sequential(
            nn.Conv2d(32, 32, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 16, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 16, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 2, kernel_size=1),
        )
        for module in (self.upconv1, self.upconv2, self.upconv3, self.upconv4, self.conv_cls):
            _init_weights(module.modules())
        # normalizeMeanVariance on 0-255 values: (v - 255 mean) / (255 std), constants rounded to float32
        self.register_buffer(
            "pixel_mean", torch.tensor([255.0 * m for m in IMAGENET_MEAN]).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "pixel_std", torch.tensor([255.0 * s for s in IMAGENET_STD]).view(1, 3, 1, 1), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (B,3,H,W) RGB images in [0,1], got shape {tuple(x.shape)}")
        return self.scores(x * 255.0)

    def scores(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) RGB on the 0-255 scale -> (B,2,H/2,W/2) region and affinity scores."""
        fc7, conv5, conv4, conv3, conv2 = self.basenet((pixels - self.pixel_mean) / self.pixel_std)
        y = self.upconv1(torch.cat([fc7, conv5], dim=1))
        for stage, skip in ((self.upconv2, conv4), (self.upconv3, conv3), (self.upconv4, conv2)):
            y = F.interpolate(y, size=skip.shape[2:], mode="bilinear", align_corners=False)
            y = stage(torch.cat([y, skip], dim=1))
        return self.conv_cls(y)

    @torch.no_grad()
    def detect(
        self,
        images: torch.Tensor | Sequence[torch.Tensor],
        text_threshold: float = 0.7,
        link_threshold: float = 0.4,
        low_text: float = 0.4,
        mag_ratio: float = 1.5,
        canvas_size: int = 1280,
        poly: bool = False,
    ) -> list[list[np.ndarray]]:
        """Word boxes of RGB images in [0,1]: a (B,3,H,W) tensor (one forward for the batch) or a list of
        (3,H,W) tensors of any sizes (one forward each).

        EasyOCR's ``test_net``: each image is rounded to uint8, resized by :func:`fit_to_canvas`
        (``mag_ratio`` x, the longer side at most ``canvas_size``, padded to multiples of 32), normalised,
        scored, boxed by :func:`boxes_from_scores` and mapped back to the input's pixels (x 2 / scale).
        Returns per image a list of (4,2) float32 boxes, (x, y) corners clockwise from the top left.
        With ``poly=True`` each word is a float32 polygon instead: (14,2) points from
        :func:`polygon_from_box`, or its (4,2) box where no polygon is found (as EasyOCR does).
        The defaults are CRAFT-pytorch's; EasyOCR's ``Reader.detect`` uses ``canvas_size=2560,
        mag_ratio=1.0``. Runs without gradients and in eval mode; ``training`` flags are restored.
        """
        if isinstance(images, torch.Tensor):
            if images.ndim != 4 or images.shape[1] != 3:
                raise ValueError(
                    f"expected (B,3,H,W) RGB images or a list of (3,H,W) ones, got shape {tuple(images.shape)}"
                )
            batches = [np.ascontiguousarray(to_uint8(images))]
        else:
            if any(image.ndim != 3 or image.shape[0] != 3 for image in images):
                raise ValueError(
                    f"expected a list of (3,H,W) RGB images, got shapes {[tuple(image.shape) for image in images]}"
                )
            batches = [np.ascontiguousarray(to_uint8(image[None])) for image in images]
        weight = self.conv_cls[0].weight
        with evaluating(self):
            results = []
            for batch in batches:
                fitted = [fit_to_canvas(image, canvas_size, mag_ratio) for image in batch]
                pixels = torch.from_numpy(np.stack([canvas for canvas, _ in fitted])).permute(0, 3, 1, 2)
                scores = self.scores(pixels.to(device=weight.device, dtype=weight.dtype)).float().cpu().numpy()
                for (_, scale), (text, link) in zip(fitted, scores):
                    results.append(self._words(text, link, scale, text_threshold, link_threshold, low_text, poly))
        return results

    @staticmethod
    def _words(text, link, scale, text_threshold, link_threshold, low_text, poly) -> list[np.ndarray]:
        """One image's boxes (or polygons) from its score maps, in input pixels (``adjustResultCoordinates``)."""
        boxes, labels, box_labels = boxes_from_scores(text, link, text_threshold, link_threshold, low_text)
        factor = (1 / scale) * SCORE_STRIDE
        words = []
        for box, label in zip(boxes, box_labels):
            scaled = box.copy()
            scaled *= (factor, factor)  # in float64, rounded to float32, as upstream
            polygon = polygon_from_box(box, labels, label) if poly else None
            words.append(scaled if polygon is None else (polygon * (factor, factor)).astype(np.float32))
        return words


@register_model(
    "craft",
    task="text_detection",
    params=20_770_466,
    default_tag="mlt_25k",
    detector=True,
    onnx_note=(
        "the network exports, but rezoo export has no text-detection signature yet "
        "(its box post-processing is NumPy/OpenCV)"
    ),
)
def craft(**kwargs) -> CRAFT:
    """CRAFT text detector (Baek et al. CVPR 2019; 20,770,466 parameters), EasyOCR's ``craft_mlt_25k`` weights."""
    return CRAFT(**kwargs)
