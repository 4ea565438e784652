"""Training on several datasets at once, with sampling weights (e.g. GaRNet's SCUT-EnsText + SynthText).

Each source is a datamodule (any of ours); a training sample comes from source ``s`` with probability
``weights[s] / Σ weights`` whatever the sources' sizes. Validation and test read ``eval_source``.
Sources must yield samples of one size and with the same keys (set their ``train_size``/``crop_size``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, WeightedRandomSampler

from datamodules.base import BaseDataModule


class MixedDataModule(BaseDataModule):
    def __init__(
        self,
        sources: dict[str, BaseDataModule],
        weights: dict[str, float] | None = None,
        eval_source: str | None = None,
        samples_per_epoch: int | None = None,
        seed: int = 0,
        **loader_kwargs: Any,
    ):
        super().__init__(**loader_kwargs)
        if not sources:
            raise ValueError("MixedDataModule needs at least one source")
        weights = weights or {name: 1.0 for name in sources}
        unknown = set(weights) - set(sources)
        if unknown or any(w < 0 for w in weights.values()) or not any(weights.values()):
            raise ValueError(
                f"weights must be non-negative, not all zero, for sources {sorted(sources)}; got {weights}"
            )
        self.sources, self.weights = sources, {name: float(weights.get(name, 0.0)) for name in sources}
        self.eval_source = eval_source or next(iter(sources))
        if self.eval_source not in sources:
            raise ValueError(f"eval_source {self.eval_source!r} is not one of {sorted(sources)}")
        self.samples_per_epoch, self.seed = samples_per_epoch, seed

    def build_dataset(self, split: str) -> Dataset:
        if split != "train":
            return self.sources[self.eval_source].build_dataset(split)
        return ConcatDataset([self.sources[name].build_dataset("train") for name, w in self.weights.items() if w > 0])

    def eval_sets(self, stage: str) -> list[str]:
        return self.sources[self.eval_source].eval_sets(stage)

    def sample_weights(self, dataset: ConcatDataset) -> torch.Tensor:
        """Per-sample probabilities: each source's weight spread over its samples."""
        names = [name for name, w in self.weights.items() if w > 0]
        parts = [
            torch.full((len(d),), self.weights[name] / max(1, len(d)), dtype=torch.double)
            for name, d in zip(names, dataset.datasets)
        ]
        return torch.cat(parts)

    def train_dataloader(self) -> DataLoader:
        if "train" not in self.datasets:
            self.datasets["train"] = self.build_dataset("train")
        dataset = self.datasets["train"]
        sampler = WeightedRandomSampler(
            self.sample_weights(dataset),
            self.samples_per_epoch or len(dataset),
            replacement=True,
            generator=torch.Generator().manual_seed(self.seed),
        )
        return self.loader(dataset, self.batch_size, sampler=sampler, drop_last=len(dataset) > self.batch_size)
