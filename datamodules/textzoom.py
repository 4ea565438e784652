"""Scene-text super-resolution data: TextZoom (lmdb), synthetic word lines and custom folders.

A sample (the SR contract, on top of :mod:`datamodules.base`'s):

- ``lr`` (3,h,w) float [0,1], the low-resolution input;
- ``hr`` (3,H,W) float [0,1], the high-resolution ground truth; ``target`` is the same tensor (the
  shared metrics read ``target``);
- ``image`` = ``lr`` bicubic-upsampled to H×W (``F.interpolate(mode="bicubic", align_corners=False)``,
  clamped to [0,1]): what ``val/psnr_identity`` scores and the sample grids show;
- ``text`` str, the word's label as stored (case and punctuation kept; ``""`` when unknown);
- ``name`` str; ``set`` on val/test samples of a datamodule that declares evaluation sets.

:class:`TextZoomDataModule` (``data=textzoom``) reads the release as distributed (:data:`TEXTZOOM_LAYOUT`):
every split is an lmdb env opened read-only (``lock=False``, ``readahead=False``) in each process that
reads it (an open env is never pickled nor shared across a fork), with the keys ``num-samples`` (ASCII
int), ``label-%09d``, ``image_hr-%09d`` and ``image_lr-%09d``, **1-based** (dataset index ``i`` reads key
``i + 1``). Images are encoded bytes, decoded with PIL ``.convert("RGB")``; HR is resized to 128×32 and LR
to 64×16 (W×H) with PIL bicubic, as TATT/TextDiff's loaders do. Train is train1 + train2; validation the
first ``val_size`` samples of each test split in ``val_sets``; test one loader per split, easy, medium,
hard (the datamodule's ``eval_sets``). A missing key or an undecodable image is a bad sample (the
``on_bad_sample`` policy) whose error names the key and the env.

:class:`SyntheticTextLinesDataModule` (``data=synthetic_textlines``) is the embedded default of the
scene-text SR models: one random word (3–10 letters/digits of :class:`StyleRanges`' alphabet) rendered
centred with :mod:`datamodules.synthetic_text`'s renderer on a generated background (HR), degraded to LR
by :class:`LineDegradation` (Gaussian blur, bicubic ×1/``scale``, Gaussian noise, JPEG). Every sample is a
function of (seed, split, index); no evaluation sets.

:class:`SRFolderDataModule` (``data=sr_folder``) reads custom pairs (:data:`SR_FOLDER_LAYOUT`).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import ConcatDataset, DataLoader

from datamodules.base import (
    BadSampleError,
    BaseDataModule,
    GeneratedDataModule,
    SampleDataset,
    layout_error,
    list_images,
    read_image,
    to_tensor,
)
from datamodules.synthetic_text import (
    BACKGROUND_KINDS,
    from_overrides,
    generate_background,
    make_ranges,
    render_scene,
    render_text_layer,
    sample_rng,
    sample_style,
)
from zoo.errors import LayoutError
from zoo.imaging.colors import contrasting_color, uniform_color
from zoo.imaging.fonts import find_fonts

log = logging.getLogger(__name__)

Size = tuple[int, int]  # (H, W)
TEST_SPLITS = ("easy", "medium", "hard")
TRAIN_SPLITS = ("train1", "train2")
TEXTZOOM_LAYOUT = """\
    train1/                 lmdb env (data.mdb, lock.mdb): keys num-samples, label-%09d,
                            image_hr-%09d, image_lr-%09d, numbered from 1
    train2/                 lmdb env
    test/
        easy/               lmdb env
        medium/             lmdb env
        hard/               lmdb env
"""  # the TextZoom release under ``root`` (printed by layout errors)
SR_FOLDER_LAYOUT = """\
    train/
        hr/<stem>.png|jpg   high-resolution images
        lr/<stem>.png|jpg   low-resolution partners, same stems
        labels.txt          optional: one '<stem><TAB><label>' (or '<stem> <label>') line per image
    val/                    same as train/
    test/                   same as train/
"""  # the custom SR pairs under ``root`` (printed by layout errors)


# ----------------------------------------------------------------------------------------- samples
def as_size(size: int | Sequence[int] | None) -> Size | None:
    """``(H, W)`` from an int (square), a pair (a Hydra list) or ``None`` (keep the stored size)."""
    if size is None:
        return None
    height, width = (size, size) if isinstance(size, int) else size
    return int(height), int(width)


def resize(image: Image.Image | np.ndarray, size: Size | None) -> np.ndarray:
    """uint8 HxWx3 of ``image`` resized to ``size`` (H, W) with PIL bicubic (``None``: as it is)."""
    if size is not None:
        image = image if isinstance(image, Image.Image) else Image.fromarray(image)
        image = image.resize((size[1], size[0]), Image.BICUBIC)
    return np.asarray(image)


def upsample_bicubic(lr: torch.Tensor, size: Size) -> torch.Tensor:
    """(3,h,w) -> (3,H,W): bicubic, ``align_corners=False``, clamped to [0,1] (the SR ``image``)."""
    return F.interpolate(lr[None], size=size, mode="bicubic", align_corners=False).clamp_(0, 1)[0]


def sr_sample(
    lr: np.ndarray | torch.Tensor, hr: np.ndarray | torch.Tensor, text: str, name: str, set_name: str | None = None
) -> dict[str, Any]:
    """The SR sample (module docstring) of an LR/HR pair: uint8 HxWx3 arrays or (3,h,w)/(3,H,W) tensors in [0,1]."""
    lr_t, hr_t = (x if isinstance(x, torch.Tensor) else to_tensor(x) for x in (lr, hr))
    sample = {
        "image": upsample_bicubic(lr_t, tuple(hr_t.shape[-2:])),
        "lr": lr_t,
        "hr": hr_t,
        "target": hr_t,
        "text": text,
        "name": name,
    }
    if set_name is not None:
        sample["set"] = set_name
    return sample


def decode_image(data: bytes, where: str) -> Image.Image:
    """Encoded image bytes -> RGB PIL image (fully decoded); ``where`` names the entry in the error."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise BadSampleError(f"cannot decode image {where}: {error}") from error


def eval_loaders(module: BaseDataModule, datasets: Sequence[SampleDataset]) -> list[DataLoader]:
    """One evaluation loader per dataset (one per evaluation set), in order."""
    return [module.loader(d, module.val_batch_size, shuffle=False) for d in datasets]


# -------------------------------------------------------------------------------------- TextZoom
_ENVS: dict[Path, tuple[int, Any]] = {}  # env directory -> (the process that opened it, env)


def lmdb_env(path: Path):
    """This process's read-only env of ``path`` (no locking, no readahead), opened on first use and shared by
    every dataset of the process: py-lmdb refuses to open one env twice in a process. A forked loader worker
    closes the copy it inherited and opens its own; datasets hold no env, so none is ever pickled."""
    key = path.resolve()
    pid, env = _ENVS.get(key, (None, None))
    if pid != os.getpid():
        import lmdb

        if env is not None:
            env.close()  # inherited through a fork: closes this process's copy only
        try:
            env = lmdb.open(str(key), readonly=True, lock=False, readahead=False, meminit=False, max_readers=1)
        except lmdb.Error as error:
            raise LayoutError(f"cannot open the lmdb env {path}: {error}") from error
        _ENVS[key] = (os.getpid(), env)
    return env


class TextZoomLmdbDataset(SampleDataset):
    """The pairs of one TextZoom lmdb env (module docstring); ``limit`` keeps the first samples."""

    def __init__(
        self,
        path: str | Path,
        hr_size: Size | None = (32, 128),
        lr_size: Size | None = (16, 64),
        set_name: str | None = None,
        limit: int | None = None,
        on_bad_sample: str = "raise",
    ):
        super().__init__(on_bad_sample)
        self.path, self.hr_size, self.lr_size, self.set_name = Path(path), hr_size, lr_size, set_name
        with lmdb_env(self.path).begin() as txn:
            count = txn.get(b"num-samples")
        try:
            self.total = int(count)
        except (TypeError, ValueError):
            raise LayoutError(
                f"{self.path} is not a TextZoom lmdb env: key 'num-samples' is {count!r}, not an ASCII count"
            ) from None
        self.length = self.total if limit is None else min(limit, self.total)

    def __len__(self) -> int:
        return self.length

    def load(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        number = index + 1  # the keys are 1-based
        keys = {field: f"{field}-{number:09d}" for field in ("label", "image_hr", "image_lr")}
        with lmdb_env(self.path).begin() as txn:
            values = {field: txn.get(key.encode()) for field, key in keys.items()}
        for field, value in values.items():
            if value is None:
                raise BadSampleError(f"missing key {keys[field]!r} in the lmdb env {self.path}")
        hr = decode_image(values["image_hr"], f"{keys['image_hr']!r} in the lmdb env {self.path}")
        lr = decode_image(values["image_lr"], f"{keys['image_lr']!r} in the lmdb env {self.path}")
        text = values["label"].decode("utf-8", errors="replace")
        return sr_sample(
            resize(lr, self.lr_size), resize(hr, self.hr_size), text, f"{self.path.name}_{number:09d}", self.set_name
        )


class TextZoomDataModule(BaseDataModule):
    """``data=textzoom`` (module docstring); ``hr_size``/``lr_size`` are (H, W), ``None`` keeps the stored sizes."""

    def __init__(
        self,
        root: str,
        hr_size: Sequence[int] | None = (32, 128),
        lr_size: Sequence[int] | None = (16, 64),
        on_bad_sample: str = "raise",
        val_sets: Sequence[str] = TEST_SPLITS,
        val_size: int | None = None,
        **loader_kwargs: Any,
    ):
        super().__init__(**loader_kwargs)
        if root in (None, "", "???"):
            raise ValueError(f"data.root is required for TextZoom. Expected layout:\n{TEXTZOOM_LAYOUT}")
        if not val_sets or set(val_sets) - set(TEST_SPLITS):
            raise ValueError(f"data.val_sets must be among {list(TEST_SPLITS)}, got {list(val_sets)}")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise layout_error(self.root, TEXTZOOM_LAYOUT, f"TextZoom root {self.root} does not exist")
        self.val_sets, self.val_size = list(dict.fromkeys(val_sets)), val_size
        self.kwargs = dict(hr_size=as_size(hr_size), lr_size=as_size(lr_size), on_bad_sample=on_bad_sample)

    def env_path(self, split: str) -> Path:
        """The env directory of ``split`` (train1, train2, easy, medium, hard), checked."""
        path = self.root / split if split in TRAIN_SPLITS else self.root / "test" / split
        if not path.is_dir():
            raise layout_error(
                self.root, TEXTZOOM_LAYOUT, f"TextZoom split {split!r} is missing: {path} is not a folder"
            )
        if not (path / "data.mdb").is_file():
            raise layout_error(
                self.root, TEXTZOOM_LAYOUT, f"TextZoom split {split!r} is not an lmdb env: {path} has no data.mdb"
            )
        return path

    def split_dataset(self, split: str, limit: int | None = None) -> TextZoomLmdbDataset:
        return TextZoomLmdbDataset(
            self.env_path(split), set_name=None if split in TRAIN_SPLITS else split, limit=limit, **self.kwargs
        )

    def eval_sets(self, stage: str) -> list[str]:
        return list(self.val_sets if stage == "val" else TEST_SPLITS)

    def build_dataset(self, split: str):
        if split == "train":
            return ConcatDataset([self.split_dataset(s) for s in TRAIN_SPLITS])
        if split == "val":
            return ConcatDataset([self.split_dataset(s, self.val_size) for s in self.val_sets])
        return [self.split_dataset(s) for s in TEST_SPLITS]

    def test_dataloader(self) -> list[DataLoader]:
        """One loader per test split, easy, medium, hard (each batch names it in ``set``)."""
        if "test" not in self.datasets:
            self.datasets["test"] = self.build_dataset("test")
        return eval_loaders(self, self.datasets["test"])


# ---------------------------------------------------------------------------- synthetic word lines
LINE_RANGES = {
    "chars": (3, 10),
    "size": (0.6, 0.85),
    "rotation": (-2.0, 2.0),
    "blur_probability": 0.1,
}  # StyleRanges for one word in a line


@dataclass
class LineDegradation:
    """HR -> LR: Gaussian blur of a sigma (HR pixels) in ``blur_sigma``, PIL bicubic down by ``scale``,
    additive Gaussian noise of a sigma (0-255) in ``noise_sigma``, then, with ``jpeg_probability``, JPEG at
    a quality in ``jpeg_quality`` (Pillow's default 4:2:0 chroma subsampling)."""

    blur_sigma: tuple[float, float] = (0.2, 1.2)
    noise_sigma: tuple[float, float] = (0.0, 6.0)
    jpeg_quality: tuple[int, int] = (40, 95)
    jpeg_probability: float = 1.0

    def __call__(self, hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
        import cv2

        image = cv2.GaussianBlur(hr, (0, 0), float(rng.uniform(*self.blur_sigma)), borderType=cv2.BORDER_REFLECT_101)
        height, width = hr.shape[:2]
        image = resize(image, (height // scale, width // scale)).astype(np.float32)
        image = image + rng.standard_normal(image.shape).astype(np.float32) * float(rng.uniform(*self.noise_sigma))
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        quality = int(
            rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)
        )  # drawn always: the other draws stay put
        if rng.random() >= self.jpeg_probability:
            return image
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=quality)
        return np.asarray(Image.open(buffer).convert("RGB"))


class SyntheticTextLinesDataset(SampleDataset):
    """``num_samples`` deterministic word lines (module docstring). ``ranges`` overrides :data:`LINE_RANGES`
    (:class:`StyleRanges` fields; ``size`` is relative to the height); ``degradation`` :class:`LineDegradation`."""

    def __init__(
        self,
        num_samples: int,
        size: Sequence[int] = (32, 128),
        scale: int = 2,
        seed: int = 0,
        split: str = "train",
        ranges: dict | None = None,
        degradation: LineDegradation | dict | None = None,
        font_dir: str | None = None,
        background_kinds: dict[str, float] | None = None,
        shapes_probability: float = 0.3,
    ):
        super().__init__("raise")
        self.num_samples, self.seed, self.split, self.scale = num_samples, seed, split, scale
        self.height, self.width = as_size(size)
        if self.height % scale or self.width % scale:
            raise ValueError(f"data.size {[self.height, self.width]} must be a multiple of data.scale={scale}")
        self.ranges = make_ranges({**LINE_RANGES, **(ranges or {})})
        self.degradation = (
            degradation
            if isinstance(degradation, LineDegradation)
            else from_overrides(LineDegradation, degradation, "degradation settings")
        )
        self.fonts = find_fonts(font_dir)
        self.background_kinds, self.shapes_probability = dict(background_kinds or BACKGROUND_KINDS), shapes_probability
        generate_background(np.random.default_rng(0), 2, 2, self.background_kinds)  # validate early

    def __len__(self) -> int:
        return self.num_samples

    def render(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """An HR line (uint8) and its word: one style from ``ranges``, centred, its colour contrasting with
        the middle of the background, its size shrunk until the word fits the line."""
        background = generate_background(rng, self.height, self.width, self.background_kinds, self.shapes_probability)
        style = sample_style(rng, self.ranges, self.fonts, background)
        style.center = (0.5, 0.5)
        middle = (
            background[
                self.height // 4 : self.height - self.height // 4, self.width // 8 : self.width - self.width // 8
            ]
            .reshape(-1, 3)
            .mean(axis=0)
        )
        if (
            np.linalg.norm(np.asarray(style.color, dtype=np.float64) - middle) < self.ranges.min_contrast
        ):  # it was drawn for another spot
            style.color = contrasting_color(rng, middle, self.ranges.min_contrast, uniform_color)
            style.stroke_color = contrasting_color(
                rng, np.asarray(style.color, dtype=np.float64), self.ranges.min_contrast, uniform_color
            )
        for _ in range(4):
            layer = render_text_layer(style)
            fit = min((self.width - 4) / layer.shape[1], self.height / layer.shape[0])
            if fit >= 1 or style.size <= 6:
                break
            style.size = max(6, int(style.size * fit))
        image, _ = render_scene(background, [style])
        return np.clip(np.rint(image), 0, 255).astype(np.uint8), style.text

    def load(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_samples:
            raise IndexError(index)
        rng = sample_rng(self.seed, self.split, index)
        hr, text = self.render(rng)
        return sr_sample(self.degradation(hr, self.scale, rng), hr, text, f"synthetic_{self.split}_{index:06d}")


class SyntheticTextLinesDataModule(GeneratedDataModule):
    """Embedded default for scene-text SR (module docstring); ``size`` is the HR (H, W)."""

    dataset_class = SyntheticTextLinesDataset

    def __init__(
        self,
        size: Sequence[int] = (32, 128),
        scale: int = 2,
        train_samples: int = 20000,
        val_samples: int = 64,
        test_samples: int = 256,
        seed: int = 0,
        degradation: dict | None = None,
        ranges: dict | None = None,
        font_dir: str | None = None,
        background_kinds: dict[str, float] | None = None,
        shapes_probability: float = 0.3,
        **loader_kwargs: Any,
    ):
        super().__init__(train_samples, val_samples, test_samples, **loader_kwargs)
        self.dataset_kwargs = self.dataset_arguments()
        self.build_dataset("val")  # validate the settings now


# ---------------------------------------------------------------------------------- custom folders
def read_labels(path: Path) -> dict[str, str]:
    """``{stem: label}`` of a labels.txt (``<stem>\\t<label>`` or ``<stem> <label>`` lines; blank lines skipped)."""
    labels = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            stem, _, label = line.partition("\t") if "\t" in line else line.strip().partition(" ")
            labels[stem.strip()] = label
    return labels


class SRFolderDataset(SampleDataset):
    """``(stem, lr path, hr path, label)`` pairs -> samples, resized to the sizes given (``None``: as stored,
    then HR must be ``scale``× LR)."""

    def __init__(
        self,
        pairs: list[tuple[str, Path, Path, str]],
        scale: int = 2,
        hr_size: Size | None = None,
        lr_size: Size | None = None,
        on_bad_sample: str = "raise",
    ):
        super().__init__(on_bad_sample)
        self.pairs, self.scale, self.hr_size, self.lr_size = pairs, scale, hr_size, lr_size

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> dict[str, Any]:
        stem, lr_path, hr_path, label = self.pairs[index]
        lr, hr = resize(read_image(lr_path), self.lr_size), resize(read_image(hr_path), self.hr_size)
        if (
            self.hr_size is None
            and self.lr_size is None
            and hr.shape[:2] != (lr.shape[0] * self.scale, lr.shape[1] * self.scale)
        ):
            raise BadSampleError(
                f"{hr_path} is {hr.shape[1]}x{hr.shape[0]}, not {self.scale}x {lr_path} ({lr.shape[1]}x{lr.shape[0]}); "
                "set data.hr_size/data.lr_size to resize"
            )
        return sr_sample(lr, hr, label, stem)


class SRFolderDataModule(BaseDataModule):
    """``data=sr_folder``: custom pairs (:data:`SR_FOLDER_LAYOUT`) matched by stem; ``on_unmatched=skip`` leaves
    out (with a warning) images without a partner. Give one of ``hr_size``/``lr_size`` (H, W) and ``scale``
    gives the other."""

    def __init__(
        self,
        root: str,
        scale: int = 2,
        hr_size: Sequence[int] | None = None,
        lr_size: Sequence[int] | None = None,
        on_unmatched: str = "raise",
        on_bad_sample: str = "raise",
        **loader_kwargs: Any,
    ):
        super().__init__(**loader_kwargs)
        if root in (None, "", "???"):
            raise ValueError(
                f"data.root is required for the SR folder datamodule. Expected layout:\n{SR_FOLDER_LAYOUT}"
            )
        if on_unmatched not in ("raise", "skip"):
            raise ValueError(f"data.on_unmatched must be raise or skip, got {on_unmatched!r}")
        self.root, self.scale, self.on_unmatched = Path(root).expanduser(), scale, on_unmatched
        if not self.root.is_dir():
            raise layout_error(self.root, SR_FOLDER_LAYOUT, f"SR folder root {self.root} does not exist")
        hr, lr = as_size(hr_size), as_size(lr_size)
        hr = hr or (lr and (lr[0] * scale, lr[1] * scale))
        lr = lr or (hr and (hr[0] // scale, hr[1] // scale))
        self.dataset_kwargs = dict(scale=scale, hr_size=hr, lr_size=lr, on_bad_sample=on_bad_sample)

    def pairs(self, split: str) -> list[tuple[str, Path, Path, str]]:
        folder = self.root / split
        if not (folder / "hr").is_dir() or not (folder / "lr").is_dir():
            raise layout_error(self.root, SR_FOLDER_LAYOUT, f"no {split} split: {folder} has no hr/ and lr/ folders")
        hr, lr = list_images(folder / "hr"), list_images(folder / "lr")
        unmatched = [f"{hr[s].name} (no lr/ partner)" for s in sorted(set(hr) - set(lr))] + [
            f"{lr[s].name} (no hr/ partner)" for s in sorted(set(lr) - set(hr))
        ]
        if unmatched:
            message = f"{len(unmatched)} unpaired image(s) in {folder}: {', '.join(unmatched[:20])}"
            if self.on_unmatched == "raise":
                raise ValueError(message + " (data.on_unmatched=skip leaves them out)")
            log.warning("leaving out %s", message)
        labels = read_labels(folder / "labels.txt") if (folder / "labels.txt").is_file() else {}
        if set(labels) - set(hr) - set(lr):
            raise ValueError(
                f"{folder / 'labels.txt'} labels stems without an image: {sorted(set(labels) - set(hr) - set(lr))[:20]}"
            )
        pairs = [(stem, lr[stem], hr[stem], labels.get(stem, "")) for stem in sorted(set(hr) & set(lr))]
        if not pairs:
            raise layout_error(self.root, SR_FOLDER_LAYOUT, f"no image pairs in {folder}")
        return pairs

    def build_dataset(self, split: str) -> SRFolderDataset:
        return SRFolderDataset(self.pairs(split), **self.dataset_kwargs)
