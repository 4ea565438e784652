"""Tiny scene-text SR datasets in the real layouts: TextZoom lmdb envs and custom SR folders."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from datamodules.synthetic_text import TextStyle, generate_background, render_scene
from tests.conftest import write_image

TEXTZOOM_SPLITS = {"train1": 3, "train2": 2, "easy": 3, "medium": 4, "hard": 3}
# labels as TextZoom stores them: case and punctuation kept
WORDS = ("Hello", "WORLD!", "it's", "A-1", "Cafe.", "x&y", "2024", "Q?", "mIxEd", "#9", "(ok)", "end.", "Zoo:", "B2B")


def env_dir(root: Path, split: str) -> Path:
    """Where ``split``'s lmdb env lives: ``root/train1`` or ``root/test/easy``."""
    return root / split if split.startswith("train") else root / "test" / split


def word_crop(rng: np.random.Generator, text: str, height: int, width: int) -> np.ndarray:
    """``text`` rendered centred on a generated background (uint8 HxWx3)."""
    background = generate_background(rng, height, width, shapes_probability=0.0)
    color = (0, 0, 0) if background.mean() > 127 else (255, 255, 255)
    style = TextStyle(text=text, size=max(6, int(height * 0.6)), color=color, center=(0.5, 0.5))
    image, _ = render_scene(background, [style])
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def write_env(path: Path, entries: dict[str, bytes]) -> Path:
    import lmdb

    path.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for key, value in entries.items():
            txn.put(key.encode(), value)
    env.close()
    return path


def write_textzoom(root: Path, splits: dict[str, int] | None = None, seed: int = 0) -> dict[str, list[str]]:
    """A TextZoom tree under ``root`` (``train1``, ``train2``, ``test/{easy,medium,hard}``, each an lmdb env
    with ``num-samples`` and 1-based ``label-/image_hr-/image_lr-%09d`` keys) with ``splits`` samples each.

    HR crops vary in size; LR is HR shrunk ×2–×3 and, every other sample, scaled back up to the HR size
    (as in the raw release). Returns ``{split: labels in index order}``.
    """
    rng = np.random.default_rng(seed)
    labels: dict[str, list[str]] = {}
    for split, count in (splits or TEXTZOOM_SPLITS).items():
        entries = {"num-samples": str(count).encode()}
        labels[split] = []
        for number in range(1, count + 1):
            text = str(rng.choice(WORDS))
            height = int(rng.integers(20, 49))
            width = int(rng.integers(3 * height, 6 * height))
            hr = word_crop(rng, text, height, width)
            factor = float(rng.uniform(2, 3))
            lr = Image.fromarray(hr).resize(
                (max(4, round(width / factor)), max(4, round(height / factor))), Image.BICUBIC
            )
            if number % 2:
                lr = lr.resize((width, height), Image.BICUBIC)
            entries[f"label-{number:09d}"] = text.encode()
            entries[f"image_hr-{number:09d}"] = png(hr)
            entries[f"image_lr-{number:09d}"] = png(np.asarray(lr))
            labels[split].append(text)
        write_env(env_dir(root, split), entries)
    return labels


def put_entry(root: Path, split: str, key: str, value: bytes | None) -> None:
    """Overwrite (``None``: delete) one key of ``split``'s env, e.g. to corrupt an image."""
    import lmdb

    env = lmdb.open(str(env_dir(root, split)), map_size=1 << 26)
    with env.begin(write=True) as txn:
        if value is None:
            txn.delete(key.encode())
        else:
            txn.put(key.encode(), value)
    env.close()


def make_sr_folder(
    root: Path, seed: int = 0, scale: int = 2, counts: dict[str, int] | None = None
) -> dict[str, list[str]]:
    """``root/{train,val,test}/{hr,lr}/<stem>.png`` (HR 24x96, LR ``scale``× smaller) and a ``labels.txt``
    per split, tab-separated except the last line (space-separated). Returns ``{split: labels by stem order}``."""
    rng = np.random.default_rng(seed)
    labels: dict[str, list[str]] = {}
    for split, count in (counts or {"train": 3, "val": 2, "test": 2}).items():
        lines, labels[split] = [], []
        for k in range(count):
            stem, text = f"word_{k}", str(rng.choice(WORDS))
            hr = word_crop(rng, text, 24, 96)
            write_image(root / split / "hr" / f"{stem}.png", hr)
            write_image(
                root / split / "lr" / f"{stem}.png",
                np.asarray(Image.fromarray(hr).resize((96 // scale, 24 // scale), Image.BICUBIC)),
            )
            lines.append(f"{stem}{' ' if k == count - 1 else chr(9)}{text}")
            labels[split].append(text)
        (root / split / "labels.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return labels


# ------------------------------------------------------------------------------- real-world SR (GramSR)
REALSR_NAMES = ("Canon_001_LR4", "Canon_002_LR4", "Nikon_001_LR4")  # RealSR's naming in StableSR's test sets
REALSR_DIRS = {"stablesr": ("test_LR", "test_HR"), "lqgt": ("lq", "gt")}


def hq_scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A generated "HQ" photo stand-in (uint8 HxWx3): a background with shapes and a word."""
    background = generate_background(rng, height, width, shapes_probability=1.0)
    style = TextStyle(text=str(rng.choice(WORDS)), size=max(6, height // 4), color=(20, 20, 20), center=(0.5, 0.5))
    image, _ = render_scene(background, [style])
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def make_realsr_pairs(
    root: Path,
    names: tuple[str, ...] = REALSR_NAMES,
    lr_size: int = 32,
    scale: int = 4,
    layout: str = "stablesr",
    seed: int = 0,
) -> list[str]:
    """A StableSR-style test set under ``root``: ``test_LR/<name>.png`` (``lr_size``²) and ``test_HR/<name>.png``
    (``scale``× larger), same file names (``layout="lqgt"``: ``lq/`` + ``gt/``); LR = PIL bicubic of HR.
    Returns the names."""
    rng = np.random.default_rng(seed)
    lr_dir, hr_dir = REALSR_DIRS[layout]
    for name in names:
        hr = hq_scene(rng, lr_size * scale, lr_size * scale)
        write_image(root / hr_dir / f"{name}.png", hr)
        write_image(
            root / lr_dir / f"{name}.png", np.asarray(Image.fromarray(hr).resize((lr_size, lr_size), Image.BICUBIC))
        )
    return list(names)


def make_hq_folder(
    root: Path, seed: int = 0, sizes: tuple[tuple[int, int], ...] = ((72, 96), (96, 64), (40, 56), (64, 64), (80, 120))
) -> list[Path]:
    """HQ images (H, W in ``sizes``) in nested folders as LSDIR/FFHQ ship them: ``root/LSDIR/0001000/<n>.png`` for the
    first half, ``root/FFHQ/<n>.jpg`` (quality 95) for the rest. Returns the paths, sorted."""
    rng = np.random.default_rng(seed)
    paths = []
    for k, (height, width) in enumerate(sizes):
        path = (
            root / "LSDIR" / "0001000" / f"{k:07d}.png" if k < (len(sizes) + 1) // 2 else root / "FFHQ" / f"{k:05d}.jpg"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(hq_scene(rng, height, width)).save(path, quality=95)
        paths.append(path)
    return sorted(paths)


def write_list_file(path: Path, images: list[Path], relative: bool = True) -> Path:
    """A GramSR-style list file: one image path a line (relative to the list's folder when ``relative``), a comment
    and a blank line."""
    lines = ["# HQ training images"] + [str(p.relative_to(path.parent) if relative else p) for p in images] + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
