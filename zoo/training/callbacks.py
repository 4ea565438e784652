"""Lightning callbacks of the restoration modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

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
