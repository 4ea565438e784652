"""DeepEraser training (LightningModule).

The official repository has no training code; what follows is our reading of the paper
(see ``README.md`` in this folder for what is faithful and what we chose):

* **Loss** (Sec. III-C): a pixel loss on every iterate, weighted γ^(K-k) (RAFT-style, γ=0.8), L1 by
  default.
* **Custom mask generation** (Sec. III-D, adaptive removal): per sample, a random non-empty subset of
  the text instances forms the mask (with probability ``all_text_prob`` all of them); the target is
  the clean image inside the chosen region and the *input* elsewhere, so unselected text must be kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from zoo.imaging.masks import dilate_mask
from zoo.training.module import RestorationModule

PIXEL_LOSSES = {"l1": F.l1_loss, "l2": F.mse_loss, "smooth_l1": F.smooth_l1_loss}


def sequence_loss(
    iterates: Sequence[torch.Tensor], target: torch.Tensor, gamma: float = 0.8, loss: str = "l1"
) -> torch.Tensor:
    """Σ_k γ^(K-k) · loss(iterate_k, target) over the K iterates (the last weighs 1)."""
    pixel_loss = PIXEL_LOSSES[loss]
    count = len(iterates)
    return sum(
        gamma ** (count - k - 1) * pixel_loss(iterate.float(), target.float()) for k, iterate in enumerate(iterates)
    )


def select_text_instances(
    image: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    boxes: Sequence[torch.Tensor] | None,
    all_text_prob: float = 0.3,
    box_prob: float = 0.0,
    max_dilation: int = 0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The adaptive-removal training pair: ``(mask, target)`` for a random subset of text instances.

    For each sample a subset size k ~ U{1..N} and k random instances (``boxes``, xyxy) are chosen, or
    all text with probability ``all_text_prob`` (also when there are no boxes). The chosen region is
    the text mask inside the chosen boxes, or with probability ``box_prob`` the boxes themselves (a
    user's rough box selection), dilated by a random radius in [0, ``max_dilation``]. The new target
    is the clean ``target`` inside the region and ``image`` outside it.
    """
    device = mask.device
    chosen = torch.empty_like(mask)
    height, width = mask.shape[-2:]

    def rand() -> float:
        return float(torch.rand((), generator=generator))

    for b in range(mask.shape[0]):
        sample_boxes = boxes[b] if boxes is not None else torch.zeros(0, 4)
        count = len(sample_boxes)
        use_boxes = rand() < box_prob
        all_text = count == 0 or rand() < all_text_prob
        if all_text and not (use_boxes and count):
            chosen[b] = mask[b]
        else:
            if all_text:
                picked = sample_boxes
            else:
                k = int(torch.randint(1, count + 1, (), generator=generator))
                picked = sample_boxes[torch.randperm(count, generator=generator)[:k]]
            box_mask = torch.zeros(1, height, width, device=device, dtype=mask.dtype)
            for x0, y0, x1, y1 in picked.tolist():
                box_mask[
                    :, max(0, int(y0)) : min(height, int(y1 + 0.999)), max(0, int(x0)) : min(width, int(x1 + 0.999))
                ] = 1
            chosen[b] = box_mask if use_boxes else mask[b] * box_mask
        if max_dilation > 0:
            chosen[b] = dilate_mask(chosen[b], int(torch.randint(0, max_dilation + 1, (), generator=generator)))
    new_target = chosen * target + (1 - chosen) * image
    return chosen, new_target


class DeepEraserModule(RestorationModule):
    def __init__(
        self,
        model_name: str = "deeperaser",
        net: dict[str, Any] | None = None,
        loss: str = "l1",
        gamma: float = 0.8,
        train_iters: int | None = None,
        checkpoint_iterations: bool = False,
        all_text_prob: float = 0.3,
        box_prob: float = 0.2,
        max_dilation: int = 3,
        **kwargs: Any,
    ):
        if loss not in PIXEL_LOSSES:
            raise ValueError(f"loss must be one of {sorted(PIXEL_LOSSES)}, got {loss!r}")
        super().__init__(model_name, net, **kwargs)
        self.save_arguments()

    def training_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        hp = self.hparams
        mask, target = select_text_instances(
            batch["image"],
            batch["target"],
            batch["mask"],
            batch.get("boxes"),
            hp.all_text_prob,
            hp.box_prob,
            hp.max_dilation,
        )
        outputs = self.net.forward_train(batch["image"], mask, hp.train_iters, hp.checkpoint_iterations)
        return {"loss": sequence_loss(outputs.iterates, target, hp.gamma, hp.loss)}
