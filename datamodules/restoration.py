"""All-in-one image restoration data (PromptIR / PIP / AirNet): noise, rain, haze, blur, low light.

A sample is ``image`` (degraded), ``target`` (clean), ``degradation`` (class: 0 noise, 1 rain, 2 haze,
3 blur, 4 low-light), ``set`` (the evaluation set it belongs to, e.g. ``derain_rain100l``) and ``name``.

:class:`AllInOneDataModule` (``data=allinone``) reads the releases as they are laid out on disk, with
``root`` the PromptIR/PIP dataset folder (holding ``data/``) or ``data/`` itself: :data:`LAYOUT` (also
printed by layout errors).

Pairing: same name, ``rain-N`` <-> ``norain-N``, and hazy ``<id>_<A>_<beta>`` <-> clear ``<id>``; an input
without a ground truth is an error that lists them (``on_unmatched=skip`` drops them with a warning).
Training repeats every task's list as the official recipe (denoise ×3 per σ with σ ∈ {15,25,50} → 9,
derain ×120, dehaze ×1, deblur ×5, enhance ×20), takes random ``patch_size`` crops and one of the 8
flips/rotations, drawn from a generator seeded by ``seed``, the distributed rank and the process's torch
seed (the run's ``seed``; in a loader worker, a function of it and the worker): runs are reproducible.
Test: one loader per task and set (denoise once per σ, with noise seeded per image), both images
centre-cropped to a multiple of 16 as PIP's evaluation. Validation: the first ``val_size`` images of
every test set in one loader. The sets, in that order, are the datamodule's ``eval_sets``.

:class:`SyntheticRestorationDataModule` (``data=synthetic_restoration``) is the embedded default: the
five degradations synthesised on procedural clean images (Gaussian noise σ 15/25/50; rain streaks;
haze by the atmospheric scattering model on a smooth depth map; motion/defocus blur; low light by gamma
and gain with sensor noise), every sample a function of (seed, split, index); its evaluation sets
are the tasks.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import ConcatDataset, DataLoader

from datamodules.base import (
    IMAGE_EXTENSIONS,
    BaseDataModule,
    GeneratedDataModule,
    SampleDataset,
    TrainDraws,
    collate,
    layout_error,
    read_image,
    size_mismatch,
    to_tensor,
)
from datamodules.synthetic_text import generate_background, sample_rng

log = logging.getLogger(__name__)

TASKS = {"denoise": 0, "derain": 1, "dehaze": 2, "deblur": 3, "enhance": 4}
NOISE_SIGMAS = (15, 25, 50)
REPEATS = {"denoise": 3, "derain": 120, "dehaze": 1, "deblur": 5, "enhance": 20}  # official per-epoch composition
LAYOUT = """\
    Train/Denoise/*                                   clean images (WED .bmp + BSD400 .jpg, with or without
                                                      the "a" prefix of PromptIR's lists); noise added on the fly
    Train/Derain/{rainy,gt}/                          rain-N.png <-> norain-N.png (or same names)
    Train/Dehaze/{synthetic/part*,original}/          0001_0.8_0.2.jpg <-> 0001.jpg|png (RESIDE OTS)
    Train/GOPRO_deblur/train/{blur,sharp}/            same names        (or GOPRO_Large/train/<seq>/{blur,sharp})
    Train/Enhance/{low,high}/                         same names        (or our485/{low,high}, LOL)
    test/denoise/<set>/[original/]*.png               CBSD68 etc.; AirNet: test/denoise/*.png (set "bsd68")
    test/derain/<set>/{input,target}/                 Rain100L;        AirNet: test/derain/{input,target}
    test/dehaze/[outdoor/]{input,target}/             SOTS outdoor     (or outdoor/{hazy,gt}, the raw SOTS)
    test/GOPRO_deblur/test/{blur,sharp}/              (or GOPRO_Large/test/<seq>/{blur,sharp})
    test/enhance/{low,high}/                          (or eval15/{low,high})
"""  # the all-in-one layouts under ``root`` (or ``root/data``), as the module docstring describes


@dataclass
class RestorationPair:
    input: Path | None  # None: synthesise Gaussian noise on the target (denoising)
    target: Path
    degradation: int
    set: str
    sigma: int | None = None
    prefix: str = ""  # of the sample name, to tell apart the same file names in different folders of one set

    @property
    def name(self) -> str:
        """The sample's name: ``prefix`` + the input's stem (the target's when noise is synthesised)."""
        return self.prefix + (self.target if self.input is None else self.input).stem


# ----------------------------------------------------------------------------------------- pairing
def images_under(folder: Path, recursive: bool = False) -> list[Path]:
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p for p in pattern if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("._")
    )


def target_stems(stem: str) -> list[str]:
    """Ground-truth names an input may have: its own, ``rain-N`` -> ``norain-N``, ``<id>_<A>_<beta>`` -> ``<id>``."""
    candidates = [stem]
    if stem.startswith("rain-"):
        candidates.append("no" + stem)
    if re.fullmatch(r"[^_]+_[0-9.]+_[0-9.]+", stem):
        candidates.append(stem.split("_")[0])
    return candidates


def pair_folders(
    inputs: list[Path], target_dir: Path, degradation: int, set_name: str, on_unmatched: str
) -> list[RestorationPair]:
    """Pair every input with its ground truth in ``target_dir`` (see :func:`target_stems`)."""
    targets: dict[str, Path] = {}
    for path in images_under(target_dir, recursive=True):
        targets.setdefault(path.stem, path)
    pairs, unmatched = [], []
    for path in inputs:
        match = next((targets[s] for s in target_stems(path.stem) if s in targets), None)
        if match is None:
            unmatched.append(path.name)
        else:
            pairs.append(RestorationPair(path, match, degradation, set_name))
    if unmatched:
        message = f"{len(unmatched)} input(s) of {set_name} without a ground truth in {target_dir}: {unmatched[:20]}"
        if on_unmatched == "raise":
            raise ValueError(message + " (data.on_unmatched=skip leaves them out)")
        log.warning("leaving out %s", message)
    if not pairs:
        raise ValueError(f"no input of {set_name} pairs with a ground truth in {target_dir}")
    return pairs


def first_dir(*candidates: Path) -> Path | None:
    return next((c for c in candidates if c.is_dir()), None)


def sequence_pairs(split_dir: Path, degradation: int, set_name: str, on_unmatched: str) -> list[RestorationPair]:
    """GOPRO_Large/<split>/<sequence>/{blur,sharp}: pairs within each sequence, named ``<sequence>_<frame>``
    (the names of PromptIR's flattened GOPRO_deblur folders)."""
    pairs = []
    for sequence in sorted(p for p in split_dir.iterdir() if (p / "blur").is_dir()):
        found = pair_folders(images_under(sequence / "blur"), sequence / "sharp", degradation, set_name, on_unmatched)
        pairs += [replace(pair, prefix=f"{sequence.name}_") for pair in found]
    return pairs


class AllInOneLayout:
    """Finds each task's train and test sets under ``root`` (any of the layouts in the module docstring)."""

    def __init__(self, root: Path, on_unmatched: str = "raise"):
        self.root = root
        self.base = root / "data" if (root / "data").is_dir() else root
        self.on_unmatched = on_unmatched

    def _missing(self, task: str, split: str) -> FileNotFoundError:
        return layout_error(self.root, LAYOUT, f"no {split} data for {task} under {self.base}")

    def train(self, task: str) -> list[RestorationPair]:
        b, label, unmatched = self.base, TASKS[task], self.on_unmatched
        train = first_dir(b / "Train", b / "train") or b
        if task == "denoise":
            folder = first_dir(train / "Denoise")
            if folder is None:
                raise self._missing(task, "train")
            return [
                RestorationPair(None, p, label, "denoise", sigma)
                for sigma in NOISE_SIGMAS
                for p in images_under(folder, recursive=True)
            ]
        if task == "derain" and (folder := first_dir(train / "Derain")):
            return pair_folders(images_under(folder / "rainy"), folder / "gt", label, task, unmatched)
        if task == "dehaze" and (folder := first_dir(train / "Dehaze")):
            return pair_folders(
                images_under(folder / "synthetic", recursive=True), folder / "original", label, task, unmatched
            )
        if task == "deblur":
            if folder := first_dir(train / "GOPRO_deblur" / "train", train / "GOPRO_deblur"):
                return pair_folders(images_under(folder / "blur"), folder / "sharp", label, task, unmatched)
            if folder := first_dir(b / "GOPRO_Large" / "train"):
                return sequence_pairs(folder, label, task, unmatched)
        if task == "enhance" and (folder := first_dir(train / "Enhance", b / "our485", b / "LOL" / "our485")):
            return pair_folders(images_under(folder / "low"), folder / "high", label, task, unmatched)
        raise self._missing(task, "train")

    def test(self, task: str) -> list[list[RestorationPair]]:
        """One list of pairs per evaluation set of ``task``."""
        b, label, unmatched = self.base, TASKS[task], self.on_unmatched
        test = first_dir(b / "test", b / "Test") or b
        if task == "denoise" and (folder := first_dir(test / "denoise")):
            sets = [(p.name.lower(), first_dir(p / "original") or p) for p in sorted(folder.iterdir()) if p.is_dir()]
            if images_under(folder):  # AirNet: the images directly in test/denoise
                sets.insert(0, ("bsd68", folder))
            images = [(name, images_under(path)) for name, path in sets]
            return [
                [RestorationPair(None, p, label, f"denoise_{name}_{sigma}", sigma) for p in paths]
                for name, paths in images
                if paths
                for sigma in NOISE_SIGMAS
            ]
        if task == "derain" and (folder := first_dir(test / "derain")):
            if (folder / "input").is_dir():  # AirNet
                return [
                    pair_folders(images_under(folder / "input"), folder / "target", label, "derain_rain100l", unmatched)
                ]
            return [
                pair_folders(images_under(p / "input"), p / "target", label, f"derain_{p.name.lower()}", unmatched)
                for p in sorted(folder.iterdir())
                if (p / "input").is_dir()
            ]
        if task == "dehaze":
            if folder := first_dir(test / "dehaze" / "outdoor", test / "dehaze"):
                return [
                    pair_folders(images_under(folder / "input"), folder / "target", label, "dehaze_sots", unmatched)
                ]
            if folder := first_dir(b / "outdoor"):
                return [pair_folders(images_under(folder / "hazy"), folder / "gt", label, "dehaze_sots", unmatched)]
        if task == "deblur":
            if folder := first_dir(test / "GOPRO_deblur" / "test", test / "GOPRO_deblur"):
                return [pair_folders(images_under(folder / "blur"), folder / "sharp", label, "deblur_gopro", unmatched)]
            if folder := first_dir(b / "GOPRO_Large" / "test"):
                return [sequence_pairs(folder, label, "deblur_gopro", unmatched)]
        if task == "enhance" and (folder := first_dir(test / "enhance", b / "eval15", b / "LOL" / "eval15")):
            return [pair_folders(images_under(folder / "low"), folder / "high", label, "enhance_lol", unmatched)]
        raise self._missing(task, "test")


# ----------------------------------------------------------------------------------------- samples
def augment_8(arrays: Sequence[np.ndarray], mode: int) -> list[np.ndarray]:
    """One of the 8 flips/rotations (mode 0 = identity), the same for every array."""
    out = []
    for a in arrays:
        a = np.rot90(a, mode % 4)
        out.append(np.ascontiguousarray(np.flipud(a) if mode >= 4 else a))
    return out


def add_noise(clean: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of ``sigma`` (0-255 scale) on a uint8 image, clipped (PromptIR/PIP)."""
    return np.clip(
        clean.astype(np.float32) + rng.standard_normal(clean.shape).astype(np.float32) * sigma, 0, 255
    ).astype(np.uint8)


def center_crop_multiple(array: np.ndarray, base: int) -> np.ndarray:
    h, w = array.shape[:2]
    ch, cw = h - h % base, w - w % base
    y, x = (h - ch) // 2, (w - cw) // 2
    return array[y : y + ch, x : x + cw]


class AllInOneDataset(TrainDraws, SampleDataset):
    """Pairs -> samples: training crops + 8-way augmentation, or full test images cropped to /16."""

    def __init__(
        self,
        pairs: Sequence[RestorationPair],
        train: bool,
        patch_size: int = 128,
        crop_multiple: int = 16,
        seed: int = 0,
        on_bad_sample: str = "raise",
    ):
        super().__init__(on_bad_sample)
        self.pairs, self.train, self.seed = list(pairs), train, seed
        self.patch_size, self.crop_multiple = patch_size, crop_multiple

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        target = read_image(pair.target)
        image = read_image(pair.input) if pair.input is not None else None
        if image is not None and image.shape != target.shape:
            raise size_mismatch(pair.input, image, pair.target, target)
        if self.train:
            rng = self.draws()
            target, image = self._crop(rng, target, image)
            if image is None:
                image = add_noise(target, pair.sigma, rng)
            image, target = augment_8((image, target), int(rng.integers(1, 8)))  # the official always flips/rotates
        else:
            if self.crop_multiple:
                target = center_crop_multiple(target, self.crop_multiple)
                image = center_crop_multiple(image, self.crop_multiple) if image is not None else None
            if image is None:  # noise seeded per image and σ: the same test set every run
                image = add_noise(target, pair.sigma, np.random.default_rng([self.seed, index, pair.sigma]))
        return {
            "image": to_tensor(image),
            "target": to_tensor(target),
            "degradation": pair.degradation,
            "set": pair.set,
            "name": pair.name,
        }

    def _crop(self, rng: np.random.Generator, target: np.ndarray, image: np.ndarray | None):
        size = self.patch_size
        h, w = target.shape[:2]
        if h < size or w < size:  # small images (BSD400 is 321x481, fine; guard anyway): reflect-pad
            pad = ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0))
            target = np.pad(target, pad, mode="reflect")
            image = np.pad(image, pad, mode="reflect") if image is not None else None
            h, w = target.shape[:2]
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        return target[y : y + size, x : x + size], image[y : y + size, x : x + size] if image is not None else None


class AllInOneDataModule(BaseDataModule):
    """``data=allinone`` (module docstring). ``tasks``: the 3-task setting ``[denoise, derain, dehaze]`` or
    all five; ``repeats``: per-task list repetition per epoch (official by default)."""

    def __init__(
        self,
        root: str,
        tasks: Sequence[str] = ("denoise", "derain", "dehaze"),
        patch_size: int = 128,
        repeats: dict[str, int] | None = None,
        val_size: int | None = 8,
        crop_multiple: int = 16,
        seed: int = 0,
        on_unmatched: str = "raise",
        on_bad_sample: str = "raise",
        **loader_kwargs: Any,
    ):
        super().__init__(**loader_kwargs)
        if root in (None, "", "???"):
            raise ValueError(f"data.root is required for the all-in-one sets. Expected layout:\n{LAYOUT}")
        unknown = set(tasks) - set(TASKS)
        if unknown or not tasks:
            raise ValueError(f"data.tasks must be among {list(TASKS)}, got {list(tasks)}")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise layout_error(self.root, LAYOUT, f"dataset root {self.root} does not exist")
        self.layout = AllInOneLayout(self.root, on_unmatched)
        self.tasks, self.patch_size, self.val_size, self.crop_multiple, self.seed = (
            list(tasks),
            patch_size,
            val_size,
            crop_multiple,
            seed,
        )
        self.repeats = {**REPEATS, **(repeats or {})}
        self.on_bad_sample = on_bad_sample

    @cached_property
    def test_pairs(self) -> list[list[RestorationPair]]:
        """The pairs of every evaluation set, task by task (read from disk once)."""
        return [pairs for task in self.tasks for pairs in self.layout.test(task)]

    def eval_sets(self, stage: str) -> list[str]:
        """The test sets, in loader order (validation takes the first ``val_size`` images of each)."""
        return [pairs[0].set for pairs in self.test_pairs]

    def test_sets(self) -> list[AllInOneDataset]:
        return [
            AllInOneDataset(
                pairs, False, crop_multiple=self.crop_multiple, seed=self.seed, on_bad_sample=self.on_bad_sample
            )
            for pairs in self.test_pairs
        ]

    def build_dataset(self, split: str):
        if split == "train":
            pairs = [pair for task in self.tasks for pair in self.layout.train(task) * self.repeats[task]]
            return AllInOneDataset(pairs, True, self.patch_size, seed=self.seed, on_bad_sample=self.on_bad_sample)
        if split == "val":
            return ConcatDataset(
                [
                    AllInOneDataset(
                        s.pairs[: self.val_size] if self.val_size else s.pairs,
                        False,
                        crop_multiple=self.crop_multiple,
                        seed=self.seed,
                        on_bad_sample=self.on_bad_sample,
                    )
                    for s in self.test_sets()
                ]
            )
        return self.test_sets()

    def test_dataloader(self) -> list[DataLoader]:
        """One loader per task and set (their names are in each batch's ``set``)."""
        return [
            DataLoader(dataset, batch_size=1, num_workers=self.num_workers, collate_fn=collate)
            for dataset in self.build_dataset("test")
        ]

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.build_dataset("val"), batch_size=1, num_workers=self.num_workers, collate_fn=collate)


# ------------------------------------------------------------------------------ synthetic default
def rain_streaks(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A rain layer in [0,1]: sparse seeds smeared along one slanted direction (motion kernel)."""
    import cv2

    seeds = (rng.random((height, width)) < rng.uniform(0.002, 0.01)).astype(np.float32) * rng.uniform(
        0.5, 1.0, (height, width)
    ).astype(np.float32)
    length = int(rng.integers(7, 21))
    angle = rng.uniform(-25, 25)
    kernel = np.zeros((length, length), np.float32)
    kernel[:, length // 2] = 1.0
    kernel = cv2.warpAffine(
        kernel, cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), angle, 1.0), (length, length)
    )
    streaks = cv2.filter2D(seeds, -1, kernel / max(kernel.sum(), 1e-6) * length * 0.5)
    return np.clip(streaks, 0, 1)


def degrade(clean: np.ndarray, task: str, rng: np.random.Generator) -> np.ndarray:
    """Synthesise ``task``'s degradation on a uint8 RGB image."""
    import cv2

    image = clean.astype(np.float32) / 255
    h, w = image.shape[:2]
    if task == "denoise":
        return add_noise(clean, float(rng.choice(NOISE_SIGMAS)), rng)
    if task == "derain":
        image = image + rain_streaks(rng, h, w)[..., None] * rng.uniform(0.6, 0.9)
    elif task == "dehaze":  # I = J·t + A·(1 − t), t = exp(−β·d)
        coarse = rng.uniform(0, 1, (3, 3)).astype(np.float32)
        depth = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)
        depth = 0.5 * depth + 0.5 * np.linspace(0, 1, h, dtype=np.float32)[:, None]
        transmission = np.exp(-rng.uniform(0.8, 2.0) * depth)[..., None]
        image = image * transmission + rng.uniform(0.7, 1.0) * (1 - transmission)
    elif task == "deblur":
        size = int(rng.integers(2, 6)) * 2 + 1
        if rng.random() < 0.7:  # motion: a line through the centre
            kernel = np.zeros((size, size), np.float32)
            kernel[size // 2] = 1
            kernel = cv2.warpAffine(
                kernel,
                cv2.getRotationMatrix2D((size / 2 - 0.5, size / 2 - 0.5), rng.uniform(0, 180), 1.0),
                (size, size),
            )
        else:  # defocus: a disc
            yy, xx = np.mgrid[:size, :size] - size // 2
            kernel = (xx**2 + yy**2 <= (size // 2) ** 2).astype(np.float32)
        image = cv2.filter2D(image, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)
    elif task == "enhance":
        image = image ** rng.uniform(1.5, 3.0) * rng.uniform(0.2, 0.5)
        image = image + rng.standard_normal(image.shape).astype(np.float32) * rng.uniform(0.002, 0.01)
    else:
        raise ValueError(f"unknown task {task!r}; known: {list(TASKS)}")
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


class SyntheticRestorationDataset(SampleDataset):
    """``num_samples`` procedural clean images, each with one of ``tasks``' degradations (cycled)."""

    def __init__(
        self,
        num_samples: int,
        size: int = 128,
        seed: int = 0,
        split: str = "train",
        tasks: Sequence[str] = tuple(TASKS),
    ):
        super().__init__("raise")
        self.num_samples, self.size, self.seed, self.split, self.tasks = num_samples, size, seed, split, list(tasks)

    def __len__(self) -> int:
        return self.num_samples

    def load(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_samples:
            raise IndexError(index)
        rng = sample_rng(self.seed, self.split, index)
        task = self.tasks[index % len(self.tasks)]
        clean = np.clip(np.rint(generate_background(rng, self.size, self.size, shapes_probability=0.8)), 0, 255).astype(
            np.uint8
        )
        return {
            "image": to_tensor(degrade(clean, task, rng)),
            "target": to_tensor(clean),
            "degradation": TASKS[task],
            "set": task,
            "name": f"synthetic_{task}_{index:06d}",
        }


class SyntheticRestorationDataModule(GeneratedDataModule):
    """Embedded default of the restoration models (module docstring)."""

    dataset_class = SyntheticRestorationDataset

    def __init__(
        self,
        size: int = 128,
        train_samples: int = 20000,
        val_samples: int = 40,
        test_samples: int = 100,
        seed: int = 0,
        tasks: Sequence[str] = tuple(TASKS),
        **loader_kwargs: Any,
    ):
        super().__init__(train_samples, val_samples, test_samples, **loader_kwargs)
        unknown = set(tasks) - set(TASKS)
        if unknown or not tasks:
            raise ValueError(f"data.tasks must be among {list(TASKS)}, got {list(tasks)}")
        self.dataset_kwargs = self.dataset_arguments(tasks=list(tasks))

    def eval_sets(self, stage: str) -> list[str]:
        return list(self.dataset_kwargs["tasks"])
