"""Scene-text SR data: TextZoom lmdb envs (tests/sr_fixtures.py), synthetic word lines, custom folders."""

from __future__ import annotations

import pickle
import shutil

import pytest
import torch

from datamodules.base import BadSampleError
from datamodules.textzoom import (
    TEXTZOOM_LAYOUT,
    SRFolderDataModule,
    SyntheticTextLinesDataModule,
    TextZoomDataModule,
    upsample_bicubic,
)
from tests.sr_fixtures import make_sr_folder, put_entry, write_textzoom
from zoo.errors import LayoutError


@pytest.fixture
def textzoom(tmp_path):
    root = tmp_path / "TextZoom"
    return root, write_textzoom(root, seed=0)


def test_textzoom_test_splits_sizes_labels_and_sets(textzoom):
    root, labels = textzoom
    dm = TextZoomDataModule(str(root), val_batch_size=8)
    assert dm.eval_sets("test") == ["easy", "medium", "hard"] and dm.eval_sets("val") == ["easy", "medium", "hard"]
    loaders = dm.test_dataloader()
    assert len(loaders) == 3
    for split, loader in zip(("easy", "medium", "hard"), loaders):
        batches = list(loader)
        assert len(batches) == 1
        batch = batches[0]
        assert batch["lr"].shape == (len(labels[split]), 3, 16, 64) and batch["hr"].shape == (
            len(labels[split]),
            3,
            32,
            128,
        )
        assert batch["target"].shape == batch["image"].shape == batch["hr"].shape
        assert batch["set"] == [split] * len(labels[split])
        assert batch["text"] == labels[split]  # index order, case and punctuation kept
        assert batch["name"][0] == f"{split}_000000001"
        assert torch.equal(batch["image"][0], upsample_bicubic(batch["lr"][0], (32, 128)))
        assert 0 <= float(batch["lr"].min()) and float(batch["lr"].max()) <= 1


def test_textzoom_keys_are_one_based(textzoom):
    root, labels = textzoom
    put_entry(root, "easy", "label-000000001", b"First.")  # dataset index 0 reads key 1
    put_entry(root, "easy", "label-000000000", b"never read")
    sample = TextZoomDataModule(str(root)).build_dataset("test")[0][0]
    assert sample["text"] == "First." and sample["set"] == "easy"
    assert torch.equal(sample["target"], sample["hr"])


def test_textzoom_train_and_val_splits(textzoom):
    root, labels = textzoom
    dm = TextZoomDataModule(str(root), val_size=2, val_sets=["hard", "easy"], batch_size=2)
    dm.setup("fit")
    train, val = dm.datasets["train"], dm.datasets["val"]
    assert len(train) == len(labels["train1"]) + len(labels["train2"])
    assert [train[i]["text"] for i in range(len(train))] == labels["train1"] + labels["train2"]
    assert "set" not in train[0] and train[len(labels["train1"])]["name"] == "train2_000000001"
    assert dm.eval_sets("val") == ["hard", "easy"]
    assert [(val[i]["set"], val[i]["text"]) for i in range(len(val))] == [("hard", t) for t in labels["hard"][:2]] + [
        ("easy", t) for t in labels["easy"][:2]
    ]
    batch = next(iter(dm.train_dataloader()))
    assert batch["lr"].shape == (2, 3, 16, 64) and len(batch["text"]) == 2


def test_textzoom_envs_are_per_process_and_never_pickled(textzoom):
    root, labels = textzoom
    dm = TextZoomDataModule(str(root), val_size=1, num_workers=1, val_batch_size=8)
    dataset = dm.build_dataset("test")[1]
    first = dataset[0]  # the env is open in this process now; val and test share it
    assert torch.equal(pickle.loads(pickle.dumps(dataset))[0]["hr"], first["hr"])
    assert dm.build_dataset("val")[1]["text"] == labels["medium"][0]
    batch = next(iter(dm.test_dataloader()[1]))  # a worker process opens its own
    assert batch["text"] == labels["medium"] and torch.equal(batch["hr"][0], first["hr"])


def test_textzoom_wrong_root_prints_the_layout(tmp_path, textzoom):
    root, _ = textzoom
    with pytest.raises(LayoutError) as missing:
        TextZoomDataModule(str(tmp_path / "nowhere"))
    message = str(missing.value)
    assert (
        "does not exist" in message and "\n    test/\n        easy/" in message and TEXTZOOM_LAYOUT.strip() in message
    )
    shutil.rmtree(root / "test" / "medium")
    with pytest.raises(LayoutError, match="'medium' is missing") as split:
        TextZoomDataModule(str(root)).build_dataset("test")
    assert "\n    train2/" in str(split.value)
    (root / "test" / "medium").mkdir()
    with pytest.raises(LayoutError, match="no data.mdb"):
        TextZoomDataModule(str(root)).build_dataset("test")
    (root / "test" / "medium" / "data.mdb").write_bytes(b"not an lmdb file" * 512)
    with pytest.raises(LayoutError, match="cannot open the lmdb env .*medium"):
        TextZoomDataModule(str(root)).build_dataset("test")


def test_textzoom_bad_image_is_a_bad_sample(textzoom):
    root, labels = textzoom
    put_entry(root, "easy", "image_hr-000000002", b"\x89PNG not really")
    put_entry(root, "medium", "image_lr-000000003", None)
    with pytest.raises(BadSampleError, match=r"'image_hr-000000002'.*test/easy"):
        TextZoomDataModule(str(root)).build_dataset("test")[0][1]
    with pytest.raises(BadSampleError, match=r"missing key 'image_lr-000000003'.*test/medium"):
        TextZoomDataModule(str(root)).build_dataset("test")[1][2]
    loader = TextZoomDataModule(str(root), on_bad_sample="skip", val_batch_size=8).test_dataloader()[0]
    batch = next(iter(loader))
    assert batch["text"] == [labels["easy"][0], *labels["easy"][2:]] and batch["lr"].shape[0] == len(labels["easy"]) - 1


def test_synthetic_lines_are_deterministic_sr_pairs():
    dm = SyntheticTextLinesDataModule(train_samples=4, val_samples=3, batch_size=2)
    assert dm.eval_sets("val") == [] and dm.eval_sets("test") == []
    val, again = dm.build_dataset("val"), dm.build_dataset("val")
    for index in range(3):
        a, b = val[index], again[index]
        assert a["lr"].shape == (3, 16, 64) and a["hr"].shape == a["image"].shape == (3, 32, 128)
        assert torch.equal(a["lr"], b["lr"]) and torch.equal(a["hr"], b["hr"]) and a["text"] == b["text"]
        assert 3 <= len(a["text"]) <= 10 and a["text"].isalnum() and "set" not in a
        assert torch.equal(a["image"], upsample_bicubic(a["lr"], (32, 128)))
    assert not torch.equal(dm.build_dataset("train")[0]["hr"], val[0]["hr"])  # the split is part of the seed
    batch = next(iter(dm.train_dataloader()))
    assert batch["lr"].shape == (2, 3, 16, 64) and len(batch["text"]) == 2
    x4 = SyntheticTextLinesDataModule(size=[32, 128], scale=4, degradation={"jpeg_quality": [90, 95]}).build_dataset(
        "test"
    )[0]
    assert x4["lr"].shape == (3, 8, 32)
    with pytest.raises(ValueError, match="unknown degradation"):
        SyntheticTextLinesDataModule(degradation={"sigma": [1, 2]})


def test_sr_folder_pairs_and_labels(tmp_path):
    root = tmp_path / "pairs"
    labels = make_sr_folder(root)
    dm = SRFolderDataModule(str(root), scale=2)
    dm.setup("fit")
    train = dm.datasets["train"]
    assert [train[i]["text"] for i in range(len(train))] == labels["train"]  # tab- and space-separated lines
    sample = train[0]
    assert sample["name"] == "word_0" and sample["lr"].shape == (3, 12, 48) and sample["hr"].shape == (3, 24, 96)
    resized = SRFolderDataModule(str(root), hr_size=[32, 128]).build_dataset("val")[0]
    assert resized["lr"].shape == (3, 16, 64) and resized["hr"].shape == (3, 32, 128)
    with pytest.raises(BadSampleError, match="not 4x"):
        SRFolderDataModule(str(root), scale=4).build_dataset("test")[0]
    (root / "train" / "lr" / "word_1.png").unlink()
    with pytest.raises(ValueError, match=r"word_1.png \(no lr/ partner\)"):
        dm.build_dataset("train")
    assert len(SRFolderDataModule(str(root), on_unmatched="skip").build_dataset("train")) == len(labels["train"]) - 1
    shutil.rmtree(root / "val")
    with pytest.raises(LayoutError, match="no val split") as missing:
        dm.build_dataset("val")
    assert "\n    val/" in str(missing.value)
