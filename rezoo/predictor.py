"""What ``infer`` and ``demo`` share: a model ready for single images (:class:`Predictor`), masks from
files or from the text detector (:class:`TextFinder`), condition values from the command line, and loading
a detector. Everything model-specific comes from :class:`zoo.ModelInfo`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import zoo
from rezoo.flags import PRECISIONS
from zoo.errors import InputError
from zoo.factory import build_model
from zoo.imaging import masks
from zoo.imaging.masks import polygons_to_mask
from zoo.metrics.text_removal import composite
from zoo.nn.tiling import tiled_forward


def parse_condition(info: zoo.ModelInfo, condition: str, value: str | None) -> int | None:
    """A condition given by name or index among ``info.condition_values`` (``None``: not given)."""
    if value is None:
        return None
    values = info.condition_values[condition]
    if value.isdigit() and int(value) < len(values):
        return int(value)
    if value in values:
        return values.index(value)
    raise InputError(f"--{condition} must be 0-{len(values) - 1} or one of {', '.join(values)}; got {value!r}")


def read_mask(path: Path, image: torch.Tensor, image_path: Path | str) -> torch.Tensor:
    """A mask file (white = text) as a (1,1,H,W) {0,1} tensor of the image's size."""
    return masks.read_mask(path, *image.shape[-2:], str(image_path))[None]  # a BadSampleError is an InputError


def load_detector(name: str, weights: str | None = None) -> torch.nn.Module:
    """A registered text detector (``craft``) with ``weights`` (default: its default tag), in eval mode."""
    if not zoo.model_info(name).detector:
        detectors = [n for n in zoo.list_models() if zoo.model_info(n).detector]
        raise InputError(f"--detector {name} is not a text detector; choose one of {', '.join(detectors)}")
    return zoo.create_model(name, pretrained=weights or True).eval()


class Predictor:
    """A zoo model ready for single images: the conditions it takes (``zoo.model_info``), precision
    (autocast), optional tiling and, for text removal, the input kept outside the mask."""

    def __init__(
        self,
        name: str,
        weights: str | None = None,
        device: str = "cpu",
        precision: str = "fp32",
        tile: int = 0,
        overlap: int = 32,
        **kwargs: Any,
    ):
        self.name, self.info = name, zoo.model_info(name)
        self.device, self.dtype, self.tile, self.overlap = device, PRECISIONS[precision], tile, overlap
        path, checkpoint = zoo.read_pretrained(name, weights if weights is not None else True)
        self.arguments = {**checkpoint.model_kwargs, **kwargs}  # the architecture the weights are built into
        self.model = build_model(name, checkpoint, str(path), **kwargs).eval().to(device)

    @property
    def blind(self) -> bool:
        """Whether the model may run without its optional conditions (PIP built with ``sensor=True``)."""
        return self.info.blind_flag is not None and bool(self.arguments.get(self.info.blind_flag))

    @torch.no_grad()
    def __call__(
        self, image: torch.Tensor, conditions: dict[str, Any] | None = None, tile: int | None = None
    ) -> torch.Tensor:
        """(1,3,H,W) in [0,1] and its conditions (a (1,1,H,W) ``mask`` is tiled with the image) -> the model's
        output, tiled when ``tile`` (default: the predictor's) is set."""
        image = image.to(self.device)
        conditions = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in (conditions or {}).items()}
        mask = conditions.pop("mask", None)

        def run(x: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
            given = conditions if m is None else {"mask": m, **conditions}
            with torch.autocast(self.device.split(":")[0], dtype=self.dtype, enabled=self.dtype != torch.float32):
                return self.model(x, **given).float()

        tile = self.tile if tile is None else tile
        return tiled_forward(run, image, mask, tile, self.overlap, scale=self.info.scale) if tile else run(image, mask)

    def keep_outside(
        self, output: torch.Tensor, image: torch.Tensor, mask: torch.Tensor | None, tiled: bool
    ) -> torch.Tensor:
        """A text-removal output with the input outside ``mask``: a model that ``composites`` did it itself,
        except where tiles were blended (their ramps round); the others' outputs are pasted here."""
        if self.info.task != "text_removal" or mask is None or (self.info.composites and not tiled):
            return output
        return composite(output, image.to(output.device), mask.to(output.device))


class TextFinder:
    """Masks without painting: CRAFT finds the words, their boxes become the mask. With ``keep`` words a
    recognizer (EasyOCR's English model by default) reads each box and the boxes that read as one of
    them stay out of the mask, so only the other text is erased (DeepEraser's adaptive removal)."""

    def __init__(
        self,
        device: str = "cpu",
        detector_weights: str | None = None,
        recognizer: str = "easyocr_en",
        recognizer_weights: str | None = None,
    ):
        self.device = device
        self.detector = load_detector("craft", detector_weights).to(device)
        self.recognizer_name, self.recognizer_weights = recognizer, recognizer_weights
        self._recognizer: torch.nn.Module | None = None

    def to(self, device: str | torch.device) -> TextFinder:
        """The detector (and the recognizer, once loaded) moved to ``device`` (a rank's own GPU)."""
        self.device = str(device)
        self.detector.to(device)
        if self._recognizer is not None:
            self._recognizer.to(device)
        return self

    def boxes(self, image: torch.Tensor) -> list[np.ndarray]:
        """The (4,2) word boxes of a (1,3,H,W) image in its pixel coordinates."""
        return self.detector.detect(image.to(self.device))[0]

    def read(self, image: torch.Tensor, boxes: list[np.ndarray]) -> list[str]:
        """What the recognizer reads in each box (its axis-aligned bounding rectangle)."""
        if self._recognizer is None:
            if not zoo.model_info(self.recognizer_name).recognizer:
                raise InputError(f"--recognizer {self.recognizer_name} is not a text recognizer")
            weights = self.recognizer_weights or True
            self._recognizer = zoo.create_model(self.recognizer_name, pretrained=weights).eval().to(self.device)
        height, width = image.shape[-2:]
        crops = []
        for box in boxes:
            x0, y0 = np.clip(np.floor(box.min(0)).astype(int), 0, None)
            x1, y1 = np.minimum(np.ceil(box.max(0)).astype(int), (width, height))
            crops.append(image[0, :, y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)].to(self.device))
        return self._recognizer.recognize(crops) if crops else []

    def mask(
        self, image: torch.Tensor, dilation: int = 0, keep: Sequence[str] = ()
    ) -> tuple[torch.Tensor, list[np.ndarray], list[str]]:
        """(1,1,H,W) mask of the words to erase (grown by ``dilation`` px), their boxes, and the words kept
        (compared as :func:`zoo.metrics.recognition.str_filt` does: case and punctuation ignored)."""
        from zoo.metrics.recognition import str_filt

        boxes, kept = self.boxes(image), []
        wanted = {str_filt(word) for word in keep} - {""}
        if wanted and boxes:
            words = self.read(image, boxes)
            kept = [word for word in words if str_filt(word) in wanted]
            boxes = [box for box, word in zip(boxes, words) if str_filt(word) not in wanted]
        return polygons_to_mask(boxes, *image.shape[-2:], dilation)[None], boxes, kept
