"""Loss pieces shared by several families."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_vgg16_state(weights: str | os.PathLike | None) -> dict[str, torch.Tensor]:
    """torchvision's VGG16 ImageNet state_dict from a local file, else the manifest's ``vgg16_imagenet`` (``None``:
    cached or downloaded once, checked against its sha256)."""
    from zoo.hub import fetch_auxiliary

    return torch.load(fetch_auxiliary("vgg16_imagenet", weights), map_location="cpu", weights_only=True)


def masked_l1_over_mask(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |pred − target| over the pixels where ``mask`` is set (all channels): normalised by the mask's area,
    0 for an empty mask."""
    weights = mask.expand_as(pred).float()
    return ((pred.float() - target.float()).abs() * weights).sum() / weights.sum().clamp(min=1.0)


def masked_l1_over_all(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |mask·pred − mask·target| over every element (STE's L1 of masked images): normalised by the image's
    size, not the mask's area (:func:`masked_l1_over_mask`)."""
    return F.l1_loss(mask * pred, mask * target)


def channel_gram(features: torch.Tensor) -> torch.Tensor:
    """Channel Gram matrices of CNN feature maps: (B,C,H,W) -> (B,C,C), normalised by C·H·W."""
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


class VGGFeatureLoss(nn.Module):
    """Perceptual (L1 of VGG16 pool1/pool2/pool3 features) and style (L1 of their Gram matrices) losses,
    as EraseNet/STE. Inputs RGB in [0,1], ImageNet-normalised first unless ``normalize=False`` (EraseNet
    and STE feed [0,1] images to VGG as they are). ``weights``: a local torchvision ``vgg16`` state_dict,
    ``None`` to download torchvision's ImageNet weights once into the zoo cache, or ``"random"`` (tests)."""

    STAGES = (4, 9, 16)  # pool1, pool2, pool3 in torchvision's vgg16.features

    def __init__(self, weights: str | os.PathLike | None = None, normalize: bool = True):
        super().__init__()
        self.normalize = normalize
        layers = []
        in_channels = 3
        for spec in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M"):
            if spec == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_channels, spec, 3, padding=1), nn.ReLU(inplace=True)]
                in_channels = spec
        self.features = nn.Sequential(*layers)  # torchvision's vgg16.features[:17], same indices
        self.weights = weights
        self.loaded = weights == "random"  # real weights are read at the first use (not to evaluate or test configs)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    def load_weights(self) -> None:
        """Read the VGG16 weights into the layers (downloading them once when ``weights`` is None)."""
        state = load_vgg16_state(self.weights)
        count = len(self.features)
        self.features.load_state_dict(
            {
                k[len("features.") :]: v
                for k, v in state.items()
                if k.startswith("features.") and int(k.split(".")[1]) < count
            }
        )
        self.loaded = True

    def extract(self, image: torch.Tensor) -> list[torch.Tensor]:
        if not self.loaded:
            self.load_weights()
        x = (image.float() - self.mean) / self.std if self.normalize else image.float()
        stages = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.STAGES:
                stages.append(x)
        return stages

    def train(self, mode: bool = True) -> VGGFeatureLoss:
        return super().train(False)  # a fixed feature extractor

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (perceptual, style)."""
        with torch.autocast(device_type=pred.device.type, enabled=False):
            pred_features, target_features = self.extract(pred), self.extract(target)
            perceptual = sum(F.l1_loss(p, t) for p, t in zip(pred_features, target_features))
            style = sum(F.l1_loss(channel_gram(p), channel_gram(t)) for p, t in zip(pred_features, target_features))
        return perceptual, style
