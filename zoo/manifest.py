"""The weights manifest (``zoo/manifest.yaml``, or the file named by ``$REZOO_MANIFEST``): three sections.

* ``models: {model: {tag: entry}}``: released weights of the zoo's models (the entry's fields: the file's comment);
* ``bases: {name: record}``: frozen third-party models a zoo model builds on, loaded from a local folder or a hub id;
* ``auxiliary: {name: entry}``: third-party networks the losses and metrics load (VGG-16, AlexNet, the FID
  Inception), each with ``url``, ``sha256`` (or ``sha256_prefix``), ``license`` and ``used_by``.

Only reads the YAML; :mod:`zoo.hub` downloads what it names.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from zoo.errors import WeightsError

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


def auxiliary_entry(name: str, path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The manifest's ``auxiliary:`` entry ``name`` (a third-party file a loss or metric loads); a
    :class:`~zoo.errors.WeightsError` naming the manifest and its entries when it has none."""
    entries = _read_manifest(path).get("auxiliary", {}) or {}
    if name not in entries:
        source = path or os.environ.get(MANIFEST_ENV) or "zoo/manifest.yaml"
        raise WeightsError(
            f"the weights manifest {source} has no auxiliary: entry {name!r} (entries: {', '.join(entries) or 'none'});"
            " add it, or unset $REZOO_MANIFEST to use the package's manifest"
        )
    return entries[name]
