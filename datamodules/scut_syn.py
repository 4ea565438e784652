"""SCUT-Syn (EnsNet, Zhang et al. AAAI 2019): 8,000 train / 800 test synthetic images, 512x512 PNG.

Layout as distributed::

    root/syn_train/img/<name>.png     with text
    root/syn_train/label/<name>.png   text-free ground truth, same name
    root/syn_test/img, root/syn_test/label

No masks or boxes ship: the mask is derived from the pair (mean RGB |img − label| > ``mask_threshold``,
25 on 0-255 as GaRNet's rule, then a closing of radius ``mask_closing`` to join stroke edges), and the
boxes are its connected components. ``mask_dir``: read precomputed masks from ``<split>/<mask_dir>/``
(white = text) instead. Known defects of the release — a truncated label
(``syn_train/label/train_img_7348.png``) and a few colour-swapped images (e.g. ``syn_test/img/img_44.png``,
detected as a pair whose derived mask covers more than ``max_mask_fraction`` of the image) — are bad
samples: ``on_bad_sample=raise`` stops naming the file, ``skip`` drops them with a warning.
"""

from __future__ import annotations

from typing import Any

from datamodules.base import layout_error, list_images
from datamodules.text_removal import TextRecord, TextRemovalDataModule, paired_records

LAYOUT = """  syn_train/img/<name>.png     images with text
  syn_train/label/<name>.png   text-free ground truth (same names)
  syn_test/img/, syn_test/label/
  [<split>/mask/<name>.png     optional precomputed masks, with mask_dir=mask]"""

SPLIT_FOLDERS = {"train": "syn_train", "test": "syn_test"}


class SCUTSynDataModule(TextRemovalDataModule):
    layout = LAYOUT

    def __init__(self, root: str, mask_dir: str | None = None, max_mask_fraction: float = 0.6, **kwargs: Any):
        super().__init__(root, **kwargs)
        self.mask_dir, self.max_mask_fraction = mask_dir, max_mask_fraction

    def records(self, split: str) -> list[TextRecord]:
        base = self.root / SPLIT_FOLDERS[split]
        records = paired_records(self.root, base / "img", base / "label", LAYOUT)
        if self.mask_dir:
            folder = base / self.mask_dir
            if not folder.is_dir():
                raise layout_error(self.root, LAYOUT, f"mask_dir={self.mask_dir!r}: missing folder {folder}")
            masks = list_images(folder)
            missing = [r.name for r in records if r.name not in masks]
            if missing:
                raise ValueError(f"images without a mask in {folder}: {missing[:20]}")
            for record in records:
                record.mask = masks[record.name]
        return records

    def dataset_options(self, split: str) -> dict[str, Any]:
        return {"max_mask_fraction": self.max_mask_fraction}
