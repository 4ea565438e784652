"""Registry, weight formats, remapping and cached downloads."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml

import zoo
from tests.conftest import TINY_NETS, tiny_inputs
from zoo import weights

OFFICIAL_KEYS = json.loads((Path(__file__).parent / "data" / "deeperaser_official_keys.json").read_text())


def small_deeperaser(**kwargs):
    return zoo.create_model("deeperaser", iters=2, **kwargs)


def test_list_and_create():
    assert "deeperaser" in zoo.list_models()
    assert zoo.list_models("deep*") == ["deeperaser"]
    assert zoo.list_models("nothing*") == []
    model = zoo.create_model("deeperaser")
    assert sum(p.numel() for p in model.parameters()) == 1_438_512
    assert zoo.create_model("deeperaser", iters=3).iters == 3
    with pytest.raises(KeyError, match="unknown model 'nope'.*deeperaser"):
        zoo.create_model("nope")


def test_state_dict_matches_official_release_layout():
    """Every key and shape of the official ``deeperaser.pth`` (DataParallel ``module.`` prefix)."""
    ours = {f"module.{k}": list(v.shape) for k, v in zoo.create_model("deeperaser").state_dict().items()}
    assert ours == OFFICIAL_KEYS


def _official_file(tmp_path: Path, state_dict: dict, wrapper: str | None = None) -> Path:
    obj = {f"module.{k}": v for k, v in state_dict.items()}
    if wrapper:
        obj = {wrapper: obj, "epoch": 3}
    path = tmp_path / "deeperaser.pth"
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("wrapper", [None, "model_state_dict", "state_dict"])
def test_official_format_loads_and_reproduces(tmp_path, wrapper):
    reference = small_deeperaser().eval()
    path = _official_file(tmp_path, reference.state_dict(), wrapper)
    loaded = zoo.create_model("deeperaser", pretrained=str(path), iters=2).eval()
    image, mask = torch.rand(1, 3, 23, 31), (torch.rand(1, 1, 23, 31) > 0.5).float()
    with torch.no_grad():
        assert torch.equal(loaded(image, mask), reference(image, mask))


def test_mismatched_weights_list_the_keys(tmp_path):
    state_dict = small_deeperaser().state_dict()
    state_dict.pop("fnet.conv1.bias")
    state_dict["extra.weight"] = torch.zeros(1)
    state_dict["fnet.conv2.weight"] = torch.zeros(3, 3, 1, 1)
    path = _official_file(tmp_path, state_dict)
    with pytest.raises(RuntimeError) as error:
        zoo.create_model("deeperaser", pretrained=str(path))
    message = str(error.value)
    assert "missing keys (1): fnet.conv1.bias" in message
    assert "unexpected keys (1): extra.weight" in message
    assert "fnet.conv2.weight: file (3, 3, 1, 1)" in message
    assert str(path) in message


def test_missing_file_and_unknown_tag(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a file nor a manifest tag.*scut_enstext"):
        zoo.create_model("deeperaser", pretrained=str(tmp_path / "absent.pth"))


def test_non_state_dict_file_is_rejected(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"epoch": 1, "note": "no weights"}, path)
    with pytest.raises(ValueError, match="no state_dict found"):
        zoo.create_model("deeperaser", pretrained=str(path))


def test_lightning_checkpoint_prefers_ema_and_keeps_kwargs(tmp_path):
    net, ema = small_deeperaser(), small_deeperaser()
    ckpt = {
        "pytorch-lightning_version": "2.6.0",
        "hyper_parameters": {"model_name": "deeperaser", "net": {"iters": 2}},
        "state_dict": {**{f"net.{k}": v for k, v in net.state_dict().items()}, **{f"ema_net.{k}": v for k, v in ema.state_dict().items()}},
    }
    path = tmp_path / "last.ckpt"
    torch.save(ckpt, path)
    loaded = zoo.create_model("deeperaser", pretrained=str(path))
    assert loaded.iters == 2
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), ema.state_dict().values()))
    raw = weights.read_checkpoint(path, use_ema=False)
    assert all(torch.equal(raw.state_dict[k], v) for k, v in net.state_dict().items())


# ------------------------------------------------------------------------------------------ downloads
@pytest.fixture
def served_file(tmp_path, monkeypatch):
    """A weights file behind a file:// URL and an empty cache."""
    monkeypatch.setenv("REZOO_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "server" / "deeperaser-test.pth"
    source.parent.mkdir()
    torch.save({f"module.{k}": v for k, v in small_deeperaser().state_dict().items()}, source)
    return source, hashlib.sha256(source.read_bytes()).hexdigest()


def test_download_checks_hash_and_caches(served_file, monkeypatch):
    source, digest = served_file
    path = weights.download(source.as_uri(), sha256=digest, progress=True)
    assert path.read_bytes() == source.read_bytes()
    assert path.parent == weights.cache_dir()

    def no_network(*args, **kwargs):
        raise AssertionError("network used although the file is cached")

    monkeypatch.setattr(weights.urllib.request, "urlopen", no_network)
    assert weights.download(source.as_uri(), sha256=digest) == path


def test_download_with_wrong_hash_leaves_nothing(served_file):
    source, _ = served_file
    with pytest.raises(RuntimeError, match="sha256 mismatch"):
        weights.download(source.as_uri(), sha256="0" * 64, progress=False)
    assert not weights.cache_dir().exists() or list(weights.cache_dir().iterdir()) == []


def test_interrupted_download_leaves_nothing(served_file, monkeypatch):
    source, _ = served_file

    class Broken:
        headers = {"Content-Length": "100"}

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, n):
            raise ConnectionResetError("connection lost")

    monkeypatch.setattr(weights.urllib.request, "urlopen", lambda url: Broken())
    with pytest.raises(ConnectionResetError):
        weights.download(source.as_uri(), progress=False)
    assert list(weights.cache_dir().iterdir()) == []


def test_manifest_tag_downloads_and_loads(served_file, tmp_path, monkeypatch):
    source, digest = served_file
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump({"models": {"deeperaser": {"scut_enstext": {
        "url": source.as_uri(), "file_name": "deeperaser-official-scut_enstext.pth", "sha256": digest}}}}))
    monkeypatch.setattr(weights, "MANIFEST_PATH", manifest)
    model = zoo.create_model("deeperaser", pretrained=True, iters=2)  # True -> default tag scut_enstext
    assert (weights.cache_dir() / "deeperaser-official-scut_enstext.pth").is_file()
    expected = torch.load(source, weights_only=True)
    assert torch.equal(model.state_dict()["fnet.conv1.weight"], expected["module.fnet.conv1.weight"])


def test_shipped_manifest_declares_official_deeperaser():
    entry = weights.manifest_entry("deeperaser", "scut_enstext")
    assert entry["url"].endswith("/deeperaser.pth") and entry["source"] == "official"
    assert "sha256" in entry


@pytest.mark.parametrize("name", zoo.list_models())
def test_eval_forward_under_bf16_autocast_keeps_the_input_dtype(name):
    """Mixed-precision inference (tools/infer.py --precision bf16, bf16-mixed validation): the composite
    with the fp32 input must not fail on the network's bf16 output."""
    model = zoo.create_model(name, **TINY_NETS[name]).eval()
    image, conditions = tiny_inputs(name, 64, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(image, **conditions)
    assert output.dtype == torch.float32 and output.shape == image.shape and torch.isfinite(output).all()
    if zoo.model_info(name)["composites"]:  # pasted into the input outside the mask (DeepEraser is not)
        outside = conditions["mask"][0, 0] == 0
        assert torch.equal(output[..., outside], image[..., outside])
