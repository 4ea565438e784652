"""CRNN: convolutional recurrent network for scene-text recognition (Shi, Bai & Yao, "An End-to-End
Trainable Neural Network for Image-based Sequence Recognition and Its Application to Scene Text
Recognition", TPAMI 2016/2017).

Architecture as the PyTorch port meijieru/crnn.pytorch (``models/crnn.py``, MIT licence), default
configuration ``CRNN(imgH=32, nc=1, nclass=37, nh=256)``:

* CNN on a (B,1,32,W) grey image: seven convolutions (3x3 padding 1; the last 2x2, no padding), widths
  64/128/256/256/512/512/512, batch norm after the 3rd, 5th and 7th, ReLU after each; 2x2/2 max-pools
  after conv0 and conv1, (2,2)/(2,1) pools with width padding 1 after conv3 and conv5. A 32-px-high
  input leaves a feature map one pixel high: a sequence of W/4 + 1 columns (26 for W = 100).
* Two bidirectional LSTM blocks (256 hidden units per direction), each followed by a linear layer
  on the concatenated directions: 512 -> 256 -> ``len(alphabet) + 1`` class scores per column.

Parameter names equal the official ones (``cnn.conv0`` .. ``cnn.conv6``, ``cnn.batchnorm{2,4,6}``,
``rnn.{0,1}.rnn``, ``rnn.{0,1}.embedding``), so the released ``crnn.pth`` (a plain state_dict
converted from the authors' Torch7 model) loads with no renaming. That file predates PyTorch's
``num_batches_tracked`` batch-norm counters; :func:`fill_batchnorm_counters` adds them (as PyTorch's
own loader does for old files) so that the strict load passes.

Classes: 0 is the CTC blank, class ``i + 1`` is ``ALPHABET[i]`` (digits then lower-case letters).
:meth:`CRNN.recognize` applies the preprocessing with which the TextZoom super-resolution papers score
their outputs with this recognizer (TATT, Ma et al. CVPR 2022, ``parse_crnn_data``): bicubic resize to
32x100, luma Y = 0.299R + 0.587G + 0.114B, no normalisation; then greedy CTC decoding.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from zoo.metrics import luma
from zoo.nn.modes import evaluating
from zoo.registry import WORD_RECOGNIZER, StateDict, register_model

__all__ = [
    "ALPHABET",
    "BLANK",
    "CRNN",
    "BidirectionalLSTM",
    "crnn",
    "ctc_greedy_decode",
    "fill_batchnorm_counters",
    "preprocess",
]

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
BLANK = 0  # CTC blank class; class i + 1 is alphabet[i]
INPUT_HEIGHT = 32  # the only height whose feature map is one pixel high
INPUT_SIZE = (32, 100)  # (H, W) of TATT's ``parse_crnn_data``

CONV_CHANNELS = (64, 128, 256, 256, 512, 512, 512)
BATCHNORM_AFTER = (2, 4, 6)
# max-pool after a convolution: (kernel, stride, padding)
POOL_AFTER = {0: (2, 2, 0), 1: (2, 2, 0), 3: ((2, 2), (2, 1), (0, 1)), 5: ((2, 2), (2, 1), (0, 1))}


class BidirectionalLSTM(nn.Module):
    """A bidirectional LSTM over a (T,B,in) sequence, then one linear layer per step: (T,B,out)."""

    def __init__(self, in_features: int, hidden_size: int, out_features: int):
        super().__init__()
        self.rnn = nn.LSTM(in_features, hidden_size, bidirectional=True)
        self.embedding = nn.Linear(2 * hidden_size, out_features)

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.rnn(sequence)
        return self.embedding(hidden)


def _cnn(in_channels: int) -> nn.Sequential:
    """The convolutional feature extractor, its layers named as upstream (``conv{i}``, ``batchnorm{i}``,
    ``relu{i}``, ``pooling{k}``) so the state_dict keys match."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    previous = in_channels
    for index, channels in enumerate(CONV_CHANNELS):
        last = index == len(CONV_CHANNELS) - 1
        layers[f"conv{index}"] = nn.Conv2d(
            previous, channels, kernel_size=2 if last else 3, stride=1, padding=0 if last else 1
        )
        if index in BATCHNORM_AFTER:
            layers[f"batchnorm{index}"] = nn.BatchNorm2d(channels)
        layers[f"relu{index}"] = nn.ReLU(inplace=True)
        if index in POOL_AFTER:
            kernel, stride, padding = POOL_AFTER[index]
            layers[f"pooling{sorted(POOL_AFTER).index(index)}"] = nn.MaxPool2d(kernel, stride, padding)
        previous = channels
    return nn.Sequential(layers)


def preprocess(images: torch.Tensor, size: tuple[int, int] = INPUT_SIZE, clamp: bool = False) -> torch.Tensor:
    """(B,3,H,W) RGB in [0,1] -> (B,1,32,100) grey input of the recognizer.

    TATT's ``parse_crnn_data``: ``F.interpolate(..., mode="bicubic", align_corners=False)`` to ``size``
    and luma Y = 0.299R + 0.587G + 0.114B, with no mean/std normalisation (unlike crnn.pytorch's own
    demo, which normalises to [-1, 1]), and no clipping of the bicubic overshoot (TATT does not clip;
    ``clamp=True`` clips to [0, 1] before the luma).
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (B,3,H,W) RGB images, got shape {tuple(images.shape)}")
    resized = F.interpolate(images, size=size, mode="bicubic", align_corners=False)
    if clamp:
        resized = resized.clamp(0, 1)
    return luma(resized)[:, None]


def ctc_greedy_decode(scores: torch.Tensor, alphabet: str = ALPHABET) -> list[str]:
    """Best-path CTC decoding of (T,B,C) scores: the most likely class per step, repeats collapsed,
    then blanks dropped (so a blank between two equal characters keeps both: ``a-a`` -> ``aa``).

    Class 0 is the blank and class ``i + 1`` is ``alphabet[i]`` (C = ``len(alphabet) + 1``), as
    crnn.pytorch's ``strLabelConverter.decode``.
    """
    if scores.ndim != 3 or scores.shape[2] != len(alphabet) + 1:
        raise ValueError(
            f"expected (T,B,{len(alphabet) + 1}) scores for a {len(alphabet)}-character alphabet, "
            f"got shape {tuple(scores.shape)}"
        )
    best = scores.argmax(dim=2).t()  # (B,T)
    keep = best != BLANK
    keep[:, 1:] &= best[:, 1:] != best[:, :-1]
    return ["".join(alphabet[k - 1] for k in row[mask].tolist()) for row, mask in zip(best, keep)]


def fill_batchnorm_counters(state_dict: StateDict) -> StateDict:
    """Official ``crnn.pth`` -> our keys: add the ``num_batches_tracked`` counters (0) that files saved
    before PyTorch 0.4.1 lack. Nothing is renamed; a file that has them passes through unchanged."""
    filled = dict(state_dict)
    for key in state_dict:
        if key.endswith(".running_mean"):
            counter = key[: -len("running_mean")] + "num_batches_tracked"
            filled.setdefault(counter, torch.tensor(0, dtype=torch.long))
    return filled


class CRNN(nn.Module):
    """CRNN (meijieru/crnn.pytorch ``CRNN(32, 1, len(alphabet) + 1, hidden_size)``).

    ``forward(x)``: (B,in_channels,32,W) -> (T,B,len(alphabet)+1) unnormalised class scores, T = W/4 + 1.
    ``recognize(images)``: (B,3,H,W) RGB in [0,1] -> list of B strings.
    """

    def __init__(self, alphabet: str = ALPHABET, hidden_size: int = 256, in_channels: int = 1):
        super().__init__()
        if len(set(alphabet)) != len(alphabet):
            raise ValueError(f"alphabet has repeated characters: {alphabet!r}")
        self.alphabet = alphabet
        self.cnn = _cnn(in_channels)
        self.rnn = nn.Sequential(
            BidirectionalLSTM(CONV_CHANNELS[-1], hidden_size, hidden_size),
            BidirectionalLSTM(hidden_size, hidden_size, len(alphabet) + 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.cnn(x)  # (B,512,1,T)
        if features.shape[2] != 1:
            raise ValueError(
                f"CRNN needs inputs {INPUT_HEIGHT} px high (its feature map must be 1 px high), got height {x.shape[2]}"
            )
        sequence = features.squeeze(2).permute(2, 0, 1)  # (T,B,512)
        return self.rnn(sequence)

    @torch.no_grad()
    def recognize(self, images: torch.Tensor, clamp: bool = False) -> list[str]:
        """Read the text of (B,3,H,W) RGB images in [0,1]: :func:`preprocess` (bicubic to 32x100, luma,
        no normalisation), forward, :func:`ctc_greedy_decode`. Returns B strings over ``alphabet``.

        Runs without gradients and in eval mode (batch norm with its running statistics); every
        submodule's ``training`` flag is restored afterwards, so calling it from a training loop changes
        nothing.
        """
        weight = self.cnn.conv0.weight
        grey = preprocess(images.to(device=weight.device, dtype=weight.dtype), clamp=clamp)
        with evaluating(self):
            scores = self(grey)
        return ctc_greedy_decode(scores, self.alphabet)


@register_model(
    "crnn",
    **WORD_RECOGNIZER,
    params=8_331_301,
    input_height=INPUT_HEIGHT,
    alphabet=ALPHABET,
    remap=fill_batchnorm_counters,
    onnx=True,
)
def crnn(**kwargs) -> CRNN:
    """CRNN text recognizer (Shi et al. 2016; 8,331,301 parameters with the default arguments)."""
    return CRNN(**kwargs)
