"""SCUT-EnsText (Liu et al., EraseNet, TIP 2020): 2,749 train / 813 test real scene images, 512 px.

Read exactly as distributed (no ``mask/`` folder ships; masks are rasterised from the polygons)::

    root/{train,test}/all_images/<name>.jpg   input with text
    root/{train,test}/all_labels/<name>.jpg   text-erased ground truth, same file name
    root/{train,test}/all_gts/<name>.txt      one polygon per line: x1,y1,...,xn,yn (4-14 points)

``mask`` = the filled polygons (1 = text, clipped to the image); ``boxes`` = their bounding rectangles.
"""

from __future__ import annotations

from datamodules.text_removal import TextRecord, TextRemovalDataModule, paired_records

LAYOUT = """  train/all_images/<name>.jpg   input images
  train/all_labels/<name>.jpg   ground truth (same file names)
  train/all_gts/<name>.txt      polygons, one 'x1,y1,...,xn,yn' per line
  test/all_images, test/all_labels, test/all_gts   the same for the test split"""


class SCUTEnsTextDataModule(TextRemovalDataModule):
    layout = LAYOUT

    def records(self, split: str) -> list[TextRecord]:
        base = self.root / split
        return paired_records(self.root, base / "all_images", base / "all_labels", LAYOUT, base / "all_gts")
