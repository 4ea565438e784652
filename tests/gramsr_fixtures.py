"""Tiny random GramSR stacks in the real layouts, and GramSR's three official weight files.

* :func:`write_base` — an SD-2.1-like base in diffusers layout (``unet/``, ``vae/``, ``scheduler/``,
  ``model_index.json``): what ``from_pretrained(base, subfolder=...)`` reads.
* :func:`write_dino` — a tiny ``DINOv3ViTModel`` saved with ``save_pretrained`` (4 register tokens,
  patch 16, as ViT-B/16; the hidden size differs from the UNet's cross-attention width, so the
  adapter's dimensions come from the configs).
* :func:`write_official_weights` — ``model_12501.pkl`` (pixel + semantic LoRAs, PiSA-SR's
  ``torch.save`` dict), ``adapter_53001.pth`` (the MLP adapter's ``0.*``/``2.*`` tensors) and
  ``lora_weights_dino_53001.safetensors`` (diffusers ``save_lora_adapter`` output of the texture
  LoRA: peft names without the adapter name), all with random non-zero LoRA tensors.

The LoRA targets are enumerated here from the release's rules (restated, independently of
``zoo.gramsr``): pixel/semantic sets name every UNet weight (no bias, no norm) that contains one of
the 14 module names, split into encoder (``down_blocks``/``conv_in``), decoder
(``up_blocks``/``conv_out``) and others; the texture set takes the 14 names as suffixes.
Nothing is downloaded.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

import zoo  # noqa: F401  (torchvision compatibility before diffusers/transformers)

UNET = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": [16, 32],
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 32,
    "attention_head_dim": [2, 4],
    "norm_num_groups": 8,
    "use_linear_projection": True,
}
VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 2,
    "up_block_types": ["UpDecoderBlock2D"] * 2,
    "block_out_channels": [16, 32],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 64,
}
DINO = {
    "hidden_size": 24,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 48,
    "num_register_tokens": 4,
    "patch_size": 16,
    "image_size": 64,
}
SCHEDULER = {  # SD-2.1-base's scheduler/scheduler_config.json (training reads it as a DDPMScheduler)
    "_class_name": "PNDMScheduler",
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}
# random-init stacks from configs (no files): what TINY_NETS and the benchmarks use
TINY_BASE = {"unet": UNET, "vae": VAE}

TARGET_NAMES = [
    "to_k",
    "to_q",
    "to_v",
    "to_out.0",
    "conv",
    "conv1",
    "conv2",
    "conv_in",
    "conv_shortcut",
    "conv_out",
    "proj_out",
    "proj_in",
    "ff.net.2",
    "ff.net.0.proj",
]
PIX = ["default_encoder_pix", "default_decoder_pix", "default_others_pix"]
SEM = ["default_encoder_sem", "default_decoder_sem", "default_others_sem"]
TEX = "default_unet_dino"
RELEASE_FILES = ("model_12501.pkl", "adapter_53001.pth", "lora_weights_dino_53001.safetensors")


def write_base(root: Path, seed: int = 0) -> Path:
    """A tiny random SD-2.1-like base in diffusers layout under ``root``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.manual_seed(seed)
    UNet2DConditionModel(**UNET).save_pretrained(root / "unet")
    AutoencoderKL(**VAE).save_pretrained(root / "vae")
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER, indent=2))
    (root / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionPipeline",
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
                "scheduler": ["diffusers", "DDPMScheduler"],
            }
        )
    )
    return root


def write_dino(root: Path, seed: int = 0) -> Path:
    """A tiny random DINOv3 ViT saved in transformers layout at ``root``."""
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    torch.manual_seed(seed)
    DINOv3ViTModel(DINOv3ViTConfig(**DINO)).save_pretrained(root)
    return root


def official_module_lists(unet: torch.nn.Module) -> tuple[list[str], list[str], list[str]]:
    """(encoder, decoder, others) module names of the pixel/semantic LoRAs, by the release's rule."""
    encoder, decoder, others = [], [], []
    for name, _ in unet.named_parameters():
        if "bias" in name or "norm" in name or not any(target in name for target in TARGET_NAMES):
            continue
        module = name.replace(".weight", "")
        if "down_blocks" in name or "conv_in" in name:
            encoder.append(module)
        elif "up_blocks" in name or "conv_out" in name:
            decoder.append(module)
        else:
            others.append(module)
    return encoder, decoder, others


def write_official_weights(
    folder: Path, base: Path, dino: Path, rank: int = 4, rank_tex: int = 4, seed: int = 1, std: float = 0.1
) -> Path:
    """The release's three files in ``folder`` for the stack at ``base``/``dino``, random non-zero tensors."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig
    from transformers import DINOv3ViTConfig

    folder.mkdir(parents=True, exist_ok=True)
    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet")
    lists = official_module_lists(unet)
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Already found a `peft_config` attribute"
        )  # seven adapters, as the release
        for suffix in ("pix", "sem"):
            for part, modules in zip(("encoder", "decoder", "others"), lists):
                unet.add_adapter(
                    LoraConfig(r=rank, init_lora_weights="gaussian", target_modules=modules),
                    adapter_name=f"default_{part}_{suffix}",
                )
        unet.add_adapter(
            LoraConfig(r=rank_tex, lora_alpha=rank_tex, init_lora_weights="gaussian", target_modules=TARGET_NAMES),
            adapter_name=TEX,
        )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if "lora" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    pix_sem = {name: tensor.clone() for name, tensor in unet.state_dict().items() if "lora" in name and TEX not in name}
    torch.save(
        {
            "unet_lora_encoder_modules_pix": lists[0],
            "unet_lora_decoder_modules_pix": lists[1],
            "unet_lora_others_modules_pix": lists[2],
            "unet_lora_encoder_modules_sem": lists[0],
            "unet_lora_decoder_modules_sem": lists[1],
            "unet_lora_others_modules_sem": lists[2],
            "lora_rank_unet_pix": rank,
            "lora_rank_unet_sem": rank,
            "state_dict_unet": pix_sem,
        },
        folder / RELEASE_FILES[0],
    )
    unet.save_lora_adapter(folder, adapter_name=TEX, weight_name=RELEASE_FILES[2])
    hidden = DINOv3ViTConfig.from_pretrained(dino).hidden_size
    width = unet.config.cross_attention_dim
    shapes = {"0.weight": (width, hidden), "0.bias": (width,), "2.weight": (width, width), "2.bias": (width,)}
    torch.save(
        {k: torch.randn(s, generator=generator) * (1 / s[-1] ** 0.5) for k, s in shapes.items()},
        folder / RELEASE_FILES[1],
    )
    return folder


def write_stack(root: Path) -> tuple[Path, Path, Path]:
    """(base, dino, weights): a tiny base, a tiny DINOv3 and the official files for them."""
    base, dino = write_base(root / "sd"), write_dino(root / "dino")
    return base, dino, write_official_weights(root / "weights", base, dino)
