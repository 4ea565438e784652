"""Lightning callbacks of the restoration modules and of the ``rezoo`` train and eval runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar

from zoo.errors import InputError
from zoo.imaging.images import save_image


class SaveTestOutputs(L.Callback):
    """Write every test output as ``<folder>/[<set>/]<name>.png`` (names are stems and may hold dots; the set when the
    samples carry one), from the outputs ``RestorationModule.test_step`` returns."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: torch.Tensor | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if outputs is None:  # an empty batch
            return
        sets = batch.get("set")
        for i, (name, image) in enumerate(zip(batch["name"], outputs)):
            save_image(image, self.folder / (sets[i] if sets else "") / f"{name}.png")


class EvaluationNotEmpty(L.Callback):
    """A validation or test split whose every batch came out empty (each of its samples skipped as bad under
    ``on_bad_sample=skip``, or a split without samples) ends the run with a one-line :class:`InputError`, instead
    of Lightning's error about a monitored metric that was never logged. A split with samples left is evaluated
    on those. A sanity check counts only when it covered the whole split."""

    def __init__(self) -> None:
        self.seen = self.filled = 0

    def _start(self) -> None:
        self.seen = self.filled = 0

    def _count(self, batch: Any) -> None:
        self.seen += 1
        self.filled += bool(batch)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start()

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start()

    def on_validation_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._count(batch)

    def on_test_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._count(batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking and not self._covered(trainer.val_dataloaders):
            return
        self._check(trainer, "validation")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer, "test")

    def _covered(self, loaders: Any) -> bool:
        """Whether the batches seen are all the batches of ``loaders``."""
        try:
            loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
            return self.seen >= sum(len(loader) for loader in loaders)
        except TypeError:  # a loader without a length
            return False

    def _check(self, trainer: L.Trainer, split: str) -> None:
        counts = torch.tensor([self.seen, self.filled], dtype=torch.long, device=trainer.strategy.root_device)
        seen, filled = (int(v) for v in trainer.strategy.reduce(counts, reduce_op="sum"))  # every rank's batches
        if filled:
            return
        if seen:
            raise InputError(
                f"every sample of the {split} split was skipped as bad (data.on_bad_sample=skip; the warnings above "
                f"name the files): nothing is left to {'validate' if split == 'validation' else 'test'} on; "
                "fix or replace those files"
            )
        raise InputError(f"the {split} split has no samples: give the datamodule data for it")


class StepProgressBar(RichProgressBar):
    """Lightning's rich progress bar; a run measured in steps (``max_steps`` with ``max_epochs=-1``) shows
    ``Step N/max_steps`` on one bar across epochs, instead of ``Epoch E/-2`` and the batches of each epoch."""

    def _by_steps(self) -> bool:
        trainer = self.trainer
        return trainer.max_epochs in (-1, None) and trainer.max_steps is not None and trainer.max_steps > 0

    @property
    def total_train_batches(self) -> int | float:
        return self.trainer.max_steps if self._by_steps() else super().total_train_batches

    def _get_train_description(self, current_epoch: int) -> str:
        if not self._by_steps():
            return super()._get_train_description(current_epoch)
        description = "Step"
        return f"{description:{len(self.validation_description)}}"

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._by_steps() or self.train_progress_bar_id is None or self.is_disabled:
            super().on_train_epoch_start(trainer, pl_module)
        if self._by_steps():
            self._update(self.train_progress_bar_id, trainer.global_step)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self._by_steps():
            self._update(self.train_progress_bar_id, trainer.global_step)
            self.refresh()
