"""Registry, weight formats, remapping and cached downloads."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import socket
import threading
import warnings
from pathlib import Path

import pytest
import torch
import yaml

import zoo
from tests.conftest import IMAGE_MODELS, TINY_NETS, tiny_inputs
from zoo import weights
from zoo.errors import DownloadError, WeightsError

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
    ckpt = {
        "pytorch-lightning_version": "2.6.0",
        "hyper_parameters": {"model_name": "deeperaser", "net": {"iters": 2}},
        "state_dict": {
            **{f"net.{k}": v for k, v in net.state_dict().items()},
            **{f"ema_net.{k}": v for k, v in ema.state_dict().items()},
        },
    }
    path = tmp_path / "last.ckpt"
    torch.save(ckpt, path)
    loaded = zoo.create_model("deeperaser", pretrained=str(path))
    assert loaded.iters == 2
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), ema.state_dict().values()))
    raw = weights.read_checkpoint(path, use_ema=False)
    assert all(torch.equal(raw.state_dict[k], v) for k, v in net.state_dict().items())


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
    path = weights.download(source.as_uri(), sha256=digest, progress=True)
    assert path.read_bytes() == source.read_bytes()
    assert path.parent == weights.cache_dir()
    monkeypatch.setattr(weights.urllib.request, "urlopen", no_network)
    assert weights.download(source.as_uri(), sha256=digest) == path


def test_download_over_http_with_timeout(served_file, http_server, monkeypatch):
    source, digest = served_file
    monkeypatch.setenv("REZOO_DOWNLOAD_TIMEOUT", "7.5")
    timeouts = []
    urlopen = weights.urllib.request.urlopen
    monkeypatch.setattr(
        weights.urllib.request,
        "urlopen",
        lambda url, timeout: timeouts.append(timeout) or urlopen(url, timeout=timeout),
    )
    path = weights.download(f"{http_server}/{source.name}", sha256=digest, progress=False)
    assert path.read_bytes() == source.read_bytes() and timeouts == [7.5]
    monkeypatch.delenv("REZOO_DOWNLOAD_TIMEOUT")
    assert weights.download_timeout() == 60


def test_download_http_404(served_file, http_server):
    url = f"{http_server}/absent.pth"
    with pytest.raises(DownloadError) as error:
        weights.download(url, progress=False)
    assert_one_line_failure(error, url, "HTTP 404 Not Found", weights.cache_dir() / "absent.pth")


def test_download_with_wrong_hash_leaves_nothing(served_file, http_server):
    source, digest = served_file
    url = f"{http_server}/{source.name}"
    with pytest.raises(DownloadError) as error:
        weights.download(url, sha256="0" * 64, file_name="x.pth", progress=False)
    assert_one_line_failure(
        error, url, f"sha256 mismatch: expected {'0' * 64}, got {digest}", weights.cache_dir() / "x.pth"
    )
    assert list(weights.cache_dir().iterdir()) == []


def test_download_unreachable_host(served_file):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/deeperaser.pth"
    with pytest.raises(DownloadError) as error:
        weights.download(url, progress=False)
    assert_one_line_failure(error, url, "connection refused", weights.cache_dir() / "deeperaser.pth")
    assert list(weights.cache_dir().iterdir()) == []


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
                weights.download(url, progress=False)
    finally:
        socket.setdefaulttimeout(default)
    assert_one_line_failure(error, url, "no answer within 0.3 s", weights.cache_dir() / "deeperaser.pth")


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

    monkeypatch.setattr(weights.urllib.request, "urlopen", lambda url, timeout: Broken())
    with pytest.raises(DownloadError, match="connection lost"):
        weights.download(source.as_uri(), progress=False)
    assert list(weights.cache_dir().iterdir()) == []


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
    assert (weights.cache_dir() / "deeperaser-official-scut_enstext.pth").is_file()
    expected = torch.load(source, weights_only=True)
    assert torch.equal(model.state_dict()["fnet.conv1.weight"], expected["module.fnet.conv1.weight"])


def test_manifest_entry_without_sha256_warns(served_file, tmp_path, monkeypatch):
    source, _ = served_file
    write_manifest(
        tmp_path / "manifest.yaml",
        {"deeperaser": {"scut_enstext": {"url": source.as_uri(), "sha256": None}}},
        monkeypatch,
    )
    target = weights.cache_dir() / source.name
    with pytest.warns(
        UserWarning, match=f"{target} is unverified: the weights manifest has no sha256 for {source.as_uri()}"
    ):
        assert weights.resolve_pretrained("deeperaser", True, "scut_enstext") == target
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
        weights.fetch(HF_ENTRY, progress=False)
    assert_one_line_failure(error, HF_URL, "offline mode (HF_HUB_OFFLINE=1)", weights.cache_dir() / "hf-test.pth")
    assert list(weights.cache_dir().iterdir()) == []


def test_hf_entry_cached_needs_no_network(served_file, monkeypatch):
    import huggingface_hub

    source, _ = served_file
    target = weights.cache_dir() / "hf-test.pth"
    target.parent.mkdir(parents=True)
    target.write_bytes(source.read_bytes())
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unverified file is only warned about when downloaded
        assert weights.fetch(HF_ENTRY) == target


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
        weights.fetch({**HF_ENTRY, "sha256": "f" * 64}, progress=False)
    assert_one_line_failure(
        error, HF_URL, f"sha256 mismatch: expected {'f' * 64}, got {digest}", weights.cache_dir() / "hf-test.pth"
    )
    assert list(weights.cache_dir().iterdir()) == []
    path = weights.fetch({**HF_ENTRY, "sha256": digest}, progress=False)
    assert path == weights.cache_dir() / "hf-test.pth" and path.read_bytes() == source.read_bytes()
    assert list(weights.cache_dir().iterdir()) == [path]
    assert calls == [("owner/weights-repo", "sub/model.pth", "main")] * 2


def test_shipped_manifest_declares_official_deeperaser():
    entry = weights.manifest_entry("deeperaser", "scut_enstext")
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
    entry = weights.manifest_entry(model, tag)
    assert "url" not in entry and entry["hf"]["revision"] == "main"
    assert weights.entry_url(entry) == url
    assert weights.entry_file(entry) == weights.cache_dir() / f"{model}-official-{tag}.pth"


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_eval_forward_under_bf16_autocast_keeps_the_input_dtype(name):
    """Mixed-precision inference (tools/infer.py --precision bf16, bf16-mixed validation): the composite
    with the fp32 input must not fail on the network's bf16 output."""
    model = zoo.create_model(name, **TINY_NETS[name]).eval()
    image, conditions = tiny_inputs(name, 32, 32)  # bf16 on a CPU without native bf16 is slow
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
