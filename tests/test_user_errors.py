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


def run_in_process(capfd, *argv: str) -> str:
    """``rezoo <argv>`` in this process, which must end with exit status 2 and a one-line ``error:`` message
    (returned) and no traceback."""
    import logging

    from rezoo.cli import run

    logging.getLogger().handlers.clear()  # Hydra's handlers of an earlier run write to that test's closed capture
    with pytest.raises(SystemExit) as exit_info:
        run(list(argv))
    captured = capfd.readouterr()
    assert exit_info.value.code == 2, captured.err[-3000:]
    assert "Traceback" not in captured.err, captured.err[-3000:]
    message = captured.err[captured.err.index("error: ") :]
    assert message.count("\n") == 1, message  # one line
    return message


@pytest.mark.parametrize(
    ("override", "expected", "not_expected"),
    [
        ("zoo=deeperasr", ["Could not find 'zoo/deeperasr'", "available options in 'zoo':", "deeperaser"], "path"),
        ("trainer.max_stepz=3", ["lightning.pytorch.Trainer takes no argument 'max_stepz'", "max_steps"], "+trainer"),
        ("+trainer.max_stepz=3", ["lightning.pytorch.Trainer takes no argument 'max_stepz'", "max_steps"], "+trainer"),
        (
            "model.lrr=0.1",
            ["model.lrr: zoo.deeperaser.module.DeepEraserModule takes no argument 'lrr'", "ema_decay"],
            "+",
        ),
        ("data.sizee=32", ["takes no argument 'sizee' (did you mean data.size?)", "batch_size"], "+"),
        (
            "trainer.detect_anomaly=true",
            ["trainer.detect_anomaly is not in the config, but", "write +trainer.detect_anomaly=true"],
            "takes no argument",
        ),
        ("trainer.accelerator=gpu", ["trainer.accelerator=gpu: this machine has no CUDA GPU", "cpu"], "Misconf"),
        ("trainer.precision=16-mixed", ["trainer.precision=16-mixed on the CPU", "bf16-mixed"], "Misconf"),
        ("trainer.max_steps=[", ["trainer.max_steps=[: no viable alternative"], "\n"),
    ],
)
def test_train_config_mistakes_are_one_line_and_leave_no_run_folder(capfd, tmp_path, override, expected, not_expected):
    """Hydra's composition errors without its search path, an unknown key of a ``_target_`` node named with the
    arguments the target takes (not Hydra's advice to add it with ``+``, which ends in a TypeError), a device or
    precision the machine lacks; the run folder of the failed run is gone."""
    run_dir = tmp_path / "runs" / "run"
    message = run_in_process(capfd, "train", override, "trainer.max_steps=1", f"hydra.run.dir={run_dir}")
    for text in expected:
        assert text in message, message
    assert not_expected not in message.rstrip("\n"), message
    assert not run_dir.exists()


def test_run_folder_that_cannot_be_written_is_named_before_anything_runs(capfd, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    message = run_in_process(capfd, "train", f"hydra.run.dir={blocker}")
    assert f"hydra.run.dir {blocker} is a file" in message
    message = run_in_process(capfd, "eval", "checkpoint=x", f"hydra.run.dir={blocker / 'run'}")
    assert f"hydra.run.dir {blocker / 'run'}: {blocker} is a file" in message
    message = run_in_process(capfd, "train", f"trainer.default_root_dir={blocker}", f"hydra.run.dir={tmp_path / 'r'}")
    assert f"trainer.default_root_dir {blocker} is a file" in message
    assert not (tmp_path / "r").exists()
    assert "checkpoint is required: give checkpoint=<value>" in run_in_process(
        capfd, "eval", f"hydra.run.dir={tmp_path / 'e'}"
    )


def test_hydra_flags_work_in_any_position(capfd):
    from rezoo.cli import run

    for argv in (
        ["train", "--cfg", "job", "experiment=deeperaser_scut_enstext"],
        ["train", "experiment=deeperaser_scut_enstext", "--cfg", "job"],
    ):
        run(argv)
        out = capfd.readouterr().out
        assert "model_name: deeperaser" in out and "seed: 3407" in out, out[:2000]
    run(["train", "zoo=garnet", "--info", "config"])
    assert "model_name: garnet" in capfd.readouterr().out
    assert_user_error(cli("train", "-m", "--cfg", "job", "zoo=deeperaser"), "Only one of --run, --multirun, --cfg")


def test_empty_validation_after_skipping_bad_samples_is_one_line(capfd, paired_folder, tmp_path):
    """The one validation sample of 6 (val_fraction 0.1) truncated and skipped: one line, not Lightning's
    MisconfigurationException about val/psnr."""
    from datamodules.folder import FolderDataModule

    (stem, path, *_), *_ = FolderDataModule(root=str(paired_folder))._split_pairs()["val"]
    path.write_bytes(path.read_bytes()[:100])
    run_dir = tmp_path / "run"
    message = run_in_process(
        capfd,
        "train",
        "data=folder",
        f"data.root={paired_folder}",
        "data.on_bad_sample=skip",
        "data.crop_size=32",
        "data.num_workers=0",
        "model.net.iters=2",
        "trainer.max_steps=2",
        f"hydra.run.dir={run_dir}",
    )
    assert "every sample of the validation split was skipped as bad (data.on_bad_sample=skip" in message
    assert not run_dir.exists()


def test_score_and_demo_check_device_and_json_before_running(capfd, tmp_path, files):
    folder = files["image"].parent
    message = run_in_process(capfd, "score", "--pred", str(folder), "--gt", str(folder), "--device", "cuda")
    assert "--device cuda: this machine has no CUDA GPU" in message
    message = run_in_process(capfd, "score", "--pred", str(folder), "--gt", str(folder), "--json", str(tmp_path))
    assert f"--json {tmp_path} is a folder" in message
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    message = run_in_process(
        capfd, "score", "--pred", str(folder), "--gt", str(folder), "--json", str(blocker / "s.json")
    )
    assert f"its folder {blocker} is a file" in message
    assert "--device gpu: write cuda" in run_in_process(capfd, "demo", "--model", "deeperaser", "--device", "gpu")


def test_export_checks_out_and_hints_its_own_options(capfd, files, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    message = run_in_process(capfd, "export", str(files["garnet_lightning"]), "--out", str(blocker))
    assert f"--out {blocker} is a file" in message
    message = run_in_process(capfd, "export", "deeperaser", "--tag", "x", "--out", str(tmp_path / "o"))
    assert "deeperaser is not a file" in message and "--weights" not in message
    assert not (tmp_path / "o").exists()
    # offline: the way out names export's arguments, not infer's --weights
    monkeypatch.setenv("REZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    message = run_in_process(
        capfd, "export", "scut_enstext", "--model", "deeperaser", "--format", "onnx", "--out", str(tmp_path / "o")
    )
    assert "cannot download" in message and "rezoo export <file> --format onnx" in message
    assert "--weights" not in message


def test_exported_files_get_the_umask_permissions(files):
    weights = files["garnet_exported"]
    mode = weights.stat().st_mode & 0o777
    assert mode == weights.with_suffix(".json").stat().st_mode & 0o777
    assert mode & 0o044  # readable by others under the usual umask 022
