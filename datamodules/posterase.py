"""PosterErase (Jiang et al., ACM MM 2022, STE): ~60K real posters, 513x750 (WxH) PNG, Tianchi release.

Layout as distributed (six archives)::

    root/erase_1/train.txt        index<TAB>path<TAB>json               (train: no ground truth)
    root/erase_1/ps_valid.txt     index<TAB>path<TAB>json<TAB>gt path
    root/erase_1/ps_test.txt
    root/erase_<k>/train/*.png    train posters, spread over erase_1 ... erase_6
    root/erase_1/{valid,test}/*.png

Paths in the split files are relative to whichever ``erase_<k>/`` holds them. The STE repository's
example folder (``examples/poster/``: the split files, ``train/``, ``valid/``, ``test/`` directly under
the root) is read too: a root without ``erase_1/`` is taken as one archive. The JSON's ``mask``
field lists the text boxes as ``x1,x2,y1,y2;`` (**x1, x2 first**); ``place`` (OCR'd text and candidate
placements) is passed through as the sample's ``place`` for STE's synthesis.

Train samples carry ``image`` and ``mask`` (the real text boxes) and no ``target``. Valid/test carry
``target`` from the fourth column, else ``<stem>_g.png`` / ``<stem>_gt.png`` next to the image.
Evaluation follows STE: resize to 768x512 (HxW), and the designer-erased ground truth is re-composited
with the input outside the text boxes (``target_inside_text``), because designers also retouched
non-text areas that no eraser is asked to change (``composite_target=false`` keeps it as released).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.base import layout_error
from datamodules.text_removal import TextRecord, TextRemovalDataModule

LAYOUT = """  erase_1/train.txt, erase_1/ps_valid.txt, erase_1/ps_test.txt
      lines: index<TAB>relative path<TAB>json[<TAB>gt path]
  erase_1/train/*.png ... erase_6/train/*.png   train posters
  erase_1/valid/*.png, erase_1/test/*.png        with their ground truth (<k>_g.png)"""

SPLIT_FILES = {"train": "train.txt", "valid": "ps_valid.txt", "test": "ps_test.txt"}
ARCHIVES = tuple(f"erase_{k}" for k in range(1, 7))


def parse_boxes(field: str, source: str) -> list[np.ndarray]:
    """``"x1,x2,y1,y2;..."`` -> rectangle polygons (4,2) in x,y order."""
    polygons = []
    for chunk in field.split(";"):
        chunk = chunk.strip()
        if not chunk:
            continue
        try:
            x1, x2, y1, y2 = (float(v) for v in chunk.split(","))
        except ValueError:
            raise ValueError(f"{source}: a box must be 'x1,x2,y1,y2', got {chunk!r}") from None
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
        polygons.append(np.asarray([[x1, y1], [x2, y1], [x2, y2], [x1, y2]]))
    return polygons


class PosterEraseDataModule(TextRemovalDataModule):
    splits = ("train", "valid", "test")
    layout = LAYOUT

    def __init__(
        self,
        root: str,
        size: int | Sequence[int] | None = (768, 512),
        train_size: int | Sequence[int] | None = (768, 512),
        val_split: str = "valid",
        composite_target: bool = True,
        **kwargs: Any,
    ):
        super().__init__(root, size=size, train_size=train_size, val_split=val_split, **kwargs)
        self.composite_target = composite_target
        single = not (self.root / ARCHIVES[0]).is_dir() and any((self.root / f).is_file() for f in SPLIT_FILES.values())
        self.archives = [self.root] if single else [self.root / archive for archive in ARCHIVES]
        self._files: dict[str, Path] = {}
        self._listed: set[str] = set()

    def _find(self, relative: str) -> Path | None:
        """The file ``relative`` under any ``erase_<k>/`` (each folder is listed once)."""
        relative = Path(relative.strip()).as_posix()
        folder = str(Path(relative).parent)
        if folder not in self._listed:
            self._listed.add(folder)
            for archive in self.archives:
                directory = archive / folder
                if directory.is_dir():
                    for path in directory.iterdir():
                        self._files.setdefault((Path(folder) / path.name).as_posix(), path)
        return self._files.get(relative)

    def _ground_truth(self, image: Path, column: str | None) -> Path | None:
        if column:
            return self._find(column)
        for suffix in ("_g", "_gt"):
            candidate = image.with_name(f"{image.stem}{suffix}.png")
            if candidate.is_file():
                return candidate
        return None

    def records(self, split: str) -> list[TextRecord]:
        split_file = self.archives[0] / SPLIT_FILES[split]
        if not split_file.is_file():
            raise layout_error(self.root, LAYOUT, f"missing split file {split_file}")
        records, missing = [], []
        for number, line in enumerate(split_file.read_text(encoding="utf-8-sig").splitlines(), start=1):
            if not line.strip():
                continue
            columns = line.rstrip("\r\n").split("\t")
            source = f"{split_file} line {number}"
            if len(columns) < 3:
                raise ValueError(
                    f"{source}: expected 'index<TAB>path<TAB>json[<TAB>gt path]', got {len(columns)} column(s)"
                )
            try:
                meta = json.loads(columns[2])
            except json.JSONDecodeError as error:
                raise ValueError(f"{source}: the third column is not JSON ({error})") from None
            image = self._find(columns[1])
            if image is None:
                missing.append(
                    f"{source}: {columns[1]} not found under {' or '.join(str(a) for a in self.archives[:2])}"
                    f"{' ...' if len(self.archives) > 2 else ''}"
                )
                continue
            target = None
            if split != "train":
                target = self._ground_truth(image, columns[3] if len(columns) > 3 else None)
                if target is None:
                    missing.append(
                        f"{source}: no ground truth for {columns[1]} (4th column, <stem>_g.png or <stem>_gt.png)"
                    )
                    continue
            records.append(
                TextRecord(
                    name=Path(columns[1]).stem,
                    image=image,
                    target=target,
                    polygons=parse_boxes(str(meta.get("mask", "")), source),
                    target_inside_text=self.composite_target,
                    extra={"place": meta.get("place", {})},
                )
            )
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} sample(s) of {split_file} are missing:\n  " + "\n  ".join(missing[:20])
            )
        return records
