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


def write_pair(inputs: Path, targets: Path, input_name: str, target_name: str, rng: np.random.Generator) -> None:
    image = clean(rng)
    write_image(targets / target_name, image)
    write_image(inputs / input_name, darker(image))


def make_promptir(root: Path, seed: int = 0) -> Path:
    """``root/data/{Train,test}`` as PromptIR's INSTALL.md and PIP's trainer expect."""
    rng = np.random.default_rng(seed)
    train, test = root / "data" / "Train", root / "data" / "test"
    write_image(train / "Denoise" / "00001.bmp", clean(rng))  # WED
    write_image(train / "Denoise" / "a247012.jpg", clean(rng))  # BSD400 with PromptIR's "a" prefix
    for n in (1, 2):
        write_pair(train / "Derain" / "rainy", train / "Derain" / "gt", f"rain-{n}.png", f"norain-{n}.png", rng)
    write_pair(
        train / "Dehaze" / "synthetic" / "part1", train / "Dehaze" / "original", "0001_0.8_0.2.jpg", "0001.jpg", rng
    )
    write_image(
        train / "Dehaze" / "synthetic" / "part2" / "0001_0.9_0.16.jpg", darker(clean(rng))
    )  # a second hazy version
    write_pair(
        train / "GOPRO_deblur" / "train" / "blur",
        train / "GOPRO_deblur" / "train" / "sharp",
        "GOPR0372_07_00_000047.png",
        "GOPR0372_07_00_000047.png",
        rng,
    )
    write_pair(train / "Enhance" / "low", train / "Enhance" / "high", "2.png", "2.png", rng)
    for n in (1, 2):
        write_image(test / "denoise" / "bsd68" / "original" / f"test{n:03d}.png", clean(rng))
    write_pair(
        test / "derain" / "Rain100L" / "input",
        test / "derain" / "Rain100L" / "target",
        "rain-1.png",
        "norain-1.png",
        rng,
    )
    write_pair(
        test / "dehaze" / "outdoor" / "input",
        test / "dehaze" / "outdoor" / "target",
        "0001_0.9_0.16.jpg",
        "0001.png",
        rng,
    )
    write_pair(test / "GOPRO_deblur" / "test" / "blur", test / "GOPRO_deblur" / "test" / "sharp", "a.png", "a.png", rng)
    write_pair(test / "enhance" / "low", test / "enhance" / "high", "1.png", "1.png", rng)
    return root


def make_airnet_test(root: Path, seed: int = 0) -> Path:
    """AirNet's test tree: same-name derain/dehaze pairs, denoise images flat."""
    rng = np.random.default_rng(seed)
    test = root / "test"
    write_pair(test / "derain" / "input", test / "derain" / "target", "1.png", "1.png", rng)
    write_pair(test / "dehaze" / "input", test / "dehaze" / "target", "0002_0.8_0.2.jpg", "0002.png", rng)
    write_image(test / "denoise" / "test001.png", clean(rng))
    return root


def make_raw(root: Path, seed: int = 0) -> Path:
    """Raw releases: GOPRO_Large/<split>/<sequence>/{blur,sharp}, LOL our485|eval15/{low,high}, SOTS outdoor/{hazy,gt}."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for sequence in ("GOPR0372_07_00", "GOPR0384_11_01"):
            folder = root / "GOPRO_Large" / split / sequence
            write_pair(
                folder / "blur", folder / "sharp", "000001.png", "000001.png", rng
            )  # the same name in two sequences
    write_pair(root / "our485" / "low", root / "our485" / "high", "2.png", "2.png", rng)
    write_pair(root / "eval15" / "low", root / "eval15" / "high", "1.png", "1.png", rng)
    write_pair(root / "outdoor" / "hazy", root / "outdoor" / "gt", "0003_0.8_0.2.jpg", "0003.png", rng)
    return root
