"""Weights: manifest look-up, cached download, checkpoint format detection and key remapping.

Three formats load into a registered model, detected automatically:

* **safetensors** exported by ``tools/export.py`` (architecture kwargs in the file's metadata);
* a **Lightning checkpoint** written by ``tools/train.py`` (generator weights under ``net.``, EMA
  weights under ``ema_net.``, architecture kwargs in ``hyper_parameters``);
* an **official upstream release**: a plain state_dict, possibly wrapped (``model_state_dict``,
  ``state_dict``, ``params``, ``params_ema``, ``model``) and/or saved from DataParallel (``module.``);
  the family's ``remap`` hook (its ``official.py``, where upstream names differ) maps the keys.

Everything is read with safetensors or ``torch.load(weights_only=True)``; nothing is unpickled.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from zoo.errors import WeightsError

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
def load_manifest(path: str | os.PathLike | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """``{model: {tag: entry}}`` from the package's ``zoo/manifest.yaml`` (or ``path``)."""
    import yaml

    text = Path(path).read_text(encoding="utf-8") if path else resources.files("zoo").joinpath("manifest.yaml").read_text(encoding="utf-8")
    return (yaml.safe_load(text) or {}).get("models", {}) or {}


def manifest_entry(model_name: str, tag: str, manifest: dict | None = None) -> dict[str, Any] | None:
    return (manifest if manifest is not None else load_manifest()).get(model_name, {}).get(tag)


# ----------------------------------------------------------------------------------------- download
def cache_dir() -> Path:
    """``$REZOO_CACHE`` or ``$TORCH_HOME/hub/checkpoints``."""
    if os.environ.get("REZOO_CACHE"):
        return Path(os.environ["REZOO_CACHE"])
    return Path(torch.hub.get_dir()) / "checkpoints"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, sha256: str | None = None, file_name: str | None = None, progress: bool = True) -> Path:
    """Download ``url`` into the cache and return its path.

    A cached file is returned without any network call. A new download goes to a temporary file in
    the cache folder, is checked against ``sha256`` (when given) and only then renamed into place, so
    an interrupted or corrupt download leaves nothing behind under the final name.
    """
    name = file_name or Path(urllib.parse.urlparse(url).path).name
    if not name:
        raise ValueError(f"cannot derive a file name from {url!r}; give file_name")
    target = cache_dir() / name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    handle, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url) as response:  # noqa: S310 (manifest URLs)
            total = int(response.headers.get("Content-Length") or 0) or None
            with _DownloadProgress(name, total, progress) as advance:
                while block := response.read(1 << 20):
                    out.write(block)
                    digest.update(block)
                    advance(len(block))
        if sha256 and digest.hexdigest() != sha256.lower():
            raise RuntimeError(f"sha256 mismatch for {url}: expected {sha256}, got {digest.hexdigest()}; file discarded")
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


class _DownloadProgress:
    """A rich progress bar (a no-op when disabled); yields ``advance(n_bytes)``."""

    def __init__(self, name: str, total: int | None, enabled: bool):
        self.name, self.total, self.enabled = name, total, enabled

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        self.progress = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn())
        self.progress.start()
        task = self.progress.add_task(f"downloading {self.name}", total=self.total)
        return lambda n: self.progress.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.progress.stop()


def resolve_pretrained(model_name: str, pretrained: bool | str, default_tag: str | None = None, progress: bool = True) -> Path:
    """A local file for ``pretrained``: ``True`` (default tag), a manifest tag, a URL or a path."""
    if pretrained is True:
        if default_tag is None:
            raise WeightsError(f"model {model_name!r} has no default pretrained weights; pass a tag or a path (--weights <file>)")
        pretrained = default_tag
    spec = str(pretrained)
    entry = manifest_entry(model_name, spec)
    if entry is not None:
        return download(entry["url"], entry.get("sha256"), entry.get("file_name"), progress)
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
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), framework="pt") as handle:
            metadata = json.loads((handle.metadata() or {}).get(SAFETENSORS_METADATA_KEY, "{}"))
        return Checkpoint(load_file(str(path)), "safetensors", metadata.get("model"), metadata.get("kwargs", {}))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - re-raised with the file name
        raise WeightsError(f"cannot read weights from {path}: {error}") from error
    if isinstance(obj, dict) and "state_dict" in obj and "pytorch-lightning_version" in obj:
        return _from_lightning(obj, use_ema)
    return Checkpoint(_unwrap_official(obj, path), "official")


def _from_lightning(ckpt: dict, use_ema: bool) -> Checkpoint:
    hparams = ckpt.get("hyper_parameters", {}) or {}
    prefix = "ema_net." if use_ema and any(k.startswith("ema_net.") for k in ckpt["state_dict"]) else "net."
    state_dict = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
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
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _is_state_dict(obj: dict) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


# ------------------------------------------------------------------------------------------ loading
def load_state_dict_strict(model: torch.nn.Module, state_dict: StateDict, source: str = "state_dict") -> None:
    """``load_state_dict(strict=True)`` with an error that lists missing/unexpected/mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}" for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        lines = [f"weights from {source} do not match {type(model).__name__}:"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:20]) + (" ..." if len(items) > 20 else ""))
        raise WeightsError("\n".join(lines))
    model.load_state_dict(state_dict, strict=True)


def load_weights(
    model: torch.nn.Module, checkpoint: Checkpoint, remap: Callable[[StateDict], StateDict] | None = None, source: str = "file"
) -> torch.nn.Module:
    """Load a read checkpoint into ``model``, remapping official keys with the family's hook."""
    state_dict = checkpoint.state_dict
    if checkpoint.format == "official" and remap is not None:
        state_dict = remap(state_dict)
    load_state_dict_strict(model, state_dict, source)
    return model
