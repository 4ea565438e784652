"""Mistakes a new user makes, run as the user runs them (a fresh interpreter each): every one ends
with exit status 2 and one message on stderr that names the file, URL or key and the way out, and
no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from rezoo.export import export
from tests.conftest import ROOT, run_tool, write_image
from zoo.manifest import manifest_entry


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """An image, its mask, a corrupt .png, DeepEraser weights and GaRNet weights in three formats."""
    root = tmp_path_factory.mktemp("user_files")
    rng = np.random.default_rng(0)
    garnet = zoo.create_model("garnet", inference_size=None).state_dict()
    lightning = {
        "pytorch-lightning_version": "2.6.0",
        "hyper_parameters": {"model_name": "garnet", "net": {"inference_size": None}},
        "state_dict": {f"net.{k}": v for k, v in garnet.items()},
    }
    paths = {
        "image": write_image(root / "photo.png", rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)),
        "mask": write_image(root / "mask.png", (rng.random((24, 32)) > 0.7).astype(np.uint8) * 255),
        "corrupt": root / "corrupt.png",
        "deeperaser": root / "deeperaser.pth",
        "garnet_official": root / "garnet.pth",
        "garnet_lightning": root / "garnet.ckpt",
    }
    paths["corrupt"].write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    torch.save({f"module.{k}": v for k, v in zoo.create_model("deeperaser").state_dict().items()}, paths["deeperaser"])
    torch.save(garnet, paths["garnet_official"])
    torch.save(lightning, paths["garnet_lightning"])
    paths["garnet_exported"] = export(paths["garnet_lightning"], root / "release", tag="test")
    return paths


def assert_user_error(result: subprocess.CompletedProcess, *expected: str) -> str:
    """Exit status 2, no traceback, and an ``error:`` message containing every ``expected`` text."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    message = result.stderr[result.stderr.index("error: ") :]
    for text in expected:
        assert text in message, f"{text!r} not in {message!r}"
    return message


def infer(*args: str) -> subprocess.CompletedProcess:
    return run_tool("infer.py", *args, check=False, timeout=120)


def erase(image: Path, mask: Path, out: Path, weights: Path | None = None) -> subprocess.CompletedProcess:
    """``infer`` of DeepEraser on ``image`` with ``mask`` into ``out``, from ``weights`` (default: the released)."""
    flags = ["--weights", str(weights)] if weights else []
    return infer("--model", "deeperaser", *flags, "--input", str(image), "--mask", str(mask), "--out", str(out))


def test_infer_offline_default_weights(files, tmp_path, monkeypatch):
    """No network (here: every proxy is a closed port on 127.0.0.1, so nothing leaves the machine)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{probe.getsockname()[1]}"
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, proxy)
    for name in ("no_proxy", "NO_PROXY", "REZOO_MANIFEST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REZOO_CACHE", str(tmp_path / "cache"))
    entry = manifest_entry("deeperaser", "scut_enstext")
    result = erase(files["image"], files["mask"], tmp_path / "out")
    message = assert_user_error(
        result,
        f"cannot download {entry['url']}: ",
        f"place the file at {tmp_path / 'cache' / entry['file_name']}",
        "or pass a local file (--weights <file>, or pretrained=<file> in Python)",
    )
    assert message.count("\n") == 1  # one line
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_infer_corrupt_image(files, tmp_path):
    result = erase(files["corrupt"], files["mask"], tmp_path, files["deeperaser"])
    assert_user_error(result, f"cannot read image {files['corrupt']}")


@pytest.mark.parametrize("model", ["deeperaser", "garnet"])
def test_infer_without_the_mask_the_model_needs(files, tmp_path, model):
    result = infer("--model", model, "--input", str(files["image"]), "--out", str(tmp_path))
    assert_user_error(result, f"{model} erases the text inside a mask: give --mask <file or folder>")


@pytest.mark.parametrize(
    ("weights_file", "expected"),
    [
        ("garnet_official", "holds no weights of DeepEraser: none of its 78 keys is in the file"),
        ("garnet_exported", "holds weights of 'garnet', not 'deeperaser'"),
    ],
)
def test_infer_with_weights_of_another_model(files, tmp_path, weights_file, expected):
    result = erase(files["image"], files["mask"], tmp_path, files[weights_file])
    message = assert_user_error(result, str(files[weights_file]), expected, "--model")
    assert message.count("\n") == 1


def test_train_on_a_missing_dataset_shows_the_layout(tmp_path):
    result = run_tool(
        "train.py",
        "data=scut_enstext",
        "data.root=/nonexistent",
        "trainer.max_steps=1",
        f"hydra.run.dir={tmp_path / 'run'}",
        check=False,
        timeout=120,
    )
    message = assert_user_error(result, "/nonexistent")
    lines = message.splitlines()
    assert "\\n" not in message and len(lines) >= 3
    assert any(line.strip().startswith("train/all_images/") for line in lines[1:]), message


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rezoo.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_cli_unknown_command_and_argument():
    unknown = cli("lst")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "unknown command 'lst'" in unknown.stderr and "list" in unknown.stderr  # the usage lists the commands
    bad_argument = cli("list", "--bogus")
    assert bad_argument.returncode == 2 and "Traceback" not in bad_argument.stderr
    assert "unrecognized arguments: --bogus" in bad_argument.stderr
