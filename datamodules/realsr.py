"""Real-world super-resolution data: paired test sets, HQ folders degraded on the fly, and the synthetic default.

Samples keep the SR contract of :mod:`datamodules.textzoom`: ``lr`` (3,h,w), ``hr`` (3,H,W) with H = ``scale``·h,
``target`` = ``hr``, ``image`` = ``lr`` bicubic-upsampled to H×W (``F.interpolate``, ``align_corners=False``,
clamped), ``text`` (``""``: no labels here), ``name`` (the file stem), ``set`` where several sets are declared.

:class:`RealSRPairsDataModule` (``data=realsr_pairs``): the StableSR/OSEDiff test sets as distributed
(:data:`REALSR_LAYOUT`: ``test_LR/`` + ``test_HR/`` or ``lq/`` + ``gt/``, the same file names; ``RealSRVal_crop128``
is LR 128², HR 512²). Pairs are matched by stem; LR is kept as stored (no resizing); an HR that is not ``scale``×
its LR is a bad sample whose error names both files. ``root`` may list several sets (one evaluation set each,
named by folder). Validation and test read ``root``; training (paired ``crop_size`` crops, flips) reads
``train_root`` when given, else ``root``.

:class:`HQFolderDataModule` (``data=hq_folder``): training on high-quality images only (LSDIR, FFHQ, DIV2K, ...;
:data:`HQ_LAYOUT`: folders searched recursively and/or list files), degraded on the fly by
:class:`~datamodules.realesrgan.RealESRGANDegradation`. A training sample is a random ``crop_size`` crop (an image
smaller than the crop is first reflect-101 padded at its bottom/right, as Real-ESRGAN's dataset pads to 400)
with a random horizontal flip, and carries ``hr`` and ``name`` only; :meth:`DegradeOnTheFly.on_after_batch_transfer`
degrades the batch on its device (LR, ``image``, ``target``) with a generator seeded from (``seed``, rank, global
step, micro-batch of the step) — reproducible without depending on the loader's workers. Validation/test: the
pairs of ``val_root`` (:data:`REALSR_LAYOUT`) when given, else ``val_size`` held-out images (a seeded choice, left
out of training), centre-cropped and degraded once per index on the CPU (the same LR every run, on any device).

:class:`SyntheticSRDataModule` (``data=synthetic_sr``): the embedded default, no files — procedural HQ images
(gradients, smooth colour noise and shapes from :mod:`datamodules.synthetic_text`, sinusoidal gratings, checkers
and stripes, rendered words), each a function of (seed, split, index), degraded as ``hq_folder`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader

from datamodules.base import (
    BadSampleError,
    BaseDataModule,
    GeneratedDataModule,
    SampleDataset,
    TrainDraws,
    layout_error,
    list_images,
    read_image,
    to_tensor,
)
from datamodules.realesrgan import DegradationParams, RealESRGANDegradation, seeded_generator
from datamodules.restoration import images_under
from datamodules.synthetic_text import (
    SPLIT_IDS,
    StyleRanges,
    generate_background,
    render_scene,
    sample_rng,
    sample_style,
)
from datamodules.textzoom import eval_loaders, sr_sample
from zoo.imaging.colors import alpha_blend
from zoo.imaging.fonts import find_fonts

log = logging.getLogger(__name__)

REALSR_LAYOUT = """\
    test_LR/<name>.png     low-resolution inputs (StableSR's *_crop128 sets: 128x128)
    test_HR/<name>.png     ground truth with the same file names, scale x larger (512x512)
  or
    lq/<name>.png          low-resolution inputs
    gt/<name>.png          ground truth, same file names
"""  # a real-world SR pairs folder (printed by layout errors)
HQ_LAYOUT = """\
    <folder>/**/<name>.png|jpg   high-quality images, searched recursively (e.g. LSDIR/, FFHQ/)
  or
    <list>.txt                   one image path per line (relative to the list's folder; blank and '#' lines skipped)
  (data.root may list several folders and list files)
"""  # the HQ training images (printed by layout errors)
PAIR_DIRS = (("test_LR", "test_HR"), ("lq", "gt"))


def as_list(value: str | Sequence[str] | None) -> list[str]:
    """A config value that is one path or a list of them -> a list (``None``/``""``: empty)."""
    if value in (None, "", "???"):
        return []
    return [str(value)] if isinstance(value, (str, Path)) else [str(v) for v in value]


def pad_to(image: np.ndarray, size: int) -> np.ndarray:
    """Reflect-101 pad (bottom/right) an HxWxC image to at least ``size``² (Real-ESRGAN's dataset pads so)."""
    h, w = image.shape[:2]
    if h >= size and w >= size:
        return image
    return np.pad(image, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="reflect")


# -------------------------------------------------------------------------------------------- pairs
def pair_dirs(root: Path, lr_dir: str | None = None, hr_dir: str | None = None) -> tuple[Path, Path]:
    """The LR and HR folders of a pairs ``root``: ``lr_dir``/``hr_dir`` when given, else ``test_LR``/``test_HR``,
    else ``lq``/``gt``."""
    if not root.is_dir():
        raise layout_error(root, REALSR_LAYOUT, f"real-world SR pairs root {root} does not exist")
    candidates = [(lr_dir, hr_dir)] if lr_dir or hr_dir else PAIR_DIRS
    for lr_name, hr_name in candidates:
        if lr_name and hr_name and (root / lr_name).is_dir() and (root / hr_name).is_dir():
            return root / lr_name, root / hr_name
    found = sorted(p.name + "/" for p in root.iterdir() if p.is_dir())[:20]
    wanted = f"{lr_dir}/ and {hr_dir}/" if lr_dir or hr_dir else "test_LR/ + test_HR/ or lq/ + gt/"
    raise layout_error(
        root, REALSR_LAYOUT, f"{root} has no {wanted} folders (it has: {', '.join(found) or 'no folders'})"
    )


def realsr_pairs(
    root: Path, lr_dir: str | None = None, hr_dir: str | None = None, on_unmatched: str = "raise"
) -> list[tuple[str, Path, Path]]:
    """``(stem, lr path, hr path)`` of a pairs folder, sorted by stem. An image without its partner is a
    ``LayoutError`` listing them (``on_unmatched="skip"``: left out with a warning)."""
    lr_folder, hr_folder = pair_dirs(root, lr_dir, hr_dir)
    lr, hr = list_images(lr_folder), list_images(hr_folder)
    unmatched = [f"{lr_folder.name}/{lr[s].name} (no {hr_folder.name}/ partner)" for s in sorted(set(lr) - set(hr))]
    unmatched += [f"{hr_folder.name}/{hr[s].name} (no {lr_folder.name}/ partner)" for s in sorted(set(hr) - set(lr))]
    if unmatched:
        message = (
            f"{len(unmatched)} unpaired image(s) in {root}: {', '.join(unmatched[:20])}"
            f"{' ...' if len(unmatched) > 20 else ''}"
        )
        if on_unmatched == "raise":
            raise layout_error(root, REALSR_LAYOUT, message + "\n(data.on_unmatched=skip leaves them out)")
        log.warning("leaving out %s", message)
    pairs = [(stem, lr[stem], hr[stem]) for stem in sorted(set(lr) & set(hr))]
    if not pairs:
        raise layout_error(root, REALSR_LAYOUT, f"no image pairs in {lr_folder} and {hr_folder}")
    return pairs


class RealSRPairsDataset(TrainDraws, SampleDataset):
    """Stored LR/HR pairs -> SR samples; HR must be ``scale``× LR. Training (``crop_size`` set): an aligned random crop
    (HR ``crop_size``², LR ``crop_size/scale``²) and a random horizontal flip; else full images."""

    def __init__(
        self,
        pairs: list[tuple[str, Path, Path]],
        scale: int = 4,
        set_name: str | None = None,
        crop_size: int | None = None,
        hflip: bool = True,
        seed: int = 0,
        on_bad_sample: str = "raise",
    ):
        super().__init__(on_bad_sample)
        if crop_size is not None and crop_size % scale:
            raise ValueError(f"data.crop_size={crop_size} must be a multiple of data.scale={scale}")
        self.pairs, self.scale, self.set_name, self.crop_size, self.hflip, self.seed = (
            pairs,
            scale,
            set_name,
            crop_size,
            hflip,
            seed,
        )

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> dict[str, Any]:
        stem, lr_path, hr_path = self.pairs[index]
        lr, hr = read_image(lr_path), read_image(hr_path)
        if hr.shape[:2] != (lr.shape[0] * self.scale, lr.shape[1] * self.scale):
            raise BadSampleError(
                f"{hr_path} is {hr.shape[1]}x{hr.shape[0]}, not {self.scale}x {lr_path} ({lr.shape[1]}x{lr.shape[0]}); "
                f"data.scale={self.scale}"
            )
        if self.crop_size is not None:
            lr, hr = self._crop(lr, hr)
        return sr_sample(lr, hr, "", stem, self.set_name)

    def _crop(self, lr: np.ndarray, hr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rng, s, size = self.draws(), self.scale, self.crop_size // self.scale
        lr, hr = pad_to(lr, size), pad_to(hr, self.crop_size)
        y, x = int(rng.integers(0, lr.shape[0] - size + 1)), int(rng.integers(0, lr.shape[1] - size + 1))
        lr, hr = lr[y : y + size, x : x + size], hr[y * s : (y + size) * s, x * s : (x + size) * s]
        if self.hflip and rng.random() < 0.5:
            lr, hr = lr[:, ::-1], hr[:, ::-1]
        return lr, hr


def pair_sets(
    roots: list[str], what: str, lr_dir: str | None, hr_dir: str | None, on_unmatched: str
) -> list[tuple[str, list]]:
    """``(set name, pairs)`` per pairs folder; the set names (folder names) must differ."""
    sets = [
        (Path(r).expanduser().name, realsr_pairs(Path(r).expanduser(), lr_dir, hr_dir, on_unmatched)) for r in roots
    ]
    names = [name for name, _ in sets]
    if len(set(names)) != len(names):
        raise ValueError(f"the {what} folders must have different names (they name the evaluation sets), got {names}")
    return sets


class PairsEvaluation:
    """Validation/test on pairs folders: one evaluation set per folder when there are several (``set`` named by the
    folder), one unnamed set otherwise; ``val_size`` keeps the first pairs of each for validation."""

    eval_pairs: list[tuple[str, list]]
    scale: int
    val_size: int | None
    on_bad_sample: str

    def eval_sets(self, stage: str) -> list[str]:
        return [name for name, _ in self.eval_pairs] if len(self.eval_pairs) > 1 else []

    def eval_datasets(self, limit: int | None) -> list[RealSRPairsDataset]:
        named = len(self.eval_pairs) > 1
        return [
            RealSRPairsDataset(pairs[:limit], self.scale, name if named else None, on_bad_sample=self.on_bad_sample)
            for name, pairs in self.eval_pairs
        ]

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        """One loader per evaluation set (each batch names it in ``set``) when there are several."""
        if "test" not in self.datasets:
            self.datasets["test"] = self.build_dataset("test")
        test = self.datasets["test"]
        return (
            eval_loaders(self, test.datasets)
            if len(self.eval_pairs) > 1
            else self._loader("test", self.val_batch_size, shuffle=False)
        )


class RealSRPairsDataModule(PairsEvaluation, BaseDataModule):
    """``data=realsr_pairs`` (module docstring). ``root``: one pairs folder or a list; ``lr_dir``/``hr_dir`` name other
    folder pairs (e.g. ``LR``/``HR``); ``train_root``: pairs to train on (default ``root``) with ``crop_size`` crops
    (``null``: full images)."""

    def __init__(
        self,
        root: str | Sequence[str],
        scale: int = 4,
        train_root: str | Sequence[str] | None = None,
        crop_size: int | None = 512,
        hflip: bool = True,
        val_size: int | None = None,
        lr_dir: str | None = None,
        hr_dir: str | None = None,
        on_unmatched: str = "raise",
        on_bad_sample: str = "raise",
        seed: int = 0,
        **loader_kwargs: Any,
    ):
        super().__init__(**loader_kwargs)
        roots = as_list(root)
        if not roots:
            raise ValueError(f"data.root is required for real-world SR pairs. Expected layout:\n{REALSR_LAYOUT}")
        if on_unmatched not in ("raise", "skip"):
            raise ValueError(f"data.on_unmatched must be raise or skip, got {on_unmatched!r}")
        self.scale, self.val_size, self.on_bad_sample = scale, val_size, on_bad_sample
        self.eval_pairs = pair_sets(roots, "data.root", lr_dir, hr_dir, on_unmatched)
        self.train_roots = as_list(train_root) or roots
        self.train_kwargs = dict(scale=scale, crop_size=crop_size, hflip=hflip, seed=seed, on_bad_sample=on_bad_sample)
        self.pair_kwargs = dict(lr_dir=lr_dir, hr_dir=hr_dir, on_unmatched=on_unmatched)

    def build_dataset(self, split: str):
        if split == "train":
            pairs = [
                p for _, pairs in pair_sets(self.train_roots, "data.train_root", **self.pair_kwargs) for p in pairs
            ]
            return RealSRPairsDataset(pairs, **self.train_kwargs)
        return ConcatDataset(self.eval_datasets(self.val_size if split == "val" else None))


# ------------------------------------------------------------------------------------- on the fly
class DegradeOnTheFly:
    """Degrades, on the batch's device, every batch that has ``hr`` and no ``lr`` (training batches of HQ images):
    adds ``lr`` (:class:`RealESRGANDegradation`), ``target`` = ``hr`` and ``image`` (bicubic upsampling, clamped).
    The generator of a batch is seeded from (``seed``, rank, global step + 1, micro-batch within the step), without a
    trainer from (``seed``, 0, 0, call count): a run, a resumed run (the step is restored) and a trainer-free loop
    draw the same degradations."""

    degradation: RealESRGANDegradation
    seed: int = 0
    _step_key: tuple[int, int] | None = None
    _micro: int = 0

    def batch_generator(self) -> torch.Generator:
        trainer = getattr(self, "trainer", None)
        rank, step = (int(trainer.global_rank), int(trainer.global_step) + 1) if trainer is not None else (0, 0)
        if self._step_key != (rank, step):
            self._step_key, self._micro = (rank, step), 0
        generator = seeded_generator(self.seed, rank, step, self._micro)
        self._micro += 1
        return generator

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, dict) and "hr" in batch and "lr" not in batch:
            hr = batch["hr"]
            lr = self.degradation(hr, self.batch_generator())
            batch.update(
                lr=lr,
                target=hr,
                image=F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False).clamp_(0, 1),
            )
        return batch


def make_degradation(scale: int, degradation: dict | DegradationParams | None) -> RealESRGANDegradation:
    """The degradation of a datamodule: ``degradation`` overrides GramSR's values; ``data.scale`` wins over its
    ``scale``."""
    params = degradation if isinstance(degradation, DegradationParams) else DegradationParams.from_dict(degradation)
    return RealESRGANDegradation(params, scale=scale)


def eval_seed(seed: int, split: str, index: int) -> int:
    """The degradation seed of evaluation sample ``index`` of ``split``: the same LR every run."""
    return int(np.random.SeedSequence([seed, SPLIT_IDS[split], index, 1]).generate_state(1, np.uint64)[0]) % (2**63 - 1)


# ------------------------------------------------------------------------------------------- HQ folder
def hq_image_paths(sources: list[str]) -> list[Path]:
    """The images of folders (recursive) and list files, in order, duplicates dropped."""
    paths: list[Path] = []
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            found = images_under(path, recursive=True)
            if not found:
                raise layout_error(path, HQ_LAYOUT, f"no images under {path}")
            paths.extend(found)
        elif path.is_file():
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
            listed = [Path(line).expanduser() for line in lines if line and not line.startswith("#")]
            listed = [p if p.is_absolute() else path.parent / p for p in listed]
            if not listed:
                raise layout_error(path, HQ_LAYOUT, f"the list file {path} names no images")
            if not listed[0].is_file():
                raise layout_error(
                    path, HQ_LAYOUT, f"{listed[0]}, the first image of the list file {path}, does not exist"
                )
            paths.extend(listed)
        else:
            raise layout_error(path, HQ_LAYOUT, f"{path} is neither a folder nor a list file")
    return list(dict.fromkeys(paths))


class HQCropDataset(TrainDraws, SampleDataset):
    """HQ images -> training crops (``hr``, ``name``) or, with ``degradation``, evaluation samples: the centre crop
    degraded once on the CPU from a seed of (``seed``, ``split``, index)."""

    def __init__(
        self,
        paths: list[Path],
        crop_size: int = 512,
        hflip: bool = True,
        seed: int = 0,
        split: str = "train",
        degradation: RealESRGANDegradation | None = None,
        on_bad_sample: str = "raise",
    ):
        super().__init__(on_bad_sample)
        self.paths, self.crop_size, self.hflip = paths, crop_size, hflip
        self.seed, self.split, self.degradation = seed, split, degradation

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> dict[str, Any]:
        path = self.paths[index]
        image = pad_to(read_image(path), self.crop_size)
        h, w, size = image.shape[0], image.shape[1], self.crop_size
        if self.degradation is None:
            rng = self.draws()
            y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            crop = image[y : y + size, x : x + size]
            if self.hflip and rng.random() < 0.5:
                crop = crop[:, ::-1]
            return {"hr": to_tensor(crop), "name": path.stem}
        y, x = (h - size) // 2, (w - size) // 2
        hr = to_tensor(image[y : y + size, x : x + size])
        return sr_sample(
            self.degradation.degrade(hr[None], [eval_seed(self.seed, self.split, index)])[0], hr, "", path.stem
        )


class HQFolderDataModule(DegradeOnTheFly, PairsEvaluation, BaseDataModule):
    """``data=hq_folder`` (module docstring). ``root``: folders and/or list files of HQ images; ``degradation``:
    overrides of :class:`DegradationParams` (GramSR's values by default); ``val_root``: real pairs folder(s) for
    validation and test, else ``val_size`` held-out HQ images degraded deterministically."""

    def __init__(
        self,
        root: str | Sequence[str],
        scale: int = 4,
        crop_size: int = 512,
        hflip: bool = True,
        degradation: dict | None = None,
        val_root: str | Sequence[str] | None = None,
        val_size: int | None = 8,
        lr_dir: str | None = None,
        hr_dir: str | None = None,
        on_unmatched: str = "raise",
        on_bad_sample: str = "raise",
        seed: int = 0,
        **loader_kwargs: Any,
    ):
        super().__init__(**loader_kwargs)
        sources = as_list(root)
        if not sources:
            raise ValueError(f"data.root is required for HQ training images. Expected:\n{HQ_LAYOUT}")
        if crop_size % scale:
            raise ValueError(f"data.crop_size={crop_size} must be a multiple of data.scale={scale}")
        self.scale, self.crop_size, self.hflip = scale, crop_size, hflip
        self.seed, self.on_bad_sample = seed, on_bad_sample
        self.degradation = make_degradation(scale, degradation)
        paths = hq_image_paths(sources)
        val_roots = as_list(val_root)
        self.eval_pairs = pair_sets(val_roots, "data.val_root", lr_dir, hr_dir, on_unmatched) if val_roots else []
        self.val_size = val_size
        held_out = 0 if val_roots else (val_size or 0)
        if held_out and len(paths) <= held_out:
            raise ValueError(
                f"{len(paths)} HQ image(s) cannot spare data.val_size={held_out} for validation; "
                "lower data.val_size or give data.val_root"
            )
        order = np.random.default_rng([seed, 7]).permutation(len(paths))
        held = set(order[:held_out].tolist())
        self.train_paths = [p for i, p in enumerate(paths) if i not in held]
        self.held_out = [paths[i] for i in sorted(held)]

    def build_dataset(self, split: str):
        if split == "train":
            return HQCropDataset(
                self.train_paths, self.crop_size, self.hflip, self.seed, on_bad_sample=self.on_bad_sample
            )
        if self.eval_pairs:
            return ConcatDataset(self.eval_datasets(self.val_size if split == "val" else None))
        return ConcatDataset(
            [
                HQCropDataset(
                    self.held_out,
                    self.crop_size,
                    seed=self.seed,
                    split="val",
                    degradation=self.degradation,
                    on_bad_sample=self.on_bad_sample,
                )
            ]
        )

    def test_dataloader(self):
        if self.eval_pairs:
            return PairsEvaluation.test_dataloader(self)
        return self._loader("test", self.val_batch_size, shuffle=False)


# ------------------------------------------------------------------------------------------ synthetic
TEXT_RANGES = StyleRanges(
    instances=(1, 3), chars=(3, 9), size=(0.08, 0.3), rotation=(-15.0, 15.0), blur_probability=0.0
)
TEXTURES = ("grating", "checker", "stripes")


def texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A high-frequency pattern (float HxW in [0, 1]): a sinusoidal grating (period 2.5–16 px, any angle), a
    checkerboard (cells 2–12 px) or hard stripes (period 3–14 px)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    u = np.cos(angle) * xx + np.sin(angle) * yy
    kind = TEXTURES[int(rng.integers(len(TEXTURES)))]
    if kind == "grating":
        return 0.5 + 0.5 * np.sin(2 * np.pi * u / rng.uniform(2.5, 16.0) + rng.uniform(0, 2 * np.pi))
    if kind == "checker":
        cell = int(rng.integers(2, 13))
        return (((yy // cell) + (xx // cell)) % 2).astype(np.float32)
    return ((u / rng.uniform(3.0, 14.0)) % 1.0 < rng.uniform(0.3, 0.7)).astype(np.float32)


def synthetic_hq(
    rng: np.random.Generator,
    height: int,
    width: int,
    fonts: Sequence[str],
    texture_probability: float = 0.6,
    text_probability: float = 0.7,
) -> np.ndarray:
    """A procedural HQ image (uint8 HxWx3): a background (gradient / smooth noise / flat, shapes), with
    ``texture_probability`` a texture in two colours over a random rectangle (opacity 0.5–1), with
    ``text_probability`` 1–3 rendered words."""
    image = generate_background(rng, height, width, shapes_probability=0.6)
    if rng.random() < texture_probability:
        pattern = texture(rng, height, width)[..., None]
        dark, light = rng.uniform(0, 120, size=3), rng.uniform(135, 255, size=3)
        colored = alpha_blend(dark, light, pattern)
        y0, y1 = sorted(rng.integers(0, height + 1, size=2))
        x0, x1 = sorted(rng.integers(0, width + 1, size=2))
        y1, x1 = max(y1, y0 + height // 4), max(x1, x0 + width // 4)
        alpha = rng.uniform(0.5, 1.0)
        image[y0:y1, x0:x1] = alpha_blend(image[y0:y1, x0:x1], colored[y0:y1, x0:x1], alpha)
    if rng.random() < text_probability:
        count = int(rng.integers(TEXT_RANGES.instances[0], TEXT_RANGES.instances[1] + 1))
        image, _ = render_scene(image, [sample_style(rng, TEXT_RANGES, fonts, image) for _ in range(count)])
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


class SyntheticSRDataset(SampleDataset):
    """``num_samples`` procedural HQ images of ``size``² (:func:`synthetic_hq`), each a function of (seed, split,
    index); training samples carry ``hr`` + ``name`` (degraded on the device), evaluation ones the degraded SR
    sample."""

    def __init__(
        self,
        num_samples: int,
        size: int = 128,
        seed: int = 0,
        split: str = "train",
        degradation: RealESRGANDegradation | None = None,
        font_dir: str | None = None,
        texture_probability: float = 0.6,
        text_probability: float = 0.7,
    ):
        super().__init__("raise")
        self.num_samples, self.size, self.seed, self.split, self.degradation = (
            num_samples,
            size,
            seed,
            split,
            degradation,
        )
        self.fonts = find_fonts(font_dir)
        self.texture_probability, self.text_probability = texture_probability, text_probability

    def __len__(self) -> int:
        return self.num_samples

    def hq(self, index: int) -> np.ndarray:
        """The HQ image of ``index`` (uint8)."""
        return synthetic_hq(
            sample_rng(self.seed, self.split, index),
            self.size,
            self.size,
            self.fonts,
            self.texture_probability,
            self.text_probability,
        )

    def load(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_samples:
            raise IndexError(index)
        hr, name = to_tensor(self.hq(index)), f"synthetic_{self.split}_{index:06d}"
        if self.degradation is None:
            return {"hr": hr, "name": name}
        return sr_sample(self.degradation.degrade(hr[None], [eval_seed(self.seed, self.split, index)])[0], hr, "", name)


class SyntheticSRDataModule(DegradeOnTheFly, GeneratedDataModule):
    """``data=synthetic_sr``, the embedded default of the real-world SR models (module docstring); ``size`` is the HQ
    side (a multiple of ``scale``)."""

    def __init__(
        self,
        size: int = 128,
        scale: int = 4,
        train_samples: int = 20000,
        val_samples: int = 16,
        test_samples: int = 64,
        seed: int = 0,
        degradation: dict | None = None,
        font_dir: str | None = None,
        texture_probability: float = 0.6,
        text_probability: float = 0.7,
        **loader_kwargs: Any,
    ):
        super().__init__(train_samples, val_samples, test_samples, **loader_kwargs)
        if size % scale:
            raise ValueError(f"data.size={size} must be a multiple of data.scale={scale}")
        self.seed, self.scale = seed, scale
        self.degradation = make_degradation(scale, degradation)
        self.dataset_kwargs = self.dataset_arguments(exclude=("scale", "degradation"))

    def build_dataset(self, split: str) -> SyntheticSRDataset:
        return SyntheticSRDataset(
            self.sizes[split],
            split=split,
            degradation=None if split == "train" else self.degradation,
            **self.dataset_kwargs,
        )
