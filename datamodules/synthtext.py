"""Oxford SynthText (Gupta et al., CVPR 2016) for text removal, with GaRNet's ground-truth protocol.

Layout as distributed (``SynthText.zip`` + the text-free backgrounds ``bg_img.tar.gz``)::

    root/gt.mat                         imnames (1xN cell), wordBB (2x4xN_words, or 2x4 for one word), ...
    root/<k>/<background>_<i>.jpg       858,750 synthetic images in 200 folders
    root/bg_img/<background>.jpg|jpeg   (or ``background_dir``; ``root/../bg_img`` is found too)

An image is paired with its background by dropping the trailing ``_<i>`` of its name. The removal
target follows GaRNet/MTRNet++: the background (resized to the synthetic image's size) *inside* the
word boxes and the input everywhere else; evaluation centre-crops to a square and resizes to 512.
The split is a seeded shuffle: ``test_size`` images (default 10%) for test, the rest for train.
``gt.mat`` (~3 GB for the full set) is read once, lazily, and only ``imnames``/``wordBB``.
Alternatively ``split_files`` name GaRNet-style JSON lists (``[{"dir", "gt_dir", "word_bb"}]``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.base import IMAGE_EXTENSIONS, layout_error
from datamodules.text_removal import TextRecord, TextRemovalDataModule

log = logging.getLogger(__name__)

LAYOUT = """  gt.mat                          imnames, wordBB (Oxford SynthText)
  <k>/<background>_<i>.jpg        synthetic images
  bg_img/<background>.jpg         text-free backgrounds (or background_dir=...)"""


def word_polygons(word_bb: np.ndarray) -> list[np.ndarray]:
    """SynthText ``wordBB`` (2x4xN, or 2x4 for a single word) -> N (4,2) polygons."""
    word_bb = np.asarray(word_bb, np.float64)
    if word_bb.ndim == 2:
        word_bb = word_bb[:, :, None]
    if word_bb.shape[:2] != (2, 4):
        raise ValueError(f"wordBB must be 2x4xN, got {word_bb.shape}")
    return [word_bb[:, :, i].T for i in range(word_bb.shape[2])]


def background_stem(image_name: str) -> str:
    """``ballet_106_0`` -> ``ballet_106`` (the synthetic image's background)."""
    stem = Path(image_name).stem
    if "_" not in stem:
        raise ValueError(f"SynthText image name {image_name!r} has no trailing _<index>")
    return stem.rsplit("_", 1)[0]


class SynthTextDataModule(TextRemovalDataModule):
    splits = ("train", "test")
    layout = LAYOUT

    def __init__(
        self,
        root: str,
        background_dir: str | None = None,
        test_size: int | None = None,
        split_seed: int = 0,
        split_files: dict[str, str] | None = None,
        on_missing_background: str = "raise",
        size: int | Sequence[int] | None = 512,
        train_size: int | Sequence[int] | None = 512,
        **kwargs: Any,
    ):
        super().__init__(root, size=size, train_size=train_size, **kwargs)
        if on_missing_background not in ("raise", "skip"):
            raise ValueError(f"on_missing_background must be 'raise' or 'skip', got {on_missing_background!r}")
        self.background_dir = Path(background_dir) if background_dir else None
        self.test_size, self.split_seed, self.split_files = test_size, split_seed, split_files or {}
        self.on_missing_background = on_missing_background
        self._all: list[TextRecord] | None = None

    def dataset_options(self, split: str) -> dict[str, Any]:
        return {"square_crop": True, "interpolation": "bilinear"}  # GaRNet's cv2 geometry

    def _backgrounds(self) -> dict[str, Path]:
        candidates = (
            [self.background_dir] if self.background_dir else [self.root / "bg_img", self.root.parent / "bg_img"]
        )
        for folder in candidates:
            if folder.is_dir():
                return {p.stem: p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
        raise layout_error(self.root, LAYOUT, f"no background folder: looked for {', '.join(map(str, candidates))}")

    def _read_gt_mat(self) -> list[TextRecord]:
        from scipy.io import loadmat

        path = self.root / "gt.mat"
        if not path.is_file():
            raise layout_error(self.root, LAYOUT, f"missing {path}")
        try:
            gt = loadmat(path, variable_names=["imnames", "wordBB"], squeeze_me=False)
        except Exception as error:  # scipy raises several types for corrupt files
            raise ValueError(f"cannot read {path}: {error}") from error
        if "imnames" not in gt or "wordBB" not in gt:
            raise ValueError(
                f"{path} has no imnames/wordBB variables (found {sorted(k for k in gt if not k.startswith('__'))})"
            )
        names, boxes = gt["imnames"].ravel(), gt["wordBB"].ravel()
        backgrounds = self._backgrounds()
        records, missing = [], []
        for name_cell, word_bb in zip(names, boxes):
            name = str(np.asarray(name_cell).ravel()[0]).strip()
            background = backgrounds.get(background_stem(name))
            if background is None:
                missing.append(name)
                continue
            records.append(
                TextRecord(
                    Path(name).stem,
                    self.root / name,
                    background,
                    word_polygons(word_bb),
                    target_inside_text=True,
                    resize_target=True,
                )
            )
        self._report_missing(missing)
        return records

    def _report_missing(self, missing: list[str]) -> None:
        if not missing:
            return
        message = f"{len(missing)} SynthText image(s) have no background image, e.g. {missing[:5]}"
        if self.on_missing_background == "raise":
            raise FileNotFoundError(message + " (on_missing_background=skip leaves them out)")
        log.warning("%s: left out", message)

    def _read_json_list(self, path: Path) -> list[TextRecord]:
        """A GaRNet-style list: paths relative to the JSON file's folder (as GaRNet's ``../DATA/...``)."""
        entries = json.loads(path.read_text())
        records = []
        for number, entry in enumerate(entries):
            try:
                image, target = (path.parent / entry["dir"]).resolve(), (path.parent / entry["gt_dir"]).resolve()
                polygons = [np.asarray(p, np.float64).reshape(-1, 2) for p in entry["word_bb"]]
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(f"{path} entry {number}: expected {{'dir', 'gt_dir', 'word_bb'}} ({error})") from None
            records.append(TextRecord(image.stem, image, target, polygons, target_inside_text=True, resize_target=True))
        return records

    def records(self, split: str) -> list[TextRecord]:
        if split in self.split_files:
            return self._read_json_list(Path(self.split_files[split]))
        if self._all is None:
            self._all = self._read_gt_mat()
        order = np.random.default_rng(self.split_seed).permutation(len(self._all))
        test_count = self.test_size if self.test_size is not None else max(1, len(self._all) // 10)
        chosen = order[:test_count] if split == "test" else order[test_count:]
        return [self._all[i] for i in sorted(chosen)]
