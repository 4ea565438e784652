"""Custom paired data for fine-tuning.

Layout (``root``)::

    root/input/<stem>.<ext>    images with text (or degraded images)
    root/target/<stem>.<ext>   ground truth, paired by file stem
    root/mask/<stem>.<ext>     optional; white (>127) = text region

or a ``list_file`` with one sample per line: ``<stem>`` (looked up in the folders above) or
``<input> <target> [<mask>]`` (paths relative to ``root``). Without masks, ``derive_mask=True``
derives one from the input/target difference (mean RGB |diff| > ``mask_threshold``/255, dilated).
Training crops and flips keep image/target/mask aligned; validation/test use the full images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from datamodules.base import (
    BaseDataModule,
    SampleDataset,
    apply_transform,
    layout_error,
    list_images,
    paired_transform,
    read_image,
    size_mismatch,
    to_tensor,
)

EXPECTED_LAYOUT = (
    "  input/<stem>.png|jpg    images to restore\n"
    "  target/<stem>.png|jpg   ground truth, same stems\n"
    "  mask/<stem>.png         optional, white = text "
    "(or give list_file=<file> with '<stem>' or '<input> <target> [<mask>]' lines)"
)


def mask_from_difference(
    image: np.ndarray, target: np.ndarray, threshold: float = 25.0, dilation: int = 2
) -> np.ndarray:
    """Binary mask (uint8 0/255) of pixels whose mean RGB |image - target| exceeds ``threshold`` (0-255)."""
    import cv2

    diff = np.abs(image.astype(np.int16) - target.astype(np.int16)).mean(axis=2) > threshold
    mask = diff.astype(np.uint8) * 255
    if dilation > 0:
        mask = cv2.dilate(mask, np.ones((2 * dilation + 1, 2 * dilation + 1), np.uint8))
    return mask


def find_pairs(root: Path, list_file: str | None = None) -> list[tuple[str, Path, Path, Path | None]]:
    """``(name, input, target, mask|None)`` for every sample; unpaired files are an error that lists them."""
    if list_file:
        return _pairs_from_list(root, Path(list_file) if Path(list_file).is_absolute() else root / list_file)
    input_dir, target_dir, mask_dir = root / "input", root / "target", root / "mask"
    if not input_dir.is_dir() or not target_dir.is_dir():
        raise layout_error(root, EXPECTED_LAYOUT, f"{root} has no input/ and target/ folders")
    inputs, targets = list_images(input_dir), list_images(target_dir)
    masks = list_images(mask_dir) if mask_dir.is_dir() else None
    problems = []
    if set(inputs) - set(targets):
        problems.append(f"inputs without a target: {sorted(set(inputs) - set(targets))}")
    if set(targets) - set(inputs):
        problems.append(f"targets without an input: {sorted(set(targets) - set(inputs))}")
    if masks is not None and set(inputs) - set(masks):
        problems.append(f"inputs without a mask in {mask_dir}: {sorted(set(inputs) - set(masks))}")
    if problems:
        raise ValueError(f"unpaired files under {root}:\n  " + "\n  ".join(problems))
    if not inputs:
        raise layout_error(root, EXPECTED_LAYOUT, f"no images found in {input_dir}")
    return [(stem, inputs[stem], targets[stem], masks[stem] if masks else None) for stem in sorted(inputs)]


def _pairs_from_list(root: Path, list_path: Path) -> list[tuple[str, Path, Path, Path | None]]:
    if not list_path.is_file():
        raise FileNotFoundError(f"list_file {list_path} does not exist")
    folders = {
        name: (list_images(root / name) if (root / name).is_dir() else {}) for name in ("input", "target", "mask")
    }
    pairs, problems = [], []
    for number, line in enumerate(list_path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) == 1:
            stem = fields[0]
            found = [folders[name].get(stem) for name in ("input", "target", "mask")]
            if found[0] is None or found[1] is None:
                problems.append(f"line {number}: {stem!r} has no input/target image under {root}")
                continue
            pairs.append((stem, found[0], found[1], found[2]))
        elif len(fields) in (2, 3):
            paths = [root / f for f in fields]
            missing = [str(p) for p in paths if not p.is_file()]
            if missing:
                problems.append(f"line {number}: missing {missing}")
                continue
            pairs.append((paths[0].stem, paths[0], paths[1], paths[2] if len(paths) == 3 else None))
        else:
            problems.append(f"line {number}: expected '<stem>' or '<input> <target> [<mask>]', got {line!r}")
    if problems:
        raise ValueError(f"{list_path}:\n  " + "\n  ".join(problems))
    if not pairs:
        raise ValueError(f"{list_path} lists no samples")
    return pairs


class PairedFolderDataset(SampleDataset):
    def __init__(
        self,
        pairs: list[tuple[str, Path, Path, Path | None]],
        crop_size: int | None = None,
        train: bool = False,
        derive_mask: bool = True,
        mask_threshold: float = 25.0,
        on_bad_sample: str = "raise",
    ):
        super().__init__(on_bad_sample)
        self.pairs = pairs
        self.transform = paired_transform(crop_size, train)
        self.derive_mask = derive_mask
        self.mask_threshold = mask_threshold

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> dict[str, Any]:
        name, input_path, target_path, mask_path = self.pairs[index]
        image, target = read_image(input_path), read_image(target_path)
        if image.shape != target.shape:
            raise size_mismatch(input_path, image, target_path, target)
        mask = None
        if mask_path is not None:
            mask = read_image(mask_path, "L")
            if mask.shape != image.shape[:2]:
                raise size_mismatch(f"mask {mask_path}", mask, input_path, image)
        elif self.derive_mask:
            mask = mask_from_difference(image, target, self.mask_threshold)
        image, target, mask = apply_transform(self.transform, image, target, mask)
        sample = {"image": to_tensor(image), "target": to_tensor(target), "name": name}
        if mask is not None:
            sample["mask"] = torch.from_numpy((mask > 127).astype(np.float32)[None])
        return sample


class FolderDataModule(BaseDataModule):
    """Paired folders for fine-tuning; ``val_root``/``test_root`` or a seeded ``val_fraction`` split."""

    def __init__(
        self,
        root: str,
        val_root: str | None = None,
        test_root: str | None = None,
        list_file: str | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
        crop_size: int | None = 256,
        derive_mask: bool = True,
        mask_threshold: float = 25.0,
        on_bad_sample: str = "raise",
        **loader_kwargs: Any,
    ):
        super().__init__(**loader_kwargs)
        if root in (None, "", "???"):
            raise ValueError(f"data.root is required for the folder datamodule. Expected layout:\n{EXPECTED_LAYOUT}")
        self.root = Path(root)
        self.val_root, self.test_root = val_root, test_root
        self.list_file, self.val_fraction, self.seed = list_file, val_fraction, seed
        self.dataset_kwargs = dict(derive_mask=derive_mask, mask_threshold=mask_threshold, on_bad_sample=on_bad_sample)
        self.crop_size = crop_size
        self._splits: dict[str, list] | None = None

    def _split_pairs(self) -> dict[str, list]:
        if self._splits is None:
            pairs = find_pairs(self.root, self.list_file)
            if self.val_root:
                train, val = pairs, find_pairs(Path(self.val_root))
            else:
                order = np.random.default_rng(self.seed).permutation(len(pairs))
                n_val = max(1, int(round(len(pairs) * self.val_fraction))) if len(pairs) > 1 else 0
                val = [pairs[i] for i in sorted(order[:n_val])] or pairs
                train = [pairs[i] for i in sorted(order[n_val:])]
            test = find_pairs(Path(self.test_root)) if self.test_root else val
            self._splits = {"train": train, "val": val, "test": test}
        return self._splits

    def build_dataset(self, split: str) -> PairedFolderDataset:
        train = split == "train"
        return PairedFolderDataset(
            self._split_pairs()[split], self.crop_size if train else None, train, **self.dataset_kwargs
        )
