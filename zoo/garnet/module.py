"""GaRNet training (LightningModule). The official training code is not released (upstream issue #2);
what follows is the paper's description and what its data/eval code implies, with our choices documented
in ``README.md`` in this folder and exposed in ``rezoo/configs/zoo/garnet.yaml``.

* **RoI generation**: the target is the ground truth inside the text boxes and the input outside
  (``roi_target``); every loss is restricted to the boxes ("don't care" outside).
* **Losses**: multi-scale L1 on the 1/4, 1/2 and full outputs; attention supervision of every gated
  block's TSR/TSSR maps (TSR = pixels whose mean |input − GT| over RGB exceeds 25/255, TSSR = inside
  the box minus TSR), binary cross-entropy at the block's resolution; optional VGG perceptual/style
  terms; adversarial loss of the 6-channel PatchGAN with locality-dependent labels (the box mask
  averaged over each discriminator patch's 70x70 receptive field, EnsNet's ``label_Discriminator``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from zoo.garnet.model import GaRNetOutput, PatchDiscriminator
from zoo.training.gan import AdversarialModule
from zoo.training.losses import VGGFeatureLoss, masked_l1_over_mask

TSR_THRESHOLD = 25 / 255  # mean |input - GT| over RGB (GaRNet's data code, upstream issue #3)
RECEPTIVE_FIELD, PATCH_STRIDE, PATCH_PADDING = 70, 8, 23  # the official label_Discriminator convolution


def roi_target(image: torch.Tensor, target: torch.Tensor, box_mask: torch.Tensor) -> torch.Tensor:
    """GaRNet's RoI generation: ground truth inside the boxes, the input outside."""
    return target * box_mask + image * (1 - box_mask)


def stroke_masks(
    image: torch.Tensor, target: torch.Tensor, box_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(TSR, TSSR) supervision at full resolution: strokes = mean RGB |input − target| > 25/255 inside the
    boxes; surroundings = the rest of the boxes."""
    tsr = ((image - target).abs().mean(1, keepdim=True) > TSR_THRESHOLD).to(image.dtype) * box_mask
    return tsr, box_mask * (1 - tsr)


def locality_labels(box_mask: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Fraction of text-box pixels in each discriminator patch's receptive field (EnsNet/GaRNet's
    locality-dependent labels), on the discriminator's output grid."""
    kernel = box_mask.new_full((1, 1, RECEPTIVE_FIELD, RECEPTIVE_FIELD), 1.0 / RECEPTIVE_FIELD**2)
    labels = F.conv2d(box_mask, kernel, stride=PATCH_STRIDE, padding=PATCH_PADDING).clamp(0, 1)
    return F.interpolate(labels, size=tuple(grid), mode="nearest") if labels.shape[-2:] != tuple(grid) else labels


def weighted_bce(logits: torch.Tensor, real: bool, weights: torch.Tensor) -> torch.Tensor:
    """Patch-wise BCE weighted by ``weights`` (patches without text are "don't care")."""
    target = torch.full_like(logits, 1.0 if real else 0.0)
    loss = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    return (loss * weights).sum() / weights.sum().clamp(min=1e-6)


class GaRNetModule(AdversarialModule):
    def __init__(
        self,
        model_name: str = "garnet",
        net: dict[str, Any] | None = None,
        scale_weights: Sequence[float] = (5.0, 6.0, 10.0),
        attention_weight: float = 1.0,
        perceptual_weight: float = 0.0,
        style_weight: float = 0.0,
        vgg_weights: str | None = None,
        adversarial_weight: float = 0.1,
        **kwargs: Any,
    ):
        super().__init__(model_name, net, **kwargs)
        self.save_arguments(scale_weights=list(scale_weights))
        self.vgg = VGGFeatureLoss(vgg_weights) if perceptual_weight or style_weight else None

    def build_discriminator(self, **kwargs: Any) -> PatchDiscriminator:
        return PatchDiscriminator(**kwargs)

    def prepare_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        box_mask = (batch["mask"] > 0.5).to(batch["image"].dtype)
        return {**batch, "mask": box_mask, "target": roi_target(batch["image"], batch["target"], box_mask)}

    def generate(self, batch: dict[str, Any]) -> GaRNetOutput:
        return self.net.forward_train(batch["image"], batch["mask"])

    @staticmethod
    def _composite(batch: dict[str, Any], outputs: GaRNetOutput) -> torch.Tensor:
        """The full-size output in [0,1], pasted into the input outside the boxes (what D judges)."""
        erased = (outputs.full.clamp(-1, 1) + 1) / 2
        return erased * batch["mask"] + batch["image"] * (1 - batch["mask"])

    def _judge(self, batch: dict[str, Any], candidate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.discriminator(torch.cat([batch["image"], candidate], dim=1) * 2 - 1)
        return logits, locality_labels(batch["mask"], logits.shape[-2:])

    def discriminator_loss(self, batch: dict[str, Any], outputs: GaRNetOutput) -> torch.Tensor:
        fake_logits, weights = self._judge(batch, self._composite(batch, outputs).detach())
        real_logits, _ = self._judge(batch, batch["target"])
        return 0.5 * (weighted_bce(real_logits, True, weights) + weighted_bce(fake_logits, False, weights))

    def generator_losses(
        self, batch: dict[str, Any], outputs: GaRNetOutput, adversarial: bool
    ) -> dict[str, torch.Tensor]:
        hp = self.hparams
        image, target, box = batch["image"], batch["target"], batch["mask"]
        losses = {}
        reconstruction = 0.0
        for weight, output in zip(hp.scale_weights, (outputs.quarter, outputs.half, outputs.full)):
            size = output.shape[-2:]
            scaled_target = F.interpolate(target, size=size, mode="area") if target.shape[-2:] != size else target
            scaled_box = F.interpolate(box, size=size, mode="nearest") if box.shape[-2:] != size else box
            reconstruction = reconstruction + weight * masked_l1_over_mask(
                (output.float() + 1) / 2, scaled_target, scaled_box
            )
        losses["reconstruction"] = reconstruction
        if hp.attention_weight:
            tsr, tssr = stroke_masks(image, target, box)
            attention = 0.0
            for tsr_logits, tssr_logits in zip(outputs.tsr, outputs.tssr):
                size = tsr_logits.shape[-2:]
                region = F.interpolate(box, size=size, mode="area") > 0
                for logits, label in ((tsr_logits, tsr), (tssr_logits, tssr)):
                    label = F.interpolate(label, size=size, mode="area") > 0.5
                    bce = F.binary_cross_entropy_with_logits(logits.float(), label.float(), reduction="none")
                    attention = attention + (bce * region).sum() / region.sum().clamp(min=1)
            losses["attention"] = hp.attention_weight * attention / len(outputs.tsr)
        composite = self._composite(batch, outputs)
        if self.vgg is not None:
            perceptual, style = self.vgg(composite, target)
            losses["perceptual"] = hp.perceptual_weight * perceptual
            losses["style"] = hp.style_weight * style
        if adversarial and hp.adversarial_weight:
            logits, weights = self._judge(batch, composite)
            losses["adversarial"] = hp.adversarial_weight * weighted_bce(logits, True, weights)
        return losses
