"""STE training (LightningModule): self-supervised text erasing with a policy-controlled synthesizer.

One training step, as the official ``train_adg.py`` with the README's flags (``--PasteImage --sigmoid``):

1. **Synthesis** (``prepare_batch``): every ``policy.refresh_every`` generator steps the controller (or
   the uniform ``random`` policy) draws ``policy.data_policies`` styles; each image of the batch gets one
   of them at random and new text is drawn on the *canvas* (the real image; its own text is the "real
   text", excluded from the pixel losses). Ground truth = canvas, input = canvas + new text, synthetic
   mask from the rendered difference; then the rotation augmentation (p=0.3, ±10°) on all of them.
2. **Discriminator** (hinge on the mean score, as the official ``vanilla`` mode: ``relu(1 − mean D(gt)) +
   relu(1 + mean D(out))``), the output first pasted into the input outside the synthetic text.
3. **Mask critic** (realism reward's critic, official ``Dis_Mask``): dice loss between its prediction from
   the eraser's res6 features and the *real* text (see ``critic_every``).
4. **Eraser**: hole L1 ×10 (synthetic-text region), multi-scale L1 8/6/5 (full / ½ / ¼, nearest-resized
   mask and ground truth), VGG16 pool1–3 perceptual ×0.01 and Gram style ×120 on [0,1] images (each
   counted for the output and the composite, which coincide after pasting, as the official loss), dice
   mask loss (synthetic and real text are text; sigmoid on the logits when ``mask_sigmoid``), hinge G
   term ×0.1, and the triplet erasure loss ``0.01·d(R,I) / (d(R,I) + 50·max(1e-7, d(C,R))²)`` over the
   refined composite R, the input I and the detached coarse composite C (``triplet_weight``).
5. **Policy** (every ``policy.update_every`` generator steps, ``global``/``conditioned`` modes):
   ``policy.update_batches`` rounds of ``policy.samples`` sampled styles, each applied to the first
   ``policy.images`` images of the batch; the eraser (eval mode, no gradients) gives the difficulty
   (mean L1 of its composite) and the critic the realism (its dice loss on the synthetic text outside the
   real text); rewards λ1·R_d + λ2·R_r with EMA baselines; REINFORCE with an entropy bonus.

``training_mode="supervised"`` is the fine-tuning with labels (the official ``ft`` model): no synthesis,
the batch's input/target/text mask are used as they are (the mask plays the synthetic mask's part).
``global_step`` counts eraser steps; the discriminator, critic and policy steps are not counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from zoo.imaging.images import to_uint8
from zoo.metrics import psnr
from zoo.ste.model import MaskCritic, STEDiscriminator, STEOutput
from zoo.ste.policy import (
    PolicyController,
    actions_to_styles,
    difficulty_reward,
    realism_reward,
    reinforce_loss,
    uniform_actions,
    update_running_mean,
)
from zoo.ste.synthesis import TextSynthesizer
from zoo.training.gan import AdversarialModule
from zoo.training.losses import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VGGFeatureLoss,
    load_vgg16_state,
    masked_l1_over_all,
)
from zoo.training.optim import build_optimizer

POLICY_MODES = ("random", "global", "conditioned")
TRAINING_MODES = ("self_supervised", "supervised")


@dataclass
class PolicySettings:
    """The ``policy`` config block (official flag in brackets)."""

    mode: str = "global"  # random | global | conditioned
    embedding_dim: int = 32
    hidden_dim: int = 100
    layers: int = 1  # [ctl_layer]
    lr: float = 5e-4  # [clr]
    entropy_weight: float = 1e-5
    data_policies: int = 2  # styles that drive data generation [ctl_policy_num]
    refresh_every: int = 10  # generator steps between new data styles [ctl_train_freq]
    update_every: int = 10  # generator steps between controller updates [ctl_freq]
    update_batches: int = 3  # controller updates per round [ctl_update_num / ctl_batchSize]
    samples: int = 3  # styles compared per controller update [ctl_M]
    images: int = 2  # images each style is applied to [ctl_batchSize]
    difficulty_weight: float = 1.0  # [lambda1]
    realism_weight: float = 5.0  # [lambda2]: 5 posters, 20 scene text
    target_ratio: float = 2.0  # [diff_range]
    feature_weights: str | None = None  # conditioned: torchvision vgg16 state_dict (None: download; "random": tests)

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> PolicySettings:
        config = dict(config or {})
        unknown = set(config) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown policy settings {sorted(unknown)}; known: {sorted(f.name for f in fields(cls))}")
        settings = cls(**config)
        if settings.mode not in POLICY_MODES:
            raise ValueError(f"policy.mode must be one of {POLICY_MODES}, got {settings.mode!r}")
        return settings


def dice_loss(prediction: torch.Tensor, target: torch.Tensor, sigmoid: bool = False) -> torch.Tensor:
    """Per-sample ``1 − 2Σpt / (Σp² + Σt² + 0.002)`` (official ``dice_loss``; channels broadcast)."""
    prediction = torch.sigmoid(prediction) if sigmoid else prediction
    target = target.expand_as(prediction)
    p, t = prediction.flatten(1).float(), target.flatten(1).float()
    return 1 - 2 * (p * t).sum(1) / ((p * p).sum(1) + 0.001 + (t * t).sum(1) + 0.001)


class ImageFeatures(torch.nn.Module):
    """1000-d VGG16 logits of an image (the conditioned policy's input, official ``pre_feature.py``),
    224 px, ImageNet-normalised; frozen."""

    def __init__(self, weights: str | None = None):
        super().__init__()
        from torchvision.models import vgg16

        self.vgg = vgg16()
        self.weights, self.loaded = weights, weights == "random"  # read at the first use
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> ImageFeatures:
        return super().train(False)

    @torch.no_grad()
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if not self.loaded:
            self.vgg.load_state_dict(load_vgg16_state(self.weights))
            self.loaded = True
        x = F.interpolate(image.float(), size=(224, 224), mode="bilinear", align_corners=False)
        return self.vgg((x - self.mean) / self.std)


def rotate(arrays: Sequence[np.ndarray], angle: float, nearest: Sequence[bool]) -> list[np.ndarray]:
    """Rotate HxW[xC] arrays about the centre by ``angle`` degrees, zeros outside (the official cv2 call)."""
    height, width = arrays[0].shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    return [
        cv2.warpAffine(a, matrix, (width, height), flags=cv2.INTER_NEAREST if n else cv2.INTER_LINEAR)
        for a, n in zip(arrays, nearest)
    ]


class STEModule(AdversarialModule):
    def __init__(
        self,
        model_name: str = "ste",
        net: dict[str, Any] | None = None,
        training_mode: str = "self_supervised",
        canvas: str = "image",
        synthesis: dict[str, Any] | None = None,
        policy: dict[str, Any] | None = None,
        hole_weight: float = 10.0,
        scale_weights: Sequence[float] = (5.0, 6.0, 8.0),
        perceptual_weight: float = 0.01,
        style_weight: float = 120.0,
        mask_weight: float = 1.0,
        mask_sigmoid: bool = True,
        adversarial_weight: float = 0.1,
        triplet_weight: float = 0.01,
        triplet_scale: float = 50.0,
        vgg_weights: str | None = None,
        real_text_dilation: Sequence[int] = (8, 4),
        rotation_probability: float = 0.3,
        rotation_degrees: float = 10.0,
        critic_every: int = 1,
        critic_optimizer: dict[str, Any] | None = None,
        synthesis_seed: int = 66,
        **kwargs: Any,
    ):
        super().__init__(model_name, net, **kwargs)
        if training_mode not in TRAINING_MODES:
            raise ValueError(f"training_mode must be one of {TRAINING_MODES}, got {training_mode!r}")
        if canvas not in ("image", "target"):
            raise ValueError(
                f"canvas must be 'image' (the real image with its text) or 'target' (a clean image), got {canvas!r}"
            )
        self.settings = PolicySettings.from_config(policy)
        self.save_arguments(
            synthesis=dict(synthesis or {}),
            policy=asdict(self.settings),
            scale_weights=list(scale_weights),
            real_text_dilation=list(real_text_dilation),
            critic_optimizer=critic_optimizer or {"name": "adam", "lr": 1e-4, "betas": [0.5, 0.9]},
        )
        width = self.hparams.net.get("width", 32)
        self.critic = MaskCritic(width)
        self.vgg = VGGFeatureLoss(vgg_weights, normalize=False) if perceptual_weight or style_weight else None
        self.synthesizer = TextSynthesizer(**self.hparams.synthesis)
        learned = self.settings.mode != "random" and training_mode == "self_supervised"
        self.controller = (
            PolicyController(self.settings.embedding_dim, self.settings.hidden_dim, self.settings.layers)
            if learned
            else None
        )
        self.features = (
            ImageFeatures(self.settings.feature_weights) if learned and self.settings.mode == "conditioned" else None
        )
        self.rng = np.random.default_rng(synthesis_seed)
        self.torch_rng = torch.Generator().manual_seed(synthesis_seed)
        # policy state saved in checkpoints: the styles driving data generation and the reward baselines
        self.register_buffer("data_actions", self._sample_actions(self.settings.data_policies))
        self.register_buffer("difficulty_mean", torch.zeros(()))
        self.register_buffer("realism_mean", torch.zeros(()))

    # ---------------------------------------------------------------------------- GAN hooks
    def build_discriminator(self, **kwargs: Any) -> STEDiscriminator:
        return STEDiscriminator(**kwargs)

    def extra_optimizers(self) -> list[torch.optim.Optimizer]:
        optimizers = [build_optimizer(self.critic.parameters(), self.hparams.critic_optimizer)]
        if self.controller is not None:
            optimizers.append(torch.optim.Adam(self.controller.parameters(), lr=self.settings.lr))
        return optimizers

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ste_rng"] = {"numpy": self.rng.bit_generator.state, "torch": self.torch_rng.get_state()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("ste_rng")
        if state:
            self.rng.bit_generator.state = state["numpy"]
            self.torch_rng.set_state(state["torch"])

    # ---------------------------------------------------------------------------- synthesis
    def _sample_actions(self, count: int, features: torch.Tensor | None = None) -> torch.Tensor:
        if self.controller is None:
            return uniform_actions(count, self.torch_rng)
        with torch.no_grad():
            sample = self.controller(count=None if features is not None else count, features=features)
        return sample.actions.cpu()

    def _canvas_and_real_text(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.hparams.canvas == "target":
            if "target" not in batch:
                raise KeyError(
                    "canvas='target' needs batches with 'target' (a clean image); "
                    "this datamodule gives none — use canvas='image'"
                )
            canvas = batch["target"]
            return canvas, torch.zeros_like(canvas[:, :1])
        real = batch.get("mask")
        return batch["image"], real if real is not None else torch.zeros_like(batch["image"][:, :1])

    def synthesize(
        self, batch: dict[str, Any], styles: Sequence[dict[str, int]], indices: Sequence[int], augment: bool
    ) -> dict[str, torch.Tensor]:
        """Draw ``styles[k]`` on canvas ``indices[k]`` of ``batch``; -> image, target, mask (synthetic text),
        real (real text) tensors on the batch's device."""
        canvas, real = self._canvas_and_real_text(batch)
        kernel = np.ones(tuple(self.hparams.real_text_dilation), np.uint8)
        stored: tuple[list[np.ndarray], ...] = ([], [], [], [])  # images, targets, synthetic masks, real-text masks
        for style, i in zip(styles, indices):
            source = to_uint8(canvas[i])
            height, width = source.shape[:2]
            scale = (1.0, 1.0)
            if "original_size" in batch:
                original_h, original_w = (int(v) for v in batch["original_size"][i])
                scale = (width / original_w, height / original_h)
            boxes = batch["boxes"][i].cpu().numpy() if "boxes" in batch and self.hparams.canvas == "image" else None
            place = batch["place"][i] if "place" in batch and self.hparams.canvas == "image" else None
            synthesized, synthetic = self.synthesizer(source, style, self.rng, boxes, place, scale)
            real_text = real[i, 0].detach().cpu().numpy().astype(np.uint8)
            if real_text.any() and kernel.size > 1:
                real_text = cv2.dilate(real_text, kernel)
            arrays = [synthesized, source, synthetic.astype(np.uint8), real_text]
            if augment and self.rng.random() < self.hparams.rotation_probability:
                angle = self.rng.uniform(-1, 1) * self.hparams.rotation_degrees
                arrays = rotate(arrays, angle, nearest=(False, False, True, True))
            for store, array in zip(stored, arrays):
                store.append(array)

        def stack(items: list[np.ndarray], divisor: float) -> torch.Tensor:
            array = np.stack(items)
            array = array[..., None] if array.ndim == 3 else array
            return torch.from_numpy(array).permute(0, 3, 1, 2).float().div_(divisor).to(canvas.device)

        return {
            key: stack(items, divisor)
            for key, items, divisor in zip(("image", "target", "mask", "real"), stored, (255.0, 255.0, 1.0, 1.0))
        }

    def prepare_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.hparams.training_mode == "supervised":
            mask = (batch["mask"] > 0.5).to(batch["image"].dtype)
            return {**batch, "mask": mask, "real": torch.zeros_like(mask)}
        size = len(batch["image"])
        if self.settings.mode == "conditioned" and self.controller is not None:
            styles = actions_to_styles(self._sample_actions(size, self.features(self._canvas_and_real_text(batch)[0])))
        else:
            if self.global_step % self.settings.refresh_every == 0:
                self.data_actions = self._sample_actions(self.settings.data_policies).to(self.data_actions.device)
            pool = actions_to_styles(self.data_actions)
            styles = [pool[int(self.rng.integers(len(pool)))] for _ in range(size)]
        return {**batch, **self.synthesize(batch, styles, range(size), augment=True), "source": batch}

    # ---------------------------------------------------------------------------- losses
    def generate(self, batch: dict[str, Any]) -> STEOutput:
        height, width = batch["image"].shape[-2:]
        if height % 32 or width % 32:
            raise ValueError(
                f"STE trains on sizes that are multiples of 32 (the eraser down-samples 32x); got {height}x{width}: "
                "set data.train_size / data.size"
            )
        return self.net.forward_train(batch["image"])

    @staticmethod
    def _pasted(batch: dict[str, Any], outputs: STEOutput) -> torch.Tensor:
        """The refined output inside the synthetic text, the input elsewhere (``--PasteImage``)."""
        return torch.lerp(batch["image"], outputs.refined.to(batch["image"].dtype), batch["mask"])  # dtype: autocast

    def discriminator_loss(self, batch: dict[str, Any], outputs: STEOutput) -> torch.Tensor:
        real = self.discriminator(batch["target"], batch["mask"]).mean()
        fake = self.discriminator(self._pasted(batch, outputs).detach(), batch["mask"]).mean()
        return F.relu(1 - real) + F.relu(1 + fake)

    def generator_losses(self, batch: dict[str, Any], outputs: STEOutput, adversarial: bool) -> dict[str, torch.Tensor]:
        hp = self.hparams
        image, target, text = batch["image"], batch["target"], batch["mask"]
        output = self._pasted(batch, outputs)
        losses = {"hole": hp.hole_weight * masked_l1_over_all(output, target, text)}
        scale_loss = 0.0
        for weight, prediction in zip(hp.scale_weights, (outputs.quarter, outputs.half, outputs.coarse)):
            size = prediction.shape[-2:]
            scaled_text = F.interpolate(text, size=size) if text.shape[-2:] != size else text
            scaled_target = F.interpolate(target, size=size) if target.shape[-2:] != size else target
            scale_loss = scale_loss + weight * masked_l1_over_all(prediction, scaled_target, scaled_text)
        losses["multiscale"] = scale_loss
        if self.vgg is not None:
            # the official sums the terms of the output and of its composite, equal after pasting
            perceptual, style = self.vgg(output, target)
            losses["perceptual"] = 2 * hp.perceptual_weight * perceptual
            losses["style"] = 2 * hp.style_weight * style
        if hp.mask_weight:
            all_text = 1 - (1 - text) * (1 - batch["real"])
            losses["mask"] = hp.mask_weight * dice_loss(outputs.mask_logits, all_text, hp.mask_sigmoid).mean()
        if hp.triplet_weight:
            coarse = torch.lerp(image, outputs.coarse.detach().to(image.dtype), text)
            erased = F.l1_loss(output, image)
            losses["triplet"] = (
                hp.triplet_weight
                * erased
                / (1e-7 + erased + hp.triplet_scale * F.l1_loss(coarse, output).pow(2).clamp(min=1e-7))
            )
        if adversarial and hp.adversarial_weight:
            losses["adversarial"] = -hp.adversarial_weight * self.discriminator(output, text).mean()
        return losses

    # ---------------------------------------------------------------------------- critic and policy
    def after_generator_step(self, batch: dict[str, Any], outputs: STEOutput) -> None:
        size = len(batch["image"])
        optimizers = self.optimizers()
        step = self.global_step  # generator steps done, this one included
        if (
            self.hparams.training_mode == "self_supervised"
            and self.hparams.critic_every
            and step % self.hparams.critic_every == 0
        ):
            critic_loss = dice_loss(self.critic(outputs.mask_features.detach()), batch["real"]).mean()
            self._update(optimizers[2], critic_loss, counted=False)
            self.log("train/critic_loss", critic_loss.detach(), batch_size=size)
        if self.controller is not None and step % self.settings.update_every == 0:
            self.update_policy(batch, optimizers[3])

    @torch.no_grad()
    def policy_rewards(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per synthesised sample: the eraser's mean L1 of its composite to the ground truth (difficulty)
        and the critic's dice loss on the synthetic text outside the real text (realism), eval mode."""
        was_training = self.net.training
        self.net.eval()
        outputs = self.net.forward_train(batch["image"])
        self.net.train(was_training)
        composite = self._pasted(batch, outputs)
        difficulty = (composite - batch["target"]).abs().flatten(1).mean(1)
        realism = dice_loss(self.critic(outputs.mask_features) * (1 - batch["real"]), batch["mask"])
        return difficulty, realism

    def update_policy(self, batch: dict[str, Any], optimizer: Any) -> None:
        """REINFORCE updates of the controller on styles applied to this batch's canvases."""
        s = self.settings
        source = batch["source"]  # the loader's batch: canvases, real text, boxes, placements
        images = min(s.images, len(source["image"]))
        source = {k: v[:images] if isinstance(v, (torch.Tensor, list)) else v for k, v in source.items()}
        for _ in range(s.update_batches):
            if self.features is not None:  # one style per (image, sample)
                features = self.features(self._canvas_and_real_text(source)[0][:images]).repeat(s.samples, 1)
                sample = self.controller(features=features)
                indices = [i % images for i in range(s.samples * images)]
                styles = actions_to_styles(sample.actions)
            else:  # each sampled style on every image
                sample = self.controller(count=s.samples)
                indices = [i for _ in range(s.samples) for i in range(images)]
                styles = [style for style in actions_to_styles(sample.actions) for _ in range(images)]
            synthesized = self.synthesize(source, styles, indices, augment=False)
            difficulty, realism = self.policy_rewards(synthesized)
            if self.features is None:  # mean over the images of each style
                difficulty, realism = (
                    difficulty.view(s.samples, images).mean(1),
                    realism.view(s.samples, images).mean(1),
                )
            self.difficulty_mean = update_running_mean(self.difficulty_mean, difficulty.mean(), init_from_first=True)
            self.realism_mean = update_running_mean(self.realism_mean, realism.mean())
            reward_d = difficulty_reward(difficulty, self.difficulty_mean, s.target_ratio)
            reward_r = realism_reward(realism, self.realism_mean)
            reward = s.difficulty_weight * reward_d + s.realism_weight * reward_r
            loss = reinforce_loss(sample.log_prob, reward, sample.entropy, s.entropy_weight)
            self._update(optimizer, loss, counted=False)
        self.log_dict(
            {
                "train/reward_difficulty": reward_d.mean(),
                "train/reward_realism": reward_r.mean(),
                "train/reward": reward.mean(),
                "train/policy_loss": loss.detach(),
                "train/policy_entropy": sample.entropy.detach().mean(),
            },
            batch_size=len(reward),
        )

    # ---------------------------------------------------------------------------- evaluation
    def predict_batch(self, batch: dict[str, Any]) -> torch.Tensor:
        """Validation/test: the output composited outside the *predicted* text region (official
        ``psnr_v_m``, the metric that selects the best checkpoint)."""
        return self.eval_net(batch["image"], composite="predicted")

    def metric_names(self) -> list[str]:
        return super().metric_names() + ["psnr_mask"]

    def score(self, output: torch.Tensor, target: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``psnr``/``ssim`` of the predicted-mask composite, and ``psnr_mask``: the output composited
        with the dataset's text mask instead (official ``psnr_v``), which shows the eraser's progress
        before the mask branch is confident."""
        scores = super().score(output, target, batch)
        if "mask" in batch:
            with_mask = self.eval_net(batch["image"], batch["mask"]).float().clamp(0, 1)
            scores["psnr_mask"] = psnr(with_mask, target)
        return scores
