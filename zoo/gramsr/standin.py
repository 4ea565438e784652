"""A stand-in for GramSR's frozen base where SD-2.1 and DINOv3 cannot be had (the CPU quick start).

GramSR only trains LoRAs and an adapter on a *pretrained* base: the VAE reconstructs images and the
UNet's residual ε at t = 1 is small, so the untrained model already returns roughly its bicubic input.
A randomly initialised tiny base has neither property: its VAE reconstructs nothing, so the model
cannot even return its input (16.5 dB against bicubic's 22.4 on the quick start's data). The stand-in
gives a tiny random stack these two properties, and nothing else:

* :func:`fit_autoencoder` — the VAE is fitted as an autoencoder (MSE of ``decode(encode(x).mode())``
  on random crops of the run's own training images: the HQ ones and the upsampled degraded inputs
  the VAE encodes; Adam, seeded);
* :func:`scale_unet_output` — the UNet's ``conv_out`` is scaled (by 0.05 in the quick profile), so the
  initial ε is small, as the pretrained UNet's at t = 1; the LoRAs start from there;
* :func:`save_base` — the stand-in is written in the real layouts (diffusers ``unet/``, ``vae/``,
  ``scheduler/``; transformers ``dino/``), so checkpoints name a folder that rebuilds it exactly.

DINOv3 stays random (its tokens only condition the UNet through the trained adapter). The UNet
teacher of stage 2's CSD is this weak UNet, so the CSD term is small here; with SD-2.1 it is not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DINO_FOLDER", "fit_autoencoder", "save_base", "scale_unet_output"]

DINO_FOLDER = "dino"  # save_base's transformers-layout DINOv3, inside the base folder


def _crops(
    images: Iterable[torch.Tensor], pool_size: int, batch: int, crop: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """Endless batches of ``batch`` random ``crop``² crops from the first ``pool_size`` images of ``images``
    ((B,3,H,W) batches in [0,1])."""
    pool: list[torch.Tensor] = []
    for chunk in images:
        pool.extend(chunk.float())
        if len(pool) >= pool_size:
            break
    if not pool:
        raise ValueError("the stand-in VAE needs training images, and the training data gave none")
    stack = torch.stack(pool[:pool_size])
    height, width = stack.shape[-2:]
    crop = min(crop, height, width)
    while True:
        index = torch.randint(len(stack), (batch,), generator=generator)
        top = torch.randint(height - crop + 1, (batch,), generator=generator)
        left = torch.randint(width - crop + 1, (batch,), generator=generator)
        yield torch.stack(
            [stack[i, :, y : y + crop, x : x + crop] for i, y, x in zip(index.tolist(), top.tolist(), left.tolist())]
        )


def fit_autoencoder(
    vae: nn.Module,
    images: Iterable[torch.Tensor],
    steps: int = 800,
    lr: float = 1e-3,
    batch: int = 16,
    crop: int = 32,
    pool_size: int = 256,
    seed: int = 0,
) -> list[float]:
    """Fit ``vae`` (diffusers ``AutoencoderKL``) as an autoencoder: ``steps`` Adam steps on
    MSE(decode(encode(x).mode()), x) for x in [-1, 1], random ``crop``² crops of the first ``pool_size`` images of
    ``images``. Returns the losses; the VAE is left frozen (``requires_grad`` False) in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    device = next(vae.parameters()).device
    vae.requires_grad_(True)
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr)
    losses = []
    try:
        with torch.enable_grad():
            for _, x in zip(range(steps), _crops(images, pool_size, batch, crop, generator)):
                x = x.to(device) * 2 - 1
                loss = F.mse_loss(vae.decode(vae.encode(x).latent_dist.mode()).sample, x)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.detach().item())
    finally:
        vae.requires_grad_(False)
        vae.eval()
    return losses


@torch.no_grad()
def scale_unet_output(unet: nn.Module, scale: float) -> None:
    """Multiply the UNet's ``conv_out`` weight and bias by ``scale`` (its peft base layer when wrapped)."""
    conv = unet.conv_out.get_base_layer() if hasattr(unet.conv_out, "get_base_layer") else unet.conv_out
    conv.weight.mul_(scale)
    conv.bias.mul_(scale)


def save_base(model: nn.Module, folder: str | Path) -> None:
    """Write ``model``'s (a :class:`~zoo.gramsr.model.GramSR`) frozen base in the layouts ``base_model=`` and
    ``dino_model=`` read: ``folder/{unet,vae,scheduler}`` (diffusers, the UNet without its LoRA layers) and
    ``folder/`` :data:`DINO_FOLDER` (transformers)."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    folder = Path(folder)
    unet = UNet2DConditionModel.from_config(model.unet.config)
    state = {k.replace(".base_layer.", "."): v for k, v in model.unet.state_dict().items() if ".lora_" not in k}
    unet.load_state_dict(state)
    unet.save_pretrained(folder / "unet")
    model.vae.save_pretrained(folder / "vae")
    DDPMScheduler(**model.scheduler_config).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(
        json.dumps({"_class_name": "GramSR stand-in base (random UNet, fitted VAE)"}, indent=2)
    )
    model.dino.save_pretrained(folder / DINO_FOLDER)
