"""rezoo: a model zoo for scene-text removal and image restoration.

Public API: :func:`list_models`, :func:`create_model`, :func:`load_weights`.
"""
from zoo._compat import ensure_torchvision_importable

TORCHVISION_OPS = ensure_torchvision_importable()  # first: before anything imports torchvision

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

from zoo import weights as _weights  # noqa: E402
from zoo.registry import get_entry, list_models, register_model  # noqa: E402

# Model families register themselves on import; their model files import torch only.
from zoo.deeperaser import model as _deeperaser  # noqa: E402,F401
from zoo.garnet import model as _garnet  # noqa: E402,F401
from zoo.ste import model as _ste  # noqa: E402,F401
from zoo.pip import model as _pip  # noqa: E402,F401

__all__ = ["create_model", "list_models", "load_weights", "register_model"]


def _read_pretrained(name: str, pretrained: bool | str | Path, progress: bool) -> tuple[Path, _weights.Checkpoint]:
    """Resolve ``pretrained`` to a local file of model ``name`` and read it."""
    spec = pretrained if pretrained is True else str(pretrained)
    path = _weights.resolve_pretrained(name, spec, get_entry(name).default_tag, progress)
    checkpoint = _weights.read_checkpoint(path)
    if checkpoint.model_name not in (None, name):
        raise ValueError(f"{path} holds weights of {checkpoint.model_name!r}, not {name!r}")
    return path, checkpoint


def load_weights(model: torch.nn.Module, name: str, pretrained: bool | str | Path, progress: bool = True) -> torch.nn.Module:
    """Load ``pretrained`` (True, a manifest tag, a URL or a path in any supported format) into ``model``."""
    path, checkpoint = _read_pretrained(name, pretrained, progress)
    return _weights.load_weights(model, checkpoint, get_entry(name).remap, source=str(path))


def create_model(name: str, pretrained: bool | str | Path = False, progress: bool = True, **kwargs: Any) -> torch.nn.Module:
    """Build a registered model, optionally with weights.

    ``pretrained``: ``False``; ``True`` (the model's default tag); a manifest tag; a URL; or a local
    file (official release, exported safetensors or a Lightning checkpoint; detected automatically).
    Architecture kwargs recorded in an exported or Lightning file are used unless overridden here.
    """
    entry = get_entry(name)
    if pretrained is False or pretrained is None:
        return entry.builder(**kwargs)
    path, checkpoint = _read_pretrained(name, pretrained, progress)
    model = entry.builder(**{**checkpoint.model_kwargs, **kwargs})
    return _weights.load_weights(model, checkpoint, entry.remap, source=str(path))
