"""Checkpoint formats: reading weights files and loading them into a model.

Three formats load into a registered model, detected automatically:

* **safetensors** exported by ``rezoo export`` (architecture kwargs in the file's metadata);
* a **Lightning checkpoint** written by ``rezoo train`` (generator weights under ``net.``, EMA
  weights under ``ema_net.``, architecture kwargs in ``hyper_parameters``);
* an **official upstream release**: a plain state_dict, possibly wrapped (``model_state_dict``,
  ``state_dict``, ``params``, ``params_ema``, ``model``) and/or saved from DataParallel (``module.``);
  the family's ``remap`` hook (its ``official.py``, where upstream names differ) maps the keys.

Everything is read with safetensors or ``torch.load(weights_only=True)``; nothing is unpickled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zoo.errors import WeightsError
from zoo.registry import StateDict

_WRAPPER_KEYS = ("model_state_dict", "state_dict", "params_ema", "params", "model", "net")
SAFETENSORS_METADATA_KEY = "rezoo"


@dataclass
class Checkpoint:
    """Weights read from a file, with what the file says about the architecture."""

    state_dict: StateDict
    format: str  # "safetensors" | "lightning" | "official"
    model_name: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)


def read_checkpoint(path: str | os.PathLike, use_ema: bool = True) -> Checkpoint:
    """Read weights from any supported file format (see the module docstring); a Lightning checkpoint gives its
    EMA weights when it has them and ``use_ema``, else the generator's."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            return _from_safetensors(path)
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - re-raised with the file name
        raise WeightsError(f"cannot read weights from {path}: {error}") from error
    if _is_lightning(obj):
        return _from_lightning(obj, use_ema)
    return Checkpoint(_unwrap_official(obj, path), "official")


def lightning_state(path: str | os.PathLike, prefix: str) -> StateDict:
    """The weights under ``prefix`` (e.g. ``discriminator.``), prefix removed, of the Lightning checkpoint
    ``path``; ``{}`` when the file is not a Lightning checkpoint or has none."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    return _under(obj["state_dict"], prefix) if _is_lightning(obj) else {}


def _is_lightning(obj: Any) -> bool:
    return isinstance(obj, dict) and "state_dict" in obj and "pytorch-lightning_version" in obj


def _under(state_dict: StateDict, prefix: str) -> StateDict:
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _from_safetensors(path: Path) -> Checkpoint:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        metadata = json.loads((handle.metadata() or {}).get(SAFETENSORS_METADATA_KEY, "{}"))
    return Checkpoint(load_file(str(path)), "safetensors", metadata.get("model"), metadata.get("kwargs", {}))


def _from_lightning(ckpt: dict, use_ema: bool) -> Checkpoint:
    hparams = ckpt.get("hyper_parameters", {}) or {}
    prefix = "ema_net." if use_ema and any(k.startswith("ema_net.") for k in ckpt["state_dict"]) else "net."
    state_dict = _under(ckpt["state_dict"], prefix)
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
        obj = _under(obj, "module.")
    return obj


def _is_state_dict(obj: dict) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_state_dict_strict(model: torch.nn.Module, state_dict: StateDict, source: str = "state_dict") -> None:
    """``load_state_dict(strict=True)`` with an error that lists missing/unexpected/mis-shaped keys, or
    says in one line that the file holds another model's weights when none of the keys match."""
    own = model.state_dict()
    if own and not set(own) & set(state_dict):
        examples = ", ".join(sorted(state_dict)[:3]) + (", ..." if len(state_dict) > 3 else "")
        name = type(model).__name__
        raise WeightsError(
            f"{source} holds no weights of {name}: none of its {len(own)} keys is in the file (which has "
            f"{len(state_dict)} others: {examples}); pass {name} weights, or use the --model they belong to"
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


def load_checkpoint(
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
