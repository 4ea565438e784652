"""Registry, weight formats, remapping and cached downloads."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import re
import socket
import threading
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import pytest
import torch
import yaml

import zoo
from tests.conftest import IMAGE_MODELS, ROOT, TINY_NETS
from zoo import hub
from zoo.checkpoints import lightning_state, read_checkpoint
from zoo.errors import DownloadError, WeightsError
from zoo.manifest import auxiliary_entry, manifest_entry
from zoo.training.gan import discriminator_state

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
    with pytest.raises(WeightsError, match="neither a file nor a manifest tag.*scut_enstext"):
        zoo.create_model("deeperaser", pretrained=str(tmp_path / "absent.pth"))


def test_non_state_dict_file_is_rejected(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"epoch": 1, "note": "no weights"}, path)
    with pytest.raises(WeightsError, match="no state_dict found"):
        zoo.create_model("deeperaser", pretrained=str(path))


def test_lightning_checkpoint_prefers_ema_and_keeps_kwargs(tmp_path):
    net, ema = small_deeperaser(), small_deeperaser()
    discriminator = torch.nn.Conv2d(3, 1, 3).state_dict()
    ckpt = {
        "pytorch-lightning_version": "2.6.0",
        "hyper_parameters": {"model_name": "deeperaser", "net": {"iters": 2}},
        "state_dict": {
            **{f"net.{k}": v for k, v in net.state_dict().items()},
            **{f"ema_net.{k}": v for k, v in ema.state_dict().items()},
            **{f"discriminator.{k}": v for k, v in discriminator.items()},
        },
    }
    path = tmp_path / "last.ckpt"
    torch.save(ckpt, path)
    loaded = zoo.create_model("deeperaser", pretrained=str(path))
    assert loaded.iters == 2
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), ema.state_dict().values()))
    raw = read_checkpoint(path, use_ema=False)
    assert all(torch.equal(raw.state_dict[k], v) for k, v in net.state_dict().items())
    _, generator = zoo.read_pretrained("deeperaser", str(path), use_ema=False)
    assert generator.state_dict.keys() == raw.state_dict.keys()
    assert all(torch.equal(generator.state_dict[k], v) for k, v in net.state_dict().items())
    # the GAN modules read the discriminator through the same reader
    found = discriminator_state(path)
    assert found.keys() == discriminator.keys() and all(torch.equal(found[k], v) for k, v in discriminator.items())
    torch.save(net.state_dict(), tmp_path / "plain.ckpt")
    assert discriminator_state(tmp_path / "plain.ckpt") is None and lightning_state(path, "nothing.") == {}


# ------------------------------------------------------------------------------------------ downloads
WAY_OUT = "or pass a local file (--weights <file>, or pretrained=<file> in Python)"


@pytest.fixture
def served_file(tmp_path, monkeypatch):
    """A weights file behind a file:// URL and an empty cache."""
    monkeypatch.setenv("REZOO_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "server" / "deeperaser-test.pth"
    source.parent.mkdir()
    torch.save({f"module.{k}": v for k, v in small_deeperaser().state_dict().items()}, source)
    return source, hashlib.sha256(source.read_bytes()).hexdigest()


@pytest.fixture
def http_server(served_file):
    """A loopback HTTP server (127.0.0.1, a free port) serving the folder of ``served_file``; yields its base URL."""
    handler = functools.partial(QuietHandler, directory=str(served_file[0].parent))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            thread.join(timeout=5)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def no_network(*args, **kwargs):
    raise AssertionError("network used although the file is cached")


def write_manifest(path: Path, entries: dict, monkeypatch) -> None:
    """Point ``load_manifest`` at a test manifest (``$REZOO_MANIFEST``)."""
    path.write_text(yaml.safe_dump({"models": entries}))
    monkeypatch.setenv("REZOO_MANIFEST", str(path))


def assert_one_line_failure(error: pytest.ExceptionInfo, url: str, reason: str, target: Path) -> None:
    message = str(error.value)
    assert isinstance(error.value, DownloadError) and "\n" not in message
    assert f"cannot download {url}: {reason}" in message
    assert f"place the file at {target} {WAY_OUT}" in message


def test_download_checks_hash_and_caches(served_file, monkeypatch):
    source, digest = served_file
    path = hub.download(source.as_uri(), sha256=digest, progress=True)
    assert path.read_bytes() == source.read_bytes()
    assert path.parent == hub.cache_dir()
    monkeypatch.setattr(hub.urllib.request, "urlopen", no_network)
    assert hub.download(source.as_uri(), sha256=digest) == path


def test_download_over_http_with_timeout(served_file, http_server, monkeypatch):
    source, digest = served_file
    monkeypatch.setenv("REZOO_DOWNLOAD_TIMEOUT", "7.5")
    timeouts = []
    urlopen = hub.urllib.request.urlopen
    monkeypatch.setattr(
        hub.urllib.request,
        "urlopen",
        lambda url, timeout: timeouts.append(timeout) or urlopen(url, timeout=timeout),
    )
    path = hub.download(f"{http_server}/{source.name}", sha256=digest, progress=False)
    assert path.read_bytes() == source.read_bytes() and timeouts == [7.5]
    monkeypatch.delenv("REZOO_DOWNLOAD_TIMEOUT")
    assert hub.download_timeout() == 60


def test_download_http_404(served_file, http_server):
    url = f"{http_server}/absent.pth"
    with pytest.raises(DownloadError) as error:
        hub.download(url, progress=False)
    assert_one_line_failure(error, url, "HTTP 404 Not Found", hub.cache_dir() / "absent.pth")


def test_download_with_wrong_hash_leaves_nothing(served_file, http_server):
    source, digest = served_file
    url = f"{http_server}/{source.name}"
    with pytest.raises(DownloadError) as error:
        hub.download(url, sha256="0" * 64, file_name="x.pth", progress=False)
    assert_one_line_failure(
        error, url, f"sha256 mismatch: expected {'0' * 64}, got {digest}", hub.cache_dir() / "x.pth"
    )
    assert list(hub.cache_dir().iterdir()) == []


def test_download_unreachable_host(served_file):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/deeperaser.pth"
    with pytest.raises(DownloadError) as error:
        hub.download(url, progress=False)
    assert_one_line_failure(error, url, "connection refused", hub.cache_dir() / "deeperaser.pth")
    assert list(hub.cache_dir().iterdir()) == []


def test_download_timeout(served_file, monkeypatch):
    monkeypatch.setenv("REZOO_DOWNLOAD_TIMEOUT", "0.3")
    default = socket.getdefaulttimeout()
    socket.setdefaulttimeout(10)  # a download without its own timeout fails this test instead of hanging
    try:
        with socket.socket() as silent:  # accepts connections (backlog) but never answers
            silent.bind(("127.0.0.1", 0))
            silent.listen(1)
            url = f"http://127.0.0.1:{silent.getsockname()[1]}/deeperaser.pth"
            with pytest.raises(DownloadError) as error:
                hub.download(url, progress=False)
    finally:
        socket.setdefaulttimeout(default)
    assert_one_line_failure(error, url, "no answer within 0.3 s", hub.cache_dir() / "deeperaser.pth")


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

    monkeypatch.setattr(hub.urllib.request, "urlopen", lambda url, timeout: Broken())
    with pytest.raises(DownloadError, match="connection lost"):
        hub.download(source.as_uri(), progress=False)
    assert list(hub.cache_dir().iterdir()) == []


def test_manifest_tag_downloads_and_loads(served_file, tmp_path, monkeypatch):
    source, digest = served_file
    write_manifest(
        tmp_path / "manifest.yaml",
        {
            "deeperaser": {
                "scut_enstext": {
                    "url": source.as_uri(),
                    "file_name": "deeperaser-official-scut_enstext.pth",
                    "sha256": digest,
                }
            }
        },
        monkeypatch,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a verified download does not warn
        model = zoo.create_model("deeperaser", pretrained=True, iters=2)  # True -> default tag scut_enstext
    assert (hub.cache_dir() / "deeperaser-official-scut_enstext.pth").is_file()
    expected = torch.load(source, weights_only=True)
    assert torch.equal(model.state_dict()["fnet.conv1.weight"], expected["module.fnet.conv1.weight"])


def test_manifest_entry_without_sha256_warns(served_file, tmp_path, monkeypatch):
    source, _ = served_file
    write_manifest(
        tmp_path / "manifest.yaml",
        {"deeperaser": {"scut_enstext": {"url": source.as_uri(), "sha256": None}}},
        monkeypatch,
    )
    target = hub.cache_dir() / source.name
    with pytest.warns(
        UserWarning, match=f"{target} is unverified: the weights manifest has no sha256 for {source.as_uri()}"
    ):
        assert hub.resolve_pretrained("deeperaser", True, "scut_enstext") == target
    assert target.read_bytes() == source.read_bytes()


HF_ENTRY = {
    "hf": {"repo_id": "owner/weights-repo", "filename": "sub/model.pth", "revision": "main"},
    "file_name": "hf-test.pth",
    "sha256": None,
}
HF_URL = "https://huggingface.co/owner/weights-repo/resolve/main/sub/model.pth"


def test_hf_entry_offline_names_the_url_and_the_cache_path(served_file, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(
        constants, "HF_HUB_OFFLINE", True
    )  # as conftest's HF_HUB_OFFLINE=1, whatever the environment says
    with pytest.raises(DownloadError) as error:
        hub.fetch(HF_ENTRY, progress=False)
    assert_one_line_failure(error, HF_URL, "offline mode (HF_HUB_OFFLINE=1)", hub.cache_dir() / "hf-test.pth")
    assert list(hub.cache_dir().iterdir()) == []


def test_hf_entry_cached_needs_no_network(served_file, monkeypatch):
    import huggingface_hub

    source, _ = served_file
    target = hub.cache_dir() / "hf-test.pth"
    target.parent.mkdir(parents=True)
    target.write_bytes(source.read_bytes())
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unverified file is only warned about when downloaded
        assert hub.fetch(HF_ENTRY) == target


def test_hf_entry_downloads_through_hf_hub_download(served_file, monkeypatch):
    """The glue around ``hf_hub_download`` (faked: it writes the file under ``local_dir``): the file ends
    at ``cache_dir() / file_name``, its sha256 is checked and nothing else stays in the cache."""
    import huggingface_hub

    source, digest = served_file
    calls = []

    def fake_download(repo_id, filename, *, revision, local_dir):
        calls.append((repo_id, filename, revision))
        path = Path(local_dir) / filename
        path.parent.mkdir(parents=True)
        path.write_bytes(source.read_bytes())
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    with pytest.raises(DownloadError) as error:
        hub.fetch({**HF_ENTRY, "sha256": "f" * 64}, progress=False)
    assert_one_line_failure(
        error, HF_URL, f"sha256 mismatch: expected {'f' * 64}, got {digest}", hub.cache_dir() / "hf-test.pth"
    )
    assert list(hub.cache_dir().iterdir()) == []
    path = hub.fetch({**HF_ENTRY, "sha256": digest}, progress=False)
    assert path == hub.cache_dir() / "hf-test.pth" and path.read_bytes() == source.read_bytes()
    assert list(hub.cache_dir().iterdir()) == [path]
    assert calls == [("owner/weights-repo", "sub/model.pth", "main")] * 2


def test_shipped_manifest_declares_official_deeperaser():
    entry = manifest_entry("deeperaser", "scut_enstext")
    assert entry["url"].endswith("/deeperaser.pth") and entry["source"] == "official"
    assert "sha256" in entry


@pytest.mark.parametrize(
    ("model", "tag", "url"),
    [
        ("garnet", "scut_enstext_synthtext", "https://huggingface.co/naverpapago/garnet/resolve/main/saved_model.pth"),
        (
            "ste",
            "posterase",
            "https://huggingface.co/alimama-creative/Self-Supervised-Text-Erasing/resolve/main/ste/best_net_G.pth",
        ),
        (
            "ste",
            "posterase_ft",
            "https://huggingface.co/alimama-creative/Self-Supervised-Text-Erasing/resolve/main/ft/best_net_G.pth",
        ),
    ],
)
def test_shipped_manifest_hub_entries(model, tag, url):
    entry = manifest_entry(model, tag)
    assert "url" not in entry and entry["hf"]["revision"] == "main"
    assert hub.entry_url(entry) == url
    assert hub.entry_file(entry) == hub.cache_dir() / f"{model}-official-{tag}.pth"


# ------------------------------------------------------------------------------ auxiliary third-party files
AUX_URL = "https://example.invalid/models/tiny-net.pth"
AUX_LOCAL = "--tiny-weights FILE (rezoo score)"
URLOPEN = urllib.request.urlopen  # the real one: tests patch it


@pytest.fixture
def auxiliary(tmp_path, monkeypatch):
    """A manifest whose ``auxiliary:`` entry ``tiny`` names a small file, empty zoo and torch hub caches, and
    urllib answering ``AUX_URL`` with that file; returns (the file's bytes, their sha256)."""
    payload = b"tiny network weights"
    digest = hashlib.sha256(payload).hexdigest()
    entry = {"url": AUX_URL, "sha256": digest, "description": "a tiny network", "local": AUX_LOCAL}
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump({"models": {}, "auxiliary": {"tiny": entry}}))
    monkeypatch.setenv("REZOO_MANIFEST", str(tmp_path / "manifest.yaml"))
    monkeypatch.setenv("REZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    serve(monkeypatch, tmp_path / "served.pth", payload)
    return payload, digest


def serve(monkeypatch, path: Path, payload: bytes) -> None:
    """urllib answers every URL with ``payload`` (through the file:// handler: a response with headers)."""
    path.write_bytes(payload)
    monkeypatch.setattr(hub.urllib.request, "urlopen", lambda url, timeout: URLOPEN(path.as_uri(), timeout=timeout))


def offline(*args, **kwargs):
    raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))


def test_auxiliary_file_is_downloaded_checked_and_then_read_from_the_cache(auxiliary, monkeypatch):
    payload, _ = auxiliary
    path = hub.fetch_auxiliary("tiny", progress=False)
    assert path == hub.cache_dir() / "tiny-net.pth" and path.read_bytes() == payload
    monkeypatch.setattr(hub.urllib.request, "urlopen", no_network)
    assert hub.fetch_auxiliary("tiny") == path


def test_auxiliary_file_in_the_torch_hub_folder_is_used(auxiliary, tmp_path, monkeypatch):
    payload, _ = auxiliary
    hub_copy = tmp_path / "torch" / "hub" / "checkpoints" / "tiny-net.pth"  # where torchvision keeps its files
    hub_copy.parent.mkdir(parents=True)
    hub_copy.write_bytes(payload)
    monkeypatch.setattr(hub.urllib.request, "urlopen", no_network)
    assert hub.fetch_auxiliary("tiny") == hub_copy and not hub.cache_dir().exists()


def test_auxiliary_file_with_another_sha256_is_refused_in_one_line(auxiliary, tmp_path, monkeypatch):
    _, digest = auxiliary
    cached = hub.cache_dir() / "tiny-net.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"something else")
    monkeypatch.setattr(hub.urllib.request, "urlopen", no_network)
    with pytest.raises(DownloadError) as error:
        hub.fetch_auxiliary("tiny")
    message = str(error.value)
    assert "\n" not in message and f"{cached} is not the file of {AUX_URL}: sha256 " in message
    assert f"expected {digest}" in message and f"pass a local file ({AUX_LOCAL})" in message
    assert cached.read_bytes() == b"something else"  # the user's file is left alone
    cached.unlink()
    serve(monkeypatch, tmp_path / "corrupt.pth", b"a corrupt download")
    with pytest.raises(DownloadError, match=f"cannot download {AUX_URL}: sha256 mismatch: expected {digest}"):
        hub.fetch_auxiliary("tiny", progress=False)
    assert list(hub.cache_dir().iterdir()) == []


def test_auxiliary_file_offline_without_cache_is_the_one_line_download_error(auxiliary, monkeypatch):
    monkeypatch.setattr(hub.urllib.request, "urlopen", offline)
    with pytest.raises(DownloadError) as error:
        hub.fetch_auxiliary("tiny", progress=False)
    target = hub.cache_dir() / "tiny-net.pth"
    assert str(error.value) == (
        f"cannot download {AUX_URL}: cannot resolve example.invalid (Temporary failure in name resolution); "
        f"place the file at {target} or pass a local file ({AUX_LOCAL})"
    )


def test_auxiliary_local_file_is_used_as_it_is(auxiliary, tmp_path, monkeypatch):
    monkeypatch.setattr(hub.urllib.request, "urlopen", no_network)
    mine = tmp_path / "my-tiny.pth"
    mine.write_bytes(b"a fine-tuned copy")  # not the manifest's file: the user's choice is not checked
    assert hub.fetch_auxiliary("tiny", mine) == mine
    with pytest.raises(WeightsError, match=f"{tmp_path / 'absent.pth'} is not a file .*tiny-net.pth from {AUX_URL}"):
        hub.fetch_auxiliary("tiny", tmp_path / "absent.pth")
    with pytest.raises(WeightsError, match="no auxiliary: entry 'vgg16_imagenet' .*entries: tiny"):
        hub.fetch_auxiliary("vgg16_imagenet")


def test_vgg_loss_offline_names_the_manifest_url_and_the_local_option(tmp_path, monkeypatch):
    from zoo.training.losses import VGGFeatureLoss

    monkeypatch.setenv("REZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(hub.urllib.request, "urlopen", offline)
    with pytest.raises(DownloadError) as error:
        VGGFeatureLoss(None).load_weights()
    url = auxiliary_entry("vgg16_imagenet")["url"]
    assert str(error.value).startswith(f"cannot download {url}: cannot resolve download.pytorch.org")
    assert "\n" not in str(error.value) and "model.vgg_weights=FILE" in str(error.value)


def test_shipped_auxiliary_entries_have_url_sha256_and_licence():
    """Each third-party file: its URL, the published file's full sha256 (torch hub names files with its first
    8 hex digits), a licence, who uses it and how to pass a local copy; torchvision's backbones under the very
    names torchvision looks for in its cache."""
    import torchvision.models

    entries = load_manifest_file()["auxiliary"]
    assert set(entries) == {"vgg16_imagenet", "alexnet_imagenet", "fid_inception"}
    for name, entry in entries.items():
        assert entry["url"].startswith("https://") and re.fullmatch("[0-9a-f]{64}", entry["sha256"]), name
        assert entry["license"] and entry["used_by"] and entry["local"] and entry["description"], name
        assert entry["sha256"].startswith(re.search(r"-([0-9a-f]{8})\.pth$", entry["url"]).group(1)), name
    assert entries["vgg16_imagenet"]["url"] == torchvision.models.VGG16_Weights.DEFAULT.url
    assert entries["alexnet_imagenet"]["url"] == torchvision.models.AlexNet_Weights.DEFAULT.url


def load_manifest_file() -> dict:
    return yaml.safe_load((ROOT / "zoo" / "manifest.yaml").read_text(encoding="utf-8"))


def test_no_weight_url_in_library_code():
    """Every downloaded file is named in zoo/manifest.yaml, not in the code (zoo, datamodules, rezoo, hubconf)."""
    manifest = load_manifest_file()
    urls = {entry["url"] for entry in manifest["auxiliary"].values()}
    urls |= {entry["url"] for tags in manifest["models"].values() for entry in tags.values() if "url" in entry}
    files = [ROOT / "hubconf.py"] + [p for d in ("zoo", "datamodules", "rezoo") for p in (ROOT / d).rglob("*.py")]
    found = [
        f"{path.relative_to(ROOT)}: {url}"
        for path in files
        for url in re.findall(r"https?://[^\s\"'`)>]+", path.read_text(encoding="utf-8"))
        if url in urls or re.search(r"\.(pth|pt|bin|ckpt|safetensors|zip|pkl)$", url)
    ]
    assert found == []


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_eval_forward_under_bf16_autocast_keeps_the_input_dtype(name):
    """Mixed-precision inference (tools/infer.py --precision bf16, bf16-mixed validation): the composite
    with the fp32 input must not fail on the network's bf16 output."""
    model = zoo.create_model(name, **TINY_NETS[name]).eval()
    # 32 px: bf16 on a CPU without native bf16 is slow
    image, conditions = zoo.example_inputs(name, size=32 * zoo.model_info(name).scale)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(image, **conditions)
    scale = zoo.model_info(name).scale
    assert (
        output.dtype == torch.float32
        and output.shape == (1, 3, 32 * scale, 32 * scale)
        and torch.isfinite(output).all()
    )
    if zoo.model_info(name).composites:  # pasted into the input outside the mask (DeepEraser is not)
        outside = conditions["mask"][0, 0] == 0
        assert torch.equal(output[..., outside], image[..., outside])
