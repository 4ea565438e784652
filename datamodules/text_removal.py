"""Shared machinery of the real text-removal datasets (SCUT-EnsText, SCUT-Syn, PosterErase, SynthText).

Each dataset module turns its on-disk layout into :class:`TextRecord` s; :class:`TextRemovalDataset`
reads them into samples of the batch contract: ``image``, ``target`` (when the split has ground truth),
``mask`` (1 = text: filled polygons/boxes, or derived from |image − target|), ``boxes`` (N,4 xyxy, the
bounding rectangles of the text instances), ``name`` and ``original_size`` ((2,) H, W of the file
before resizing: to map annotations in file pixels, e.g. PosterErase's ``place``, or outputs back).

Geometry: evaluation resizes to a fixed size (the protocols' 512 px, or keeps native size with
``size=None``); training resizes to ``size`` then takes a random ``crop_size`` crop and flips, moving
image, target, mask and boxes together (albumentations).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datamodules.base import (
    BadSampleError,
    BaseDataModule,
    SampleDataset,
    layout_error,
    list_images,
    read_image,
    size_mismatch,
    to_tensor,
)
from zoo.imaging.masks import rasterize

POLYGON_TOKEN = re.compile(r"^-?\d+(\.\d+)?$")


@dataclass
class TextRecord:
    """One sample as found on disk. Text regions come from ``polygons`` ((K,2) arrays in image pixels) or
    the ``annotation`` file; with neither, the mask is read from ``mask`` or derived from the pair."""

    name: str
    image: Path
    target: Path | None = None
    polygons: list[np.ndarray] | None = None
    annotation: Path | None = None  # polygon file read when the sample is loaded (see read_polygon_file)
    mask: Path | None = None
    target_inside_text: bool = False  # target = ground truth inside the text boxes, input elsewhere
    resize_target: bool = False  # ground truth of another size is resized to the image (SynthText)
    extra: dict[str, Any] = field(default_factory=dict)  # dataset-specific fields, returned as is


def parse_polygon_line(line: str, source: str) -> np.ndarray | None:
    """``x1,y1,...,xn,yn`` -> (n,2) float array; spaces, a trailing ``##...`` field and blank lines are
    tolerated (``None`` for a blank line). Anything else malformed raises, naming ``source``."""
    tokens = [t.strip() for t in line.strip().split(",")]
    tokens = [t for t in tokens if t]
    while tokens and tokens[-1].startswith("#"):
        tokens.pop()
    if not tokens:
        return None
    bad = [t for t in tokens if not POLYGON_TOKEN.match(t)]
    if bad:
        raise BadSampleError(
            f"{source}: expected comma-separated integers x1,y1,...,xn,yn, found {bad[0]!r} in {line.strip()!r}"
        )
    if len(tokens) % 2 or len(tokens) < 6:
        raise BadSampleError(
            f"{source}: a polygon needs an even number (>= 6) of coordinates, got {len(tokens)} in {line.strip()!r}"
        )
    return np.asarray([float(t) for t in tokens], dtype=np.float64).reshape(-1, 2)


def read_polygon_file(path: Path) -> list[np.ndarray]:
    """All polygons of an SCUT-EnsText-style annotation file (an empty file means no text)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise BadSampleError(f"cannot read annotation {path}: {error}") from error
    polygons = []
    for number, line in enumerate(text.splitlines(), start=1):
        polygon = parse_polygon_line(line, f"{path} line {number}")
        if polygon is not None:
            polygons.append(polygon)
    return polygons


def bounding_boxes(polygons: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """(N,4) xyxy bounding rectangles clipped to the image; instances fully outside are dropped."""
    boxes = []
    for polygon in polygons:
        x0, y0 = np.clip(polygon.min(0), 0, [width, height])
        x1, y1 = np.clip(polygon.max(0), 0, [width, height])
        if x1 > x0 and y1 > y0:
            boxes.append((x0, y0, x1, y1))
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def boxes_from_mask(mask: np.ndarray, min_area: int = 4) -> np.ndarray:
    """Bounding boxes of the connected components of a binary mask (for datasets without annotations)."""
    import cv2

    count, _, stats, _ = cv2.connectedComponentsWithStats((mask > 127).astype(np.uint8), connectivity=8)
    boxes = [(x, y, x + w, y + h) for x, y, w, h, area in stats[1:count] if area >= min_area]
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def derive_text_mask(image: np.ndarray, target: np.ndarray, threshold: float, closing: int) -> np.ndarray:
    """Text mask of a pair without annotations: mean RGB |image − target| > ``threshold`` (0-255; 25 as
    GaRNet's stroke-mask rule), then a morphological closing with a (2·closing+1)² square to join
    anti-aliased stroke edges. uint8 0/255."""
    import cv2

    mask = (np.abs(image.astype(np.int16) - target.astype(np.int16)).mean(axis=2) > threshold).astype(np.uint8) * 255
    if closing > 0:
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((2 * closing + 1, 2 * closing + 1), np.uint8))
    return mask


def channels_swapped(image: np.ndarray, target: np.ndarray) -> bool:
    """True when ``image`` matches ``target`` far better with its R and B channels exchanged (a pair
    stored once as RGB and once as BGR)."""
    image, target = image.astype(np.int16), target.astype(np.int16)
    direct = float(np.abs(image - target).mean())
    swapped = float(np.abs(image[..., ::-1] - target).mean())
    return direct > 8 and swapped < 0.5 * direct


def resize_image(array: np.ndarray, size: tuple[int, int], interpolation: str = "bicubic") -> np.ndarray:
    """Resize (H,W[,C]) uint8 to ``size`` = (H, W): ``bicubic`` (PIL, as EraseNet's loaders), ``bilinear``
    (``cv2.resize``, as GaRNet's) or ``nearest`` (masks)."""
    if array.shape[:2] == tuple(size):
        return array
    if interpolation == "bilinear":
        import cv2

        return cv2.resize(array, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    from PIL import Image

    resample = {"bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[interpolation]
    return np.asarray(Image.fromarray(array).resize((size[1], size[0]), resample))


def center_square(array: np.ndarray) -> np.ndarray:
    """Central square crop (GaRNet's test geometry for non-square images)."""
    height, width = array.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return array[top : top + side, left : left + side]


class TextRemovalDataset(SampleDataset):
    """Samples of the batch contract from :class:`TextRecord` s (see the module docstring).

    ``size``: (H,W) or int for square, or ``None`` (native size); ``square_crop``: centre-crop to a
    square before resizing (GaRNet/SynthText); ``interpolation``: see :func:`resize_image`;
    ``crop_size``/``hflip``: training augmentation.
    ``max_mask_fraction``: a derived mask covering more of the image than this means the pair does
    not match (e.g. SCUT-Syn's colour-swapped images) and is a bad sample.
    """

    def __init__(
        self,
        records: Sequence[TextRecord],
        size: int | Sequence[int] | None = 512,
        train: bool = False,
        crop_size: int | None = None,
        hflip: bool = True,
        square_crop: bool = False,
        interpolation: str = "bicubic",
        mask_threshold: float = 25.0,
        mask_closing: int = 1,
        max_mask_fraction: float = 0.9,
        on_bad_sample: str = "raise",
    ):
        super().__init__(on_bad_sample)
        self.records = list(records)
        self.size = (size, size) if isinstance(size, int) else (tuple(size) if size else None)
        self.train = train
        self.square_crop, self.interpolation = square_crop, interpolation
        self.mask_threshold, self.mask_closing, self.max_mask_fraction = mask_threshold, mask_closing, max_mask_fraction
        self.transform = self._build_transform(crop_size, hflip) if train else None

    @staticmethod
    def _build_transform(crop_size: int | None, hflip: bool):
        import albumentations as A
        import cv2

        steps = []
        if crop_size:
            steps += [
                A.PadIfNeeded(crop_size, crop_size, border_mode=cv2.BORDER_REFLECT_101),
                A.RandomCrop(crop_size, crop_size),
            ]
        if hflip:
            steps.append(A.HorizontalFlip(p=0.5))
        if not steps:
            return None
        bbox_params = A.BboxParams(format="pascal_voc", label_fields=["box_ids"], clip=True, min_area=1.0)
        return A.Compose(steps, additional_targets={"target": "image"}, bbox_params=bbox_params)

    def __len__(self) -> int:
        return len(self.records)

    def _text_mask(self, record: TextRecord, image: np.ndarray, target: np.ndarray | None) -> np.ndarray:
        """The mask of a record without polygons: its mask file, or derived from the pair."""
        height, width = image.shape[:2]
        if record.mask is not None:
            mask = read_image(record.mask, "L")
            if mask.shape != (height, width):
                raise BadSampleError(
                    f"mask {record.mask} is {mask.shape[1]}x{mask.shape[0]}, image {record.image} is {width}x{height}"
                )
            return np.where(mask > 127, 255, 0).astype(np.uint8)
        if target is None:
            raise BadSampleError(f"{record.image}: no annotation, mask or ground truth to find the text from")
        if channels_swapped(image, target):
            raise BadSampleError(f"{record.image}: its colour channels are swapped (BGR) relative to {record.target}")
        mask = derive_text_mask(image, target, self.mask_threshold, self.mask_closing)
        fraction = float((mask > 0).mean())
        if fraction > self.max_mask_fraction:
            raise BadSampleError(
                f"{record.image} and {record.target} differ on {fraction:.0%} of the pixels "
                f"(more than max_mask_fraction={self.max_mask_fraction}): "
                "not a matching pair (colour-swapped or wrong file?)"
            )
        return mask

    def load(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        image = read_image(record.image)
        original_size = torch.tensor(image.shape[:2])
        target = read_image(record.target) if record.target is not None else None
        if target is not None and target.shape != image.shape:
            if not record.resize_target:
                raise size_mismatch(record.image, image, record.target, target)
            target = resize_image(target, image.shape[:2], self.interpolation)
        polygons = record.polygons if record.annotation is None else read_polygon_file(record.annotation)
        if polygons is not None:
            mask = None  # rasterised after resizing, from the scaled polygons
        else:
            mask = self._text_mask(record, image, target)
            polygons = [
                np.asarray([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) for x0, y0, x1, y1 in boxes_from_mask(mask)
            ]
        if target is not None and record.target_inside_text:
            inside = rasterize(polygons, *image.shape[:2])[..., None] > 0
            target = np.where(inside, target, image)
        image, target, mask, polygons = self._resize(image, target, mask, polygons)
        if mask is None:
            mask = rasterize(polygons, *image.shape[:2])
        boxes = bounding_boxes(polygons, *image.shape[:2])
        if self.transform is not None:
            out = self.transform(**self._transform_inputs(image, target, mask, boxes))
            image, target, mask = out["image"], out.get("target"), out["mask"]
            boxes = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
        sample = {
            "image": to_tensor(image),
            "mask": torch.from_numpy((mask > 127).astype(np.float32)[None]),
            "boxes": torch.from_numpy(boxes),
            "name": record.name,
            "original_size": original_size,
        }
        if target is not None:
            sample["target"] = to_tensor(target)
        sample.update(record.extra)
        return sample

    @staticmethod
    def _transform_inputs(image, target, mask, boxes) -> dict[str, Any]:
        inputs = {"image": image, "mask": mask, "bboxes": boxes, "box_ids": np.arange(len(boxes))}
        if target is not None:
            inputs["target"] = target
        return inputs

    def _resize(self, image, target, mask, polygons):
        if self.square_crop and image.shape[0] != image.shape[1]:
            height, width = image.shape[:2]
            side = min(height, width)
            offset = np.asarray([(width - side) // 2, (height - side) // 2])
            image = center_square(image)
            mask = center_square(mask) if mask is not None else None
            target = center_square(target) if target is not None else None
            polygons = [p - offset for p in polygons]
        if self.size is None or image.shape[:2] == self.size:
            return image, target, mask, polygons
        scale = np.asarray([self.size[1] / image.shape[1], self.size[0] / image.shape[0]])
        image = resize_image(image, self.size, self.interpolation)
        target = resize_image(target, self.size, self.interpolation) if target is not None else None
        mask = resize_image(mask, self.size, "nearest") if mask is not None else None
        return image, target, mask, [p * scale for p in polygons]


class TextRemovalDataModule(BaseDataModule):
    """Base of the real-layout datamodules: subclasses implement ``records(split)``.

    ``size``: evaluation size (512 = the protocols'; ``null`` keeps native size); ``train_size``: the
    size training images are resized to before the random ``crop_size`` crop; ``val_split``/``val_size``:
    which split validation reads, and how many of its samples (the first ones; ``null`` = all).
    """

    splits = ("train", "test")
    layout = ""

    def __init__(
        self,
        root: str,
        size: int | Sequence[int] | None = 512,
        train_size: int | Sequence[int] | None = 512,
        crop_size: int | None = None,
        hflip: bool = True,
        val_split: str = "test",
        val_size: int | None = None,
        mask_threshold: float = 25.0,
        mask_closing: int = 1,
        on_bad_sample: str = "raise",
        **loader_kwargs: Any,
    ):
        super().__init__(**loader_kwargs)
        if root in (None, "", "???"):
            raise ValueError(f"data.root is required for {type(self).__name__}. Expected layout:\n{self.layout}")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise layout_error(self.root, self.layout, f"dataset root {self.root} does not exist")
        if val_split not in self.splits:
            raise ValueError(f"val_split must be one of {self.splits}, got {val_split!r}")
        self.size, self.train_size, self.crop_size, self.hflip = size, train_size, crop_size, hflip
        self.val_split, self.val_size = val_split, val_size
        self.dataset_kwargs = dict(
            mask_threshold=mask_threshold, mask_closing=mask_closing, on_bad_sample=on_bad_sample
        )

    def records(self, split: str) -> list[TextRecord]:
        raise NotImplementedError

    def dataset_options(self, split: str) -> dict[str, Any]:
        """Extra :class:`TextRemovalDataset` arguments for a split (square_crop, ...)."""
        return {}

    def build_dataset(self, split: str) -> TextRemovalDataset:
        train = split == "train"
        source = self.val_split if split == "val" else split
        records = self.records(source)
        if split == "val" and self.val_size:
            records = records[: self.val_size]
        size = self.train_size if train else self.size
        return TextRemovalDataset(
            records,
            size,
            train,
            self.crop_size if train else None,
            self.hflip,
            **self.dataset_options(split),
            **self.dataset_kwargs,
        )


def paired_records(
    root: Path,
    image_dir: Path,
    target_dir: Path,
    layout: str,
    annotation_dir: Path | None = None,
    annotation_suffix: str = ".txt",
) -> list[TextRecord]:
    """Records for image/target folders paired by file stem (+ one annotation file per image).

    Missing folders raise with the expected layout; images without a ground truth or annotation raise
    with the list of what is missing."""
    for folder in (image_dir, target_dir, annotation_dir):
        if folder is not None and not folder.is_dir():
            raise layout_error(root, layout, f"missing folder {folder}")
    images, targets = list_images(image_dir), list_images(target_dir)
    if not images:
        raise layout_error(root, layout, f"no images in {image_dir}")
    problems = []
    if set(images) - set(targets):
        problems.append(f"images without a ground truth in {target_dir}: {sorted(set(images) - set(targets))[:20]}")
    if set(targets) - set(images):
        problems.append(f"ground truths without an image in {image_dir}: {sorted(set(targets) - set(images))[:20]}")
    if annotation_dir is not None:
        missing = [stem for stem in images if not (annotation_dir / f"{stem}{annotation_suffix}").is_file()]
        if missing:
            problems.append(f"images without an annotation {annotation_dir}/<name>{annotation_suffix}: {missing[:20]}")
    if problems:
        raise ValueError(f"unpaired files under {root}:\n  " + "\n  ".join(problems))
    return [
        TextRecord(
            stem,
            images[stem],
            targets[stem],
            annotation=annotation_dir / f"{stem}{annotation_suffix}" if annotation_dir is not None else None,
        )
        for stem in sorted(images)
    ]
