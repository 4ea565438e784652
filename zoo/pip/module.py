"""PIP training (LightningModule), as the official ``PIPNet_Trainer`` (Sec. 4.1):

* loss = SmoothL1(restored, clean), passed through the **loss-spike scaler** (``loss_scaler``: when the
  loss exceeds ``factor`` × the minimum of the last ``history`` losses it is rescaled to ``factor``/2 ×
  that minimum, the official 100 / 5) + 0.002 × the prompts' orthogonality regulariser
  (Σ_levels 0.01·Σ_{i<j} relu(cos) over the 5 degradation prompts);
* the restorer always sees the *given* degradation classes (non-blind training, as upstream); with
  ``net.sensor=true`` the degradation sensor learns the classes with cross-entropy on the same batch
  (``sensor_weight``), and ``blind_eval=true`` evaluates with its predictions instead of the labels;
* evaluation: RGB PSNR and skimage-style SSIM on [0,1] outputs, no border crop (PromptIR/PIP tables),
  per evaluation set (``test/derain_rain100l/psnr``) and overall; ``y_channel=true`` scores the BT.601
  Y channel instead (Restormer-paper style), the input's ``psnr_identity`` included; the sensor's
  accuracy when there is one.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
import torch.nn.functional as F

from zoo.metrics import psnr, ssim_uniform, ycbcr_y
from zoo.training.module import RestorationModule


class LossSpikeScaler:
    """Official ``LossScaler``: a loss above ``factor`` × the recent minimum is scaled down to
    ``factor``/2 × that minimum (its gradient scaled alike)."""

    def __init__(self, history: int = 100, factor: float = 5.0):
        self.history: deque[float] = deque(maxlen=history)
        self.factor = factor

    def __call__(self, loss: torch.Tensor) -> torch.Tensor:
        value = float(loss.detach())
        self.history.append(value)
        minimum = min(self.history)
        if value > minimum * self.factor:
            return loss * (minimum * self.factor / 2 / value)
        return loss


class PIPModule(RestorationModule):
    def __init__(
        self,
        model_name: str = "pip",
        net: dict[str, Any] | None = None,
        orthogonality_weight: float = 0.002,
        loss_scaler: dict[str, Any] | None = None,
        sensor_weight: float = 1.0,
        blind_eval: bool = False,
        y_channel: bool = False,
        **kwargs: Any,
    ):
        super().__init__(model_name, net, **kwargs)
        self.save_arguments()
        self.scaler = LossSpikeScaler(**loss_scaler) if loss_scaler else None
        if blind_eval and self.net.sensor is None:
            raise ValueError("blind_eval needs the degradation sensor: set model.net.sensor=true")

    def training_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The weighted terms, their total ``loss``, and ``pixel_raw`` (before the spike scaler) and
        ``sensor_accuracy`` (with a sensor) to watch."""
        labels = batch["degradation"]
        outputs = self.net.forward_train(batch["image"], labels)
        pixel = F.smooth_l1_loss(outputs.restored.float(), batch["target"].float())
        losses = {"pixel": self.scaler(pixel) if self.scaler is not None else pixel}
        if self.hparams.orthogonality_weight:
            losses["orthogonality"] = self.hparams.orthogonality_weight * self.net.orthogonality_loss()
        watched = {"pixel_raw": pixel}
        if outputs.sensor_logits is not None:
            losses["sensor"] = self.hparams.sensor_weight * F.cross_entropy(outputs.sensor_logits.float(), labels)
            watched["sensor_accuracy"] = (outputs.sensor_logits.argmax(1) == labels).float().mean()
        return {"loss": sum(losses.values()), **losses, **watched}

    def predict_batch(self, batch: dict[str, Any]) -> torch.Tensor:
        """``blind_eval``: the sensor's classes instead of the batch's."""
        image, conditions = self.model_inputs(batch)
        if self.hparams.blind_eval:
            conditions.pop("degradation", None)
        return self.eval_net(image, **conditions)

    def metric_names(self) -> list[str]:
        return super().metric_names() + (["sensor_accuracy"] if self.net.sensor is not None else [])

    def score(self, output: torch.Tensor, target: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        image = batch["image"].float()
        if self.hparams.y_channel:
            output, target, image = ycbcr_y(output), ycbcr_y(target), ycbcr_y(image)
        scores = {
            "psnr": psnr(output, target),
            "ssim": ssim_uniform(output, target),
            "psnr_identity": psnr(image, target),
        }
        sensor = self.eval_net.sensor
        if sensor is not None and "degradation" in batch:
            scores["sensor_accuracy"] = (sensor(batch["image"]).argmax(1) == batch["degradation"]).float()
        return scores
