"""STE's erasing network, discriminator and mask critic (Jiang et al., ACM MM 2022, Sec. 3.1).

The eraser is EraseNet's coarse-to-fine generator (``STRnet2``) as in the official STE code
(alimama-creative/Self-supervised-Text-Erasing, ``models/src/erase/sa_gan.py``), parameter names
included:

* **Input**: RGB in [0,1], no mask: the network predicts its own text mask.
* **Blocks**: spectral-norm convolutions / transposed convolutions followed by LeakyReLU(0.2). The
  official transposed convolutions receive ``dilation=1`` in the ``output_padding`` slot, so every
  3x3 stride-2 deconvolution exactly doubles the size; we set ``output_padding=1`` explicitly.
  Residual blocks are conv3x3-ReLU-conv3x3 (+1x1 shortcut when down-sampling) with BatchNorm on the sum.
* **Coarse U-Net** with lateral connections and side outputs at 1/4 and 1/2; a **mask branch** on the
  res6 features predicting 3-channel text-mask logits at full size; a **refinement network** on the
  coarse output with dilated convolutions (2, 4, 8, 16) and skips from the encoder.

19,737,615 parameters (``width=32``). The Hugging Face release ``best_net_G.pth`` is a DataParallel
state_dict (``module.`` prefix, removed by the loader) with the spectral-norm buffers
``weight_orig``/``weight_u``/``weight_v``; it loads without remapping because the layers use
``torch.nn.utils.spectral_norm``, which stores exactly those keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from zoo.nn.padding import crop_to, pad_to_multiple
from zoo.registry import TEXT_ERASER, register_model

__all__ = ["STEEraser", "STEOutput", "STEDiscriminator", "MaskCritic", "ste"]

STRIDE = 32  # total down-sampling of the U-Net encoder
COMPOSITES = ("none", "predicted")
PREDICTED_MASKS = ("hard", "soft")


class SNConv(nn.Module):
    """Spectral-norm (transposed) convolution + optional LeakyReLU(0.2) (official ``ConvWithActivation``
    / ``DeConvWithActivation``; the layer lives in ``conv2d`` as in the official keys)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        transposed: bool = False,
        activation: bool = True,
    ):
        super().__init__()
        if transposed:
            layer = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding, output_padding=1)
        else:
            layer = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation=dilation)
        self.conv2d = spectral_norm(layer)
        self.activation = nn.LeakyReLU(0.2) if activation else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2d(x)
        return self.activation(x) if self.activation is not None else x


def sn_deconv(in_channels: int, out_channels: int) -> SNConv:
    """3x3 stride-2 transposed convolution that doubles the size."""
    return SNConv(in_channels, out_channels, 3, stride=2, padding=1, transposed=True)


class Residual(nn.Module):
    """conv3x3(stride) - ReLU - conv3x3, shortcut (1x1 when the shape changes), BatchNorm(out + x), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool = False):
        super().__init__()
        stride = 2 if downsample else 1
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv3 = nn.Conv2d(in_channels, out_channels, 1, stride=stride) if downsample else None
        self.batch_norm2d = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        shortcut = self.conv3(x) if self.conv3 is not None else x
        return F.relu(self.batch_norm2d(out + shortcut))


def lateral_connection(channels: int) -> nn.Sequential:
    """1x1 -> 3x3 (x2 channels) -> 3x3 -> 1x1 back, no activations (EraseNet's lateral connections)."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 1),
        nn.Conv2d(channels, 2 * channels, 3, padding=1),
        nn.Conv2d(2 * channels, 2 * channels, 3, padding=1),
        nn.Conv2d(2 * channels, channels, 1),
    )


class MaskDecoder(nn.Module):
    """Deconv/conv stack from 1/16-resolution features to 3-channel text-mask logits at full size.

    ``skip_channels`` (per stage) are concatenated before each deconvolution (the eraser's mask branch
    takes the encoder features; :class:`MaskCritic` has no skips)."""

    def __init__(self, width: int, skip_channels: tuple[int, int, int, int]):
        super().__init__()
        w = width
        self.mask_deconv_a = sn_deconv(8 * w + skip_channels[0], 8 * w)
        self.mask_conv_a = SNConv(8 * w, 4 * w, 3, padding=1)
        self.mask_deconv_b = sn_deconv(4 * w + skip_channels[1], 4 * w)
        self.mask_conv_b = SNConv(4 * w, 2 * w, 3, padding=1)
        self.mask_deconv_c = sn_deconv(2 * w + skip_channels[2], 2 * w)
        self.mask_conv_c = SNConv(2 * w, w, 3, padding=1)
        self.mask_deconv_d = sn_deconv(w + skip_channels[3], w)
        self.mask_conv_d = nn.Conv2d(w, 3, 1)

    def decode(self, x: torch.Tensor, skips: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
        stages = (
            (self.mask_deconv_a, self.mask_conv_a),
            (self.mask_deconv_b, self.mask_conv_b),
            (self.mask_deconv_c, self.mask_conv_c),
            (self.mask_deconv_d, None),
        )
        for index, (deconv, conv) in enumerate(stages):
            if skips:
                x = torch.cat([x, skips[index]], dim=1)
            x = deconv(x)
            x = conv(x) if conv is not None else x
        return self.mask_conv_d(x)


@dataclass
class STEOutput:
    """The eraser's training outputs (the official tuple ``xo0, x_o1, x_o2, x_o_unet, x, mm, x_mask``)."""

    bottleneck: torch.Tensor  # xo0, 1/32 resolution
    quarter: torch.Tensor  # x_o1, coarse output at 1/4
    half: torch.Tensor  # x_o2, coarse output at 1/2
    coarse: torch.Tensor  # x_o_unet, coarse output at full size
    refined: torch.Tensor  # the final output
    mask_logits: torch.Tensor | None  # mm, 3-channel text-mask logits (1 = text); None without the mask branch
    mask_features: torch.Tensor  # x_mask, res6 features (1/16), read by the mask critic


class STEEraser(MaskDecoder):
    """EraseNet/STE coarse-to-fine eraser (see the module docstring). ``width`` scales every channel
    count (32 = the released model).

    ``composite`` ("none" | "predicted") and ``predicted_mask`` ("hard": text where the mask logit is
    >= 0.5, the official ``comp_G`` of the poster models; "soft": 1 − logits clamped to [0,1], the
    scene models without sigmoid) decide what the eval :meth:`forward` returns without a given mask.
    """

    def __init__(self, width: int = 32, composite: str = "none", predicted_mask: str = "hard"):
        w = width
        super().__init__(w, (8 * w, 4 * w, 2 * w, w))
        if composite not in COMPOSITES or predicted_mask not in PREDICTED_MASKS:
            raise ValueError(
                f"composite must be one of {COMPOSITES} and predicted_mask one of {PREDICTED_MASKS}; "
                f"got {composite!r}, {predicted_mask!r}"
            )
        self.composite, self.predicted_mask = composite, predicted_mask
        # coarse U-Net encoder
        self.conv1 = SNConv(3, w, 4, stride=2, padding=1)
        self.conva = SNConv(w, w, 3, padding=1)
        self.convb = SNConv(w, 2 * w, 4, stride=2, padding=1)
        self.res1 = Residual(2 * w, 2 * w)
        self.res2 = Residual(2 * w, 2 * w)
        self.res3 = Residual(2 * w, 4 * w, downsample=True)
        self.res4 = Residual(4 * w, 4 * w)
        self.res5 = Residual(4 * w, 8 * w, downsample=True)
        self.res6 = Residual(8 * w, 8 * w)
        self.res7 = Residual(8 * w, 16 * w, downsample=True)
        self.res8 = Residual(16 * w, 16 * w)
        self.conv2 = SNConv(16 * w, 16 * w, 1)
        # coarse U-Net decoder
        self.deconv1 = sn_deconv(16 * w, 8 * w)
        self.deconv2 = sn_deconv(16 * w, 4 * w)
        self.deconv3 = sn_deconv(8 * w, 2 * w)
        self.deconv4 = sn_deconv(4 * w, w)
        self.deconv5 = sn_deconv(2 * w, 3)
        self.lateral_connection1 = lateral_connection(8 * w)
        self.lateral_connection2 = lateral_connection(4 * w)
        self.lateral_connection3 = lateral_connection(2 * w)
        self.lateral_connection4 = lateral_connection(w)
        self.conv_o1 = nn.Conv2d(2 * w, 3, 1)
        self.conv_o2 = nn.Conv2d(w, 3, 1)
        # refinement network
        self.coarse_conva = SNConv(3, w, 5, padding=2)
        self.coarse_convb = SNConv(w, 2 * w, 4, stride=2, padding=1)
        self.coarse_convc = SNConv(2 * w, 2 * w, 3, padding=1)
        self.coarse_convd = SNConv(2 * w, 4 * w, 4, stride=2, padding=1)
        self.coarse_conve = SNConv(4 * w, 4 * w, 3, padding=1)
        self.coarse_convf = SNConv(4 * w, 4 * w, 3, padding=1)
        self.astrous_net = nn.Sequential(*(SNConv(4 * w, 4 * w, 3, padding=d, dilation=d) for d in (2, 4, 8, 16)))
        self.coarse_convk = SNConv(4 * w, 4 * w, 3, padding=1)
        self.coarse_convl = SNConv(4 * w, 4 * w, 3, padding=1)
        self.coarse_deconva = sn_deconv(12 * w, 2 * w)
        self.coarse_convm = SNConv(2 * w, 2 * w, 3, padding=1)
        self.coarse_deconvb = sn_deconv(6 * w, w)
        self.coarse_convn = nn.Sequential(
            SNConv(w, w // 2, 3, padding=1), SNConv(w // 2, 3, 3, padding=1, activation=False)
        )
        self.c1 = nn.Conv2d(w, 2 * w, 1)
        self.c2 = nn.Conv2d(2 * w, 4 * w, 1)

    def forward_train(self, image: torch.Tensor, mask_branch: bool = True) -> STEOutput:
        """All outputs for the losses; H and W must be multiples of 32. ``mask_branch=False`` skips the
        mask decoder (inference with a given mask or without compositing: ~10 % less compute)."""
        x = self.conva(self.conv1(image))
        skip1 = x
        x = self.res1(self.convb(x))
        skip2 = x
        x = self.res3(self.res2(x))
        skip3 = x
        x = self.res5(self.res4(x))
        skip4 = x
        mask_features = x = self.res6(x)
        bottleneck = x = self.conv2(self.res8(self.res7(x)))
        x = torch.cat([self.lateral_connection1(skip4), self.deconv1(x)], dim=1)
        x = torch.cat([self.lateral_connection2(skip3), self.deconv2(x)], dim=1)
        x = self.deconv3(x)
        quarter = self.conv_o1(x)
        x = self.deconv4(torch.cat([self.lateral_connection3(skip2), x], dim=1))
        half = self.conv_o2(x)
        coarse = self.deconv5(torch.cat([self.lateral_connection4(skip1), x], dim=1))
        mask_logits = self.decode(mask_features, (skip4, skip3, skip2, skip1)) if mask_branch else None
        x = self.coarse_convc(self.coarse_convb(self.coarse_conva(coarse)))
        refine1 = x
        x = self.coarse_convf(self.coarse_conve(self.coarse_convd(x)))
        refine2 = x
        x = self.coarse_convl(self.coarse_convk(self.astrous_net(x)))
        x = self.coarse_convm(self.coarse_deconva(torch.cat([x, refine2, self.c2(skip2)], dim=1)))
        refined = self.coarse_convn(self.coarse_deconvb(torch.cat([x, refine1, self.c1(skip1)], dim=1)))
        return STEOutput(bottleneck, quarter, half, coarse, refined, mask_logits, mask_features)

    def text_region(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """The predicted text region (1 = text, 3 channels) from the mask logits (``predicted_mask``)."""
        if self.predicted_mask == "hard":
            return (mask_logits >= 0.5).to(mask_logits.dtype)
        return mask_logits.clamp(0, 1)

    def forward(
        self, image: torch.Tensor, mask: torch.Tensor | None = None, composite: str | None = None
    ) -> torch.Tensor:
        """Erase the text of (B,3,H,W) RGB in [0,1], any H x W (reflect-padded to a multiple of 32).

        Returns the refined output in [0,1]; composited with the input outside ``mask`` (B,1,H,W),
        1 = text) when a mask is given, else outside the predicted text region when ``composite``
        (default: the constructor's) is "predicted".
        """
        composite = composite or self.composite
        if composite not in COMPOSITES:
            raise ValueError(f"composite must be one of {COMPOSITES}, got {composite!r}")
        height, width = image.shape[-2:]
        padded = pad_to_multiple(image, STRIDE)
        predicted = mask is None and composite == "predicted"
        outputs = self.forward_train(padded, mask_branch=predicted)
        refined = crop_to(outputs.refined, (height, width)).clamp(0, 1)
        if mask is not None:
            if mask.shape[-2:] != image.shape[-2:]:
                raise ValueError(f"mask must be (B,1,H,W) matching image {tuple(image.shape)}; got {tuple(mask.shape)}")
            return torch.lerp(image, refined.to(image.dtype), (mask > 0.5).to(image.dtype))  # dtype: autocast
        if predicted:
            return torch.lerp(
                image,
                refined.to(image.dtype),
                self.text_region(crop_to(outputs.mask_logits, (height, width))).to(image.dtype),
            )
        return refined


class MaskCritic(MaskDecoder):
    """STE's realism critic (official ``Dis_Mask``, 1.17M parameters): segments the *real* text from the
    eraser's res6 features; its failure to see synthetic text as synthetic is the policy's realism reward."""

    def __init__(self, width: int = 32):
        super().__init__(width, (0, 0, 0, 0))

    def forward(self, mask_features: torch.Tensor) -> torch.Tensor:
        return self.decode(mask_features)


class STEDiscriminator(nn.Module):
    """Global + local spectral-norm PatchGAN (official ``Discriminator_STE``, 7.62M parameters): two
    stacks of ``num_layers`` 4x4 stride-2 SN convolutions (2w, 4w, 8w, 8w, ...), the local one on the
    text region only (``image * text_mask``), fused by a 4x4 convolution (+ sigmoid, as the README's
    ``--sigmoid`` runs). ``num_layers=6`` needs inputs of at least 256 px; fewer layers for small images."""

    def __init__(self, width: int = 32, num_layers: int = 6, sigmoid: bool = True):
        super().__init__()
        channels = [3] + [min(2 ** (i + 1), 8) * width for i in range(num_layers)]
        self.globalDis = nn.Sequential(
            *(SNConv(channels[i], channels[i + 1], 4, stride=2, padding=1) for i in range(num_layers))
        )
        self.localDis = nn.Sequential(
            *(SNConv(channels[i], channels[i + 1], 4, stride=2, padding=1) for i in range(num_layers))
        )
        self.fusion = nn.Sequential(nn.Conv2d(2 * channels[-1], 1, 4), *([nn.Sigmoid()] if sigmoid else []))

    def forward(self, image: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) image, (B,1|3,H,W) text mask (1 = text) -> (B, N) patch scores."""
        features = torch.cat([self.globalDis(image), self.localDis(image * text_mask)], dim=1)
        return self.fusion(features).flatten(1)


@register_model(
    "ste",
    **TEXT_ERASER,
    optional=("mask",),
    pad_multiple=STRIDE,
    composites=True,
    params=19_737_615,
    default_tag="posterase",
)
def ste(**kwargs) -> STEEraser:
    """STE eraser (19,737,615 parameters with the default arguments)."""
    return STEEraser(**kwargs)
