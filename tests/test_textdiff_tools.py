"""TextDiff through the tools, as a user runs them: the default training (tiny), evaluation on a
TextZoom-layout tree with a CRNN recognizer (one row per split), inference and plug-and-play refinement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from tests.conftest import TINY_NETS, read_metrics, run_tool
from tests.sr_fixtures import write_textzoom

NET = [f"++model.net.{k}={json.dumps(v).replace(' ', '')}" for k, v in TINY_NETS["textdiff"].items()]
TINY = [
    "data.train_samples=8",
    "data.val_samples=4",
    "data.val_batch_size=4",
    "data.batch_size=2",
    "data.num_workers=0",
    "trainer.log_every_n_steps=1",
    "trainer.num_sanity_val_steps=0",
    *NET,
]


@pytest.fixture(scope="module")
def textdiff_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("textdiff") / "run"
    run_tool(
        "train.py",
        "zoo=textdiff",
        *TINY,
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        f"hydra.run.dir={run_dir}",
    )
    return run_dir


def test_default_data_trains_and_validates_against_bicubic(textdiff_run):
    rows = [r for r in read_metrics(textdiff_run) if r.get("val/psnr")]
    assert rows and float(rows[-1]["val/psnr_identity"]) > 10 and rows[-1]["val/ssim"]
    assert {"train/diffusion", "train/pixel", "train/mask"} <= {
        k for r in read_metrics(textdiff_run) for k, v in r.items() if v
    }
    with Image.open(next((textdiff_run / "samples").glob("val_step*.png"))) as grid:
        assert grid.size == (3 * 128, 4 * 32)  # bicubic | SR | HR, 4 rows


def test_eval_on_textzoom_prints_one_row_per_split_with_accuracy(textdiff_run, tmp_path):
    labels = write_textzoom(tmp_path / "TextZoom", {"train1": 2, "train2": 1, "easy": 3, "medium": 2, "hard": 2})
    crnn = tmp_path / "crnn.pth"
    torch.save(zoo.create_model("crnn").state_dict(), crnn)  # random weights in the official key layout
    result = run_tool(
        "eval.py",
        "zoo=textdiff",
        "data=textzoom",
        f"data.root={tmp_path / 'TextZoom'}",
        "data.num_workers=0",
        f"checkpoint={textdiff_run / 'checkpoints' / 'last.ckpt'}",
        "recognizer=crnn",
        f"recognizer_weights={crnn}",
        "save_images=true",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 3}
    assert {"easy", "medium", "hard", "average"} <= set(rows) and "accuracy_identity" in result.stdout
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    for split in ("easy", "medium", "hard"):
        assert 0 <= metrics[f"test/{split}/accuracy"] <= 1 and metrics[f"test/{split}/psnr_identity"] > 0
        assert len(list((tmp_path / "eval" / "images" / split).glob("*.png"))) == len(labels[split])
    weighted = sum(metrics[f"test/{s}/psnr"] * len(labels[s]) for s in ("easy", "medium", "hard")) / 7
    assert metrics["test/psnr"] == pytest.approx(weighted, rel=1e-5)  # the average is sample-weighted


def test_infer_super_resolves_and_refines(textdiff_run, tmp_path):
    from rezoo.infer import main as infer

    rng = np.random.default_rng(0)
    (tmp_path / "lr").mkdir()
    (tmp_path / "coarse").mkdir()
    Image.fromarray(rng.integers(0, 256, (15, 50, 3), dtype=np.uint8)).save(tmp_path / "lr" / "word.png")
    Image.fromarray(rng.integers(0, 256, (30, 100, 3), dtype=np.uint8)).save(tmp_path / "coarse" / "word.png")
    weights = str(textdiff_run / "checkpoints" / "last.ckpt")
    args = ["--model", "textdiff", "--weights", weights, "--input", str(tmp_path / "lr")]
    refine = [*args, "--refine", str(tmp_path / "coarse")]
    [sr] = infer([*args, "--out", str(tmp_path / "sr"), "--set", "sample_steps=3"])
    [refined] = infer([*refine, "--out", str(tmp_path / "refined")])
    with Image.open(sr) as a, Image.open(refined) as b:
        assert a.size == b.size == (100, 30)
    Image.fromarray(rng.integers(0, 256, (20, 100, 3), dtype=np.uint8)).save(tmp_path / "coarse" / "word.png")
    result = run_tool("infer.py", *refine, "--out", str(tmp_path / "bad"), check=False)
    assert result.returncode != 0 and "needs 100x30 (2x)" in result.stderr and "Traceback" not in result.stderr


def test_infer_with_a_recognizer_writes_the_words(tmp_path):
    from rezoo.infer import main as infer

    torch.save(zoo.create_model("crnn").state_dict(), tmp_path / "crnn.pth")
    (tmp_path / "crops").mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 70, 3), dtype=np.uint8)).save(
            tmp_path / "crops" / f"{name}.png"
        )
    [listing] = infer(
        [
            "--model",
            "crnn",
            "--weights",
            str(tmp_path / "crnn.pth"),
            "--input",
            str(tmp_path / "crops"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    lines = listing.read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["a.png", "b.png"] and all(
        set(line.split("\t")[1]) <= set("0123456789abcdefghijklmnopqrstuvwxyz") for line in lines
    )
