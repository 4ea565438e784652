"""EasyOCR's generation-2 English recognizer (JaidedAI/EasyOCR ``english_g2.pth``).

EasyOCR's ``vgg_model.Model(input_channel=1, output_channel=256, hidden_size=256, num_class=97)``, a
CRNN-style network:

* ``FeatureExtraction.ConvNet``: seven convolutions (32/64/128/128/256/256/256 channels, 3x3 padding 1,
  the last 2x2 without padding; the fifth and sixth without bias and followed by batch norm), ReLU after
  each; 2x2 max-pools after the first two, (2,1) pools after the fourth and sixth. A (B,1,64,W) input
  gives a (B,256,3,W/4 - 1) map.
* ``AdaptiveAvgPool``: the height averaged away -> a (B,T,256) sequence, T = W/4 - 1.
* ``SequenceModeling``: two batch-first bidirectional LSTMs (256 units per direction), each followed by
  a linear layer 512 -> 256; ``Prediction``: linear 256 -> 97 class scores per step.

Parameter names equal the official ones once DataParallel's ``module.`` prefix is stripped, so the
released file loads with no remapping. Classes: 0 is the CTC blank, class ``i + 1`` is
``CHARACTERS[i]`` (EasyOCR's ``config.py`` ``english_g2`` characters: digits, ASCII punctuation, space,
the euro sign, upper- then lower-case letters).

:meth:`EasyOCRRecognizer.recognize` is EasyOCR's recognition path for one crop
(``utils.get_image_list`` + ``recognition.get_text``): grey (OpenCV's luma), resized to 64 px high,
padded to a multiple of 64 px wide by repeating the last column, normalised to [-1, 1], scored,
greedy CTC decoding; a crop read with confidence < 0.1 is read again with its contrast stretched and
the more confident reading is kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from zoo.nn.modes import evaluating
from zoo.recognition.crnn import ctc_greedy_decode
from zoo.registry import WORD_RECOGNIZER, register_model

__all__ = ["CHARACTERS", "EasyOCRRecognizer", "easyocr_en", "prepare", "stretch_contrast", "to_grey"]

CHARACTERS = "0123456789!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ €ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
INPUT_HEIGHT = 64  # EasyOCR's imgH
CONTRAST_THRESHOLD = 0.1  # get_text's contrast_ths: a reading less confident than this is retried ...
CONTRAST_TARGET = 0.5  # ... with the contrast stretched when below this (adjust_contrast)


class BidirectionalLSTM(nn.Module):
    """A batch-first bidirectional LSTM over (B,T,in), then a linear layer per step: (B,T,out)."""

    def __init__(self, in_features: int, hidden_size: int, out_features: int):
        super().__init__()
        self.rnn = nn.LSTM(in_features, hidden_size, bidirectional=True, batch_first=True)
        self.linear = nn.Linear(2 * hidden_size, out_features)

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.rnn(sequence)
        return self.linear(hidden)


class VGGFeatures(nn.Module):
    """EasyOCR's ``VGG_FeatureExtractor``: ``ConvNet`` with upstream's layer indices (so the keys match)."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        c1, c2, c3, c4 = channels // 8, channels // 4, channels // 2, channels
        self.ConvNet = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, 1, 1),
            nn.ReLU(True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(c1, c2, 3, 1, 1),
            nn.ReLU(True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(c2, c3, 3, 1, 1),
            nn.ReLU(True),
            nn.Conv2d(c3, c3, 3, 1, 1),
            nn.ReLU(True),
            nn.MaxPool2d((2, 1), (2, 1)),
            nn.Conv2d(c3, c4, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c4),
            nn.ReLU(True),
            nn.Conv2d(c4, c4, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c4),
            nn.ReLU(True),
            nn.MaxPool2d((2, 1), (2, 1)),
            nn.Conv2d(c4, c4, 2, 1, 0),
            nn.ReLU(True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ConvNet(x)


def to_grey(crop: torch.Tensor) -> np.ndarray:
    """(3,h,w) RGB or (1,h,w) grey in [0,1] -> (h,w) uint8 grey: rounded to 8 bits, then OpenCV's
    ``COLOR_RGB2GRAY`` (Y = 0.299 R + 0.587 G + 0.114 B in fixed point), as ``cv2.imread(...,
    IMREAD_GRAYSCALE)`` gives EasyOCR's ``img_cv_grey`` for an image file."""
    if crop.ndim != 3 or crop.shape[0] not in (1, 3) or 0 in crop.shape[1:]:
        raise ValueError(f"expected a non-empty (3,h,w) RGB or (1,h,w) grey crop, got shape {tuple(crop.shape)}")
    pixels = (
        crop.detach()
        .to("cpu", torch.float32)
        .clamp(0, 1)
        .mul(255)
        .round()
        .to(torch.uint8)
        .permute(1, 2, 0)
        .contiguous()
        .numpy()
    )
    return pixels[:, :, 0] if pixels.shape[2] == 1 else cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)


def stretch_contrast(grey: np.ndarray, target: float) -> np.ndarray:
    """EasyOCR's ``adjust_contrast_grey``: when (p90 - p10) / max(10, p90 + p10) < ``target``, map the
    uint8 values linearly by (v - p10 + 25) * 200 / max(10, p90 - p10), clipped to [0, 255]."""
    high, low = np.percentile(grey, 90), np.percentile(grey, 10)
    if (high - low) / np.maximum(10, high + low) >= target:
        return grey
    return np.clip((grey.astype(int) - low + 25) * (200.0 / np.maximum(10, high - low)), 0, 255).astype(np.uint8)


def prepare(grey: np.ndarray, contrast_target: float = 0.0) -> torch.Tensor:
    """(h,w) uint8 grey crop -> (1,64,W) recognizer input in [-1, 1], W a multiple of 64.

    EasyOCR's ``get_image_list`` resizes the crop with ``cv2.INTER_LINEAR`` (its code names PIL's
    ``LANCZOS``, whose value 1 is OpenCV's ``INTER_LINEAR``) to 64 px high and ``int(64 w / h)`` wide, or,
    for a crop higher than wide, to 64 px wide and ``int(64 h / w)`` high, and sizes the batch to
    W = 64 ceil(max(w / h, h / w)). ``AlignCollate(keep_ratio_with_pad=True)`` then optionally stretches
    the contrast (:func:`stretch_contrast`, when ``contrast_target`` > 0), resizes to 64 px high and
    ``min(ceil(64 w' / h'), W)`` wide with PIL's bicubic filter (no change for a crop wider than high),
    scales to [-1, 1] ((v / 255 - 0.5) / 0.5) and pads to W by repeating the last column (``NormalizePAD``).
    """
    height, width = grey.shape
    ratio = width / height
    if ratio < 1.0:
        ratio = 1.0 / ratio
        line = cv2.resize(grey, (INPUT_HEIGHT, int(INPUT_HEIGHT * ratio)), interpolation=cv2.INTER_LINEAR)
    else:
        line = cv2.resize(grey, (int(INPUT_HEIGHT * ratio), INPUT_HEIGHT), interpolation=cv2.INTER_LINEAR)
    padded_width = math.ceil(ratio) * INPUT_HEIGHT
    if contrast_target > 0:
        line = stretch_contrast(line, contrast_target)
    image = Image.fromarray(line)
    resized_width = min(math.ceil(INPUT_HEIGHT * (image.width / float(image.height))), padded_width)
    pixels = torch.from_numpy(
        np.asarray(image.resize((resized_width, INPUT_HEIGHT), Image.Resampling.BICUBIC), dtype=np.uint8).copy()
    )
    scaled = pixels.float().div(255).sub(0.5).div(0.5)
    return torch.cat([scaled, scaled[:, -1:].expand(-1, padded_width - resized_width)], dim=1)[None]


class EasyOCRRecognizer(nn.Module):
    """EasyOCR generation-2 recognizer (``vgg_model.Model``; English: 97 classes, ``english_g2.pth``).

    ``forward(x)``: (B,1,64,W) grey in [-1, 1] -> (B,T,97) unnormalised class scores, T = W/4 - 1.
    ``recognize(crops)``: RGB crops in [0,1] of any sizes -> list of strings.
    """

    def __init__(
        self, characters: str = CHARACTERS, in_channels: int = 1, output_channel: int = 256, hidden_size: int = 256
    ):
        super().__init__()
        if len(set(characters)) != len(characters):
            raise ValueError(f"characters has repeated entries: {characters!r}")
        self.characters = characters
        self.FeatureExtraction = VGGFeatures(in_channels, output_channel)
        self.AdaptiveAvgPool = nn.AdaptiveAvgPool2d((None, 1))
        self.SequenceModeling = nn.Sequential(
            BidirectionalLSTM(output_channel, hidden_size, hidden_size),
            BidirectionalLSTM(hidden_size, hidden_size, hidden_size),
        )
        self.Prediction = nn.Linear(hidden_size, len(characters) + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.FeatureExtraction(x)  # (B,C,h,T)
        sequence = self.AdaptiveAvgPool(features.permute(0, 3, 1, 2)).squeeze(3)  # (B,T,C): the mean over h
        return self.Prediction(self.SequenceModeling(sequence))

    @torch.no_grad()
    def recognize(
        self,
        crops: torch.Tensor | Sequence[torch.Tensor],
        contrast_threshold: float = CONTRAST_THRESHOLD,
        contrast_target: float = CONTRAST_TARGET,
        return_confidence: bool = False,
    ) -> list[str] | list[tuple[str, float]]:
        """Read RGB crops in [0,1]: a (B,3,h,w) tensor or a list of (3,h,w) tensors of any sizes ((1,h,w)
        grey ones too).

        Per crop, as EasyOCR's ``Reader.recognize`` on CPU: :func:`to_grey`, :func:`prepare`, forward,
        softmax, greedy CTC decoding (most likely class per step, repeats collapsed, blanks dropped);
        confidence = p^(2 / sqrt(n)) for the product p of the n kept steps' probabilities (0 when
        nothing is read). A reading less confident than ``contrast_threshold`` is redone with the
        contrast stretched to ``contrast_target`` and the more confident one kept (``contrast_threshold=0``
        turns this off). Returns the strings, or (string, confidence) pairs with ``return_confidence``.

        Runs without gradients and in eval mode; every submodule's ``training`` flag is restored.
        """
        if isinstance(crops, torch.Tensor) and crops.ndim != 4:
            raise ValueError(f"expected (B,3,h,w) RGB crops or a list of (3,h,w) ones, got shape {tuple(crops.shape)}")
        weight = self.Prediction.weight
        with evaluating(self):
            readings = []
            for crop in crops:
                grey = to_grey(crop)
                reading = self._read(prepare(grey).to(device=weight.device, dtype=weight.dtype))
                if reading[1] < contrast_threshold:
                    retry = self._read(prepare(grey, contrast_target).to(device=weight.device, dtype=weight.dtype))
                    reading = reading if reading[1] > retry[1] else retry
                readings.append(reading)
        return readings if return_confidence else [text for text, _ in readings]

    def _read(self, line: torch.Tensor) -> tuple[str, float]:
        """One (1,64,W) input -> (text, confidence) (``recognizer_predict`` with the greedy decoder)."""
        probabilities = F.softmax(self(line[None]).float(), dim=2).cpu().numpy()
        probabilities = probabilities / probabilities.sum(axis=2, keepdims=True)  # upstream renormalises
        best = probabilities[0].argmax(axis=1)
        kept = probabilities[0].max(axis=1)[best != 0]
        confidence = float(kept.prod() ** (2.0 / np.sqrt(len(kept)))) if len(kept) else 0.0
        text = ctc_greedy_decode(torch.from_numpy(probabilities).transpose(0, 1), self.characters)[0]
        return text, confidence


@register_model(
    "easyocr_en",
    **WORD_RECOGNIZER,
    params=3_781_345,
    default_tag="english_g2",
    input_height=INPUT_HEIGHT,
    alphabet=CHARACTERS,
    onnx_note="AdaptiveAvgPool2d((None, 1)) over a dynamic width and its LSTMs: "
    "no exporter gives a dynamic-width graph",
)
def easyocr_en(**kwargs) -> EasyOCRRecognizer:
    """EasyOCR's generation-2 English text recognizer (3,781,345 parameters), ``english_g2`` weights."""
    return EasyOCRRecognizer(**kwargs)
