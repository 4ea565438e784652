"""Downloads and the cache: the local file of a manifest entry, a URL or a Hugging Face Hub file.

Manifest entries download from a plain ``url:`` (urllib, with a timeout) or from the Hugging Face Hub
(``hf: {repo_id, filename, revision}``, huggingface_hub) into :func:`cache_dir`; a cached file is used
without any network call, and a failed download raises :class:`~zoo.errors.DownloadError` in one line
with the URL, the reason and the way out. A ``url:`` entry with ``archive_member: <name>`` names a zip
archive: that member is extracted into the cache (the archive is not kept) and its sha256 is checked.
An entry with ``package: {name, path}`` is first looked up inside that installed Python package
(``name`` is the import name, ``path`` relative to the package's folder): when the package is
installed and holds the file, that file is used as it is, with no cache and no network.

The manifest's ``auxiliary:`` files (third-party networks of the losses and metrics) come through
:func:`fetch_auxiliary`: the user's local file as it is, else a copy in the cache or torch hub's folder,
else a download, both checked against the manifest's sha256.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import importlib.util
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
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from zoo.errors import DownloadError, UnverifiedWeightsWarning, WeightsError
from zoo.manifest import auxiliary_entry, load_manifest, manifest_entry


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


def fetch_auxiliary(name: str, path: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """The local file of the manifest's ``auxiliary:`` entry ``name`` (a third-party network of a loss or metric).

    ``path`` (the user's file) is used as it is. Else the file under its published name in :func:`cache_dir` or
    torch hub's ``checkpoints`` folder (where torchvision and pytorch-fid keep the same files), else a download
    into the cache; both are checked against the entry's sha256. Failures are one-line errors naming the URL and
    the entry's ``local`` ways to pass a file instead.
    """
    entry = auxiliary_entry(name)
    url, expected, local = entry["url"], entry["sha256"].lower(), entry["local"]
    file_name = PurePosixPath(urllib.parse.urlparse(url).path).name
    if path is not None:
        given = Path(path).expanduser()
        if not given.is_file():
            raise WeightsError(f"{given} is not a file (expected {entry['description']}, {file_name} from {url})")
        return given
    for folder in dict.fromkeys((cache_dir(), Path(torch.hub.get_dir()) / "checkpoints")):
        cached = folder / file_name
        if cached.is_file():
            stat = cached.stat()
            actual = _cached_sha256(str(cached), stat.st_size, stat.st_mtime_ns)
            if actual != expected:
                raise DownloadError(
                    f"{cached} is not the file of {url}: sha256 {actual}, expected {expected}; delete it to download "
                    f"it again, or pass a local file ({local})"
                )
            return cached
    return download(url, expected, file_name, progress, local=local)


@functools.lru_cache(maxsize=16)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    """:func:`sha256_file` of a cached file, computed once per process while its size and time stay the same."""
    return sha256_file(path)


# ----------------------------------------------------------------------------------------- download
DEFAULT_TIMEOUT = 60.0
TIMEOUT_ENV = "REZOO_DOWNLOAD_TIMEOUT"
LOCAL_WEIGHTS = "--weights <file>, or pretrained=<file> in Python"  # how to pass a model's weights file


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


def _failed(url: str, reason: str, target: Path, local: str = LOCAL_WEIGHTS) -> DownloadError:
    """The one-line error of a failed download: the URL, the reason and the way out (``local``: how to pass
    a local file instead)."""
    return DownloadError(f"cannot download {url}: {reason}; place the file at {target} or pass a local file ({local})")


def _check_sha256(url: str, actual: str, expected: str | None, target: Path, local: str = LOCAL_WEIGHTS) -> None:
    if expected and actual != expected.lower():
        reason = f"sha256 mismatch: expected {expected.lower()}, got {actual} (download deleted)"
        raise _failed(url, reason, target, local)


def download(
    url: str,
    sha256: str | None = None,
    file_name: str | None = None,
    progress: bool = True,
    archive_member: str | None = None,
    local: str = LOCAL_WEIGHTS,
) -> Path:
    """Download ``url`` (urllib, ``$REZOO_DOWNLOAD_TIMEOUT``) into the cache and return its path.

    A cached file is returned without any network call. A new download goes to a temporary file in
    the cache folder, is checked against ``sha256`` (when given) and only then renamed into place, so
    an interrupted or corrupt download leaves nothing behind. With ``archive_member`` the URL is a zip
    archive: that member replaces the downloaded archive (``file_name`` defaults to the member's name)
    and ``sha256`` is the member's. Any failure raises :class:`DownloadError` (its way out: ``local``).
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
            # S310: only the manifest's URLs and those the user gives
            with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
                total = int(response.headers.get("Content-Length") or 0) or None
                with _DownloadProgress(name, total, progress) as advance:
                    while block := response.read(1 << 20):
                        out.write(block)
                        digest.update(block)
                        advance(len(block))
        except (OSError, http.client.HTTPException) as error:  # URLError, HTTPError, timeouts, lost connections
            raise _failed(url, _url_reason(url, error, timeout), target, local) from error
        actual = _extract_member(tmp_name, archive_member, url, target, local) if archive_member else digest.hexdigest()
        _check_sha256(url, actual, sha256, target, local)
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def _extract_member(archive: str, member: str, url: str, target: Path, local: str) -> str:
    """Replace the zip file ``archive`` by its ``member`` (through a temporary file next to it); return
    the member's sha256. A file that is not a zip, or lacks the member, raises :class:`DownloadError`."""
    digest = hashlib.sha256()
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".member", dir=Path(archive).parent)
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with zipfile.ZipFile(archive) as zipped:
                    if member not in zipped.namelist():
                        members = ", ".join(zipped.namelist()[:10]) or "none"
                        reason = f"the zip archive has no member {member} (members: {members})"
                        raise _failed(url, reason, target, local)
                    with zipped.open(member) as source:
                        while block := source.read(1 << 20):
                            out.write(block)
                            digest.update(block)
            except zipfile.BadZipFile as error:
                raise _failed(url, f"not a zip archive ({error})", target, local) from error
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
