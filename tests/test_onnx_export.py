"""``rezoo export --format onnx``: every exportable model, from the file formats a user has, checked with
onnxruntime against PyTorch at sizes whose internal padding differs from the traced size's and from
each other's (a graph that hard-coded the traced pad amounts would fail here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import zoo
from rezoo.cli import run
from tests.conftest import TINY_NETS

TOLERANCE = 1e-4
SIZES = ((97, 131), (128, 96))  # pads 31/29 and 0/0 for a multiple of 32, 7/5 and 0/0 for 8; traced at 67x91
TINY = {  # smaller still than TINY_NETS where the export time allows (the same code paths)
    "garnet": {"inference_size": None, "width": 8},  # native size: padded to a multiple of 32
    "ste": TINY_NETS["ste"],
    # one transformer / NAF block (in the middle), the PIP modules on every skip:
    # the export time grows with the op count
    "pip": {**TINY_NETS["pip"], "num_blocks": [0, 0, 0, 1], "num_refinement_blocks": 0},
    "pip_nafnet": {
        "width": 8,
        "enc_blk_nums": [0, 0],
        "middle_blk_num": 1,
        "dec_blk_nums": [0, 0],
        "prompt_dims": [8, 16],
        "prompt_sizes": [4, 2],
    },
}


def lightning_checkpoint(path: Path, name: str, kwargs: dict, model: torch.nn.Module) -> Path:
    """A checkpoint in the layout our LightningModules save (``net.`` weights, model name and kwargs)."""
    torch.save(
        {
            "pytorch-lightning_version": "2.5.0",
            "global_step": 1,
            "hyper_parameters": {"model_name": name, "net": kwargs},
            "state_dict": {f"net.{k}": v for k, v in model.state_dict().items()},
        },
        path,
    )
    return path


def tiny_model(name: str) -> torch.nn.Module:
    model = zoo.create_model(name, **TINY[name])
    if name == "ste":  # run the spectral norms' power iteration, as training does: with their random initial vectors
        for module in model.modules():  # every output pixel saturates at 0 or 1, and any graph would "match"
            if hasattr(module, "weight_u"):
                module.train()
        with torch.no_grad():
            for _ in range(3):
                model(torch.rand(1, 3, 64, 64))
            model.coarse_convn[1].conv2d.bias.fill_(0.5)  # centre the output in [0,1]
    return model.eval()


def export_onnx(*args: str) -> tuple[Path, dict]:
    target = run(["export", *args, "--format", "onnx"])
    assert target.suffix == ".onnx" and target.is_file()
    return target, json.loads(target.with_suffix(".json").read_text())


def compare(path: Path, model: torch.nn.Module, name: str, sizes=SIZES, batch: int = 2) -> list[float]:
    """max |onnxruntime - PyTorch| per size; PyTorch gets the conditions as a user passes them (PIP: class indices)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [value.name for value in session.get_inputs()]
    diffs = []
    for height, width in sizes:
        image = torch.rand(batch, 3, height, width)
        feeds, kwargs = {"image": image.numpy()}, {}
        if "mask" in names:
            kwargs["mask"] = (torch.rand(batch, 1, height, width) > 0.7).float()
            feeds["mask"] = kwargs["mask"].numpy()
        if "degradation" in names:
            kwargs["degradation"] = torch.arange(batch) + 1
            feeds["degradation"] = torch.nn.functional.one_hot(kwargs["degradation"], 5).float().numpy()
        with torch.no_grad():
            expected = model(image, **kwargs).numpy()
        if name != "deeperaser":  # a saturated output would compare equal whatever the graph did
            assert ((expected > 0) & (expected < 1)).mean() > 0.2
        actual = session.run(None, feeds)[0]
        assert actual.shape == expected.shape == (batch, 3, height, width)
        diffs.append(float(np.abs(actual - expected).max()))
    return diffs


@pytest.fixture(autouse=True)
def _needs_onnxruntime():
    pytest.importorskip("onnxruntime", reason='the export extra: pip install -e ".[export]"')


def test_default_deeperaser_from_a_lightning_checkpoint(tmp_path):
    """The acceptance: the real default architecture, through the command, matches at 97x131 and another size."""
    model = zoo.create_model("deeperaser").eval()
    ckpt = lightning_checkpoint(tmp_path / "last.ckpt", "deeperaser", {}, model)
    target, sidecar = export_onnx(str(ckpt), "--out", str(tmp_path / "release"))
    assert target == tmp_path / "release" / "deeperaser-custom.onnx"
    assert max(compare(target, model, "deeperaser", batch=1)) < TOLERANCE
    assert (
        sidecar["model"] == "deeperaser"
        and sidecar["tag"] == "custom"
        and sidecar["kwargs"] == {}
        and sidecar["source_format"] == "lightning"
    )
    assert sidecar["opset"] >= 17 and "dynamo=True" in sidecar["exporter"] and sidecar["smallest_sizes"]["batch"] == 1
    assert [(s["name"], s["shape"], s["dtype"]) for s in sidecar["inputs"]] == [
        ("image", ["batch", 3, "height", "width"], "float32"),
        ("mask", ["batch", 1, "height", "width"], "float32"),
    ]
    assert sidecar["inputs"][0]["range"] == "[0,1] RGB" and sidecar["inputs"][1]["range"] == "{0,1}, 1 = text"
    assert sidecar["outputs"] == [
        {"name": "output", "shape": ["batch", 3, "height", "width"], "dtype": "float32", "range": "[0,1] RGB"}
    ]
    assert (
        set(sidecar["max_abs_diff_by_size"]) == {"97x131", "64x80"}
        and sidecar["max_abs_diff"] == sidecar["max_abs_diff_by_size"]["97x131"] < TOLERANCE
    )
    import onnx

    graph = onnx.load(str(target)).graph
    assert [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [
        "batch",
        3,
        "height",
        "width",
    ]


def test_garnet_from_an_exported_safetensors_file(tmp_path):
    model = tiny_model("garnet")
    ckpt = lightning_checkpoint(tmp_path / "last.ckpt", "garnet", TINY["garnet"], model)
    weights = run(["export", str(ckpt), "--out", str(tmp_path), "--tag", "mine"])  # --format safetensors, the default
    target, sidecar = export_onnx(str(weights), "--out", str(tmp_path / "onnx"))
    assert (
        target.name == "garnet-custom.onnx"
        and sidecar["source_format"] == "safetensors"
        and sidecar["kwargs"] == TINY["garnet"]
    )
    assert sidecar["smallest_sizes"] == {"batch": 1, "height": 32, "width": 32}  # reflect padding to a multiple of 32
    assert max(compare(target, model, "garnet")) < TOLERANCE


def test_ste_exports_the_ema_weights_and_the_image_only_forward(tmp_path):
    model, ema = tiny_model("ste"), tiny_model("ste")
    ckpt = lightning_checkpoint(tmp_path / "last.ckpt", "ste", TINY["ste"], model)
    state = torch.load(ckpt, weights_only=True)
    state["state_dict"].update({f"ema_net.{k}": v for k, v in ema.state_dict().items()})  # what training with EMA saves
    torch.save(state, ckpt)
    target, sidecar = export_onnx(str(ckpt), "--tag", "poster", "--out", str(tmp_path))
    assert target.name == "ste-poster.onnx" and sidecar["tag"] == "poster"
    assert [s["name"] for s in sidecar["inputs"]] == ["image"] and "image-only forward" in sidecar["notes"][0]
    assert max(compare(target, ema, "ste")) < TOLERANCE


@pytest.mark.parametrize("name", ["pip", "pip_nafnet"])
def test_pip_takes_the_degradation_as_class_weights(tmp_path, name):
    model = tiny_model(name)
    target, sidecar = export_onnx(
        str(lightning_checkpoint(tmp_path / "last.ckpt", name, TINY[name], model)), "--out", str(tmp_path)
    )
    degradation = sidecar["inputs"][1]
    assert (
        degradation["name"] == "degradation"
        and degradation["shape"] == ["batch", 5]
        and "one-hot" in degradation["range"]
    )
    assert max(compare(target, model, name)) < TOLERANCE


def test_crnn_from_an_official_file_with_a_dynamic_width(tmp_path):
    import onnxruntime

    model = zoo.create_model("crnn").eval()  # an official file holds the default architecture
    official = tmp_path / "crnn.pth"
    torch.save(model.state_dict(), official)
    with pytest.raises(SystemExit):  # the file does not say which model it holds
        run(["export", str(official), "--format", "onnx", "--out", str(tmp_path)])
    target, sidecar = export_onnx(str(official), "--model", "crnn", "--out", str(tmp_path))
    assert target.name == "crnn-custom.onnx" and sidecar["source_format"] == "official"
    assert "dynamo=False" in sidecar["exporter"] and sidecar["inputs"][0]["shape"] == ["batch", 1, 32, "width"]
    assert sidecar["outputs"][0]["shape"] == ["steps", "batch", 37]
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    for batch, width in ((1, 100), (3, 57)):
        grey = torch.rand(batch, 1, 32, width)
        with torch.no_grad():
            expected = model(grey).numpy()
        actual = session.run(None, {"image": grey.numpy()})[0]
        assert actual.shape == expected.shape == (width // 4 + 1, batch, 37)
        assert np.abs(actual - expected).max() < TOLERANCE


def test_without_onnxruntime_one_line_says_what_to_install(tmp_path, monkeypatch, capsys):
    ckpt = lightning_checkpoint(
        tmp_path / "last.ckpt",
        "deeperaser",
        TINY_NETS["deeperaser"],
        zoo.create_model("deeperaser", **TINY_NETS["deeperaser"]),
    )
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(SystemExit) as exit_info:
        run(["export", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip()
    assert "\n" not in message and "onnxruntime" in message and 'pip install -e ".[export]"' in message
    assert not (tmp_path / "out").exists()


def test_a_model_that_cannot_export_says_why(tmp_path, capsys):
    kwargs = TINY_NETS["textdiff"]
    weights = tmp_path / "textdiff.safetensors"
    save_file(
        zoo.create_model("textdiff", **kwargs).state_dict(),
        str(weights),
        metadata={"rezoo": json.dumps({"model": "textdiff", "kwargs": kwargs})},
    )
    with pytest.raises(SystemExit):
        run(["export", str(weights), "--format", "onnx", "--out", str(tmp_path)])
    assert "textdiff cannot be exported to ONNX: iterative diffusion sampler" in capsys.readouterr().err


def test_list_has_an_onnx_column_and_the_reasons(capsys):
    infos = run(["list"])
    out = capsys.readouterr().out
    assert " onnx " in out
    for info in infos:
        assert info.onnx or f"no onnx: {info.name}: " in out
    exportable = {info.name for info in infos if info.onnx}
    assert {"deeperaser", "garnet", "ste", "pip", "pip_nafnet", "crnn"} <= exportable and "textdiff" not in exportable
    assert "no onnx: textdiff: iterative diffusion sampler" in out
