"""Base LightningModule for restoration and text removal.

A family implements :meth:`RestorationModule.training_losses` (its losses, the total under ``loss``) and, when it
trains a subset of the network, :meth:`RestorationModule.trainable_parameters`; this class provides the network
(built through the registry, so checkpoints round-trip into ``zoo.create_model``), optional generator EMA, the
training step (empty batches skipped, every loss logged as ``train/<name>``), the eval forward built from the
model's :class:`~zoo.registry.ModelInfo`, the shared validation/test steps with fp32 per-image metrics
(``val/psnr``, ``val/ssim``, ``val/psnr_identity``), extra test scorers (the ``scorers`` argument), sample
grids, and the optimizer/schedule from config. ``test_step`` returns the outputs (fp32, [0,1]) for callbacks
(``zoo.training.callbacks.SaveTestOutputs``).

Speed switches, off by default (to be measured per family on the GPU before becoming defaults, README "GPUs, mixed
precision and many nodes"): ``channels_last`` (every 4-D parameter and buffer, the networks of the module, and every
4-D floating tensor of the training/eval batches in ``torch.channels_last``: cuDNN's NHWC tensor-core convolutions)
and ``compile`` (``torch.compile`` of the network's training forward ``net.forward_train``, or ``net.forward``,
``True`` or the keywords of ``torch.compile``; the module is not wrapped, so checkpoint keys do not change). Both
take effect in :meth:`RestorationModule.configure_model` (when a Trainer runs the module) and are recorded in the
hyperparameters only when on.

Evaluation sets: a datamodule declares the sets of its val/test samples (``eval_sets(stage)``, see
``datamodules/base.py``); at setup every process creates ``<stage>/<name>`` and ``<stage>/<set>/<name>``
for every declared set and every name of :meth:`RestorationModule.metric_names`, in that order, so
under DDP all processes hold the same metrics and synchronise them in the same order at epoch end,
whichever sets their share of the samples contains: the numbers are those of one process (when the
distributed sampler does not pad: a split divisible by the number of processes).
"""

from __future__ import annotations

import inspect
import math
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torchmetrics import MeanMetric

from zoo.arguments import own_arguments
from zoo.factory import create_model, model_info
from zoo.imaging.images import save_image
from zoo.metrics import psnr, ssim
from zoo.training.ema import make_ema_copy, update_ema
from zoo.training.optim import build_optimizer, build_scheduler

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


def sample_grid(
    batch: dict[str, Any], output: torch.Tensor, max_rows: int, indices: list[int] | None = None
) -> torch.Tensor:
    """Rows of ``input | output | target | mask`` (the columns that exist) for the samples ``indices``
    (default: all), at most ``max_rows``, as one (3,H',W') image."""
    rows = []
    for i in (range(output.shape[0]) if indices is None else indices)[:max_rows]:
        columns = [batch["image"][i], output[i]]
        if "target" in batch:
            columns.append(batch["target"][i])
        if "mask" in batch:
            columns.append(batch["mask"][i].expand(3, -1, -1))
        rows.append(torch.cat([c.float().cpu() for c in columns], dim=2))
    return torch.cat(rows, dim=1)


class RestorationModule(L.LightningModule):
    """Shared Lightning logic; ``net`` holds the architecture kwargs of registry model ``model_name`` (with
    ``pretrained``, those the weights file records are used unless ``net`` names them). ``scorers``: extra test
    scorers, name -> object with ``update(output, target, image, mask, names, boxes=)`` and ``compute()`` (the
    ``scorers`` config group of ``rezoo eval``); not a hyperparameter."""

    progress_bar: tuple[str, ...] = ("loss",)  # the training_losses entries shown on the progress bar

    def __init__(
        self,
        model_name: str,
        net: dict[str, Any] | None = None,
        pretrained: str | bool | None = None,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        ema_decay: float | None = None,
        ema_every: int = 1,
        ema_start: int = 0,
        sample_rows: int = 4,
        scorers: dict[str, Any] | None = None,
        channels_last: bool = False,
        compile: bool | dict[str, Any] = False,  # the config key model.compile (shadows the builtin here only)
    ):
        super().__init__()
        self.save_hyperparameters(
            to_plain(
                dict(
                    model_name=model_name,
                    net=net or {},
                    pretrained=pretrained,
                    optimizer=optimizer or {"name": "adamw", "lr": 1e-4},
                    scheduler=scheduler or {"name": "constant"},
                    ema_decay=ema_decay,
                    ema_every=ema_every,
                    ema_start=ema_start,
                    sample_rows=sample_rows,
                )
            ),
            logger=False,
        )
        self.net = create_model(model_name, pretrained=pretrained or False, **self.hparams.net)
        self.info = model_info(model_name)
        self.ema_net = make_ema_copy(self.net) if ema_decay else None
        self.metrics = torch.nn.ModuleDict()  # created at setup (module docstring), keys in _metric_keys
        self._metric_keys: dict[tuple[str, ...], str] = {}  # (stage, [set,] name) -> key in self.metrics
        self._eval_sets: dict[str, list[str]] = {}  # stage -> the datamodule's declared sets
        self._grids: set[str] = set()  # the sets with a sample grid in this evaluation epoch
        self.scorers: dict[str, Any] = dict(scorers or {})
        self.channels_last = bool(channels_last)
        compile = to_plain(compile)
        self.compile_options: dict[str, Any] | None = (
            (dict(compile) if isinstance(compile, dict) else {}) if compile else None
        )
        if self.channels_last or compile:  # recorded only when on: runs without them keep their hyperparameters
            self.hparams.update(channels_last=self.channels_last, compile=compile)
        self._speed_configured = False

    def save_arguments(self, exclude: tuple[str, ...] = (), **recorded: Any) -> None:
        """Record the calling family constructor's own arguments as hyperparameters, in its signature's order, with
        the values they hold at the call; not ``model_name``, ``net`` and ``**kwargs`` (recorded by the base) nor
        those named in ``exclude``. ``recorded``: the value to record instead for some (a list for a tuple, the
        settings with their defaults)."""
        own = own_arguments(inspect.currentframe().f_back, ("model_name", "net", *exclude))
        self.hparams.update({**own, **recorded})

    def configure_model(self) -> None:
        """The speed switches (module docstring), once: parameters and buffers in channels_last, the network's
        training forward compiled (an attribute of ``net``: its state_dict keys stay those of the uncompiled one)."""
        if self._speed_configured:
            return
        self._speed_configured = True
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        if self.compile_options is not None:
            name = "forward_train" if hasattr(self.net, "forward_train") else "forward"
            setattr(self.net, name, torch.compile(getattr(self.net, name), **self.compile_options))

    def to_channels_last(self, batch: Any) -> Any:
        """``batch`` with its 4-D floating tensors (image, mask, target, ...) in ``torch.channels_last``."""
        if isinstance(batch, dict):
            return {key: self.to_channels_last(value) for key, value in batch.items()}
        if isinstance(batch, torch.Tensor) and batch.dim() == 4 and batch.is_floating_point():
            return batch.contiguous(memory_format=torch.channels_last)
        return batch

    # ------------------------------------------------------------------ inference
    @property
    def eval_net(self) -> torch.nn.Module:
        """The network used for validation/test/export: the EMA copy when there is one."""
        return self.ema_net if self.ema_net is not None else self.net

    def model_inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """The eval forward's image (``ModelInfo.inputs[0]``: ``image`` or ``lr``) and, as keywords, the conditions
        it takes (``ModelInfo.conditions``) that the batch holds."""
        return batch[self.info.inputs[0]], {name: batch[name] for name in self.info.conditions if name in batch}

    def predict_batch(self, batch: dict[str, Any]) -> torch.Tensor:
        """The restored images for a batch (eval mode): ``eval_net(image, **conditions)``."""
        image, conditions = self.model_inputs(batch)
        return self.eval_net(image, **conditions)

    def forward(self, image: torch.Tensor, **conditions: Any) -> torch.Tensor:
        return self.eval_net(image, **conditions)

    # ----------------------------------------------------------------- evaluation
    def metric_names(self) -> list[str]:
        """Every name :meth:`score` can return (families with more metrics extend it)."""
        return list(METRICS)

    def setup(self, stage: str) -> None:
        """Create the metrics of the stages ``stage`` evaluates from the datamodule's declared sets."""
        # the logged values are already synchronised by torchmetrics: Lightning's advice to sync them does not apply
        warnings.filterwarnings("ignore", r"It is recommended to use `self.log\('(val|test)/", PossibleUserWarning)
        datamodule = getattr(self.trainer, "datamodule", None)
        for split in {"fit": ("val",), "validate": ("val",), "test": ("test",)}.get(stage, ()):
            sets = list(datamodule.eval_sets(split)) if hasattr(datamodule, "eval_sets") else []
            self._eval_sets[split] = sets
            for parts in [(split, name) for name in self.metric_names()] + [
                (split, s, name) for s in sets for name in self.metric_names()
            ]:
                if parts not in self._metric_keys:
                    key = "__".join(parts).replace(".", "_")  # ModuleDict keys cannot hold dots
                    self.metrics[key] = MeanMetric().to(self.device)
                    self._metric_keys[parts] = key

    def on_train_start(self) -> None:
        for metric in self.metrics.values():  # drop what the sanity check accumulated
            metric.reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor | None:
        """The outputs (fp32, [0,1]; None for an empty batch), for the callbacks' ``on_test_batch_end``.
        ``dataloader_idx``: datamodules with one test loader per set (all-in-one) name the set in ``batch["set"]``."""
        return self._evaluate(batch, "test")

    def score(self, output: torch.Tensor, target: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Per-image metrics of fp32 outputs in [0,1], ``psnr_identity`` the input's (families with another
        protocol override this; the names are :meth:`metric_names`)."""
        return {
            "psnr": psnr(output, target),
            "ssim": ssim(output, target),
            "psnr_identity": psnr(batch["image"].float(), target),
        }

    def _metric(self, *parts: str) -> MeanMetric:
        """The running mean of (stage, [set,] name), created at setup."""
        key = self._metric_keys.get(parts)
        if key is None:
            declared = f"metric_names() {self.metric_names()}, eval_sets({parts[0]!r}) {self._eval_sets.get(parts[0])}"
            raise KeyError(f"no metric {'/'.join(parts)}: every name and set must be declared at setup ({declared})")
        return self.metrics[key]

    def _evaluate(self, batch: dict[str, Any], stage: str) -> torch.Tensor | None:
        if not batch:
            return None
        if self.channels_last:
            batch = self.to_channels_last(batch)
        output = self.predict_batch(batch)
        with torch.autocast(device_type=output.device.type, enabled=False):  # metrics in fp32
            output = output.float().clamp(0, 1)
            sets = batch.get("set")  # evaluation set of each sample (declared by the datamodule)
            if "target" in batch:
                target = batch["target"].float()
                for name, values in self.score(output, target, batch).items():
                    self._metric(stage, name).update(values)
                    for set_name in dict.fromkeys(sets or ()):
                        chosen = torch.tensor([s == set_name for s in sets], device=values.device)
                        self._metric(stage, set_name, name).update(values[chosen])
        if not self.trainer.sanity_checking:
            self._log_samples(batch, output, stage)
        if stage == "test" and "target" in batch:
            for scorer in self.scorers.values():
                scorer.update(
                    output,
                    batch["target"],
                    batch["image"],
                    batch.get("mask"),
                    batch.get("name"),
                    boxes=batch.get("boxes"),
                )
        return output

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def _log_epoch(self, stage: str) -> None:
        """Log and reset the stage's running means: ``<stage>/<name>`` over everything, ``<stage>/<set>/<name>``
        per evaluation set. Every process computes every metric in the same order (torchmetrics
        synchronises inside ``compute``), also those it saw no sample of; a metric without a sample in any
        process (NaN: MeanMetric drops NaN values, so only 0/0 gives one) is not logged."""
        self._grids.clear()
        for parts, key in self._metric_keys.items():
            if parts[0] != stage:
                continue
            metric = self.metrics[key]
            with warnings.catch_warnings():  # this process may hold no sample of the set
                warnings.filterwarnings("ignore", "The ``compute`` method of metric", UserWarning)
                value = metric.compute()
            metric.reset()
            if not math.isnan(float(value)):
                self.log("/".join(parts), value, prog_bar=parts[1:] == ("psnr",), add_dataloader_idx=False)

    def _log_samples(self, batch: dict[str, Any], output: torch.Tensor, stage: str) -> None:
        """The epoch's first samples of every set as a grid (process 0): ``samples/<stage>_step<N>.png``, or
        ``samples/<stage>_<set>_step<N>.png`` when the samples carry a set."""
        if self.trainer.global_rank != 0 or self.hparams.sample_rows <= 0:
            return
        sets = batch.get("set") or [""] * len(output)
        for set_name in dict.fromkeys(sets):
            if set_name in self._grids:
                continue
            self._grids.add(set_name)
            grid = sample_grid(
                batch, output, self.hparams.sample_rows, [i for i, s in enumerate(sets) if s == set_name]
            )
            tag = f"{stage}_{set_name}" if set_name else stage
            save_image(grid, Path(self.trainer.default_root_dir) / "samples" / f"{tag}_step{self.global_step:07d}.png")
            for logger in self.loggers:
                experiment = getattr(logger, "experiment", None)
                if hasattr(experiment, "add_image"):
                    experiment.add_image(
                        f"{stage}/samples" + (f"/{set_name}" if set_name else ""), grid.clamp(0, 1), self.global_step
                    )

    # ------------------------------------------------------------------- training
    def training_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The family's named losses of a (non-empty) batch, the total to minimise under ``loss``; every entry is
        logged as ``train/<name>`` (other entries: weighted terms, diagnostics)."""
        raise NotImplementedError

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if not batch:
            return None
        if self.channels_last:
            batch = self.to_channels_last(batch)
        losses = self.training_losses(batch)
        size = len(batch[self.info.inputs[0]])
        for name, value in losses.items():
            value = value.detach() if isinstance(value, torch.Tensor) else value
            self.log(f"train/{name}", value, prog_bar=name in self.progress_bar, batch_size=size)
        return losses.get("loss")

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """What the optimizer updates: the network's parameters that require gradients."""
        return [p for p in self.net.parameters() if p.requires_grad]

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema_net is not None:  # DocDiff: a copy until ema_start, then an update every ema_every steps
            step = self.global_step
            if step < self.hparams.ema_start:
                update_ema(self.ema_net, self.net, 0.0)
            elif step % self.hparams.ema_every == 0:
                update_ema(self.ema_net, self.net, self.hparams.ema_decay)
        if 0 < self.trainer.max_steps <= self.global_step:
            self.trainer.should_stop = True  # Lightning then validates the final weights, whatever val_check_interval

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.trainable_parameters(), self.hparams.optimizer)
        scheduler = build_scheduler(optimizer, self.hparams.scheduler, self.trainer.estimated_stepping_batches)
        return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}
