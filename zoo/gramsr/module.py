"""GramSR training (LightningModule): three stages on the frozen SD-2.1-base + DINOv3 stack, one LoRA set each.
GramSR releases no training code; stages 1–2 follow PiSA-SR's ``train_pisasr.py`` (GramSR's code ancestor),
stage 3 the paper's description (zoo/gramsr/README.md, "Training"):

* stage 1 — pixel LoRA (active: pix): ``l2_weight``·MSE(x̂, x_H) on the decoded output in [-1, 1] (PiSA-SR);
* stage 2 — semantic LoRA, the pixel set frozen (active: pix+sem): ℓ2 + ``lpips_weight``·LPIPS-VGG(x̂, x_H) +
  ``csd_weight``·CSD (below);
* stage 3 — texture LoRA, pixel and semantic frozen (active: all): ℓ2 + ``gram_weight``·Gram loss (below);
* the MLP adapter trains in the stages listed in ``adapter_stages`` (all three by default).

``stage``: ``all`` (1 → 2 → 3, switching when ``global_step`` reaches the cumulative ``stage_steps``) or one of
1, 2, 3 (that stage alone for its ``stage_steps`` entry, e.g. after ``pretrained=`` from an earlier stage). One
AdamW holds every LoRA and adapter tensor; a stage switch only changes ``requires_grad`` (the model's
``set_stage``). Frozen tensors get no gradient, and AdamW skips tensors whose ``.grad`` is None (no moment
update, no weight decay): a frozen set stays bit-identical. The switch happens in ``on_train_batch_start``
of the step's first micro-batch, before Lightning's ``zero_grad`` (set to None), so it also holds under
gradient accumulation, and it follows ``global_step`` on a resumed run.

CSD (PiSA-SR's ``CSDLoss.cal_csd``): t ~ U{⌊T·lo⌋, …, ⌊T·hi⌋−1} (``csd_timesteps``),
z_t = √ᾱ_t·sg(z) + √(1−ᾱ_t)·ε; the frozen UNet (every LoRA off: :meth:`GramSR.frozen_unet`) predicts ε for
the unconditional input (zero tokens, the release's ``neg_prompt_embeds``) and the conditional one (the
adapter's DINO tokens of the LR, detached: the release's ``emb``); ε_cfg = ε_u + ``csd_cfg``·(ε_c − ε_u);
x̂0_real, x̂0_fake from ε_cfg, ε_u; grad = (x̂0_fake − x̂0_real) / mean|z − x̂0_real| (per sample);
loss = MSE(z, sg(z − grad)), whose gradient moves z towards the guided prediction.

Gram loss: F (N tokens × C) of DINOv3 on the output and on x_H (x_H without gradient); G = FᵀF / N; per
layer ``mean``: mean over the C² entries of (G(x_H) − G(x̂))² — the paper's (1/N²)·‖FᵀF − FᵀF‖²_F
divided by C² — or ``sum``: the paper's formula as written. ``gram_layers`` None: the final (LayerNorm-ed)
tokens the adapter reads; a list of ints: those entries of ``hidden_states`` (0 = patch embedding, i = block
i, negative from the end), averaged. ``gram_tokens``: ``patch`` (CLS and registers left out) or ``all``.

Checkpoints: ``state_dict`` holds GramSR's own tensors only (the LoRAs, ``….lora_{A,B}.<set>.weight``, and
``adapter.*``: :meth:`GramSR.state_dict`), the optimizer state covers those, the hyperparameters name the base
(``net.base_model`` / ``net.dino_model``) and ``checkpoint["gramsr_base"]`` records the ids and, for local
folders, the sha256 of every base weight file read (``hash_base``). EMA is refused (it would copy the base).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from zoo.errors import DownloadError, WeightsError
from zoo.gramsr.model import SET_ORDER
from zoo.training.module import RestorationModule

log = logging.getLogger(__name__)

STAGES = ("all", 1, 2, 3)
STAGE_SETS = {1: "pix", 2: "sem", 3: "tex"}
GRAM_TOKENS = ("patch", "all")
GRAM_REDUCTIONS = ("mean", "sum")
LOSS_TERMS = ("l2", "lpips", "csd", "gram")


def token_gram(features: torch.Tensor) -> torch.Tensor:
    """(B, N, C) ViT tokens -> (B, C, C) Gram matrices FᵀF / N (float32); CNN feature maps: ``channel_gram``."""
    features = features.float()
    return features.transpose(1, 2) @ features / features.shape[1]


def gram_loss(features: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """‖G(target) − G(features)‖²_F with G = FᵀF/N (= (1/N²)·‖FᵀF − FᵀF‖²_F), per image, averaged
    over the batch; ``reduction="mean"`` also divides by the C² entries."""
    if reduction not in GRAM_REDUCTIONS:
        raise ValueError(f"gram_reduction must be one of {GRAM_REDUCTIONS}, got {reduction!r}")
    squared = (token_gram(features) - token_gram(target)).square().flatten(1)
    return (squared.mean(1) if reduction == "mean" else squared.sum(1)).mean()


def predicted_x0(noisy: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """x̂0 = (z_t − √(1−ᾱ)·ε) / √ᾱ (PiSA-SR's ``eps_to_mu``)."""
    return (noisy - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()


def csd_loss(latents: torch.Tensor, x0_real: torch.Tensor, x0_fake: torch.Tensor) -> torch.Tensor:
    """MSE(z, sg(z − grad)), grad = (x̂0_fake − x̂0_real) / mean|z − x̂0_real| per sample:
    d loss/dz = 2·grad/numel."""
    weight = (latents.detach() - x0_real).abs().mean(dim=tuple(range(1, latents.ndim)), keepdim=True)
    grad = (x0_fake - x0_real) / weight
    return F.mse_loss(latents, (latents - grad).detach())


def lpips_vgg(weights: str | None = None) -> torch.nn.Module:
    """LPIPS v0.1 with the VGG-16 backbone (PiSA-SR's ``lpips.LPIPS(net="vgg")``), through torchmetrics: its linear
    layers ship with torchmetrics, the backbone is torchvision's ImageNet VGG-16 (``weights``, else the torch hub
    cache, else a download). Called as ``net(x, y, normalize=True)`` on [0,1] images; eval mode, frozen."""
    from zoo.hub import fetch_auxiliary
    from zoo.manifest import auxiliary_entry
    from zoo.metrics.realsr import torchvision_cache_entry

    url = auxiliary_entry("vgg16_imagenet")["url"]  # torchvision's VGG16_Weights.DEFAULT, the file LPIPS-VGG loads
    name = url.rsplit("/", 1)[-1]
    try:
        path = fetch_auxiliary("vgg16_imagenet", weights)
    except (WeightsError, DownloadError) as error:
        hub = torch.hub.get_dir() + "/checkpoints"
        raise WeightsError(
            f"model.lpips_weight > 0 needs LPIPS-VGG's backbone, torchvision's ImageNet VGG-16 ({name}, {url}): "
            f"{str(error).splitlines()[0]}\nPut the file in {hub}/, or pass model.lpips_weights=FILE, or set "
            "model.lpips_weight=0 (no LPIPS term)."
        ) from error
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    try:
        with torchvision_cache_entry(path, name):
            net = LearnedPerceptualImagePatchSimilarity(net_type="vgg", normalize=True).net
    except (RuntimeError, KeyError, EOFError, OSError) as error:
        raise WeightsError(
            f"model.lpips_weights: {path} is not torchvision's ImageNet VGG-16 ({name}): {str(error).splitlines()[0]}"
        ) from error
    return net.eval().requires_grad_(False)


class GramSRModule(RestorationModule):
    """GramSR's three training stages (module docstring). Loss weights: ``l2_weight`` (all stages),
    ``lpips_weight`` / ``csd_weight`` (stage 2), ``gram_weight`` (stage 3); ``csd_cfg``, ``csd_timesteps``
    (fractions of the T = 1000 training steps); ``lpips_weights``: a local VGG-16 file;
    ``gradient_checkpointing``: the UNet's (diffusers) activation checkpointing."""

    progress_bar = ("loss", "stage")

    def __init__(
        self,
        model_name: str = "gramsr",
        net: dict[str, Any] | None = None,
        stage: int | str = "all",
        stage_steps: Sequence[int] = (4000, 8500, 40500),
        adapter_stages: Sequence[int] = (1, 2, 3),
        l2_weight: float = 1.0,
        lpips_weight: float = 2.0,
        lpips_weights: str | None = None,
        csd_weight: float = 1.0,
        csd_cfg: float = 7.5,
        csd_timesteps: Sequence[float] = (0.02, 0.5),
        gram_weight: float = 1.0,
        gram_layers: Sequence[int] | None = None,
        gram_tokens: str = "patch",
        gram_reduction: str = "mean",
        gradient_checkpointing: bool = False,
        hash_base: bool = True,
        standin: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        if kwargs.get("ema_decay"):
            raise ValueError(
                "model.ema_decay: GramSR trains LoRAs on a frozen base; an EMA copy would duplicate the base (use null)"
            )
        stage = stage if stage == "all" else int(stage)
        if stage not in STAGES:
            raise ValueError(f"model.stage must be all, 1, 2 or 3, got {stage!r}")
        stage_steps = [int(s) for s in stage_steps]
        if len(stage_steps) != 3 or min(stage_steps) < 0:
            raise ValueError(
                f"model.stage_steps is the step count of stages 1, 2 and 3 (three numbers >= 0), got {stage_steps}"
            )
        low, high = (float(v) for v in csd_timesteps)
        if not 0 <= low < high <= 1:
            raise ValueError(
                "model.csd_timesteps is (low, high) with 0 <= low < high <= 1 (fractions of T), "
                f"got {list(csd_timesteps)}"
            )
        if gram_tokens not in GRAM_TOKENS or gram_reduction not in GRAM_REDUCTIONS:
            raise ValueError(
                f"model.gram_tokens must be one of {GRAM_TOKENS} and model.gram_reduction one of {GRAM_REDUCTIONS}"
            )
        if (
            standin is not None
            and net is not None
            and not all(isinstance(net.get(key), dict) for key in ("base_model", "dino_model"))
        ):
            raise ValueError(
                "model.standin fits a stand-in for a random-init base: net.base_model and net.dino_model must be "
                "config dicts (with SD-2.1 and DINOv3 folders or hub ids, set model.standin=null)"
            )
        super().__init__(model_name, net, **kwargs)
        self.save_arguments(
            adapter_stages=[int(s) for s in adapter_stages],
            csd_timesteps=[low, high],
            gram_layers=None if gram_layers is None else [int(i) for i in gram_layers],
            standin=None if standin is None else dict(standin),
        )
        self.stages = [1, 2, 3] if stage == "all" else [stage]
        scheduler = self.net.noise_scheduler()
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        self.register_buffer("alphas_cumprod", scheduler.alphas_cumprod.float().clone(), persistent=False)
        if gradient_checkpointing:
            self.net.unet.enable_gradient_checkpointing()
        self._lpips: list[torch.nn.Module] = []  # a list: not a submodule, never in the state_dict
        self.current_stage = 0
        self.enter_stage(self.stage_at(0))

    # ------------------------------------------------------------------------------- stages
    @property
    def total_steps(self) -> int:
        """Optimizer steps of the stages this run trains."""
        return sum(self.hparams.stage_steps[s - 1] for s in self.stages)

    def stage_at(self, step: int) -> int:
        """The stage that optimizer step ``step`` trains (the last one past the schedule)."""
        end = 0
        for stage in self.stages:
            end += self.hparams.stage_steps[stage - 1]
            if step < end:
                return stage
        return self.stages[-1]

    def enter_stage(self, stage: int) -> None:
        """Active and trainable LoRA sets (and the adapter) of ``stage``: the model's ``set_stage``."""
        self.net.set_stage(stage, train_adapter=stage in self.hparams.adapter_stages)
        if self.current_stage and stage != self.current_stage:
            log.info("gramsr: stage %d (%s LoRA) from step %d", stage, STAGE_SETS[stage], self.global_step)
        self.current_stage = stage

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        stage = self.stage_at(self.global_step)
        if stage != self.current_stage:
            self.enter_stage(stage)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and self.hparams.standin is not None:
            self.build_standin()

    def build_standin(self) -> None:
        """Turn the random-init base into the quick start's stand-in (``zoo.gramsr.standin``): fit its VAE on the
        training HQ images and their degraded, upsampled inputs, scale the UNet's output, write the base to
        ``<run dir>/standin_base/`` and name that folder in the hyperparameters, so checkpoints rebuild this base.
        Every rank fits the same stand-in (and DDP broadcasts rank 0's parameters); rank 0 writes it."""
        from zoo.gramsr.standin import DINO_FOLDER, fit_autoencoder, save_base, scale_unet_output

        options = dict(self.hparams.standin)
        output_scale = float(options.pop("unet_output_scale", 1.0))
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None:
            raise ValueError(
                "model.standin fits the stand-in VAE on the datamodule's training images: train with a datamodule"
            )

        def training_images():  # the HQ images and, where the datamodule degrades them, the upsampled inputs to encode
            for batch in datamodule.train_dataloader():
                batch = datamodule.on_after_batch_transfer(batch, 0)
                yield torch.cat([batch["hr"], batch["image"]]) if "image" in batch else batch["hr"]

        losses = fit_autoencoder(self.net.vae, training_images(), **options)
        scale_unet_output(self.net.unet, output_scale)
        folder = Path(self.trainer.default_root_dir) / "standin_base"
        if self.trainer.is_global_zero:
            save_base(self.net, folder)
        self.trainer.strategy.barrier("gramsr-standin")
        self.net.use_base_folders(folder, folder / DINO_FOLDER)
        self.hparams.net.update(base_model=self.net.kwargs["base_model"], dino_model=self.net.kwargs["dino_model"])
        self.hparams.standin = None  # done: the folder holds the stand-in
        fitted = (
            f"MSE {losses[0]:.4f} -> {sum(losses[-20:]) / len(losses[-20:]):.4f} over {len(losses)} steps"
            if losses
            else "not fitted"
        )
        log.info("gramsr: stand-in base in %s (VAE %s; UNet output x%g)", folder, fitted, output_scale)

    def on_fit_start(self) -> None:
        max_steps = self.trainer.max_steps
        if 0 < max_steps < self.total_steps:
            log.warning(
                "trainer.max_steps=%d stops before the end of the stages (%s: %d steps)",
                max_steps,
                self.hparams.stage_steps,
                self.total_steps,
            )
        if "lpips" in self.active_losses(2) and 2 in self.stages:
            self.lpips_net()  # a missing VGG-16 fails now, not at the stage switch

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_end(outputs, batch, batch_idx)
        if self.global_step >= self.total_steps:
            self.trainer.should_stop = True  # the schedule is done (Lightning then validates the final weights)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """Every LoRA and adapter tensor (the model's own weights), whatever the stage: one optimizer for all."""
        own = set(self.net.state_dict())
        return [p for name, p in self.net.named_parameters() if name in own]

    def on_test_start(self) -> None:
        """A module tested before any training step (built from weights: ``rezoo eval``) runs the whole model,
        every LoRA set active; after fitting, the last stage's sets."""
        if self.global_step == 0:
            self.net.set_adapters(*SET_ORDER)

    # ------------------------------------------------------------------------------- losses
    def active_losses(self, stage: int) -> list[str]:
        """The loss terms of ``stage`` with a non-zero weight."""
        hp = self.hparams
        terms = {
            1: [("l2", hp.l2_weight)],
            2: [("l2", hp.l2_weight), ("lpips", hp.lpips_weight), ("csd", hp.csd_weight)],
            3: [("l2", hp.l2_weight), ("gram", hp.gram_weight)],
        }[stage]
        return [name for name, weight in terms if weight]

    def lpips_net(self) -> torch.nn.Module:
        if not self._lpips:
            self._lpips.append(lpips_vgg(self.hparams.lpips_weights))
        return self._lpips[0].to(self.device)

    def csd(self, latents: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """PiSA-SR's CSD on the predicted latents with the frozen UNet as teacher (module docstring)."""
        low, high = (int(self.num_train_timesteps * r) for r in self.hparams.csd_timesteps)
        batch = latents.shape[0]
        t = torch.randint(low, high, (batch,), device=latents.device)
        alpha_bar = self.alphas_cumprod.to(latents.device)[t].view(-1, *([1] * (latents.ndim - 1)))
        z = latents.detach().float()
        noisy = alpha_bar.sqrt() * z + (1 - alpha_bar).sqrt() * torch.randn_like(z)
        cond = tokens.detach()
        with torch.no_grad(), self.net.frozen_unet() as unet:
            eps = unet(
                torch.cat([noisy, noisy]).to(unet.dtype),
                torch.cat([t, t]),
                encoder_hidden_states=torch.cat([torch.zeros_like(cond), cond]),
            ).sample
            eps_uncond, eps_cond = eps.float().chunk(2)
            eps_cfg = eps_uncond + self.hparams.csd_cfg * (eps_cond - eps_uncond)
            x0_real, x0_fake = predicted_x0(noisy, eps_cfg, alpha_bar), predicted_x0(noisy, eps_uncond, alpha_bar)
        return csd_loss(latents.float(), x0_real, x0_fake)

    def dino_tokens(self, image: torch.Tensor) -> list[torch.Tensor]:
        """DINOv3 tokens of ``image`` in [0,1] for the Gram loss: one (B, N, C) tensor per ``gram_layers`` entry."""
        patch = self.net.dino.config.patch_size
        height, width = image.shape[-2] // patch * patch, image.shape[-1] // patch * patch
        image = image[..., :height, :width]  # whole patches only (training crops are multiples of 16)
        layers = self.hparams.gram_layers
        if layers is None:
            features = [self.net.dino_features(image)]
        else:
            pixels = (image.to(self.net.dino_mean.dtype) - self.net.dino_mean) / self.net.dino_std
            hidden = self.net.dino(pixel_values=pixels.to(self.net.dino.dtype), output_hidden_states=True).hidden_states
            features = [hidden[i] for i in layers]
        if self.hparams.gram_tokens == "patch":
            skip = 1 + int(getattr(self.net.dino.config, "num_register_tokens", 0))
            features = [f[:, skip:] for f in features]
        return features

    def gram(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The Gram loss between DINOv3 tokens of the output and of the target, averaged over ``gram_layers``."""
        with torch.no_grad():
            reference = self.dino_tokens(target)
        features = self.dino_tokens(output)
        with torch.autocast(device_type=output.device.type, enabled=False):
            losses = [gram_loss(f.float(), r.float(), self.hparams.gram_reduction) for f, r in zip(features, reference)]
        return torch.stack(losses).mean()

    def training_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor | float]:
        """The stage's weighted terms, every one of ``LOSS_TERMS`` as ``loss_<term>`` (0 where the stage leaves it
        out: Lightning would repeat a key's last value otherwise), their total ``loss`` and the ``stage``."""
        hp, stage = self.hparams, self.current_stage
        lr, hr = batch["lr"], batch["target"]
        out = self.net.forward_train(lr, hr)
        terms = self.active_losses(stage)
        prediction, target = out.output.float() * 2 - 1, hr.float() * 2 - 1  # PiSA-SR: ℓ2 and LPIPS on [-1, 1]
        losses: dict[str, torch.Tensor] = {}
        if "l2" in terms:
            losses["l2"] = hp.l2_weight * F.mse_loss(prediction, target)
        if "lpips" in terms:
            losses["lpips"] = hp.lpips_weight * self.lpips_net()(prediction, target, normalize=False).mean()
        if "csd" in terms:
            losses["csd"] = hp.csd_weight * self.csd(out.latents, out.tokens)
        if "gram" in terms:
            losses["gram"] = hp.gram_weight * self.gram(out.output, hr.float())
        loss = sum(losses.values()) if losses else out.output.sum() * 0
        zero = loss.detach().new_zeros(())
        return {"loss": loss, "stage": float(stage), **{f"loss_{k}": losses.get(k, zero) for k in LOSS_TERMS}}

    # ------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["gramsr_base"] = self.net.base_record(self.hparams.hash_base)
