"""The model contract every family keeps (docs/design.md): registry metadata, keyword conditions, any
H×W through one padding helper, typed training outputs; and the package: version, package data, the
``rezoo`` console script."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata

import pytest
import torch

import zoo
from tests.conftest import IMAGE_MODELS, RELEASED_BASES, ROOT, TINY_NETS
from zoo.manifest import load_manifest
from zoo.nn.padding import crop_to, pad_to_multiple
from zoo.registry import TASKS

MODELS = zoo.list_models()


def test_every_registered_model_has_a_tiny_test_configuration():
    assert set(MODELS) == set(TINY_NETS) and {"pip", "pip_nafnet"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_model_info_is_a_plain_description(name):
    info = zoo.model_info(name)
    assert info.task in TASKS and info.inputs[0] in ("image", "lr") and info.scale >= 1
    assert set(info.optional) <= set(info.inputs[1:]) and info.pad_multiple >= 1
    assert isinstance(info.composites, bool) and info.tags == tuple(load_manifest().get(name, {}))
    assert info.default_tag in (None, *info.tags)
    if info.base:  # a frozen base by argument: params counts the model's own weights (its state_dict) when released
        with torch.device("meta"):  # the released configuration, without allocating it
            model = zoo.create_model(name, **RELEASED_BASES[name])
        assert info.params == sum(t.numel() for t in model.state_dict().values())
    else:
        assert info.params == sum(p.numel() for p in zoo.create_model(name).parameters())


@pytest.mark.parametrize("name", MODELS)
def test_model_info_is_a_frozen_dataclass_and_example_inputs_run(name):
    """``zoo.model_info`` is the one description (JSON through ``asdict``); ``zoo.example_inputs`` are what the
    model's forward takes (super-resolution: the LR of the ``size`` output; recognizers: a crop of their height)."""
    info = zoo.model_info(name)
    assert dataclasses.is_dataclass(info) and json.loads(json.dumps(dataclasses.asdict(info)))["name"] == name
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.scale = 3
    image, conditions = zoo.example_inputs(name, batch=2, size=64)
    assert set(conditions) == set(info.conditions) and image.shape[:2] == (2, info.input_channels)
    expected = (info.input_height, 64) if info.input_height else (64 // info.scale, 64 // info.scale)
    assert image.shape[2:] == expected
    with torch.no_grad():
        output = zoo.create_model(name, **TINY_NETS[name]).eval()(image, **conditions)
    if info.task not in ("recognition", "text_detection"):
        assert output.shape == (2, 3, 64, 64)


def test_the_app_reads_only_model_info():
    """No duck typing of a model and no family module in the application: what a tool switches on is in
    ``ModelInfo``."""
    pattern = re.compile(
        r"hasattr\(model|getattr\(model|from zoo\.(deeperaser|garnet|ste|pip|textdiff|gramsr|craft|recognition)"
    )
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "rezoo").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, found


def test_capabilities_of_the_families():
    assert zoo.model_info("pip").condition_values["degradation"] == ("noise", "rain", "haze", "blur", "low-light")
    assert zoo.model_info("pip").blind_flag == "sensor" and zoo.model_info("deeperaser").blind_flag is None
    assert zoo.model_info("textdiff").refiner and zoo.model_info("textdiff").sampler
    assert not zoo.model_info("gramsr").refiner and zoo.model_info("gramsr").train_forward
    crnn = zoo.model_info("crnn")
    assert crnn.recognizer and (crnn.input_channels, crnn.input_height, crnn.alphabet[:3]) == (1, 32, "012")
    assert zoo.model_info("craft").detector and not zoo.model_info("craft").train_forward


def test_model_info_of_the_families():
    assert zoo.model_info("deeperaser").inputs == ("image", "mask") and not zoo.model_info("deeperaser").composites
    assert zoo.model_info("garnet").composites and zoo.model_info("garnet").pad_multiple == 32
    assert zoo.model_info("ste").optional == ("mask",)
    for name in ("pip", "pip_nafnet"):
        assert zoo.model_info(name).task == "restoration" and zoo.model_info(name).inputs == (
            "image",
            "degradation",
        )
    assert zoo.model_info("pip").params == 27_429_510  # the released PIP-Restormer
    assert zoo.model_info("textdiff").task == "super_resolution" and zoo.model_info("textdiff").scale == 2
    assert (
        zoo.model_info("crnn").task == "recognition" and zoo.model_info("crnn").params == 8_331_301
    )  # meijieru/crnn.pytorch


def test_list_models_pretrained_lists_the_names_with_manifest_weights():
    with_weights = zoo.list_models(pretrained=True)
    assert with_weights == sorted(n for n in MODELS if load_manifest().get(n)) and "deeperaser" in with_weights
    assert "pip" not in with_weights
    with pytest.raises(KeyError, match="unknown model 'nope'; registered models: craft, crnn, deeperaser"):
        zoo.model_info("nope")


@pytest.mark.parametrize("name", IMAGE_MODELS)
@pytest.mark.parametrize("size", [(37, 53), (5, 7)])
def test_conditions_are_keywords_and_any_size_works(name, size):
    """Odd sizes and sizes smaller than the pad (reflect falls back to replicate) keep the input's size."""
    model = zoo.create_model(name, **TINY_NETS[name]).eval()
    scale = zoo.model_info(name).scale
    image, conditions = zoo.example_inputs(name, batch=2, size=(size[0] * scale, size[1] * scale))
    with torch.no_grad():
        output = model(image, **conditions)
    assert output.shape == (2, 3, size[0] * scale, size[1] * scale) and 0 <= output.min() and output.max() <= 1
    if "mask" in conditions:  # the mask stays accepted positionally
        with torch.no_grad():
            assert torch.equal(model(image, conditions["mask"]), output)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_forward_train_returns_a_typed_output(name):
    model = zoo.create_model(name, **TINY_NETS[name])
    image, conditions = zoo.example_inputs(name, size=64 * zoo.model_info(name).scale)
    accepted = inspect.signature(model.forward_train).parameters  # STE's eraser predicts its own mask
    if "hr" in accepted:  # super-resolution trains on (LR, HR) pairs
        conditions["hr"] = torch.rand(1, 3, 64 * zoo.model_info(name).scale, 64 * zoo.model_info(name).scale)
    output = model.forward_train(image, **{k: v for k, v in conditions.items() if k in accepted})
    assert dataclasses.is_dataclass(output), type(output)


def test_pad_to_multiple_and_crop_back():
    image = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 5, 6)
    padded = pad_to_multiple(image, 4)
    assert padded.shape[-2:] == (8, 8) and torch.equal(crop_to(padded, (5, 6)), image)
    assert torch.equal(padded[..., 5, :6], image[..., 3, :])  # reflect: row 5 mirrors row 3
    tiny = pad_to_multiple(image[..., :2, :2], 32)  # smaller than the pad: replicate instead of failing
    assert tiny.shape[-2:] == (32, 32) and torch.equal(tiny[..., 31, 31], image[..., 1, 1])
    mask = pad_to_multiple(torch.ones(1, 1, 5, 6), 4, mode="constant")
    assert mask.sum() == 30 and mask[..., 5:, :].sum() == 0
    assert pad_to_multiple(image, 1) is image
    upscaled = torch.zeros(1, 3, 16, 16)
    assert crop_to(upscaled, (5, 6), scale=2).shape[-2:] == (10, 12)


def test_version_is_the_installed_distribution():
    assert zoo.__version__ == metadata.version("rezoo")


def test_wheel_ships_configs_manifest_and_console_script(tmp_path):
    """A non-editable install gets the Hydra configs and the manifest as package data."""
    source = tmp_path / "source"  # a copy, so that setuptools' build/ folder stays out of the checkout
    for package in ("zoo", "datamodules", "rezoo"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    for file in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / file, source / file)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("rezoo-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    configs = {p.relative_to(ROOT).as_posix() for p in (ROOT / "rezoo" / "configs").rglob("*.yaml")}
    assert configs and configs <= names, sorted(configs - names)
    assert {"zoo/manifest.yaml", "rezoo/cli.py", "datamodules/base.py", "zoo/nn/padding.py"} <= names
    assert "rezoo = rezoo.cli:main" in entry_points


def test_rezoo_list_prints_every_model():
    result = subprocess.run(
        [sys.executable, "-c", "from rezoo.cli import main; main(['list'])"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "160", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    for name in MODELS:
        info = zoo.model_info(name)
        row = next(line for line in result.stdout.splitlines() if f" {name} " in line)
        assert info.task in row and f"{info.scale}x" in row and f"{info.params:,}" in row
        assert all(tag in row for tag in info.tags)
