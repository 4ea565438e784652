"""Embedded synthetic text data and the custom folder datamodule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules.base import BadSampleError, collate
from datamodules.folder import FolderDataModule, PairedFolderDataset, find_pairs
from datamodules.synthetic_text import (
    StyleRanges,
    SyntheticTextDataModule,
    SyntheticTextDataset,
    TextStyle,
    render_scene,
)
from tests.conftest import ROOT, write_image
from zoo.imaging.fonts import find_fonts


# ----------------------------------------------------------------------------------------- synthetic
def test_synthetic_samples_follow_the_batch_contract():
    sample = SyntheticTextDataset(4, size=(48, 64), split="val")[0]
    assert sample["image"].shape == sample["target"].shape == (3, 48, 64)
    assert sample["mask"].shape == (1, 48, 64) and set(sample["mask"].unique().tolist()) <= {0.0, 1.0}
    assert sample["boxes"].ndim == 2 and sample["boxes"].shape[1] == 4 and len(sample["boxes"]) >= 1
    boxes = sample["boxes"]
    assert (boxes[:, 0] < boxes[:, 2]).all() and (boxes[:, 2] <= 64).all() and (boxes[:, 3] <= 48).all()


def test_text_changes_only_masked_pixels():
    for index in range(5):
        sample = SyntheticTextDataset(5, size=64, split="train", seed=3)[index]
        changed = (sample["image"] - sample["target"]).abs().amax(dim=0) > 2 / 255
        assert changed.any()
        assert not (changed & (sample["mask"][0] == 0)).any()  # every changed pixel is inside the mask


def test_deterministic_per_index_seed_and_split():
    a = SyntheticTextDataset(3, size=32, seed=7, split="val")
    b = SyntheticTextDataset(3, size=32, seed=7, split="val")
    assert torch.equal(a[2]["image"], b[2]["image"]) and torch.equal(a[2]["boxes"], b[2]["boxes"])
    assert not torch.equal(a[1]["image"], a[2]["image"])
    assert not torch.equal(a[2]["image"], SyntheticTextDataset(3, size=32, seed=8, split="val")[2]["image"])
    assert not torch.equal(a[2]["image"], SyntheticTextDataset(3, size=32, seed=7, split="train")[2]["image"])


def test_style_fields_drive_rendering():
    background = np.full((40, 80, 3), 200.0, dtype=np.float32)
    plain = TextStyle(text="Hi", size=20, color=(0, 0, 255), center=(0.5, 0.5))
    image, coverage = render_scene(background, [plain])
    blue = image[coverage[0]]
    assert blue[:, 2].mean() > blue[:, 0].mean() + 50  # the chosen colour
    stroked, stroked_cov = render_scene(background, [TextStyle(**{**plain.__dict__, "stroke_width": 3})])
    assert stroked_cov[0].sum() > coverage[0].sum()  # a stroke widens the text
    shadowed, shadow_cov = render_scene(
        background, [TextStyle(**{**plain.__dict__, "shadow": True, "shadow_offset": (3, 3)})]
    )
    assert shadow_cov[0].sum() > coverage[0].sum()
    faint, _ = render_scene(background, [TextStyle(**{**plain.__dict__, "opacity": 0.3})])
    assert np.abs(faint - background).max() < np.abs(image - background).max()
    rotated, rot_cov = render_scene(background, [TextStyle(**{**plain.__dict__, "rotation": 45})])
    assert not np.array_equal(rot_cov[0], coverage[0])


def test_user_fonts_and_backgrounds(tmp_path):
    assert find_fonts(None) == ["default"]
    with pytest.raises(FileNotFoundError, match="font_dir"):
        find_fonts(tmp_path / "missing")
    write_image(tmp_path / "bg" / "wall.png", np.full((80, 90, 3), (10, 200, 30), np.uint8))
    dataset = SyntheticTextDataset(8, size=32, background_dir=str(tmp_path / "bg"), ranges={"instances": [1, 1]})
    greens = [s["target"][1].mean() > 0.7 and s["target"][0].mean() < 0.1 for s in (dataset[i] for i in range(8))]
    assert any(greens)
    assert dataset.ranges == StyleRanges(instances=(1, 1))
    with pytest.raises(ValueError, match="unknown style ranges \\['colour'\\]"):
        SyntheticTextDataset(1, ranges={"colour": 1})
    with pytest.raises(ValueError, match="background kinds"):
        SyntheticTextDataset(1, background_kinds={"marble": 1.0})


def test_datamodule_batches():
    dm = SyntheticTextDataModule(size=32, train_samples=8, val_samples=4, batch_size=4, val_batch_size=2)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["mask"].shape == (4, 1, 32, 32)
    assert isinstance(batch["boxes"], list) and len(batch["boxes"]) == 4 and len(batch["name"]) == 4
    assert len(list(dm.val_dataloader())) == 2


# -------------------------------------------------------------------------------------------- folder
def test_folder_pairs_and_crops_stay_aligned(tmp_path):
    root = tmp_path / "aligned"
    rng = np.random.default_rng(0)
    for i in range(3):
        image = rng.integers(0, 255, size=(50, 70, 3), dtype=np.uint8)
        write_image(root / "input" / f"a{i}.jpg" if i == 0 else root / "input" / f"a{i}.png", image)
        write_image(root / "target" / f"a{i}.png", 255 - image)
        write_image(root / "mask" / f"a{i}.png", np.where(image[..., 0] > 127, 255, 0).astype(np.uint8))
    pairs = find_pairs(root)
    assert [p[0] for p in pairs] == ["a0", "a1", "a2"]
    dataset = PairedFolderDataset(pairs[1:], crop_size=32, train=True)
    for _ in range(5):
        sample = dataset[0]
        assert sample["image"].shape == (3, 32, 32) and sample["mask"].shape == (1, 32, 32)
        assert torch.allclose(sample["target"], 1 - sample["image"], atol=1 / 255)
        assert torch.equal(sample["mask"][0], (sample["image"][0] > 127 / 255).float())


def test_unpaired_files_are_listed(paired_folder):
    (paired_folder / "target" / "img_3.png").unlink()
    (paired_folder / "mask" / "img_5.png").unlink()
    with pytest.raises(ValueError) as error:
        find_pairs(paired_folder)
    assert "inputs without a target: ['img_3']" in str(error.value)
    assert "inputs without a mask" in str(error.value) and "img_5" in str(error.value)


def test_wrong_root_prints_expected_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="Expected layout"):
        find_pairs(tmp_path)


def test_list_file(paired_folder):
    (paired_folder / "list.txt").write_text("img_1\ninput/img_2.png target/img_2.png\n\n")
    pairs = find_pairs(paired_folder, "list.txt")
    assert [p[0] for p in pairs] == ["img_1", "img_2"] and pairs[0][3] is not None and pairs[1][3] is None
    (paired_folder / "bad.txt").write_text("img_9\n")
    with pytest.raises(ValueError, match="line 1: 'img_9'"):
        find_pairs(paired_folder, "bad.txt")


def test_mask_derived_from_difference_without_mask_folder(paired_folder):
    for path in (paired_folder / "mask").iterdir():
        path.unlink()
    (paired_folder / "mask").rmdir()
    sample = PairedFolderDataset(find_pairs(paired_folder))[0]
    assert sample["mask"][0, 15, 15] == 1 and sample["mask"][0, 35, 45] == 0


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_bad_samples_raise_with_the_file_name_or_are_skipped(paired_folder, caplog):
    _truncate(paired_folder / "input" / "img_2.png")
    pairs = find_pairs(paired_folder)
    with pytest.raises(BadSampleError, match="img_2.png"):
        PairedFolderDataset(pairs)[2]
    skipping = PairedFolderDataset(pairs, on_bad_sample="skip")
    batch = collate([skipping[i] for i in range(len(pairs))])
    assert len(batch["name"]) == 5 and "img_2" not in batch["name"]
    assert skipping.skipped == 1 and "1 skipped" in caplog.text


def test_size_mismatch_is_a_bad_sample(paired_folder):
    write_image(paired_folder / "target" / "img_0.png", np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(BadSampleError, match="size mismatch.*img_0.png"):
        PairedFolderDataset(find_pairs(paired_folder))[0]


def test_folder_datamodule_split(paired_folder):
    dm = FolderDataModule(str(paired_folder), val_fraction=0.34, crop_size=16, batch_size=2, num_workers=0)
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 4 and len(dm.datasets["val"]) == 2
    assert not {p[0] for p in dm._split_pairs()["train"]} & {p[0] for p in dm._split_pairs()["val"]}
    assert next(iter(dm.train_dataloader()))["image"].shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="data.root is required"):
        FolderDataModule("???")
    assert dm.eval_sets("val") == dm.eval_sets("test") == []  # one unnamed evaluation set


def test_no_docstring_is_read_at_run_time():
    """``python -OO`` strips docstrings, so the data and model code must not parse them (the all-in-one
    layout is the constant ``LAYOUT``, which errors print)."""
    from datamodules.restoration import LAYOUT, AllInOneDataModule

    sources = [*ROOT.glob("datamodules/*.py"), *ROOT.glob("zoo/**/*.py")]
    assert [
        f"{p.relative_to(ROOT)}:{n}"
        for p in sources
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if "__doc__" in line
    ] == []
    with pytest.raises(ValueError) as error:
        AllInOneDataModule("???")
    assert "Train/Derain/{rainy,gt}/" in LAYOUT and LAYOUT in str(error.value)
