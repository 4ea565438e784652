"""GaRNet: text removal with gated attention and region-of-interest generation (Lee & Choi, ECCV 2022).

Architecture as the official implementation (naver/garnet ``CODE/model.py``), parameter names included:

* **Input** (Sec. 3): RGB mapped to [-1, 1] and a binary text-box mask (1 = inside a box), 4 channels.
* **Mask branch**: a frozen pyramid of box filters (weights 1/k²) turning the box mask into soft masks
  at every encoder resolution; after each filter the map is divided by its maximum. The official code
  takes the maximum over the *whole batch* (``mask_norm="batch"``, kept for fidelity: a sample's
  masks then depend on the other samples of its batch); ``mask_norm="sample"`` normalises per sample.
* **Gated-attention residual blocks** (Sec. 3.2): conv3x3-ReLU-conv3x3, then from the channel mean, the
  channel max and the soft mask two 7x7 convolutions give the text-stroke (TSR) and stroke-surrounding
  (TSSR) attention logits a1, a2; the gate is sigmoid(α·a1 + β·a2) with learnable α, β (init 0.5);
  output ReLU(features·gate + shortcut).
* **Encoder/decoder**: a 4x4 stride-2 stem, max-pool, eight gated blocks (three of them down-sampling),
  lateral connections, a 2-channel 1x1 bottleneck (inherited from EnsNet), transposed-conv decoder with
  ELU and outputs at 1/4, 1/2 and full resolution (the last through an ELU, as the official code).

12,399,909 parameters, 160 of them frozen (the mask branch). Parameter names equal the official ones:
the Hugging Face release (``naverpapago/garnet``, a state_dict or ``{"model_state_dict": ...}``, no
``module.`` prefix) loads without remapping. ``forward(image, mask)`` returns the
output composited with the input outside the mask, in [0,1], at the input's size (see
``inference_size``); ``forward_train`` returns the raw outputs and attention maps for the losses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from zoo.nn.padding import crop_to, pad_to_multiple
from zoo.registry import TEXT_ERASER, register_model

__all__ = ["GaRNet", "GaRNetOutput", "PatchDiscriminator", "garnet"]

STRIDE = 32  # total down-sampling of the encoder


class LateralConnection(nn.Module):
    """The official ``LC``: 1x1 to ceil(c/2) channels, then two 3x3 convolutions (no activation)."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        half = math.ceil(channels / 2)
        self.model = nn.Sequential(
            nn.Conv2d(in_channels, half, 1), nn.Conv2d(half, half, 3, padding=1), nn.Conv2d(half, half, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def lateral(channels: int) -> nn.Sequential:
    """``layerN_lc``: lateral connection + 1x1 back to ``channels``."""
    return nn.Sequential(LateralConnection(channels, channels), nn.Conv2d(math.ceil(channels / 2), channels, 1))


class GatedAttention(nn.Module):
    """Gated attention (Sec. 3.2): TSR and TSSR logits from [mean, max, mask], gate = σ(α·a1 + β·a2)."""

    def __init__(self):
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(0.5))
        self.beta = nn.Parameter(torch.tensor(0.5))
        self.conv = nn.Conv2d(3, 1, 7, padding=3, bias=False)  # text stroke region (TSR)
        self.conv2 = nn.Conv2d(3, 1, 7, padding=3, bias=False)  # text stroke surrounding region (TSSR)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (gate, TSR logits, TSSR logits)."""
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True), mask], dim=1)
        tsr, tssr = self.conv(pooled), self.conv2(pooled)
        return torch.sigmoid(self.alpha * tsr + self.beta * tssr), tsr, tssr


class GatedResidualBlock(nn.Module):
    """The official ``Residual_with_Attention`` (always mask-guided); ``downsample`` halves the size."""

    def __init__(self, in_channels: int, channels: int, downsample: bool = False):
        super().__init__()
        stride = 2 if downsample else 1
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.att_layer = GatedAttention()
        self.conv3 = nn.Conv2d(in_channels, channels, 1, stride=2) if downsample else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.conv2(F.relu(self.conv1(x)))
        gate, tsr, tssr = self.att_layer(out, mask)
        shortcut = self.conv3(x) if self.conv3 is not None else x
        return F.relu(out * gate + shortcut), tsr, tssr


def _box_filters(count: int, stride_first: bool = False) -> nn.Sequential:
    strides = [2 if stride_first and i == 0 else 1 for i in range(count)]
    return nn.Sequential(*[nn.Conv2d(1, 1, 3, stride=s, padding=1, bias=False) for s in strides])


class MaskBranch(nn.Module):
    """Frozen box-filter pyramid: soft box masks for every gated block (official ``MaskBranch``)."""

    def __init__(self, mask_norm: str = "batch"):
        super().__init__()
        if mask_norm not in ("batch", "sample"):
            raise ValueError(f"mask_norm must be 'batch' (official) or 'sample', got {mask_norm!r}")
        self.mask_norm = mask_norm
        self.initial = nn.Sequential(nn.Conv2d(1, 1, 4, stride=2, padding=1, bias=False))
        self.layer1_out = _box_filters(2)
        for level in (2, 3, 4):
            setattr(self, f"layer{level}_in", _box_filters(2))
            setattr(self, f"layer{level}_out", _box_filters(2, stride_first=True))
        self.layer5 = _box_filters(2)
        for conv in self.modules():
            if isinstance(conv, nn.Conv2d):
                nn.init.constant_(conv.weight, 1.0 / conv.kernel_size[-1] ** 2)
        self.requires_grad_(False)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        peak = (
            x.amax(dim=(0, 1, 2, 3)) if self.mask_norm == "batch" else x.amax(dim=(1, 2, 3), keepdim=True)
        )  # dims named: ONNX export
        return x / (peak + 1e-6)

    def forward(self, mask: torch.Tensor) -> list[torch.Tensor]:
        """The guidance masks of the eight gated blocks, in order (1/4 ... 1/32 of the input)."""
        initial = self._normalise(self.initial(mask))
        level_in = self._normalise(F.max_pool2d(initial, 2))
        guides = []
        out = self._normalise(self.layer1_out(level_in))
        guides.append(out)  # layer1_block
        for level in (2, 3, 4):
            level_in = self._normalise(getattr(self, f"layer{level}_in")(out))
            out = self._normalise(getattr(self, f"layer{level}_out")(level_in))
            guides += [level_in, out]  # layerN, layerN_block
        guides.append(self._normalise(self.layer5(out)))  # layer5
        return guides


@dataclass
class GaRNetOutput:
    """Raw training outputs, in the network's [-1, 1] space (the full-size one goes through an ELU)."""

    quarter: torch.Tensor  # (B,3,H/4,W/4)
    half: torch.Tensor  # (B,3,H/2,W/2)
    full: torch.Tensor  # (B,3,H,W)
    tsr: list[torch.Tensor]  # per gated block, TSR attention logits (B,1,h,w)
    tssr: list[torch.Tensor]  # per gated block, TSSR attention logits


class GaRNet(nn.Module):
    """GaRNet generator; see the module docstring. ``out_channels`` is the official ``in_channels`` (3)."""

    def __init__(
        self, out_channels: int = 3, width: int = 64, mask_norm: str = "batch", inference_size: int | None = 512
    ):
        super().__init__()
        self.inference_size = inference_size
        c = width
        self.mask_branch = MaskBranch(mask_norm)
        self.layer1 = nn.Conv2d(4, c, 4, stride=2, padding=1)
        self.layer1_lc = lateral(c)
        self.pool = nn.MaxPool2d(2, 2)
        self.layer1_block = GatedResidualBlock(c, c)
        self.layer2 = GatedResidualBlock(c, c)
        self.layer2_lc = lateral(c)
        self.layer2_block = GatedResidualBlock(c, 2 * c, downsample=True)
        self.layer3 = GatedResidualBlock(2 * c, 2 * c)
        self.layer3_lc = lateral(2 * c)
        self.layer3_block = GatedResidualBlock(2 * c, 4 * c, downsample=True)
        self.layer4 = GatedResidualBlock(4 * c, 4 * c)
        self.layer4_lc = lateral(4 * c)
        self.layer4_block = GatedResidualBlock(4 * c, 8 * c, downsample=True)
        self.layer5 = GatedResidualBlock(8 * c, 8 * c)
        self.layer6 = nn.Conv2d(8 * c, 2, 1)
        self.uplayer1 = self._up(2, 4 * c)
        self.uplayer2 = self._up(4 * c, 2 * c)
        self.uplayer3 = self._up(2 * c, c)
        self.convs_1 = nn.Conv2d(c, out_channels, 1, bias=False)
        self.uplayer4 = self._up(c, c)
        self.convs_2 = nn.Conv2d(c, out_channels, 1, bias=False)
        self.uplayer5 = self._up(c, out_channels)

    @staticmethod
    def _up(in_channels: int, channels: int) -> nn.Sequential:
        return nn.Sequential(nn.ConvTranspose2d(in_channels, channels, 4, stride=2, padding=1), nn.ELU())

    def forward_train(self, image: torch.Tensor, mask: torch.Tensor) -> GaRNetOutput:
        """Raw outputs for (B,3,H,W) RGB in [0,1] and a (B,1,H,W) box mask; H, W multiples of 32."""
        if image.shape[-2] % STRIDE or image.shape[-1] % STRIDE:
            raise ValueError(
                f"GaRNet's training input must be a multiple of {STRIDE} px, got {tuple(image.shape[-2:])}"
            )
        mask = mask.to(image.dtype)
        guides = self.mask_branch(mask)
        blocks = (
            self.layer1_block,
            self.layer2,
            self.layer2_block,
            self.layer3,
            self.layer3_block,
            self.layer4,
            self.layer4_block,
            self.layer5,
        )
        laterals = {}
        x = self.layer1(torch.cat([image * 2 - 1, mask], dim=1))
        laterals[1] = self.layer1_lc(x)
        x = self.pool(x)
        tsr, tssr = [], []
        for index, (block, guide) in enumerate(zip(blocks, guides)):
            x, a1, a2 = block(x, guide)
            tsr.append(a1)
            tssr.append(a2)
            if index in (1, 3, 5):  # layer2, layer3, layer4 feed the lateral connections
                laterals[index // 2 + 2] = getattr(self, f"layer{index // 2 + 2}_lc")(x)
        up = F.elu(laterals[4] + self.uplayer1(self.layer6(x)))
        up = F.elu(laterals[3] + self.uplayer2(up))
        up = F.elu(laterals[2] + self.uplayer3(up))
        quarter = self.convs_1(up)
        up = F.elu(laterals[1] + self.uplayer4(up))
        half = self.convs_2(up)
        return GaRNetOutput(quarter, half, self.uplayer5(up), tsr, tssr)

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Erase the text inside ``mask`` (1 = text box) of (B,3,H,W) RGB in [0,1], any H x W.

        With ``inference_size`` (default 512, the training size) the network runs on the image resized
        to that square and its output is resized back to H x W (height and width in the right order);
        with ``None`` it runs at native size, padded (reflect) to a multiple of 32. Either way the
        result keeps the input outside the mask.
        """
        if mask is None:
            raise ValueError("GaRNet needs a text-box mask (B,1,H,W) with 1 = text region; got mask=None")
        if mask.shape[-2:] != image.shape[-2:] or mask.shape[1] != 1:
            raise ValueError(f"mask must be (B,1,H,W) matching image {tuple(image.shape)}; got {tuple(mask.shape)}")
        height, width = image.shape[-2:]
        mask = (mask > 0.5).to(image.dtype)
        if self.inference_size:
            size = (self.inference_size, self.inference_size)
            net_image = (
                F.interpolate(image, size=size, mode="bilinear", align_corners=False)
                if (height, width) != size
                else image
            )
            net_mask = F.interpolate(mask, size=size, mode="nearest") if (height, width) != size else mask
            output = self.forward_train(net_image, net_mask).full.clamp(-1, 1).add_(1).mul_(0.5)
            if (height, width) != size:
                output = F.interpolate(output, size=(height, width), mode="bilinear", align_corners=False)
        else:
            padded_image, padded_mask = pad_to_multiple(image, STRIDE), pad_to_multiple(mask, STRIDE, mode="constant")
            output = (
                crop_to(self.forward_train(padded_image, padded_mask).full, (height, width))
                .clamp(-1, 1)
                .add_(1)
                .mul_(0.5)
            )
        return torch.lerp(
            image, output.to(image.dtype), mask
        )  # output inside the mask, the input outside (dtype: autocast)


class PatchDiscriminator(nn.Module):
    """GaRNet's PatchGAN discriminator (official ``Discriminator``): 6-channel input (image + candidate),
    conv4x4 s2 blocks 64-128-256 with BatchNorm and LeakyReLU 0.2, then two 4x4 stride-1 convs; a 62x62
    map for 512² input. Returns logits (the official applies a sigmoid; we fold it into the loss)."""

    def __init__(self, in_channels: int = 6, width: int = 64, num_blocks: int = 3):
        super().__init__()
        self.initialblock = nn.Sequential(nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2))
        blocks, multiplier = [], 1
        for i in range(1, num_blocks):
            previous, multiplier = multiplier, min(2**i, 8)
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(width * previous, width * multiplier, 4, stride=2, padding=1),
                    nn.BatchNorm2d(width * multiplier),
                    nn.LeakyReLU(0.2),
                )
            )
        self.blocks = nn.Sequential(*blocks)
        self.outblock = nn.Sequential(
            nn.Conv2d(width * multiplier, width * multiplier, 4, stride=1, padding=1),
            nn.BatchNorm2d(width * multiplier),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width * multiplier, 1, 4, stride=1, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outblock(self.blocks(self.initialblock(x)))


@register_model(
    "garnet",
    **TEXT_ERASER,
    pad_multiple=STRIDE,
    composites=True,
    params=12_399_909,
    default_tag="scut_enstext_synthtext",
)
def garnet(**kwargs) -> GaRNet:
    """GaRNet (12,399,909 parameters with the default arguments, 160 of them frozen)."""
    return GaRNet(**kwargs)
