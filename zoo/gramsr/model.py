"""GramSR (D'Oronzio, Putamorsi, Zini, Cornia, Baraldi, "GramSR: Visual Feature Conditioning for
Diffusion-Based Super-Resolution", arXiv 2604.25457, ICPR 2026; code ``aimagelab/GramSR``): the
model (diffusers + peft + transformers, no Lightning).

One-step ×4 super-resolution on a frozen Stable Diffusion 2.1-base (PiSA-SR's residual formulation):

* the LR image is bicubic-upsampled ×``scale`` (``F.interpolate``, ``align_corners=False``, clamped),
  padded to :attr:`GramSR.hr_multiple`, mapped to [-1, 1] and encoded: ``z_L = VAE.encode(x).mode() · s``;
* conditioning: a frozen DINOv3 ViT (ImageNet-normalised input) gives ``last_hidden_state`` (1 CLS +
  4 registers + patch tokens: 1,029 tokens at 512²), a trainable MLP adapter Linear–ReLU–Linear maps
  them to the UNet's cross-attention width; these tokens replace the text tokens in every
  cross-attention;
* ``ε = UNet(z_L, t = 1, tokens)`` with three LoRA sets (peft, the release's adapter names): pixel
  ``default_{encoder,decoder,others}_pix`` and semantic ``…_sem`` (rank 4, alpha 8 = peft's default,
  every UNet weight matching the 14 module names, split by down/up/mid) and texture
  ``default_unet_dino`` (rank 4, alpha 4, the 14 names as suffixes);
* ``x̂ = VAE.decode((z_L − ε) / s).clamp(−1, 1)``, mapped to [0, 1], then the colour fix against the
  upsampled LR (``adain`` as the release, ``wavelet`` or ``None``).

Independent guidance ``(l1, l2, l3)``: ``ε = l1·ε_pix + l2·(ε_pix+sem − ε_pix) + l3·(ε_all − ε_pix+sem)``;
only the passes with a non-zero coefficient run (``(1, 1, 1)`` is the single pass with every adapter).

Large images run tiled when they must (``tiling="auto"``: the whole image when its estimated need fits the
device's free memory, else tiles; ``"always"`` tiles every image larger than a tile, ``"never"`` none): the
VAE through diffusers' tiled encode/decode (``vae_tile_size``), the UNet over overlapping latent tiles blended
with linear ramps (:func:`zoo.nn.tiling.tiled_forward`), each tile conditioned on the DINO tokens of its own
HR region (``tile_size`` = the 512² training crops by default, so every tile sees the 1,029 tokens it was
trained with).

Inference speed: a forward without gradients in eval mode that needs one UNet pass runs with its LoRA sets
merged into the UNet's weights (``merge_loras``; peft's ``merge``), undone exactly (the unmerged weights kept
in host memory) for training, for guidance needing several passes, for another adapter choice and before
loading weights. ``base_dtype="bf16"`` holds the frozen base (UNet base weights, VAE, DINOv3) in bf16 instead of
autocasting fp32 weights (GPUs). Every attention is ``F.scaled_dot_product_attention`` (diffusers'
``AttnProcessor2_0`` in the UNet and the VAE, transformers' ``sdpa`` in DINOv3), which
``tests/test_gramsr_model.py`` checks.

The frozen base (UNet, VAE, DINOv3) is loaded from ``base_model`` / ``dino_model`` (a local folder
in diffusers/transformers layout, a hub id, or a dict of configs for a randomly initialised stack);
``state_dict()`` holds only GramSR's own weights (the LoRAs and the adapter), so exports and
Lightning checkpoints stay small; the base is never saved.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import InputError, WeightsError
from zoo.gramsr.official import read_release
from zoo.nn.padding import crop_to, pad_to_multiple
from zoo.nn.tiling import tiled_forward
from zoo.registry import SUPER_RESOLVER, register_model

__all__ = [
    "ADAPTER_SETS",
    "DINOV3_VITB16",
    "LORA_MODULES",
    "SD21_BASE",
    "GramSR",
    "GramSROutput",
    "export_weights",
    "gramsr",
    "lora_target_modules",
]

# The 14 module names the release puts LoRAs on (pixel/semantic: substrings of the weight names;
# texture: peft suffixes).
LORA_MODULES = (
    "conv",
    "conv1",
    "conv2",
    "conv_in",
    "conv_out",
    "conv_shortcut",
    "ff.net.0.proj",
    "ff.net.2",
    "proj_in",
    "proj_out",
    "to_k",
    "to_out.0",
    "to_q",
    "to_v",
)
PARTS = ("encoder", "decoder", "others")
ADAPTER_SETS = {
    "pix": tuple(f"default_{part}_pix" for part in PARTS),
    "sem": tuple(f"default_{part}_sem" for part in PARTS),
    "tex": ("default_unet_dino",),
}
SET_ORDER = ("pix", "sem", "tex")
PEFT_DEFAULT_ALPHA = 8  # the release leaves lora_alpha at peft's default for the pixel/semantic sets
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
COLOR_FIXES = ("adain", "wavelet", None)
TILINGS = ("auto", "always", "never")
BASE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# tiling="auto": bytes a whole-image forward needs above the weights, per output pixel and image, from the H200
# measurements (SD-2.1-base + DINOv3 ViT-B/16, one pass: 0.85 GiB at 512² in bf16, 1.20 GiB in fp32, growing with
# the pixels: 13.6 GiB at 2048² in bf16), with a 1.5x margin; where the free memory is unknown, images up to
# WHOLE_IMAGE_PIXELS run whole.
WHOLE_IMAGE_BYTES_PER_PIXEL = {torch.bfloat16: 1.5 * 0.85 * 2**30 / 512**2, torch.float32: 1.5 * 1.20 * 2**30 / 512**2}
WHOLE_IMAGE_PIXELS = 2048 * 2048

# The released configuration's architectures, for building it without weights (the declared
# parameter count, ``torch.device("meta")``): SD-2.1-base's UNet and VAE, DINOv3 ViT-B/16.
SD21_BASE: dict[str, dict[str, Any]] = {
    "unet": {
        "act_fn": "silu",
        "attention_head_dim": [5, 10, 20, 20],
        "block_out_channels": [320, 640, 1280, 1280],
        "cross_attention_dim": 1024,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "in_channels": 4,
        "out_channels": 4,
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "sample_size": 64,
        "use_linear_projection": True,
    },
    "vae": {
        "block_out_channels": [128, 256, 512, 512],
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 4,
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "sample_size": 512,
    },
}
DINOV3_VITB16: dict[str, Any] = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "num_register_tokens": 4,
    "patch_size": 16,
}
# the manifest's bases: records of the two frozen parts (zoo/manifest.yaml)
BASE_ENTRIES = {"base_model": "sd21_base", "dino_model": "dinov3_vitb16"}
# SD-2.1-base's noise schedule, used when the base folder has no scheduler/ (training's CSD loss)
SD21_SCHEDULER = {
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
}
BASE_HELP = (
    "base_model=: SD-2.1-base as a local folder in diffusers layout (unet/, vae/) or a hub id (the official "
    "stabilityai/stable-diffusion-2-1-base was taken down; mirrors: Manojb/stable-diffusion-2-1-base, "
    "ModelScope AI-ModelScope/stable-diffusion-2-1-base); dino_model=: DINOv3 ViT-B/16 as a local folder or the "
    "gated hub id facebook/dinov3-vitb16-pretrain-lvd1689m (DINOv3 License)"
)


def lora_target_modules(unet: nn.Module) -> dict[str, list[str]]:
    """The pixel/semantic LoRA targets, as the release enumerates them: every UNet weight (names with
    ``bias`` or ``norm`` skipped) containing one of :data:`LORA_MODULES`, as a module name, grouped
    into ``encoder`` (``down_blocks`` and ``conv_in``), ``decoder`` (``up_blocks`` and ``conv_out``)
    and ``others`` (the mid block)."""
    groups: dict[str, list[str]] = {part: [] for part in PARTS}
    for name, _ in unet.named_parameters():
        if "bias" in name or "norm" in name or not any(module in name for module in LORA_MODULES):
            continue
        part = (
            "encoder"
            if ("down_blocks" in name or "conv_in" in name)
            else "decoder"
            if ("up_blocks" in name or "conv_out" in name)
            else "others"
        )
        groups[part].append(name.removesuffix(".weight"))
    return groups


def _weight_files(*folders: Path) -> list[Path]:
    """The weight files (``.safetensors``, ``.bin``) directly in each of ``folders`` (none for a path that is not a
    folder)."""
    return [
        p
        for folder in folders
        if folder.is_dir()
        for p in sorted(folder.iterdir())
        if p.suffix in (".safetensors", ".bin")
    ]


def _hub_revision(entry_name: str, model_id: str | Path) -> str | None:
    """The revision the manifest pins for ``model_id`` when it is the hub copy its ``bases:`` record names."""
    from zoo.manifest import manifest_base

    hub = manifest_base(entry_name).get("hf") or {}
    return hub.get("revision") if str(model_id) == hub.get("repo_id") else None


def _load_base(base_model: str | Path | dict | None) -> tuple[nn.Module, nn.Module, dict[str, Any], list[Path]]:
    """(UNet, VAE, scheduler config, weight files read) of ``base_model``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    if base_model is None:
        raise WeightsError(f"gramsr needs its frozen base: {BASE_HELP}")
    if isinstance(
        base_model, dict
    ):  # a randomly initialised stack from configs (tests, benchmarks, meta-device builds)
        return (
            UNet2DConditionModel.from_config(base_model["unet"]),
            AutoencoderKL.from_config(base_model["vae"]),
            {**SD21_SCHEDULER, **base_model.get("scheduler", {})},
            [],
        )
    try:
        revision = _hub_revision(BASE_ENTRIES["base_model"], base_model)
        unet = UNet2DConditionModel.from_pretrained(str(base_model), subfolder="unet", revision=revision)
        vae = AutoencoderKL.from_pretrained(str(base_model), subfolder="vae", revision=revision)
    except (OSError, ValueError) as error:
        raise WeightsError(
            f"cannot load SD-2.1-base from {base_model!r}: {str(error).splitlines()[0]}\n{BASE_HELP}"
        ) from error
    scheduler, files = dict(SD21_SCHEDULER), []
    folder = Path(base_model).expanduser()
    if folder.is_dir():
        files = _weight_files(folder / "unet", folder / "vae")
        config = folder / "scheduler" / "scheduler_config.json"
        if config.is_file():
            scheduler.update(
                {k: v for k, v in json.loads(config.read_text()).items() if k in SD21_SCHEDULER or k == "trained_betas"}
            )
    return unet, vae, scheduler, files


def _load_dino(dino_model: str | Path | dict | None) -> tuple[nn.Module, list[Path]]:
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    if dino_model is None:
        raise WeightsError(f"gramsr needs its frozen DINOv3: {BASE_HELP}")
    if isinstance(dino_model, dict):
        return DINOv3ViTModel(DINOv3ViTConfig(**dino_model)), []
    try:
        dino = DINOv3ViTModel.from_pretrained(
            str(dino_model), revision=_hub_revision(BASE_ENTRIES["dino_model"], dino_model)
        )
    except (OSError, ValueError) as error:
        raise WeightsError(
            f"cannot load DINOv3 from {dino_model!r}: {str(error).splitlines()[0]}\n{BASE_HELP}"
        ) from error
    return dino, _weight_files(Path(dino_model).expanduser())


@dataclass
class GramSROutput:
    """Training-time outputs: the SR image in [0, 1] at HR size, and what the CSD loss needs."""

    output: torch.Tensor  # (B,3,H,W) in [0,1], no colour fix
    latents: torch.Tensor  # z_H = z_L − ε (scaled latent space, with gradients)
    lr_latents: torch.Tensor  # z_L = VAE.encode(upsampled LR).mode() · s
    tokens: torch.Tensor  # the adapter's conditioning tokens (CSD's positive prompt; the negative one is zeros)


class GramSR(nn.Module):
    """GramSR (module docstring). ``forward(lr, guidance=None)``: (B,3,h,w) in [0,1] -> (B,3,scale·h,scale·w).

    ``base_model`` / ``dino_model``: the frozen SD-2.1-base (diffusers layout: ``unet/``, ``vae/``) and
    DINOv3 ViT-B/16 (transformers layout): local folders, hub ids, or dicts of configs (random
    weights: ``{"unet": {...}, "vae": {...}}`` and a ``DINOv3ViTConfig`` dict). The adapter maps the
    DINO width to the UNet's ``cross_attention_dim`` (768 -> 1024 for the real stack).
    ``rank_pix``/``rank_sem``/``rank_tex``: LoRA ranks (alpha 8, 8 and ``rank_tex``, as released).
    ``timestep``: the UNet's t (1). ``guidance``: default ``(l1, l2, l3)`` (None: one pass with the
    active adapters, all of them unless changed). ``color_fix``: ``"adain"`` | ``"wavelet"`` | None.
    ``tile_size`` / ``tile_overlap``: UNet tiles in output pixels (None: never tile); ``vae_tile_size``:
    diffusers' VAE tiles in output pixels (None: never tile). ``tiling``: ``"auto"`` (the whole image when it fits
    the device's free memory, :meth:`fits_whole`, else tiles), ``"always"`` (tiles whenever the image is larger
    than a tile) or ``"never"``. ``merge_loras``: inference with one UNet pass runs on LoRA-merged weights (the
    same outputs within float rounding). ``base_dtype``: ``"fp32"`` or ``"bf16"`` weights of the frozen base.
    """

    def __init__(
        self,
        base_model: str | Path | dict | None = None,
        dino_model: str | Path | dict | None = None,
        scale: int = 4,
        color_fix: str | None = "adain",
        rank_pix: int = 4,
        rank_sem: int = 4,
        rank_tex: int = 4,
        timestep: int = 1,
        guidance: Sequence[float] | None = None,
        tile_size: int | None = 512,
        tile_overlap: int = 128,
        vae_tile_size: int | None = 1024,
        tiling: str = "auto",
        merge_loras: bool = True,
        base_dtype: str = "fp32",
    ):
        super().__init__()
        if color_fix not in COLOR_FIXES:
            raise ValueError(f"color_fix must be one of {COLOR_FIXES}, got {color_fix!r}")
        if tiling not in TILINGS or base_dtype not in BASE_DTYPES:
            raise ValueError(
                f"tiling must be one of {TILINGS} and base_dtype one of {tuple(BASE_DTYPES)}; got {tiling!r}, "
                f"{base_dtype!r}"
            )
        self.kwargs = {  # what an export records (plain containers)
            "base_model": base_model if isinstance(base_model, dict) or base_model is None else str(base_model),
            "dino_model": dino_model if isinstance(dino_model, dict) or dino_model is None else str(dino_model),
            "scale": scale,
            "color_fix": color_fix,
            "rank_pix": rank_pix,
            "rank_sem": rank_sem,
            "rank_tex": rank_tex,
            "timestep": timestep,
            "guidance": None if guidance is None else [float(v) for v in guidance],
            "tile_size": tile_size,
            "tile_overlap": tile_overlap,
            "vae_tile_size": vae_tile_size,
            "tiling": tiling,
            "merge_loras": merge_loras,
            "base_dtype": base_dtype,
        }
        self.scale, self.color_fix, self.timestep = scale, color_fix, int(timestep)
        self.guidance = self._check_guidance(guidance)
        unet, vae, self.scheduler_config, unet_vae_files = _load_base(base_model)
        dino, dino_files = _load_dino(dino_model)
        self.base_files = {"base_model": unet_vae_files, "dino_model": dino_files}
        self._base_records: dict[bool, dict[str, Any]] = {}
        for frozen in (unet, vae, dino):
            frozen.requires_grad_(False)
        self.unet, self.vae, self.dino = unet, vae.eval(), dino.eval()
        width, hidden = unet.config.cross_attention_dim, dino.config.hidden_size
        self.adapter = nn.Sequential(nn.Linear(hidden, width), nn.ReLU(), nn.Linear(width, width))
        self._add_loras(rank_pix, rank_sem, rank_tex)
        self.merge_loras, self._merged = merge_loras, None  # the LoRA sets merged into the UNet's weights now
        self._unmerged_weights: list[tuple[torch.Tensor, torch.Tensor]] = []  # (weight, its unmerged copy)
        if base_dtype != "fp32":  # the frozen base only: the LoRAs and the adapter keep fp32 weights
            for name, parameter in self.unet.named_parameters():
                if ".lora_" not in name:
                    parameter.data = parameter.data.to(BASE_DTYPES[base_dtype])
            vae.to(BASE_DTYPES[base_dtype])
            dino.to(BASE_DTYPES[base_dtype])
        self.register_buffer("dino_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("dino_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        self.vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.hr_multiple = math.lcm(
            self.vae_factor * 2 ** (len(unet.config.down_block_types) - 1), dino.config.patch_size
        )
        self.tile_size, self.tile_overlap, self.tiling = tile_size, tile_overlap, tiling
        if tile_size is not None and (
            tile_size % self.hr_multiple or not 0 <= tile_overlap < tile_size or tile_overlap % self.vae_factor
        ):
            raise ValueError(
                f"tile_size must be a multiple of {self.hr_multiple} and tile_overlap a multiple of {self.vae_factor} "
                f"below it; got {tile_size}, {tile_overlap}"
            )
        if vae_tile_size is not None:
            if vae_tile_size % (4 * self.vae_factor):
                raise ValueError(f"vae_tile_size must be a multiple of {4 * self.vae_factor}, got {vae_tile_size}")
            vae.enable_tiling()  # diffusers' tiled encode/decode (overlap 1/4, blended) above this size
            vae.tile_sample_min_size, vae.tile_latent_min_size = vae_tile_size, vae_tile_size // self.vae_factor
        self.vae_tiling = vae_tile_size is not None

        self.active_sets: tuple[str, ...] = SET_ORDER  # the adapters a plain forward uses
        self.trainable_sets: tuple[str, ...] = SET_ORDER  # LoRA sets with gradients (the stages narrow them)
        self.train_adapter = True
        self._activate(self.active_sets)
        self.register_state_dict_post_hook(_drop_frozen_base)
        self.register_load_state_dict_pre_hook(_remember_prefix)
        self.register_load_state_dict_pre_hook(lambda module, *args: module.unmerge())  # new LoRA weights
        self.register_load_state_dict_post_hook(_ignore_missing_frozen_base)

    def train(self, mode: bool = True) -> GramSR:
        """Training mode for the UNet and the adapter (their LoRAs unmerged); the frozen VAE and DINOv3 stay in eval
        mode."""
        if mode:
            self.unmerge()
        super().train(mode)
        self.vae.eval()
        self.dino.eval()
        return self

    # ------------------------------------------------------------------------------- adapters
    def _add_loras(self, rank_pix: int, rank_sem: int, rank_tex: int) -> None:
        from peft import LoraConfig
        from peft.tuners.tuners_utils import BaseTunerLayer

        targets = lora_target_modules(self.unet)  # enumerated before any LoRA wraps the UNet
        configs = {
            f"default_{part}_{kind}": LoraConfig(
                r=rank, lora_alpha=PEFT_DEFAULT_ALPHA, init_lora_weights="gaussian", target_modules=targets[part]
            )
            for kind, rank in (("pix", rank_pix), ("sem", rank_sem))
            for part in PARTS
        }
        configs["default_unet_dino"] = LoraConfig(
            r=rank_tex, lora_alpha=rank_tex, init_lora_weights="gaussian", target_modules=list(LORA_MODULES)
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            for name, config in configs.items():
                self.unet.add_adapter(config, adapter_name=name)
        self._tuner_layers = [m for m in self.unet.modules() if isinstance(m, BaseTunerLayer)]
        self._lora_parameters = [(name, p) for name, p in self.unet.named_parameters() if ".lora_" in name]

    @staticmethod
    def adapter_names(sets: Sequence[str]) -> list[str]:
        """The peft adapter names of ``sets`` (``pix``, ``sem``, ``tex``), in the release's order."""
        unknown = set(sets) - set(ADAPTER_SETS)
        if unknown:
            raise ValueError(f"unknown adapter sets {sorted(unknown)}; use {SET_ORDER}")
        return [name for kind in SET_ORDER if kind in sets for name in ADAPTER_SETS[kind]]

    def _activate(self, sets: Sequence[str]) -> None:
        """Switch every LoRA layer to ``sets`` (peft's ``set_adapter``) and re-apply the gradient policy
        (peft would make every active adapter trainable)."""
        names = self.adapter_names(sets)
        self.unmerge()
        for layer in self._tuner_layers:
            layer.set_adapter(names)
        self._live_sets = tuple(kind for kind in SET_ORDER if kind in sets)  # also inside ``adapters()``
        self._apply_requires_grad()

    def merge(self, sets: Sequence[str]) -> None:
        """Merge the LoRA sets ``sets`` into the UNet's weights (peft's ``merge``): a pass with exactly these sets
        then costs the base UNet's time. A no-op when they are merged already; other merged sets are unmerged."""
        sets = tuple(kind for kind in SET_ORDER if kind in sets)
        if self._merged == sets:
            return
        self.unmerge()
        names = self.adapter_names(sets)
        with torch.no_grad():
            for layer in self._tuner_layers:
                present = [name for name in names if name in layer.lora_A]
                if present:
                    weight = layer.get_base_layer().weight
                    self._unmerged_weights.append((weight, weight.detach().to("cpu", copy=True)))
                    layer.merge(adapter_names=present)
        self._merged = sets

    def unmerge(self) -> None:
        """Undo :meth:`merge`: the base weights exactly as they were (kept in host memory while merged, as
        subtracting the deltas back would leave rounding differences)."""
        if self._merged is None:
            return
        with torch.no_grad():
            for layer in self._tuner_layers:
                if layer.merged:
                    layer.unmerge()
            for weight, original in self._unmerged_weights:
                weight.copy_(original)
        self._merged, self._unmerged_weights = None, []

    def _apply_requires_grad(self) -> None:
        trainable = set(self.adapter_names(self.trainable_sets))
        for name, parameter in self._lora_parameters:
            parameter.requires_grad_(name.split(".lora_", 1)[1].split(".")[1] in trainable)
        self.adapter.requires_grad_(self.train_adapter)

    def set_adapters(self, *sets: str) -> None:
        """The LoRA sets a plain forward (and ``forward_train``) uses, e.g. ``set_adapters("pix", "sem")``."""
        self.active_sets = tuple(kind for kind in SET_ORDER if kind in sets)
        self._activate(self.active_sets)

    def set_trainable(self, *sets: str, adapter: bool = False) -> None:
        """Gradients for the LoRA sets ``sets`` (and the MLP adapter when ``adapter``); everything else frozen."""
        self.adapter_names(sets)
        self.trainable_sets, self.train_adapter = tuple(sets), adapter
        self._apply_requires_grad()

    def set_stage(self, stage: int, train_adapter: bool = True) -> None:
        """The three training stages: 1 pixel LoRA (active: pix), 2 semantic (active: pix+sem, pix frozen),
        3 texture (active: all, pix+sem frozen); the adapter trains with them unless ``train_adapter=False``."""
        sets = {1: ("pix",), 2: ("pix", "sem"), 3: SET_ORDER}.get(stage)
        if sets is None:
            raise ValueError(f"stage must be 1, 2 or 3, got {stage}")
        self.set_adapters(*sets)
        self.set_trainable(sets[-1], adapter=train_adapter)

    @contextlib.contextmanager
    def adapters(self, *sets: str) -> Iterator[None]:
        """Temporarily run with the LoRA sets ``sets`` active (gradients keep their policy)."""
        previous = self.active_sets
        self._activate(sets)
        try:
            yield
        finally:
            self._activate(previous)

    @contextlib.contextmanager
    def frozen_unet(self) -> Iterator[nn.Module]:
        """The UNet with every LoRA disabled: the frozen SD-2.1 (the CSD teacher). Yields the UNet."""
        self.unmerge()
        for layer in self._tuner_layers:
            layer.enable_adapters(False)
        try:
            yield self.unet
        finally:
            for layer in self._tuner_layers:
                layer.enable_adapters(True)
            self._activate(self.active_sets)

    def noise_scheduler(self):
        """A ``DDPMScheduler`` with the base's noise schedule (CSD's timesteps and ᾱ)."""
        from diffusers import DDPMScheduler

        return DDPMScheduler(**self.scheduler_config)

    # --------------------------------------------------------------------------- weights
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """GramSR's own weights: every LoRA tensor (``unet.….lora_{A,B}.<adapter>.weight``) and the
        adapter (``adapter.*``); the same as ``state_dict()``."""
        return self.state_dict()

    def load_trainable_state_dict(self, state_dict: dict[str, torch.Tensor], strict: bool = True):
        """Load :meth:`trainable_state_dict` (a file's, an export's); the base stays as loaded."""
        return self.load_state_dict(state_dict, strict=strict)

    def use_base_folders(self, base_model: str | Path, dino_model: str | Path) -> None:
        """Name the folders that now hold this model's (unchanged) base, e.g. after writing it out
        (``zoo.gramsr.standin``): exports and checkpoints then record these ids and files."""
        base_model, dino_model = Path(base_model), Path(dino_model)
        self.kwargs.update(base_model=str(base_model), dino_model=str(dino_model))
        self.base_files = {
            "base_model": _weight_files(base_model / "unet", base_model / "vae"),
            "dino_model": _weight_files(dino_model),
        }
        self._base_records.clear()

    def base_record(self, hash_files: bool = True) -> dict[str, Any]:
        """The base this model's weights need: the ``base_model`` / ``dino_model`` ids (``random-init config`` for
        configs) and, with ``hash_files``, ``sha256`` = {path: hash} of every local base weight file read and
        ``verified`` = {path: whether it equals the manifest's ``bases:`` record (``sd21_base``, ``dinov3_vitb16``),
        null where none is recorded}. A mismatch warns: outputs will not be the release's. Computed once."""
        if hash_files not in self._base_records:
            from zoo.hub import sha256_file
            from zoo.manifest import manifest_base

            record: dict[str, Any] = {
                key: "random-init config" if isinstance(self.kwargs[key], dict) else self.kwargs[key]
                for key in BASE_ENTRIES
            }
            if hash_files:
                record["sha256"], record["verified"] = {}, {}
                for key, entry_name in BASE_ENTRIES.items():
                    recorded = manifest_base(entry_name).get("files") or {}
                    for file in self.base_files[key]:
                        digest = sha256_file(file)
                        expected = recorded.get(file.relative_to(Path(self.kwargs[key]).expanduser()).as_posix())
                        record["sha256"][str(file)], record["verified"][str(file)] = (
                            digest,
                            None if expected is None else digest == expected,
                        )
                        if expected is not None and digest != expected:
                            warnings.warn(
                                f"{file}: sha256 {digest} differs from the manifest's {entry_name} record "
                                f"({expected}); this {key} is another copy or model, "
                                "so outputs will not match the release's",
                                stacklevel=2,
                            )
            self._base_records[hash_files] = record
        return self._base_records[hash_files]

    # --------------------------------------------------------------------------- pieces
    @property
    def dtype(self) -> torch.dtype:
        return self.adapter[0].weight.dtype

    def upsample(self, lr: torch.Tensor) -> torch.Tensor:
        """LR (B,3,h,w) in [0,1] -> bicubic ×scale, clamped to [0,1] (float32)."""
        if lr.ndim != 4 or lr.shape[1] != 3:
            raise InputError(f"gramsr takes RGB images (B,3,h,w), got {tuple(lr.shape)}")
        height, width = lr.shape[-2:]
        return F.interpolate(
            lr.float(), size=(height * self.scale, width * self.scale), mode="bicubic", align_corners=False
        ).clamp(0, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """z_L = VAE.encode(x).mode() · scaling_factor for x in [-1,1] (tiled above ``vae_tile_size``)."""
        return self.vae.encode(x.to(self.vae.dtype)).latent_dist.mode() * self.vae.config.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE.decode(z / scaling_factor).clamp(-1, 1) (tiled above ``vae_tile_size``)."""
        return self.vae.decode((latents / self.vae.config.scaling_factor).to(self.vae.dtype)).sample.clamp(-1, 1)

    def dino_features(self, image: torch.Tensor) -> torch.Tensor:
        """DINOv3 ``last_hidden_state`` (B, 1 + registers + patches, hidden) of ``image`` in [0,1]
        (ImageNet-normalised; H and W multiples of the patch size). Gradients flow to ``image``."""
        pixels = (image.to(self.dino_mean.dtype) - self.dino_mean) / self.dino_std
        return self.dino(pixel_values=pixels.to(self.dino.dtype)).last_hidden_state

    def condition(self, x: torch.Tensor) -> torch.Tensor:
        """The cross-attention tokens of x in [-1,1]: adapter(DINOv3(x·0.5 + 0.5))."""
        return self.adapter(self.dino_features(x * 0.5 + 0.5).to(self.dtype)).to(self.unet.dtype)

    def predict_noise(self, latents: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """ε = UNet(z, t, tokens) with the adapters active now."""
        t = torch.full((latents.shape[0],), self.timestep, device=latents.device, dtype=torch.long)
        return self.unet(latents.to(self.unet.dtype), t, encoder_hidden_states=tokens).sample

    def guided_noise(
        self, latents: torch.Tensor, tokens: torch.Tensor, guidance: Sequence[float] | None
    ) -> torch.Tensor:
        """ε with the active adapters (``guidance`` None) or ``l1·ε_pix + l2·(ε_pix+sem − ε_pix) +
        l3·(ε_all − ε_pix+sem)`` = ``(l1−l2)·ε_pix + (l2−l3)·ε_pix+sem + l3·ε_all``: only the passes
        with a non-zero coefficient run."""
        if guidance is None:
            return self.predict_noise(latents, tokens)
        noise = None
        for sets, weight in self.passes(guidance):
            if self._merged == sets:  # merged for this very pass (forward, one pass)
                term = weight * self.predict_noise(latents, tokens)
            else:
                with self.adapters(*sets):
                    term = weight * self.predict_noise(latents, tokens)
            noise = term if noise is None else noise + term
        return torch.zeros_like(latents) if noise is None else noise

    def passes(self, guidance: Sequence[float] | None) -> list[tuple[tuple[str, ...], float]]:
        """The UNet passes of ``guidance``: (LoRA sets, weight) with a non-zero weight (None: the active sets)."""
        if guidance is None:
            return [(self._live_sets, 1.0)]
        l1, l2, l3 = guidance
        weighted = ((("pix",), l1 - l2), (("pix", "sem"), l2 - l3), (SET_ORDER, l3))
        return [(sets, weight) for sets, weight in weighted if weight != 0]

    def color_correct(self, output: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """The colour fix of ``output`` against ``reference`` (both (B,3,H,W) in [0,1]), clamped."""
        if self.color_fix == "adain":
            output = adain_color_fix(output, reference)
        elif self.color_fix == "wavelet":
            output = wavelet_color_fix(output, reference)
        return output.clamp(0, 1)

    @staticmethod
    def _check_guidance(guidance: Sequence[float] | None) -> tuple[float, float, float] | None:
        if guidance is None:
            return None
        values = tuple(float(v) for v in guidance)
        if len(values) != 3:
            raise ValueError(f"guidance is (l1, l2, l3) for the pixel, semantic and texture LoRAs, got {guidance!r}")
        return values

    # ------------------------------------------------------------------------------ forward
    def free_memory(self, device: torch.device) -> int | None:
        """Bytes free for a forward on ``device``: CUDA's free memory plus what torch's allocator holds unused; the
        CPU's available memory (``MemAvailable``); None where unknown."""
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        if device.type == "cpu":
            try:
                with open("/proc/meminfo") as handle:
                    return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("MemAvailable:"))
            except (OSError, StopIteration):
                return None
        return None

    def fits_whole(self, x: torch.Tensor) -> bool:
        """Whether a forward of ``x`` (the padded HR input, (B,3,H,W)) fits without tiles: its estimated need
        (:data:`WHOLE_IMAGE_BYTES_PER_PIXEL`, bf16 under autocast or with bf16 base weights) below the free memory,
        or, where that is unknown, at most :data:`WHOLE_IMAGE_PIXELS` pixels per image."""
        pixels = x.shape[-2] * x.shape[-1]
        free = self.free_memory(x.device)
        if free is None:
            return pixels <= WHOLE_IMAGE_PIXELS
        bf16 = self.unet.dtype == torch.bfloat16 or (
            torch.is_autocast_enabled(x.device.type) and torch.get_autocast_dtype(x.device.type) == torch.bfloat16
        )
        need = x.shape[0] * pixels * WHOLE_IMAGE_BYTES_PER_PIXEL[torch.bfloat16 if bf16 else torch.float32]
        return need <= free

    @contextlib.contextmanager
    def _vae_tiling(self, enabled: bool) -> Iterator[None]:
        previous = self.vae.use_tiling
        self.vae.use_tiling = enabled and self.vae_tiling
        try:
            yield
        finally:
            self.vae.use_tiling = previous

    def _noise(
        self, latents: torch.Tensor, x: torch.Tensor, guidance: tuple[float, float, float] | None, tiles: bool = True
    ) -> torch.Tensor:
        """ε over the whole latent, or (``tiles``) over blended latent tiles (each with its own region's DINO
        tokens) when the latent is larger than a tile."""
        tile = None if self.tile_size is None or not tiles else self.tile_size // self.vae_factor
        if tile is None or max(latents.shape[-2:]) <= tile:
            return self.guided_noise(latents, self.condition(x), guidance)
        factor = self.vae_factor

        def noise_of_tile(latent_tile: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
            return self.guided_noise(latent_tile, self.condition(F.pixel_shuffle(pixels, factor)), guidance)

        # the HR image travels space-to-depth, so that the latent tile's coordinates cut its own region
        noise = tiled_forward(
            noise_of_tile, latents, F.pixel_unshuffle(x, factor), tile=tile, overlap=self.tile_overlap // factor
        )
        return noise.to(latents.dtype)

    def forward(self, lr: torch.Tensor, guidance: Sequence[float] | None = None) -> torch.Tensor:
        """SR of ``lr`` (B,3,h,w) in [0,1]: (B,3,scale·h,scale·w) in [0,1] (float32). ``guidance``:
        ``(l1, l2, l3)`` for this call (default: the constructor's; None: the active adapters)."""
        guidance = self.guidance if guidance is None else self._check_guidance(guidance)
        upsampled = self.upsample(lr)
        x = pad_to_multiple(upsampled * 2 - 1, self.hr_multiple).to(self.dtype)
        passes = self.passes(guidance)
        if (
            self.merge_loras
            and len(passes) == 1
            and not self.training
            and not torch.is_grad_enabled()
            and not torch.compiler.is_compiling()  # merging edits weights: eagerly, before a compiled call
        ):
            self.merge(passes[0][0])
        tiles = self.tiling == "always" or (self.tiling == "auto" and not self.fits_whole(x))
        with self._vae_tiling(tiles):
            latents = self.encode(x)
            output = self.decode(latents - self._noise(latents, x, guidance, tiles))
        output = crop_to(output.float() * 0.5 + 0.5, upsampled.shape[-2:])
        return self.color_correct(output, upsampled)

    def forward_train(self, lr: torch.Tensor, hr: torch.Tensor | None = None) -> GramSROutput:
        """One step with the active adapters and gradients (no tiling, no colour fix): ``lr`` (B,3,h,w) in
        [0,1] -> :class:`GramSROutput` at scale·h × scale·w (``hr``, when given, must have that size)."""
        self.unmerge()  # gradients reach the LoRAs only through their own layers
        upsampled = self.upsample(lr)
        if hr is not None and hr.shape[-2:] != upsampled.shape[-2:]:
            raise InputError(f"hr must be {self.scale}x the LR size {tuple(lr.shape[-2:])}, got {tuple(hr.shape[-2:])}")
        x = pad_to_multiple(upsampled * 2 - 1, self.hr_multiple).to(self.dtype)
        with torch.no_grad():
            lr_latents = self.encode(x)
        tokens = self.condition(x)
        latents = lr_latents - self.predict_noise(lr_latents, tokens)
        output = crop_to(self.decode(latents).float() * 0.5 + 0.5, upsampled.shape[-2:])
        return GramSROutput(output, latents, lr_latents, tokens)


# ------------------------------------------------------------------------- state-dict hooks
def _is_own(key: str) -> bool:
    """GramSR's own weights: the LoRAs inside the UNet and the adapter."""
    return key.startswith("adapter.") or (key.startswith("unet.") and ".lora_" in key)


def _drop_frozen_base(module: GramSR, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for key in [k for k in state_dict if k.startswith(prefix) and not _is_own(k[len(prefix) :])]:
        del state_dict[key]


def _remember_prefix(module: GramSR, state_dict, prefix: str, *args) -> None:
    module._load_prefix = prefix


def _ignore_missing_frozen_base(module: GramSR, incompatible_keys) -> None:
    prefix = getattr(module, "_load_prefix", "")
    missing = incompatible_keys.missing_keys
    missing[:] = [k for k in missing if not (k.startswith(prefix) and not _is_own(k[len(prefix) :]))]


# ------------------------------------------------------------------------------ colour fixes
def _mean_std(image: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    flat = image.flatten(2)
    return flat.mean(-1)[..., None, None], (flat.var(-1) + eps).sqrt()[
        ..., None, None
    ]  # unbiased variance, as the release


def adain_color_fix(output: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image, per-channel mean and standard deviation of ``output`` moved to ``reference``'s."""
    mean, std = _mean_std(output)
    ref_mean, ref_std = _mean_std(reference)
    return (output - mean) / std * ref_std + ref_mean


def _wavelet_low(image: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """The low-frequency part after ``levels`` à-trous blurs (3×3 binomial kernel, dilation 2^i, replicate)."""
    kernel = torch.tensor([1.0, 2.0, 1.0], dtype=image.dtype, device=image.device)
    kernel = (kernel[:, None] * kernel[None, :] / 16).expand(image.shape[1], 1, 3, 3)
    for level in range(levels):
        radius = 2**level
        image = F.conv2d(F.pad(image, (radius,) * 4, mode="replicate"), kernel, groups=image.shape[1], dilation=radius)
    return image


def wavelet_color_fix(output: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``output``'s high frequencies on ``reference``'s low frequencies."""
    return output - _wavelet_low(output) + _wavelet_low(reference)


# ---------------------------------------------------------------------------------- export
def export_weights(model: GramSR, path: str | Path, tag: str = "custom", hash_base: bool = True) -> Path:
    """Write GramSR's own weights (LoRAs + adapter, never the base) to a safetensors file that
    ``zoo.create_model("gramsr", pretrained=path)`` reads: metadata ``rezoo`` = {model, tag, kwargs}
    (with the ``base_model`` / ``dino_model`` ids) and ``gramsr_base`` = :meth:`GramSR.base_record`."""
    from safetensors.torch import save_file

    from zoo.checkpoints import SAFETENSORS_METADATA_KEY

    metadata = {
        SAFETENSORS_METADATA_KEY: json.dumps({"model": "gramsr", "tag": tag, "kwargs": model.kwargs}),
        "gramsr_base": json.dumps(model.base_record(hash_base)),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in model.trainable_state_dict().items()},
        str(path),
        metadata=metadata,
    )
    return path


@register_model(
    "gramsr",
    **SUPER_RESOLVER,
    scale=4,
    pad_multiple=16,
    params=14_004_192,
    base=("base_model", "dino_model"),
    base_configs={"base_model": SD21_BASE, "dino_model": DINOV3_VITB16},
    read_folder=read_release,
    onnx_note=(
        "a frozen SD-2.1 UNet + VAE with peft LoRAs and a DINOv3 ViT loaded from folders, tiled above 512 px; "
        "not exported"
    ),
)
def gramsr(**kwargs) -> GramSR:
    """GramSR (×4 one-step diffusion SR on a frozen SD-2.1-base + DINOv3 ViT-B/16 conditioning; pass
    base_model= and dino_model=, and pretrained=<folder of the release's three files> or our export).
    params: the LoRAs + adapter of the released configuration (the frozen base is not counted)."""
    return GramSR(**kwargs)
