"""Tiny all-in-one restoration trees in the real layouts (PromptIR/PIP, AirNet, raw releases)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.conftest import write_image

SIZE = (40, 56)  # H, W: not a multiple of 16, so the test crop shows


def clean(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[: SIZE[0], : SIZE[1]]
    base = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1) % 256
    return np.clip(base + rng.integers(0, 30, (*SIZE, 3)), 0, 255).astype(np.uint8)


def darker(image: np.ndarray) -> np.ndarray:
    return (image // 2).astype(np.uint8)


def write_pair(
    rng: np.random.Generator, folder: Path, inputs: str, targets: str, input_name: str, target_name: str | None = None
) -> None:
    """A clean target ``folder/targets/target_name`` (default: ``input_name``) and its darker input
    ``folder/inputs/input_name``."""
    image = clean(rng)
    write_image(folder / targets / (target_name or input_name), image)
    write_image(folder / inputs / input_name, darker(image))


def make_promptir(root: Path, seed: int = 0) -> Path:
    """``root/data/{Train,test}`` as PromptIR's INSTALL.md and PIP's trainer expect."""
    rng = np.random.default_rng(seed)
    train, test = root / "data" / "Train", root / "data" / "test"
    write_image(train / "Denoise" / "00001.bmp", clean(rng))  # WED
    write_image(train / "Denoise" / "a247012.jpg", clean(rng))  # BSD400 with PromptIR's "a" prefix
    for n in (1, 2):
        write_pair(rng, train / "Derain", "rainy", "gt", f"rain-{n}.png", f"norain-{n}.png")
    write_pair(rng, train / "Dehaze", "synthetic/part1", "original", "0001_0.8_0.2.jpg", "0001.jpg")
    hazy_again = train / "Dehaze" / "synthetic" / "part2" / "0001_0.9_0.16.jpg"
    write_image(hazy_again, darker(clean(rng)))  # a second hazy version
    write_pair(rng, train / "GOPRO_deblur" / "train", "blur", "sharp", "GOPR0372_07_00_000047.png")
    write_pair(rng, train / "Enhance", "low", "high", "2.png")
    for n in (1, 2):
        write_image(test / "denoise" / "bsd68" / "original" / f"test{n:03d}.png", clean(rng))
    write_pair(rng, test / "derain" / "Rain100L", "input", "target", "rain-1.png", "norain-1.png")
    write_pair(rng, test / "dehaze" / "outdoor", "input", "target", "0001_0.9_0.16.jpg", "0001.png")
    write_pair(rng, test / "GOPRO_deblur" / "test", "blur", "sharp", "a.png")
    write_pair(rng, test / "enhance", "low", "high", "1.png")
    return root


def make_airnet_test(root: Path, seed: int = 0) -> Path:
    """AirNet's test tree: same-name derain/dehaze pairs, denoise images flat."""
    rng = np.random.default_rng(seed)
    test = root / "test"
    write_pair(rng, test / "derain", "input", "target", "1.png")
    write_pair(rng, test / "dehaze", "input", "target", "0002_0.8_0.2.jpg", "0002.png")
    write_image(test / "denoise" / "test001.png", clean(rng))
    return root


def make_raw(root: Path, seed: int = 0) -> Path:
    """Raw releases: GOPRO_Large/<split>/<sequence>/{blur,sharp}, LOL our485|eval15/{low,high},
    SOTS outdoor/{hazy,gt}."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for sequence in ("GOPR0372_07_00", "GOPR0384_11_01"):  # the same name in two sequences
            write_pair(rng, root / "GOPRO_Large" / split / sequence, "blur", "sharp", "000001.png")
    write_pair(rng, root / "our485", "low", "high", "2.png")
    write_pair(rng, root / "eval15", "low", "high", "1.png")
    write_pair(rng, root / "outdoor", "hazy", "gt", "0003_0.8_0.2.jpg", "0003.png")
    return root
