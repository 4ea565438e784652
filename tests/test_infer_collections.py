"""``rezoo infer`` on collections (Lightning's prediction loop): a folder in sub-folders on one and two
processes (DDP) equal to the one-image path bit for bit, WebDataset shards, resuming after SIGKILL, failures
stopped on or recorded, masks of another size, images above the pixel budget, path lists."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from rezoo.infer import main as infer
from rezoo.predictor import Predictor
from tests.conftest import ROOT, run_tool, write_image
from zoo.imaging.images import encode_png, read_image, to_tensor

TINY = ["--set", "inference_size=null", "width=8"]  # GaRNet at native size, 8 channels: fast


def sizes(index: int) -> tuple[int, int]:
    return (48, 64) if index % 3 else (40, 40)


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> dict[str, Path]:
    """GaRNet weights in the official format (a plain state dict), 12 images of two sizes in two sub-folders and
    their masks in the same layout."""
    root = tmp_path_factory.mktemp("collection")
    torch.manual_seed(0)
    torch.save(zoo.create_model("garnet", inference_size=None, width=8).state_dict(), root / "garnet.pth")
    torch.save(zoo.create_model("garnet").state_dict(), root / "garnet_full.pth")
    rng = np.random.default_rng(0)
    for i in range(12):
        sub = "a" if i < 6 else "b"
        height, width = sizes(i)
        mask = np.zeros((height, width), np.uint8)
        mask[height // 4 : height // 2, width // 5 : width // 2] = 255
        write_image(root / "in" / sub / f"img{i:02d}.png", rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
        write_image(root / "masks" / sub / f"img{i:02d}.png", mask)
    return root


def args(collection: Path, out: Path, *extra: str, input: str | None = None) -> list[str]:
    return [
        *("--model", "garnet", "--weights", str(collection / "garnet.pth"), *TINY),
        *("--input", input or str(collection / "in"), "--mask", str(collection / "masks"), "--out", str(out)),
        *extra,
    ]


def one_image_path(collection: Path) -> dict[str, bytes]:
    """Each output as one image at a time through :class:`Predictor` (the pre-Lightning path), PNG-encoded."""
    predictor = Predictor("garnet", str(collection / "garnet.pth"), inference_size=None, width=8)
    outputs = {}
    for path in sorted((collection / "in").rglob("*.png")):
        image = to_tensor(read_image(path))[None]
        mask = to_tensor(read_image(collection / "masks" / path.relative_to(collection / "in"), "L"))[None] > 0.5
        mask = mask.float()
        output = predictor.keep_outside(predictor(image, {"mask": mask}), image, mask, tiled=False)
        outputs[path.relative_to(collection / "in").as_posix()] = encode_png(output[0])
    return outputs


def written(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_a_folder_on_one_and_two_processes_equals_the_one_image_path(collection, tmp_path):
    paths = infer(args(collection, tmp_path / "one"))
    assert len(paths) == 12 and {p.parent.name for p in paths} == {"a", "b"}  # the sub-folders kept
    run_tool("infer.py", *args(collection, tmp_path / "two", "--devices", "2"))
    expected = one_image_path(collection)
    assert written(tmp_path / "one") == expected
    assert written(tmp_path / "two") == expected


def test_shards_write_shards_of_the_same_names_each_output_once(collection, tmp_path):
    import webdataset as wds

    files = sorted((collection / "in").rglob("*.png"))
    (tmp_path / "shards").mkdir()
    for s in range(4):  # 4 shards of 3 samples: the image under png, its mask under mask.png
        with wds.TarWriter(str(tmp_path / "shards" / f"{s:05d}.tar")) as tar:
            for path in files[3 * s : 3 * s + 3]:
                mask = collection / "masks" / path.relative_to(collection / "in")
                tar.write({"__key__": path.stem, "png": path.read_bytes(), "mask.png": mask.read_bytes()})
    pattern = str(tmp_path / "shards" / "{00000..00003}.tar")
    infer(args(collection, tmp_path / "out", input=pattern)[:-4] + ["--out", str(tmp_path / "out"), "--workers", "2"])
    expected = {Path(key).stem: data for key, data in one_image_path(collection).items()}
    found: dict[str, bytes] = {}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{s:05d}.tar" for s in range(4)]
    for shard in sorted((tmp_path / "out").glob("*.tar")):
        for sample in wds.WebDataset(str(shard), shardshuffle=False, empty_check=False):
            assert sample["__key__"] not in found
            found[sample["__key__"]] = sample["png"]
    assert found == expected
    as_files = tmp_path / "files"
    infer(["--model", "garnet", "--weights", str(collection / "garnet.pth"), *TINY, "--input", pattern,
           "--out", str(as_files), "--write", "files"])  # fmt: skip
    assert {Path(k).name: v for k, v in written(as_files).items()} == {f"{k}.png": v for k, v in expected.items()}


def test_a_run_killed_part_way_resumes_with_every_output_whole(collection, tmp_path):
    inputs = tmp_path / "in"
    for i in range(24):  # the full-size GaRNet (512 px inside), slow enough to be killed part-way
        write_image(inputs / f"img{i:02d}.png", np.full((40, 40, 3), 10 * i, np.uint8))
    out = tmp_path / "out"
    mask = str(collection / "masks" / "a" / "img01.png")
    command = [sys.executable, str(ROOT / "tools" / "infer.py"), "--model", "garnet", "--weights"]
    command += [str(collection / "garnet_full.pth"), "--input", str(inputs), "--mask", mask, "--resize-mask"]
    process = subprocess.Popen([*command, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(list(out.glob("*.png"))) < 3 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = len(list(out.glob("*.png")))
    assert 3 <= before < 24, before  # killed part-way
    result = run_tool("infer.py", *command[2:], "--out", str(out), "--resume")
    assert f"{24 - before} written, 0 failed, {before} skipped as done" in result.stdout
    reference = tmp_path / "reference"
    run_tool("infer.py", *command[2:], "--out", str(reference))
    assert written(out) == written(reference)  # none truncated, none missing
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_corrupt_input_stops_with_its_name_or_is_recorded(collection, tmp_path):
    inputs = tmp_path / "in"
    for path in sorted((collection / "in").rglob("*.png")):
        target = inputs / path.relative_to(collection / "in")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes()[:200] if path.name == "img07.png" else path.read_bytes())
    stopped = run_tool("infer.py", *args(collection, tmp_path / "stop", input=str(inputs)), check=False)
    assert stopped.returncode == 2
    error = [line for line in stopped.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "b/img07.png" in error[0] and "Traceback" not in stopped.stderr
    skipped = infer(args(collection, tmp_path / "skip", "--on-error", "skip", input=str(inputs)))
    assert len(skipped) == 11
    [failure] = [json.loads(line) for line in (tmp_path / "skip" / "failures.jsonl").read_text().splitlines()]
    assert failure["path"].endswith("b/img07.png") and "truncated" in failure["reason"]


def test_a_missing_mask_is_one_line_or_a_recorded_failure(collection, tmp_path):
    masks = tmp_path / "masks"
    for path in sorted((collection / "masks").rglob("*.png"))[1:]:  # a/img00's mask is missing
        target = masks / path.relative_to(collection / "masks")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    command = args(collection, tmp_path / "stop")
    command[command.index("--mask") + 1] = str(masks)
    stopped = run_tool("infer.py", *command, check=False)
    assert stopped.returncode == 2 and "no mask for" in stopped.stderr and "img00" in stopped.stderr
    assert not (tmp_path / "stop").exists()  # nothing written, no empty folder
    command[command.index("--out") + 1] = str(tmp_path / "skip")
    assert len(infer([*command, "--on-error", "skip"])) == 11
    assert "img00" in (tmp_path / "skip" / "failures.jsonl").read_text()


def test_a_mask_of_another_size_says_how_to_fix_it(collection, tmp_path):
    image = collection / "in" / "a" / "img00.png"  # 40x40
    mask = write_image(tmp_path / "mask.png", np.full((20, 30), 255, np.uint8))
    command = ["--model", "garnet", "--weights", str(collection / "garnet.pth"), *TINY, "--input", str(image)]
    failed = run_tool("infer.py", *command, "--mask", str(mask), "--out", str(tmp_path / "x"), check=False)
    assert failed.returncode == 2 and "is 30x20, image" in failed.stderr and "resize the mask to 40x40" in failed.stderr
    assert not (tmp_path / "x").exists()
    [output] = infer([*command, "--mask", str(mask), "--out", str(tmp_path / "resized"), "--resize-mask"])
    assert Image.open(output).size == (40, 40)


def test_images_above_the_pixel_budget_are_tiled_with_a_note(collection, tmp_path, capsys):
    image = write_image(tmp_path / "big.png", np.random.default_rng(1).integers(0, 255, (90, 120, 3), dtype=np.uint8))
    mask = write_image(tmp_path / "big_mask.png", np.full((90, 120), 255, np.uint8))
    command = ["--model", "garnet", "--weights", str(collection / "garnet.pth"), *TINY, "--input", str(image)]
    command += ["--mask", str(mask)]
    [tiled] = infer([*command, "--out", str(tmp_path / "auto"), "--max-pixels", "5000"])  # 70² px: 64 px tiles
    assert "above --max-pixels: tiled (64 px)" in capsys.readouterr().out
    [whole] = infer([*command, "--out", str(tmp_path / "whole")])
    [explicit] = infer([*command, "--out", str(tmp_path / "explicit"), "--tile", "64"])
    assert tiled.read_bytes() == explicit.read_bytes() != whole.read_bytes()


def test_a_list_of_paths_keeps_the_layout_below_their_common_folder(collection, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{collection / 'in' / 'a' / 'img01.png'}\n{collection / 'in' / 'b' / 'img07.png'}\n")
    outputs = infer(args(collection, tmp_path / "out", "--limit", "1", input=str(listing)))
    assert [p.relative_to(tmp_path / "out").as_posix() for p in outputs] == ["a/img01.png"]
