"""Weights: manifest look-up, cached download, checkpoint format detection and key remapping.

Three formats load into a registered model, detected automatically:

* **safetensors** exported by ``tools/export.py`` (architecture kwargs in the file's metadata);
* a **Lightning checkpoint** written by ``tools/train.py`` (generator weights under ``net.``, EMA
  weights under ``ema_net.``, architecture kwargs in ``hyper_parameters``);
* an **official upstream release**: a plain state_dict, possibly wrapped (``model_state_dict``,
  ``state_dict``, ``params``, ``params_ema``, ``model``) and/or saved from DataParallel (``module.``);
  the family's ``remap`` hook (its ``official.py``, where upstream names differ) maps the keys.

Everything is read with safetensors or ``torch.load(weights_only=True)``; nothing is unpickled.

Manifest entries download from a plain ``url:`` (urllib, with a timeout) or from the Hugging Face Hub
(``hf: {repo_id, filename, revision}``, huggingface_hub) into :func:`cache_dir`; a cached file is used
without any network call, and a failed download raises :class:`~zoo.errors.DownloadError` in one line
with the URL, the reason and the way out. A ``url:`` entry with ``archive_member: <name>`` names a zip
archive: that member is extracted into the cache (the archive is not kept) and its sha256 is checked.
An entry with ``package: {name, path}`` is first looked up inside that installed Python package
(``name`` is the import name, ``path`` relative to the package's folder): when the package is
installed and holds the file, that file is used as it is, with no cache and no network.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import json
import os
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from zoo.errors import DownloadError, UnverifiedWeightsWarning, WeightsError

StateDict = dict[str, torch.Tensor]
_WRAPPER_KEYS = ("model_state_dict", "state_dict", "params_ema", "params", "model", "net")
SAFETENSORS_METADATA_KEY = "rezoo"


@dataclass
class Checkpoint:
    """Weights read from a file, with what the file says about the architecture."""

    state_dict: StateDict
    format: str  # "safetensors" | "lightning" | "official"
    model_name: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------- manifest
MANIFEST_ENV = "REZOO_MANIFEST"


def _read_manifest(path: str | os.PathLike | None) -> dict[str, Any]:
    import yaml

    path = path or os.environ.get(MANIFEST_ENV)
    text = (
        Path(path).read_text(encoding="utf-8")
        if path
        else resources.files("zoo").joinpath("manifest.yaml").read_text(encoding="utf-8")
    )
    return yaml.safe_load(text) or {}


def load_manifest(path: str | os.PathLike | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """``{model: {tag: entry}}`` from ``path``, else the file named by ``$REZOO_MANIFEST`` (a mirror, or
    a test manifest), else the package's ``zoo/manifest.yaml``."""
    return _read_manifest(path).get("models", {}) or {}


def manifest_base(name: str, path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The manifest's ``bases:`` record ``name`` (a frozen third-party model a zoo model loads: the hub copy
    the defaults name, ``files: {path: sha256 | null}``), or ``{}``."""
    return (_read_manifest(path).get("bases", {}) or {}).get(name) or {}


def manifest_entry(model_name: str, tag: str, manifest: dict | None = None) -> dict[str, Any] | None:
    return (manifest if manifest is not None else load_manifest()).get(model_name, {}).get(tag)


def entry_url(entry: dict[str, Any]) -> str:
    """The URL a manifest entry downloads from (``hf:`` entries: the Hub's ``resolve`` URL)."""
    if "hf" in entry:
        from huggingface_hub import hf_hub_url

        hf = entry["hf"]
        return hf_hub_url(hf["repo_id"], hf["filename"], revision=hf.get("revision", "main"))
    if "url" in entry:
        return entry["url"]
    raise WeightsError(f"manifest entry {entry} has neither url: nor hf:")


def entry_file(entry: dict[str, Any]) -> Path:
    """Where a manifest entry's file is cached (also where a user may place it by hand): ``file_name``,
    else the last part of ``archive_member``, else of the URL's path."""
    return cache_dir() / (
        entry.get("file_name")
        or PurePosixPath(entry.get("archive_member") or urllib.parse.urlparse(entry_url(entry)).path).name
    )


def package_file(entry: dict[str, Any]) -> Path | None:
    """The file a manifest entry's ``package: {name, path}`` names inside that installed Python package,
    or None when the entry has no ``package:``, the package is not installed or lacks the file."""
    package = entry.get("package")
    if not package:
        return None
    try:
        if importlib.util.find_spec(package["name"]) is None:
            return None
        path = Path(str(resources.files(package["name"]).joinpath(package["path"])))
    except (ImportError, ValueError, TypeError):  # a broken or namespace-less package counts as absent
        return None
    return path if path.is_file() else None


def fetch(entry: dict[str, Any], progress: bool = True) -> Path:
    """The local file of a manifest entry: the ``package:`` file when that package is installed, else
    the cached one (no network), else a download (for ``archive_member`` entries, the member extracted
    from the downloaded zip).

    A download of an entry without sha256 warns that the file is unverified.
    """
    packaged = package_file(entry)
    if packaged is not None:
        return packaged
    target = entry_file(entry)
    if target.is_file():
        return target
    if "hf" in entry:
        hf = entry["hf"]
        download_hf(
            hf["repo_id"], hf["filename"], hf.get("revision", "main"), entry.get("sha256"), target.name, progress
        )
    else:
        download(entry_url(entry), entry.get("sha256"), target.name, progress, entry.get("archive_member"))
    if not entry.get("sha256"):
        warnings.warn(
            f"{target} is unverified: the weights manifest has no sha256 for {entry_url(entry)}",
            UnverifiedWeightsWarning,
            stacklevel=2,
        )
    return target


# ----------------------------------------------------------------------------------------- download
DEFAULT_TIMEOUT = 60.0
TIMEOUT_ENV = "REZOO_DOWNLOAD_TIMEOUT"
WAY_OUT = "place the file at {target} or pass a local file (--weights <file>, or pretrained=<file> in Python)"


def cache_dir() -> Path:
    """``$REZOO_CACHE`` or ``$TORCH_HOME/hub/checkpoints``."""
    if os.environ.get("REZOO_CACHE"):
        return Path(os.environ["REZOO_CACHE"])
    return Path(torch.hub.get_dir()) / "checkpoints"


def download_timeout() -> float:
    """Seconds a plain-URL download waits for the server: ``$REZOO_DOWNLOAD_TIMEOUT`` or 60."""
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        timeout = float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        timeout = 0.0
    if not timeout > 0:
        raise DownloadError(f"{TIMEOUT_ENV}={text} is not a number of seconds > 0")
    return timeout


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _failed(url: str, reason: str, target: Path) -> DownloadError:
    """The one-line error of a failed download: the URL, the reason and the way out."""
    return DownloadError(f"cannot download {url}: {reason}; " + WAY_OUT.format(target=target))


def _check_sha256(url: str, actual: str, expected: str | None, target: Path) -> None:
    if expected and actual != expected.lower():
        raise _failed(url, f"sha256 mismatch: expected {expected.lower()}, got {actual} (download deleted)", target)


def download(
    url: str,
    sha256: str | None = None,
    file_name: str | None = None,
    progress: bool = True,
    archive_member: str | None = None,
) -> Path:
    """Download ``url`` (urllib, ``$REZOO_DOWNLOAD_TIMEOUT``) into the cache and return its path.

    A cached file is returned without any network call. A new download goes to a temporary file in
    the cache folder, is checked against ``sha256`` (when given) and only then renamed into place, so
    an interrupted or corrupt download leaves nothing behind. With ``archive_member`` the URL is a zip
    archive: that member replaces the downloaded archive (``file_name`` defaults to the member's name)
    and ``sha256`` is the member's. Any failure raises :class:`DownloadError`.
    """
    name = file_name or PurePosixPath(archive_member or urllib.parse.urlparse(url).path).name
    if not name:
        raise DownloadError(f"cannot derive a file name from {url}; give file_name")
    target = cache_dir() / name
    if target.is_file():
        return target
    timeout = download_timeout()
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    handle, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=target.parent)
    try:
        try:
            with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (manifest URLs)
                total = int(response.headers.get("Content-Length") or 0) or None
                with _DownloadProgress(name, total, progress) as advance:
                    while block := response.read(1 << 20):
                        out.write(block)
                        digest.update(block)
                        advance(len(block))
        except (OSError, http.client.HTTPException) as error:  # URLError, HTTPError, timeouts, lost connections
            raise _failed(url, _url_reason(url, error, timeout), target) from error
        actual = _extract_member(tmp_name, archive_member, url, target) if archive_member else digest.hexdigest()
        _check_sha256(url, actual, sha256, target)
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def _extract_member(archive: str, member: str, url: str, target: Path) -> str:
    """Replace the zip file ``archive`` by its ``member`` (through a temporary file next to it); return
    the member's sha256. A file that is not a zip, or lacks the member, raises :class:`DownloadError`."""
    digest = hashlib.sha256()
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".member", dir=Path(archive).parent)
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with zipfile.ZipFile(archive) as zipped:
                    if member not in zipped.namelist():
                        raise _failed(
                            url,
                            f"the zip archive has no member {member} (members: {', '.join(zipped.namelist()[:10]) or 'none'})",
                            target,
                        )
                    with zipped.open(member) as source:
                        while block := source.read(1 << 20):
                            out.write(block)
                            digest.update(block)
            except zipfile.BadZipFile as error:
                raise _failed(url, f"not a zip archive ({error})", target) from error
        os.replace(tmp_name, archive)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return digest.hexdigest()


def _url_reason(url: str, error: BaseException, timeout: float) -> str:
    """A short reason for a failed urllib download."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {http.client.responses.get(error.code, error.reason)}"
    if isinstance(error, urllib.error.URLError):
        if not isinstance(error.reason, BaseException):
            return str(error.reason)
        error = error.reason
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:g} s (set {TIMEOUT_ENV} to wait longer)"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, socket.gaierror):
        return f"cannot resolve {urllib.parse.urlparse(url).hostname} ({error.strerror})"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def download_hf(
    repo_id: str,
    filename: str,
    revision: str = "main",
    sha256: str | None = None,
    file_name: str | None = None,
    progress: bool = True,
) -> Path:
    """Download ``filename`` of the Hugging Face Hub repository ``repo_id`` into the cache (huggingface_hub).

    As :func:`download`: a cached file is returned without any network call; a new one is fetched by
    ``hf_hub_download`` into a temporary folder in the cache, checked against ``sha256`` and only then
    moved to ``cache_dir() / file_name``. Offline mode (``HF_HUB_OFFLINE=1``), a missing repository or
    file and network errors raise :class:`DownloadError` naming the ``https://huggingface.co/...`` URL.
    """
    import huggingface_hub

    target = cache_dir() / (file_name or PurePosixPath(filename).name)
    if target.is_file():
        return target
    url = huggingface_hub.hf_hub_url(repo_id, filename, revision=revision)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as tmp, _hf_progress_bars(progress):
        try:
            path = huggingface_hub.hf_hub_download(repo_id, filename, revision=revision, local_dir=tmp)
        except Exception as error:  # noqa: BLE001 - every failure of the Hub client becomes one message
            raise _failed(url, _hf_reason(error), target) from error
        _check_sha256(url, sha256_file(path), sha256, target)
        os.replace(path, target)
    return target


def _hf_reason(error: BaseException) -> str:
    """A short reason for a failed ``hf_hub_download``."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "offline mode (HF_HUB_OFFLINE=1)"
    response = getattr(error, "response", None)
    if getattr(response, "status_code", None):
        return f"HTTP {response.status_code} {http.client.responses.get(response.status_code, '')}".rstrip()
    cause = error.__cause__ or error  # LocalEntryNotFoundError wraps the connection error
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


@contextmanager
def _hf_progress_bars(enabled: bool) -> Iterator[None]:
    """huggingface_hub's progress bars off while downloading when ``enabled`` is false."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    if enabled or are_progress_bars_disabled():
        yield
        return
    disable_progress_bars()
    try:
        yield
    finally:
        enable_progress_bars()


class _DownloadProgress:
    """A rich progress bar (a no-op when disabled); yields ``advance(n_bytes)``."""

    def __init__(self, name: str, total: int | None, enabled: bool):
        self.name, self.total, self.enabled = name, total, enabled

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        self.progress = Progress(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn()
        )
        self.progress.start()
        task = self.progress.add_task(f"downloading {self.name}", total=self.total)
        return lambda n: self.progress.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.progress.stop()


def resolve_pretrained(
    model_name: str, pretrained: bool | str, default_tag: str | None = None, progress: bool = True
) -> Path:
    """A local file for ``pretrained``: ``True`` (default tag), a manifest tag, a URL or a path."""
    if pretrained is True:
        if default_tag is None:
            raise WeightsError(
                f"model {model_name!r} has no default pretrained weights; pass a tag or a path (--weights <file>)"
            )
        pretrained = default_tag
    spec = str(pretrained)
    entry = manifest_entry(model_name, spec)
    if entry is not None:
        return fetch(entry, progress)
    if "://" in spec:
        return download(spec, progress=progress)
    path = Path(spec).expanduser()
    if not path.is_file():
        tags = ", ".join(load_manifest().get(model_name, {})) or "none"
        raise WeightsError(f"pretrained={spec!r} is neither a file nor a manifest tag of {model_name!r} (tags: {tags})")
    return path


# ------------------------------------------------------------------------------------ read formats
def read_checkpoint(path: str | os.PathLike, use_ema: bool = True) -> Checkpoint:
    """Read weights from any supported file format (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            return _from_safetensors(path)
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - re-raised with the file name
        raise WeightsError(f"cannot read weights from {path}: {error}") from error
    if isinstance(obj, dict) and "state_dict" in obj and "pytorch-lightning_version" in obj:
        return _from_lightning(obj, use_ema)
    return Checkpoint(_unwrap_official(obj, path), "official")


def _from_safetensors(path: Path) -> Checkpoint:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        metadata = json.loads((handle.metadata() or {}).get(SAFETENSORS_METADATA_KEY, "{}"))
    return Checkpoint(load_file(str(path)), "safetensors", metadata.get("model"), metadata.get("kwargs", {}))


def _from_lightning(ckpt: dict, use_ema: bool) -> Checkpoint:
    hparams = ckpt.get("hyper_parameters", {}) or {}
    prefix = "ema_net." if use_ema and any(k.startswith("ema_net.") for k in ckpt["state_dict"]) else "net."
    state_dict = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    return Checkpoint(state_dict, "lightning", hparams.get("model_name"), dict(hparams.get("net") or {}))


def _unwrap_official(obj: Any, path: Path) -> StateDict:
    while isinstance(obj, dict) and not _is_state_dict(obj):
        key = next((k for k in _WRAPPER_KEYS if k in obj), None)
        if key is None:
            raise WeightsError(f"{path}: no state_dict found; top-level keys {sorted(obj)[:10]}")
        obj = obj[key]
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a state_dict (dict of tensors), got {type(obj).__name__}")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def _is_state_dict(obj: dict) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


# ------------------------------------------------------------------------------------------ loading
def load_state_dict_strict(model: torch.nn.Module, state_dict: StateDict, source: str = "state_dict") -> None:
    """``load_state_dict(strict=True)`` with an error that lists missing/unexpected/mis-shaped keys, or
    says in one line that the file holds another model's weights when none of the keys match."""
    own = model.state_dict()
    if own and not set(own) & set(state_dict):
        examples = ", ".join(sorted(state_dict)[:3]) + (", ..." if len(state_dict) > 3 else "")
        name = type(model).__name__
        raise WeightsError(
            f"{source} holds no weights of {name}: none of its {len(own)} keys is in the file (which has {len(state_dict)} "
            f"others: {examples}); pass {name} weights, or use the --model they belong to"
        )
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and state_dict[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        lines = [f"weights from {source} do not match {type(model).__name__}:"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if items:
                lines.append(
                    f"  {title} ({len(items)}): " + ", ".join(items[:20]) + (" ..." if len(items) > 20 else "")
                )
        raise WeightsError("\n".join(lines))
    model.load_state_dict(state_dict, strict=True)


def load_weights(
    model: torch.nn.Module,
    checkpoint: Checkpoint,
    remap: Callable[[StateDict], StateDict] | None = None,
    source: str = "file",
) -> torch.nn.Module:
    """Load a read checkpoint into ``model``, remapping official keys with the family's hook."""
    state_dict = checkpoint.state_dict
    if checkpoint.format == "official" and remap is not None:
        state_dict = remap(state_dict)
    load_state_dict_strict(model, state_dict, source)
    return model
