"""Base LightningModule for restoration and text removal.

Subclasses implement ``training_step``; this class provides the network (built through the
registry, so checkpoints round-trip into ``zoo.create_model``), optional generator EMA, the shared
validation/test steps with fp32 per-image metrics (``val/psnr``, ``val/ssim``, ``val/psnr_identity``),
sample grids, saving test outputs, and the optimizer/schedule from config.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from torchmetrics import MeanMetric

import zoo
from zoo.common.ema import make_ema_copy, update_ema
from zoo.common.images import save_image
from zoo.common.optim import build_optimizer, build_scheduler
from zoo.metrics import psnr, ssim

METRICS = ("psnr", "ssim", "psnr_identity")


def to_plain(value: Any) -> Any:
    """OmegaConf containers -> dict/list so checkpoints load with ``weights_only=True``."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        return value
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def sample_grid(batch: dict[str, Any], output: torch.Tensor, max_rows: int) -> torch.Tensor:
    """Rows of ``input | output | target | mask`` (the columns that exist), as one (3,H',W') image."""
    rows = []
    for i in range(min(max_rows, output.shape[0])):
        columns = [batch["image"][i], output[i]]
        if "target" in batch:
            columns.append(batch["target"][i])
        if "mask" in batch:
            columns.append(batch["mask"][i].expand(3, -1, -1))
        rows.append(torch.cat([c.float().cpu() for c in columns], dim=2))
    return torch.cat(rows, dim=1)


class RestorationModule(L.LightningModule):
    """Shared Lightning logic; ``net`` holds the architecture kwargs of registry model ``model_name``."""

    def __init__(
        self,
        model_name: str,
        net: dict[str, Any] | None = None,
        pretrained: str | bool | None = None,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        ema_decay: float | None = None,
        sample_rows: int = 4,
    ):
        super().__init__()
        self.save_hyperparameters(to_plain(dict(
            model_name=model_name, net=net or {}, pretrained=pretrained, optimizer=optimizer or {"name": "adamw", "lr": 1e-4},
            scheduler=scheduler or {"name": "constant"}, ema_decay=ema_decay, sample_rows=sample_rows,
        )), logger=False)
        self.net = zoo.create_model(model_name, pretrained=pretrained or False, **self.hparams.net)
        self.ema_net = make_ema_copy(self.net) if ema_decay else None
        self.metrics = torch.nn.ModuleDict({f"{stage}__{name}": MeanMetric() for stage in ("val", "test") for name in METRICS})
        self.save_dir: Path | None = None  # set by tools/eval.py to write test outputs
        self.scorers: dict[str, Any] = {}  # set by tools/eval.py: name -> scorer (update(output, target, ...), compute())

    # ------------------------------------------------------------------ inference
    @property
    def eval_net(self) -> torch.nn.Module:
        """The network used for validation/test/export: the EMA copy when there is one."""
        return self.ema_net if self.ema_net is not None else self.net

    def predict_batch(self, batch: dict[str, Any]) -> torch.Tensor:
        """The restored images for a batch (eval mode); families with extra inputs override this."""
        return self.eval_net(batch["image"], batch.get("mask"))

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.eval_net(image, mask)

    # ----------------------------------------------------------------- evaluation
    def on_train_start(self) -> None:
        for metric in self.metrics.values():  # drop what the sanity check accumulated
            metric.reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        """``dataloader_idx``: datamodules with one test loader per set (all-in-one) name the set in ``batch["set"]``."""
        self._evaluate(batch, batch_idx, "test")

    def score(self, output: torch.Tensor, target: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Per-image metrics of fp32 outputs in [0,1] (families with another protocol override this)."""
        return {"psnr": psnr(output, target), "ssim": ssim(output, target)}

    def _metric(self, *parts: str) -> MeanMetric:
        """The running mean of (stage, [set,] name), created on first use (key parts joined by ``__``)."""
        key = "__".join(parts)
        if key not in self.metrics:
            self.metrics[key] = MeanMetric().to(self.device)
        return self.metrics[key]

    def _evaluate(self, batch: dict[str, Any], batch_idx: int, stage: str) -> None:
        if not batch:
            return
        output = self.predict_batch(batch)
        with torch.autocast(device_type=output.device.type, enabled=False):  # metrics in fp32
            output = output.float().clamp(0, 1)
            if "target" in batch:
                target = batch["target"].float()
                scores = {**self.score(output, target, batch), "psnr_identity": psnr(batch["image"].float(), target)}
                sets = batch.get("set")  # evaluation set of each sample (all-in-one restoration)
                for name, values in scores.items():
                    self._metric(stage, name).update(values)
                    for set_name in sorted(set(sets or ())):
                        chosen = torch.tensor([s == set_name for s in sets], device=values.device)
                        self._metric(stage, set_name, name).update(values[chosen])
        if batch_idx == 0 and not self.trainer.sanity_checking:
            self._log_samples(batch, output, stage)
        if stage == "test" and "target" in batch:
            for scorer in self.scorers.values():
                scorer.update(output, batch["target"], batch["image"], batch.get("mask"), batch.get("name"))
        if stage == "test" and self.save_dir is not None:
            for name, image in zip(batch["name"], output):
                save_image(image, self.save_dir / f"{Path(name).stem}.png")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def _log_epoch(self, stage: str) -> None:
        """Log and reset the stage's running means (synchronised across processes by torchmetrics):
        ``<stage>/<name>`` over everything, ``<stage>/<set>/<name>`` per evaluation set."""
        for key, metric in self.metrics.items():
            parts = key.split("__")
            if parts[0] != stage or metric.update_count == 0:
                continue
            self.log("/".join(parts), metric.compute(), prog_bar=len(parts) == 2 and parts[1] == "psnr", add_dataloader_idx=False)
            metric.reset()

    def _log_samples(self, batch: dict[str, Any], output: torch.Tensor, stage: str) -> None:
        if self.trainer.global_rank != 0 or self.hparams.sample_rows <= 0:
            return
        grid = sample_grid(batch, output, self.hparams.sample_rows)
        save_image(grid, Path(self.trainer.default_root_dir) / "samples" / f"{stage}_step{self.global_step:07d}.png")
        for logger in self.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_image"):
                experiment.add_image(f"{stage}/samples", grid.clamp(0, 1), self.global_step)

    # ------------------------------------------------------------------- training
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema_net is not None:
            update_ema(self.ema_net, self.net, self.hparams.ema_decay)

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.net.parameters(), self.hparams.optimizer)
        scheduler = build_scheduler(optimizer, self.hparams.scheduler, self.trainer.estimated_stepping_batches)
        return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}
