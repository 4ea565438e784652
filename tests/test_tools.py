"""The tools end to end, as a user runs them: train, resume, evaluate, export, infer, torch.hub,
fine-tuning on a folder, bad samples (DDP: tests/test_ddp.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import zoo
from tests.conftest import ROOT, TINY_TRAIN, read_metrics, resume_run, run_tool


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("train") / "run"
    run_tool("train.py", *TINY_TRAIN, "trainer.max_steps=4", "trainer.val_check_interval=2", f"hydra.run.dir={run_dir}")
    return run_dir


def test_train_writes_checkpoints_metrics_and_samples(trained_run):
    assert (trained_run / "checkpoints" / "last.ckpt").is_file()
    assert list((trained_run / "checkpoints").glob("best-*.ckpt"))
    rows = read_metrics(trained_run)
    val_rows = [r for r in rows if r.get("val/psnr")]
    assert len(val_rows) == 2 and all(r["val/psnr_identity"] and r["val/ssim"] for r in val_rows)
    assert any(r.get("train/loss") for r in rows)
    grids = sorted((trained_run / "samples").glob("val_step*.png"))
    assert [g.name for g in grids] == ["val_step0000002.png", "val_step0000004.png"]
    with Image.open(grids[0]) as grid:
        assert grid.size == (4 * 32, 4 * 32)  # input | output | target | mask, 4 rows
    assert (trained_run / "config.yaml").is_file()


def test_checkpoint_loads_with_weights_only(trained_run):
    ckpt = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4
    assert ckpt["hyper_parameters"]["model_name"] == "deeperaser"
    model = zoo.create_model("deeperaser", pretrained=str(trained_run / "checkpoints" / "last.ckpt"))
    assert model.iters == 2  # architecture kwargs travel with the checkpoint


def test_resume_continues_from_the_saved_step(trained_run, tmp_path):
    run_dir = tmp_path / "resumed"
    ckpt = resume_run(trained_run, run_dir, *TINY_TRAIN, "trainer.max_steps=6", "trainer.val_check_interval=2")
    assert ckpt["global_step"] == 6
    steps = [int(r["step"]) for r in read_metrics(run_dir) if r.get("train/loss")]
    assert steps and min(steps) == 4  # the resumed run starts where the first stopped


def test_eval_writes_metrics_json(trained_run, tmp_path):
    run_tool(
        "eval.py",
        f"checkpoint={trained_run / 'checkpoints' / 'last.ckpt'}",
        "data.size=32",
        "data.test_samples=4",
        "data.num_workers=0",
        "save_images=true",
        f"hydra.run.dir={tmp_path}",
    )
    result = json.loads((tmp_path / "metrics.json").read_text())
    assert {"test/psnr", "test/ssim", "test/psnr_identity"} <= set(result["metrics"])
    assert len(list((tmp_path / "images").glob("*.png"))) == 4


def test_eval_switches_turn_on_scorers_and_the_output_callback(tmp_path):
    """protocol=, fid=true, detector=, save_images=true pick entries of the scorers and callbacks groups, each scorer
    under the prefix of its metrics in metrics.json; entries added by hand are on."""
    from hydra import compose, initialize_config_dir

    from rezoo.eval import switched_on
    from rezoo.runner import instantiate_named
    from zoo.metrics.text_removal import ProtocolScorer

    base = ["checkpoint=x", f"run_dir={tmp_path}"]
    with initialize_config_dir(str(ROOT / "rezoo" / "configs"), version_base="1.3"):
        off = switched_on(compose("eval", base))
        realsr = switched_on(compose("eval", [*base, "protocol=realsr"]))
        on = switched_on(
            compose(
                "eval",
                [*base, "protocol=garnet", "fid=true", "detector=craft", "save_images=true", "+scorers.mine.t=1"],
            )
        )
    assert off == ({}, {}) and list(realsr[0]) == ["realsr"] and not realsr[1]
    scorers, callbacks = on
    assert list(scorers) == ["garnet", "test", "detection", "mine"] and list(callbacks) == ["save_test_outputs"]
    assert scorers["test"].extractor._target_ == "zoo.metrics.fid.FIDInception"
    protocol = instantiate_named({"garnet": scorers["garnet"]})["garnet"]
    assert isinstance(protocol, ProtocolScorer) and protocol.protocol == "garnet"
    assert callbacks["save_test_outputs"].folder == f"{tmp_path}/images"


def test_export_round_trips_bit_for_bit(trained_run, tmp_path):
    ckpt_path = trained_run / "checkpoints" / "last.ckpt"
    out = run_tool("export.py", str(ckpt_path), "--out", str(tmp_path), "--tag", "test")
    exported = Path(out.stdout.strip().splitlines()[-1])
    assert exported.name.startswith("deeperaser-test-") and exported.suffix == ".safetensors"
    sidecar = json.loads(exported.with_suffix(".json").read_text())
    assert sidecar["kwargs"] == {"iters": 2} and exported.name[len("deeperaser-test-") : -12] == sidecar["sha256"][:8]
    model = zoo.create_model("deeperaser", pretrained=str(exported))
    state = torch.load(ckpt_path, weights_only=True)["state_dict"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[f"net.{key}"]), key
    assert model.iters == 2


def _photo_and_brush_mask(folder: Path, height: int = 97, width: int = 131) -> tuple[Path, Path]:
    """A photo-like image (smooth shading, texture and text) and a free-hand brush-stroke mask."""
    yy, xx = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(0)
    photo = np.stack(
        [120 + 80 * np.sin(xx / 17), 100 + 60 * np.cos(yy / 11), 90 + 40 * np.sin((xx + yy) / 23)], axis=-1
    )
    photo = np.clip(photo + rng.normal(0, 6, photo.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(photo)
    ImageDraw.Draw(image).text((20, 40), "SALE 50%", fill=(255, 255, 255))
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).line([(15, 45), (40, 40), (70, 48), (90, 44)], fill=255, width=12, joint="curve")
    image_path, mask_path = folder / "photo.jpg", folder / "photo_mask.png"
    image.save(image_path, quality=90)
    mask.save(mask_path)
    return image_path, mask_path


def test_infer_whole_and_tiled_keep_the_input_size(trained_run, tmp_path):
    image_path, mask_path = _photo_and_brush_mask(tmp_path)
    weights = str(trained_run / "checkpoints" / "last.ckpt")
    args = ["--model", "deeperaser", "--weights", weights, "--input", str(image_path)]
    for extra, out in (([], "whole"), (["--tile", "64", "--overlap", "16"], "tiled")):
        run_tool("infer.py", *args, "--mask", str(mask_path), "--out", str(tmp_path / out), *extra)
        with Image.open(tmp_path / out / "photo.png") as result:
            assert result.size == (131, 97)
            output = np.asarray(result, dtype=np.float32)
        assert output.std() > 1  # a real image, not a constant
    failed = run_tool("infer.py", *args, "--out", str(tmp_path / "x"), check=False)
    assert failed.returncode != 0 and "erases the text inside a mask: give --mask" in failed.stderr


def test_torch_hub_local_without_lightning_or_hydra():
    code = (
        "import sys, torch\n"
        f"model = torch.hub.load({str(ROOT)!r}, 'deeperaser', source='local', iters=2).eval()\n"
        "x, m = torch.rand(1, 3, 97, 131), torch.ones(1, 1, 97, 131)\n"
        "with torch.no_grad(): y = model(x, m)\n"
        "assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1, (y.shape, y.min(), y.max())\n"
        "heavy = [m for m in ('lightning', 'pytorch_lightning', 'hydra', 'omegaconf') if m in sys.modules]\n"
        "print('heavy:', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd="/")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "heavy: []" in result.stdout


# ------------------------------------------------------------------------------------- fine-tuning
FOLDER_TRAIN = [
    "data=folder",
    "data.crop_size=32",
    "data.batch_size=2",
    "data.num_workers=0",
    "model.net.iters=2",
    "trainer.max_steps=3",
    "trainer.num_sanity_val_steps=0",
]


def test_finetune_on_a_folder_then_evaluate(paired_folder, tmp_path):
    run_dir = tmp_path / "finetune"
    run_tool("train.py", *FOLDER_TRAIN, f"data.root={paired_folder}", f"hydra.run.dir={run_dir}")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 3
    run_tool(
        "eval.py",
        "data=folder",
        f"data.root={paired_folder}",
        "data.num_workers=0",
        f"checkpoint={ckpt}",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    assert metrics["test/psnr_identity"] > 0 and "test/psnr" in metrics


def test_truncated_png_stops_the_run_or_is_skipped(paired_folder, tmp_path):
    bad = paired_folder / "input" / "img_4.png"
    bad.write_bytes(bad.read_bytes()[:200])
    failed = run_tool(
        "train.py",
        *FOLDER_TRAIN,
        "data.val_fraction=0.01",
        f"data.root={paired_folder}",
        f"hydra.run.dir={tmp_path / 'raise'}",
        check=False,
    )
    assert failed.returncode != 0
    assert "img_4.png" in failed.stderr and "cannot read image" in failed.stderr
    skipped = run_tool(
        "train.py",
        *FOLDER_TRAIN,
        "data.val_fraction=0.01",
        "data.on_bad_sample=skip",
        f"data.root={paired_folder}",
        f"hydra.run.dir={tmp_path / 'skip'}",
    )
    assert "skipping bad sample" in skipped.stderr + skipped.stdout
    assert (tmp_path / "skip" / "checkpoints" / "last.ckpt").is_file()


def test_bench_records_and_tabulates(tmp_path):
    out = tmp_path / "bench.json"
    for mode, task in (("eager", "forward"), ("channels_last", "train")):
        run_tool(
            "bench.py",
            "--model",
            "deeperaser",
            "--size",
            "16",
            "--batch",
            "2",
            "--mode",
            mode,
            "--task",
            task,
            "--warmup",
            "0",
            "--repeats",
            "1",
            "--json",
            str(out),
        )
    records = json.loads(out.read_text())
    assert [(r["mode"], r["task"]) for r in records] == [("eager", "forward"), ("channels_last", "train")]
    assert all(r["images_per_s"] > 0 and r["peak_memory_mb"] > 0 for r in records)
    table = run_tool("bench.py", "--table", str(out)).stdout
    assert table.count("| deeperaser | rezoo |") == 2
