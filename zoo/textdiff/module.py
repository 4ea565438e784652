"""TextDiff training (LightningModule). The paper's recipe is not retrievable and no code exists; the
objective is DocDiff's (``src/trainer.py``), which the authors point to, plus a mask loss:

* diffusion: MSE(x̂0, R) + ``laplacian_weight``·MSE(Lap(x̂0), Lap(R)), R = HR - B_T (DocDiff's
  ``HIGH_LOW_FREQ``; Lap the fixed 3x3 kernel [[-1,-1,-1],[-1,8,-1],[-1,-1,-1]], zero padding);
* pixel (weighted ``pixel_weight``/T, DocDiff 50/T): MSE(B_T, HR) + ``laplacian_weight``·MSE of the
  low-frequency parts (x - Lap(x));
* mask: ``mask_weight``·BCE(B_M, text mask of HR), the mask by TATT's rule (grey below its mean);
* AdamW 1e-4, wd 1e-4, constant; EMA 0.9999 updated every 100 steps after 2,000 (DocDiff) through
  ``ema_decay``/``ema_every``/``ema_start``.

``stage``: ``joint`` (DocDiff: everything at once, the residual target not detached unless
``detach_residual_target``), ``tem`` (the TEM alone: pixel + mask losses) or ``mrd`` (the MRD alone, the
TEM frozen, e.g. loaded with ``pretrained=`` from a ``tem`` run).

Evaluation: PSNR and SSIM (Gaussian 11/1.5) on RGB against HR, ``psnr_identity`` the bicubic
upsampling; with a ``recognizer`` (a constructor argument: ``rezoo eval ... recognizer=crnn``) word accuracy of
the SR output, of the bicubic upsampling (``accuracy_identity``) and of HR (``accuracy_hr``), TATT's counting.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from zoo.metrics import psnr, ssim
from zoo.metrics.recognition import word_correct
from zoo.training.module import RestorationModule

STAGES = ("joint", "tem", "mrd")


def laplacian(x: torch.Tensor) -> torch.Tensor:
    """DocDiff's high-pass: depthwise 3x3 [[-1,-1,-1],[-1,8,-1],[-1,-1,-1]], zero padding 1."""
    kernel = x.new_full((3, 3), -1.0)
    kernel[1, 1] = 8.0
    return F.conv2d(x, kernel.expand(x.shape[1], 1, 3, 3), padding=1, groups=x.shape[1])


def frequency_mse(prediction: torch.Tensor, target: torch.Tensor, weight: float, low: bool) -> torch.Tensor:
    """MSE + ``weight``·MSE of the high-pass (``low=False``) or low-pass (x - Lap(x)) parts."""

    def band(x: torch.Tensor) -> torch.Tensor:
        return x - laplacian(x) if low else laplacian(x)

    return F.mse_loss(prediction, target) + weight * F.mse_loss(band(prediction), band(target))


def text_mask(hr: torch.Tensor) -> torch.Tensor:
    """TATT's mask rule: 1 where the grey image (mean of RGB) is below its own mean, per image."""
    grey = hr.mean(dim=1, keepdim=True)
    return (grey < grey.mean(dim=(2, 3), keepdim=True)).to(hr.dtype)


class TextDiffModule(RestorationModule):
    def __init__(
        self,
        model_name: str = "textdiff",
        net: dict[str, Any] | None = None,
        stage: str = "joint",
        pixel_weight: float = 50.0,
        laplacian_weight: float = 2.0,
        mask_weight: float = 1.0,
        detach_residual_target: bool = False,
        val_sample_steps: int | None = None,
        recognizer: torch.nn.Module | None = None,
        **kwargs: Any,
    ):
        super().__init__(model_name, net, **kwargs)
        if stage not in STAGES:
            raise ValueError(f"model.stage must be one of {STAGES}, got {stage!r}")
        self.save_arguments(exclude=("recognizer",))
        if stage == "mrd":
            self.net.tem.requires_grad_(False)
        # a word recognizer scoring the outputs (a list: not a submodule, not saved, not a hyperparameter)
        self.recognizer: list[torch.nn.Module] = [] if recognizer is None else [recognizer]

    def train(self, mode: bool = True) -> TextDiffModule:
        super().train(mode)
        if self.hparams.stage == "mrd":
            self.net.tem.eval()  # frozen: BatchNorm statistics stay those of the TEM run
        return self

    def training_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        hp = self.hparams
        lr, hr = batch["lr"], batch["target"]
        outputs = self.net.forward_train(
            lr, hr, diffusion=hp.stage != "tem", detach_residual_target=hp.detach_residual_target
        )
        losses = {}
        if hp.stage != "mrd":
            losses["pixel"] = (
                hp.pixel_weight
                / self.net.timesteps
                * frequency_mse(outputs.coarse.float(), hr.float(), hp.laplacian_weight, low=True)
            )
            if hp.mask_weight:
                with torch.autocast(device_type=lr.device.type, enabled=False):
                    losses["mask"] = hp.mask_weight * F.binary_cross_entropy(
                        outputs.mask.float(), text_mask(hr.float())
                    )
        if outputs.residual is not None:
            losses["diffusion"] = frequency_mse(
                outputs.residual.float(), outputs.residual_target.float(), hp.laplacian_weight, low=False
            )
        return {"loss": sum(losses.values()), **losses}

    def predict_batch(self, batch: dict[str, Any]) -> torch.Tensor:
        """The sampler with ``val_sample_steps``."""
        image, conditions = self.model_inputs(batch)
        return self.eval_net(image, **conditions, steps=self.hparams.val_sample_steps)

    def metric_names(self) -> list[str]:
        return super().metric_names() + (["accuracy", "accuracy_identity", "accuracy_hr"] if self.recognizer else [])

    def score(self, output: torch.Tensor, target: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        scores = {
            "psnr": psnr(output, target),
            "ssim": ssim(output, target),
            "psnr_identity": psnr(batch["image"].float(), target),
        }
        if self.recognizer and "text" in batch:
            recognizer = self.recognizer[0].to(output.device)
            for name, images in (
                ("accuracy", output),
                ("accuracy_identity", batch["image"].float()),
                ("accuracy_hr", target),
            ):
                scores[name] = word_correct(recognizer.recognize(images), batch["text"]).to(output.device)
        return scores
