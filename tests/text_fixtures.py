"""Tiny text-removal datasets written in the exact on-disk layouts of the real releases."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import run_tool, write_image

SIZE = 64  # fixture images are small; the datamodules resize to the protocols' sizes


def scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth background (so that resizing does not invent differences)."""
    yy, xx = np.mgrid[0:height, 0:width]
    base = rng.integers(40, 200, size=3)
    return np.clip(base + 0.5 * xx[..., None] + 0.3 * yy[..., None], 0, 255).astype(np.uint8)


def paint(image: np.ndarray, polygons: list[np.ndarray], colour=(250, 250, 20)) -> np.ndarray:
    import cv2

    out = image.copy()
    cv2.fillPoly(out, [np.round(p).astype(np.int32) for p in polygons], colour)
    return out


# SCUT-EnsText: a 4-point quad, a 10-point curved polygon, a vertex beyond the image, an empty file,
# CRLF line endings, spaces and a trailing '###' field, both name styles (img_<k>, <n>).
SCUT_POLYGONS = {
    "img_12": [
        np.array([[8, 8], [40, 6], [41, 20], [9, 22]]),
        np.array([[10, 40], [20, 36], [30, 35], [40, 36], [50, 40], [50, 50], [40, 46], [30, 45], [20, 46], [10, 50]]),
    ],
    "7": [np.array([[30, 50], [65, 50], [65, 63], [30, 63]])],
    "img_324": [],
}


def polygon_line(polygon: np.ndarray, style: int) -> str:
    values = [str(int(v)) for v in polygon.ravel()]
    return [",".join(values), ", ".join(values), ",".join(values) + ",###"][style % 3]


def make_scut_enstext(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for name, polygons in SCUT_POLYGONS.items():
            label = scene(rng, SIZE, SIZE)
            write_image(root / split / "all_labels" / f"{name}.jpg", label)
            write_image(root / split / "all_images" / f"{name}.jpg", paint(label, polygons))
            lines = [polygon_line(p, i) for i, p in enumerate(polygons)]
            (root / split / "all_gts").mkdir(parents=True, exist_ok=True)
            (root / split / "all_gts" / f"{name}.txt").write_bytes(
                ("\r\n".join(lines) + ("\r\n" if lines else "")).encode()
            )
    return root


def eval_on_scut_enstext(
    root: Path, checkpoint: Path, run_dir: Path, batch: int, *overrides: str
) -> subprocess.CompletedProcess:
    """``tools/eval.py`` of DeepEraser's SCUT-EnsText recipe on the fixture at ``root``, 64 px, images saved."""
    return run_tool(
        "eval.py",
        "experiment=deeperaser_scut_enstext",
        f"data.root={root}",
        f"checkpoint={checkpoint}",
        "data.size=64",
        "data.num_workers=0",
        f"data.val_batch_size={batch}",
        "save_images=true",
        *overrides,
        f"hydra.run.dir={run_dir}",
    )


def make_scut_syn(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for folder, names in (
        ("syn_train", ["train_img_0", "train_img_1", "train_img_2"]),
        ("syn_test", ["img_0", "img_1"]),
    ):
        for k, name in enumerate(names):
            label = scene(rng, SIZE, SIZE)
            image = paint(
                label,
                [
                    np.array([[5 + k, 5], [30 + k, 5], [30 + k, 15], [5 + k, 15]]),
                    np.array([[35, 40], [60, 40], [60, 55], [35, 55]]),
                ],
            )
            write_image(root / folder / "label" / f"{name}.png", label)
            write_image(root / folder / "img" / f"{name}.png", image)
    return root


# PosterErase: 513x750 (WxH) posters shrunk 10x for the fixture; boxes as x1,x2,y1,y2.
POSTER_W, POSTER_H = 52, 75
POSTER_BOXES = {
    "train/0.png": [(5, 40, 10, 20)],
    "train/1.png": [(2, 30, 50, 60), (10, 20, 25, 35)],
    "valid/0.png": [(6, 44, 12, 22)],
    "test/0.png": [(8, 30, 40, 52)],
}


def make_posterase(root: Path, seed: int = 0, archives: bool = True) -> Path:
    """The Tianchi release (``erase_1``/``erase_2`` archives) or, with ``archives=False``, STE's
    ``examples/poster`` folder (split files and images directly under the root)."""
    rng = np.random.default_rng(seed)
    first = root / "erase_1" if archives else root
    lines = {"train.txt": [], "ps_valid.txt": [], "ps_test.txt": []}
    for number, (relative, boxes) in enumerate(POSTER_BOXES.items()):
        split = relative.split("/")[0]
        archive = (
            root / "erase_2" if archives and relative == "train/1.png" else first
        )  # train posters are spread over archives
        clean = scene(rng, POSTER_H, POSTER_W)
        polygons = [np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]]) for x1, x2, y1, y2 in boxes]
        write_image(archive / relative, paint(clean, polygons))
        meta = {
            "mask": "".join(f"{x1},{x2},{y1},{y2};" for x1, x2, y1, y2 in boxes),
            "place": {"obj": "促销,12,0;", "text": [[[x1, y1, ["255,0,0"]]] for x1, x2, y1, y2 in boxes]},
        }
        columns = [str(number), relative, json.dumps(meta, ensure_ascii=False)]
        if split != "train":
            gt = relative.replace(".png", "_g.png")
            retouched = clean.copy()
            retouched[0:3] = 0  # designers retouch outside the text too; the protocol re-composites
            write_image(first / gt, retouched)
            columns.append(gt)
        file = {"train": "train.txt", "valid": "ps_valid.txt", "test": "ps_test.txt"}[split]
        lines[file].append("\t".join(columns))
    for file, content in lines.items():
        (first / file).write_text("\n".join(content) + "\n", encoding="utf-8")
    return root


def make_synthtext(root: Path, seed: int = 0, count: int = 10) -> Path:
    """gt.mat (imnames, wordBB 2x4xN and a 2x4 single word, charBB, txt) + bg_img of another size."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    names, word_bbs = [], []
    for k in range(count):
        background = f"scene_{k // 2}"
        bg_path = root / "bg_img" / f"{background}.jpg"
        if not bg_path.exists():
            write_image(bg_path, scene(rng, 2 * 48, 2 * 56))  # backgrounds differ in size from the renders
        quads = [np.array([[4, 4], [30, 6], [30, 16], [4, 14]])]
        if k % 2:
            quads.append(np.array([[10, 30], [50, 30], [50, 40], [10, 40]]))
        name = f"{k % 3 + 1}/{background}_{k % 2}.jpg"
        rendered = np.asarray(Image.open(bg_path).convert("RGB").resize((56, 48), Image.BILINEAR))
        write_image(root / name, paint(rendered, quads))
        names.append(np.array([name]))
        bb = np.stack([q.T for q in quads], axis=2).astype(np.float64)  # 2x4xN
        word_bbs.append(bb[:, :, 0] if bb.shape[2] == 1 else bb)
    savemat(
        root / "gt.mat",
        {
            "imnames": _cell(names),
            "wordBB": _cell(word_bbs),
            "charBB": _cell(word_bbs),
            "txt": _cell([np.array(["word"])] * count),
        },
    )
    return root


def _cell(items: list) -> np.ndarray:
    array = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        array[0, i] = item
    return array
