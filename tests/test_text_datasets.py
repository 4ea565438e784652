"""Real-layout text-removal datamodules on generated fixtures (tests/text_fixtures.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules.base import BadSampleError, collate
from datamodules.mixed import MixedDataModule
from datamodules.posterase import PosterEraseDataModule, parse_boxes
from datamodules.scut_enstext import SCUTEnsTextDataModule
from datamodules.scut_syn import SCUTSynDataModule
from datamodules.synthtext import SynthTextDataModule, background_stem, word_polygons
from datamodules.text_removal import parse_polygon_line
from tests.conftest import write_image
from tests.text_fixtures import (
    POSTER_BOXES,
    POSTER_H,
    POSTER_W,
    SCUT_POLYGONS,
    SIZE,
    make_posterase,
    make_scut_enstext,
    make_scut_syn,
    make_synthtext,
)
from zoo.imaging.masks import rasterize


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a > 0.5, b > 0.5
    return float((a & b).sum() / (a | b).sum().clamp(min=1))


def changed(sample: dict, threshold: float = 0.15) -> torch.Tensor:
    return ((sample["image"] - sample["target"]).abs().mean(0) > threshold).float()


@pytest.fixture
def scut(tmp_path):
    return make_scut_enstext(tmp_path / "SCUT-EnsText")


def test_polygon_lines_tolerate_spaces_crlf_and_hash_fields():
    assert parse_polygon_line("1,2,3,4,5,6,7,8\r\n", "f").shape == (4, 2)
    assert parse_polygon_line("1, 2, 3, 4, 5, 6", "f").tolist() == [[1, 2], [3, 4], [5, 6]]
    assert parse_polygon_line("1,2,3,4,5,6,7,8,###", "f").shape == (4, 2)
    assert parse_polygon_line("   ", "f") is None
    with pytest.raises(BadSampleError, match="a.txt line 3.*'x'"):
        parse_polygon_line("1,2,x,4,5,6", "a.txt line 3")
    with pytest.raises(BadSampleError, match="even number"):
        parse_polygon_line("1,2,3,4,5,6,7", "a.txt")


def test_scut_enstext_masks_cover_the_polygons_at_the_protocol_size(scut):
    dm = SCUTEnsTextDataModule(str(scut), size=512, val_size=None, batch_size=2)
    test = dm.build_dataset("test")
    assert [r.name for r in test.records] == sorted(SCUT_POLYGONS)
    for record in test.records:
        sample = test[test.records.index(record)]
        assert sample["image"].shape == sample["target"].shape == (3, 512, 512) and sample["mask"].shape == (
            1,
            512,
            512,
        )
        polygons = SCUT_POLYGONS[record.name]
        expected = torch.from_numpy(rasterize([p * 512 / SIZE for p in polygons], 512, 512) / 255.0)
        if not polygons:  # the empty annotation file
            assert sample["mask"].sum() == 0 and sample["boxes"].shape == (0, 4)
            continue
        assert iou(sample["mask"][0], expected) > 0.9
        # the text painted into the input is where the mask is: image and target are aligned
        assert iou(changed(sample), sample["mask"][0]) > 0.8
        assert len(sample["boxes"]) == len(polygons)
        assert float(sample["boxes"][:, 2:].max()) <= 512  # the vertex at x=65 is clipped to the image


def test_scut_enstext_native_size_and_training_crops_stay_aligned(scut):
    native = SCUTEnsTextDataModule(str(scut), size=None).build_dataset("test")
    assert native[0]["image"].shape == (3, SIZE, SIZE)
    dm = SCUTEnsTextDataModule(str(scut), train_size=128, crop_size=96, batch_size=3)
    train = dm.build_dataset("train")
    for _ in range(4):
        sample = train[0]  # img_12: two text instances
        assert sample["image"].shape == (3, 96, 96)
        if sample["mask"].sum() > 50:
            assert iou(changed(sample), sample["mask"][0]) > 0.8
        for x0, y0, x1, y1 in sample["boxes"].tolist():  # boxes follow the crop and flip
            assert 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 96
            assert sample["mask"][0, int(y0) : int(y1) + 1, int(x0) : int(x1) + 1].sum() > 0
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (3, 3, 96, 96) and len(batch["boxes"]) == 3


def test_scut_enstext_bad_inputs_name_the_file(scut, tmp_path):
    with pytest.raises(FileNotFoundError, match="all_images/<name>.jpg"):  # wrong root: the layout is printed
        SCUTEnsTextDataModule(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="missing folder .*all_gts"):
        (scut / "test" / "all_gts").rename(scut / "test" / "gts")
        SCUTEnsTextDataModule(str(scut)).build_dataset("test")
    (scut / "test" / "gts").rename(scut / "test" / "all_gts")
    (scut / "test" / "all_labels" / "7.jpg").unlink()
    with pytest.raises(ValueError, match=r"images without a ground truth.*\['7'\]"):
        SCUTEnsTextDataModule(str(scut)).build_dataset("test")
    # a malformed polygon line and a truncated image: errors naming the file, or skipped on request
    (scut / "train" / "all_gts" / "7.txt").write_text("10,10,20,10,oops,20\n")
    data = (scut / "train" / "all_images" / "img_12.jpg").read_bytes()
    (scut / "train" / "all_images" / "img_12.jpg").write_bytes(data[: len(data) // 2])
    strict = SCUTEnsTextDataModule(str(scut)).build_dataset("train")
    names = [r.name for r in strict.records]
    with pytest.raises(BadSampleError, match=r"7\.txt line 1"):
        strict[names.index("7")]
    with pytest.raises(BadSampleError, match="img_12.jpg"):
        strict[names.index("img_12")]
    lenient = SCUTEnsTextDataModule(str(scut), on_bad_sample="skip").build_dataset("train")
    batch = collate([lenient[i] for i in range(len(lenient))])
    assert batch["name"] == ["img_324"] and lenient.skipped == 2


def test_scut_syn_derives_masks_and_handles_the_known_defects(tmp_path):
    root = make_scut_syn(tmp_path / "SCUT-Syn")
    dm = SCUTSynDataModule(str(root), size=512, batch_size=2)
    test = dm.build_dataset("test")
    sample = test[0]
    expected = torch.zeros(512, 512)
    expected[5 * 8 : 16 * 8, 5 * 8 : 31 * 8] = 1
    expected[40 * 8 : 56 * 8, 35 * 8 : 61 * 8] = 1
    assert iou(sample["mask"][0], expected) > 0.9 and len(sample["boxes"]) == 2
    # a colour-swapped input and a truncated label are bad samples: named, or skipped
    image = np.asarray(__import__("PIL.Image").Image.open(root / "syn_test/img/img_1.png"))
    write_image(root / "syn_test/img/img_1.png", np.ascontiguousarray(image[..., ::-1]))
    label = (root / "syn_train/label/train_img_2.png").read_bytes()
    (root / "syn_train/label/train_img_2.png").write_bytes(label[:200])
    with pytest.raises(BadSampleError, match="img_1.png: its colour channels are swapped"):
        SCUTSynDataModule(str(root), on_bad_sample="raise").build_dataset("test")[1]
    with pytest.raises(BadSampleError, match="train_img_2.png"):
        SCUTSynDataModule(str(root), on_bad_sample="raise").build_dataset("train")[2]
    lenient = SCUTSynDataModule(str(root), on_bad_sample="skip", batch_size=3, crop_size=48)
    batch = next(iter(lenient.train_dataloader()))
    assert 1 <= len(batch["image"]) <= 3 and "train_img_2" not in batch["name"]
    # precomputed masks instead of derived ones
    for split, names in (("syn_test", ["img_0", "img_1"]),):
        for name in names:
            write_image(root / split / "mask" / f"{name}.png", np.full((SIZE, SIZE), 255, np.uint8))
    masked = SCUTSynDataModule(str(root), mask_dir="mask").build_dataset("test")
    assert masked[0]["mask"].mean() == 1


def test_posterase_boxes_order_splits_and_ground_truth(tmp_path):
    root = make_posterase(tmp_path / "PosterErase")
    assert parse_boxes("5,40,10,20;", "x")[0].tolist() == [[5, 10], [40, 10], [40, 20], [5, 20]]  # x1,x2,y1,y2
    dm = PosterEraseDataModule(str(root), size=None, train_size=None, hflip=False, batch_size=2)
    train = dm.build_dataset("train")
    assert {r.name for r in train.records} == {"0", "1"}  # found in erase_1 and erase_2
    batch = collate([train[0], train[1]])
    assert "target" not in batch and batch["mask"].shape == (2, 1, POSTER_H, POSTER_W)
    assert batch["boxes"][1].tolist() == [[2, 50, 30, 60], [10, 25, 20, 35]]
    assert batch["place"][1]["obj"] == "促销,12,0;"
    for split, key in (("val", "valid/0.png"), ("test", "test/0.png")):
        sample = dm.build_dataset(split)[0]
        ((x1, x2, y1, y2),) = POSTER_BOXES[key]
        assert sample["boxes"].tolist() == [[x1, y1, x2, y2]]
        # ground truth from the 4th column, re-composited: identical to the input outside the box
        outside = sample["mask"][0] == 0
        assert torch.equal(sample["target"][:, outside], sample["image"][:, outside])
        assert (sample["target"] - sample["image"]).abs()[:, ~outside].mean() > 0.1
    protocol = PosterEraseDataModule(str(root)).build_dataset("test")[0]
    assert protocol["image"].shape == (3, 768, 512)
    released = PosterEraseDataModule(str(root), size=None, composite_target=False).build_dataset("test")[0]
    assert released["target"][:, :3].max() == 0  # the retouched rows of the released ground truth


def test_posterase_reads_the_ste_example_folder(tmp_path):
    root = make_posterase(tmp_path / "poster", archives=False)  # examples/poster: no erase_<k>/ level
    dm = PosterEraseDataModule(str(root), size=(96, 64), train_size=(96, 64), hflip=False)
    train, valid = dm.build_dataset("train"), dm.build_dataset("val")
    assert len(train) == 2 and len(valid) == 1 and "target" in valid[0]
    assert train[0]["original_size"].tolist() == [POSTER_H, POSTER_W] and train[0]["image"].shape == (3, 96, 64)


def test_posterase_missing_files_are_listed(tmp_path):
    root = make_posterase(tmp_path / "PosterErase")
    (root / "erase_2" / "train" / "1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"train.txt line 2: train/1.png not found"):
        PosterEraseDataModule(str(root)).build_dataset("train")


def test_synthtext_reads_gt_mat_and_builds_garnet_targets(tmp_path):
    root = make_synthtext(tmp_path / "SynthText")
    assert background_stem("8/ballet_106_0.jpg") == "ballet_106"
    assert len(word_polygons(np.zeros((2, 4)))) == 1 and len(word_polygons(np.zeros((2, 4, 3)))) == 3
    dm = SynthTextDataModule(str(root), test_size=3, size=32, batch_size=2)
    train, test = dm.build_dataset("train"), dm.build_dataset("test")
    assert len(train) == 7 and len(test) == 3
    assert not {r.name for r in train.records} & {r.name for r in test.records}
    again = SynthTextDataModule(str(root), test_size=3).records("test")
    assert [r.name for r in again] == [r.name for r in test.records]  # seeded split
    native = SynthTextDataModule(str(root), size=None, test_size=3).build_dataset("test")
    for i, record in enumerate(native.records):
        sample = native[i]
        assert sample["image"].shape[1] == sample["image"].shape[2] == 48  # centre square of 48x56
        inside = sample["mask"][0] > 0
        outside = ~inside
        assert torch.equal(sample["target"][:, outside], sample["image"][:, outside])  # input outside the words
        assert (sample["target"] - sample["image"]).abs()[:, inside].mean() > 0.2  # background inside
        assert len(sample["boxes"]) == len(record.polygons)


def test_synthtext_missing_background_is_reported(tmp_path):
    root = make_synthtext(tmp_path / "SynthText")
    (root / "bg_img" / "scene_0.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="2 SynthText image\\(s\\) have no background"):
        SynthTextDataModule(str(root)).records("train")
    assert len(SynthTextDataModule(str(root), on_missing_background="skip", test_size=0).records("train")) == 8


def test_mixed_sources_follow_the_weights(tmp_path):
    scut = SCUTEnsTextDataModule(str(make_scut_enstext(tmp_path / "scut")), train_size=32)
    synth = SynthTextDataModule(str(make_synthtext(tmp_path / "synth")), train_size=32, test_size=2)
    dm = MixedDataModule(
        {"scut": scut, "synth": synth}, weights={"scut": 3.0, "synth": 1.0}, samples_per_epoch=400, batch_size=4
    )
    loader = dm.train_dataloader()
    weights = dm.sample_weights(dm.datasets["train"])
    assert torch.isclose(weights[:3].sum() / weights.sum(), torch.tensor(0.75, dtype=torch.double))
    drawn = torch.tensor(list(iter(loader.sampler)))
    assert 0.65 < float((drawn < 3).double().mean()) < 0.85
    assert next(iter(loader))["image"].shape == (4, 3, 32, 32)
    assert dm.build_dataset("test").records[0].name == "7"  # evaluation reads eval_source (scut)
    with pytest.raises(ValueError, match="weights"):
        MixedDataModule({"scut": scut}, weights={"other": 1.0})
