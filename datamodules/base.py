"""Shared pieces of every datamodule: the batch contract, image I/O, paired transforms and the
bad-sample policy.

A sample is a dict: ``image`` (3,H,W) float [0,1]; ``target`` (3,H,W) when the split has ground truth;
``mask`` (1,H,W) {0,1} (1 = text); ``name`` str (a file stem, without extension); ``set`` str, the
evaluation set of a val/test sample when the datamodule declares sets (:meth:`BaseDataModule.eval_sets`);
task keys (``boxes`` (N,4) xyxy float, ...). ``collate`` stacks tensors and keeps per-sample lists for
``name``/``boxes``/``text``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from zoo.arguments import own_arguments
from zoo.errors import LayoutError

# the data package's image I/O, re-exported for the datamodules
from zoo.imaging.images import IMAGE_EXTENSIONS, BadSampleError, list_images, read_image, to_tensor  # noqa: F401

log = logging.getLogger(__name__)

LIST_KEYS = ("name", "boxes", "text")  # kept as per-sample lists by ``collate``
BAD_SAMPLE_POLICIES = ("raise", "skip")


# -------------------------------------------------------------------------------------- transforms
def paired_transform(crop_size: int | None, train: bool, hflip: bool = True, vflip: bool = False):
    """albumentations pipeline that keeps ``image``, ``target`` and ``mask`` aligned.

    Training: pad (reflect) to at least ``crop_size``, random crop, flips. Evaluation: identity
    (full size). Returns ``None`` when there is nothing to do.
    """
    if not train or crop_size is None:
        return None
    import albumentations as A
    import cv2

    steps = [
        A.PadIfNeeded(crop_size, crop_size, border_mode=cv2.BORDER_REFLECT_101),
        A.RandomCrop(crop_size, crop_size),
    ]
    if hflip:
        steps.append(A.HorizontalFlip(p=0.5))
    if vflip:
        steps.append(A.VerticalFlip(p=0.5))
    return A.Compose(steps, additional_targets={"target": "image"})


# ---------------------------------------------------------------------------------------- batching
def collate(samples: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """Stack a list of samples into a batch; ``None`` entries (skipped bad samples) are dropped."""
    samples = [s for s in samples if s is not None]
    if not samples:
        return {}
    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if key in LIST_KEYS:
            batch[key] = values
        elif isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(values[0], (int, np.integer)):
            batch[key] = torch.as_tensor(values, dtype=torch.long)
        else:
            batch[key] = values
    return batch


class SampleDataset(Dataset):
    """Base dataset: subclasses implement ``load(index) -> sample``; the bad-sample policy applies.

    ``on_bad_sample="raise"`` stops with the error (which names the file); ``"skip"`` drops the sample
    from its batch and logs a warning with the running count of skipped samples.
    """

    def __init__(self, on_bad_sample: str = "raise"):
        if on_bad_sample not in BAD_SAMPLE_POLICIES:
            raise ValueError(f"on_bad_sample must be one of {BAD_SAMPLE_POLICIES}, got {on_bad_sample!r}")
        self.on_bad_sample = on_bad_sample
        self.skipped = 0

    def load(self, index: int) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        try:
            return self.load(index)
        except BadSampleError as error:
            if self.on_bad_sample == "raise":
                raise
            self.skipped += 1
            log.warning("skipping bad sample (%d skipped so far in this process): %s", self.skipped, error)
            return None


class TrainDraws:
    """A dataset's training draws: a numpy generator seeded by ``seed``, this process's torch seed (a loader worker's
    follows the main process's, and under ``seed_everything(workers=True)`` the rank too) and the distributed rank;
    made again when the torch seed changes (a new worker, a new seed)."""

    seed: int = 0
    _rng: np.random.Generator | None = None
    _rng_key: tuple[int, int] | None = None

    def draws(self) -> np.random.Generator:
        rank = (
            torch.distributed.get_rank()
            if torch.distributed.is_available() and torch.distributed.is_initialized()
            else 0
        )
        key = (torch.initial_seed(), rank)
        if self._rng_key != key:
            self._rng, self._rng_key = np.random.default_rng([self.seed, *key]), key
        return self._rng


class BaseDataModule(L.LightningDataModule):
    """Builds train/val/test datasets through ``build_dataset(split)`` and wraps them in loaders.

    ``eval_sets(stage)`` declares the evaluation sets of the ``"val"`` / ``"test"`` samples: names in a
    fixed order, the same in every process and without reading a sample. Each sample of the stage then
    names its set in ``set``, and ``RestorationModule`` creates ``<stage>/<set>/<metric>`` for every
    declared set at setup (next to the overall ``<stage>/<metric>``). ``[]``, the default, means one
    unnamed set: the samples carry no ``set``.
    """

    def __init__(
        self,
        batch_size: int = 4,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
    ):
        super().__init__()
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.datasets: dict[str, Dataset] = {}

    def build_dataset(self, split: str) -> Dataset:
        raise NotImplementedError

    def eval_sets(self, stage: str) -> list[str]:
        """The evaluation sets of ``stage`` (``"val"`` or ``"test"``), in order (class docstring)."""
        return []

    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}.get(
            stage or "", ("train", "val", "test")
        )
        for split in splits:
            if split not in self.datasets:
                self.datasets[split] = self.build_dataset(split)

    def loader(self, dataset: Dataset, batch_size: int, **options: Any) -> DataLoader:
        """A loader of ``dataset`` with this module's workers, pinning and :func:`collate`; ``options`` go to
        :class:`DataLoader` (shuffle, sampler, drop_last)."""
        return DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            collate_fn=collate,
            **options,
        )

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            self.datasets[split] = self.build_dataset(split)
        dataset = self.datasets[split]
        return self.loader(dataset, batch_size, shuffle=shuffle, drop_last=shuffle and len(dataset) > batch_size)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.val_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.val_batch_size, shuffle=False)


class GeneratedDataModule(BaseDataModule):
    """Generated data: ``train_samples``, ``val_samples`` and ``test_samples`` samples of ``dataset_class`` per split,
    built as ``dataset_class(count, split=split, **self.dataset_kwargs)``; subclasses set ``dataset_kwargs``, by
    default to their constructor's other arguments (:meth:`dataset_arguments`)."""

    dataset_class: Callable[..., Dataset]
    dataset_kwargs: dict[str, Any]

    def __init__(self, train_samples: int, val_samples: int, test_samples: int, **loader_kwargs: Any):
        super().__init__(**loader_kwargs)
        self.sizes = {"train": train_samples, "val": val_samples, "test": test_samples}

    def dataset_arguments(self, exclude: tuple[str, ...] = (), **recorded: Any) -> dict[str, Any]:
        """The calling constructor's arguments but the sample counts and ``exclude``, the values in ``recorded``
        instead of theirs: what its datasets take."""
        counts = ("train_samples", "val_samples", "test_samples")
        return {**own_arguments(inspect.currentframe().f_back, (*counts, *exclude)), **recorded}

    def build_dataset(self, split: str) -> Dataset:
        return self.dataset_class(self.sizes[split], split=split, **self.dataset_kwargs)


def size_mismatch(first: Path | str, first_image: np.ndarray, second: Path, second_image: np.ndarray) -> BadSampleError:
    """The error of a sample whose two images (``first`` read as ``first_image``, ...) differ in size."""
    (h1, w1), (h2, w2) = first_image.shape[:2], second_image.shape[:2]
    return BadSampleError(f"size mismatch: {first} is {w1}x{h1}, {second} is {w2}x{h2}")


def layout_error(root: Path, expected: str, problem: str) -> LayoutError:
    """An error that says what is wrong under ``root`` and prints the layout that was expected."""
    return LayoutError(f"{problem}\nExpected layout under {root}:\n{expected}")


def apply_transform(transform: Callable | None, image: np.ndarray, target: np.ndarray | None, mask: np.ndarray | None):
    """Run a paired albumentations transform on whichever of image/target/mask are present."""
    if transform is None:
        return image, target, mask
    inputs = {"image": image}
    if target is not None:
        inputs["target"] = target
    if mask is not None:
        inputs["mask"] = mask
    out = transform(**inputs)
    return out["image"], out.get("target"), out.get("mask")
