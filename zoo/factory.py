"""Building models: names, descriptions, example inputs, and models with weights (timm's ``_factory.py``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from zoo.checkpoints import Checkpoint, load_checkpoint, read_checkpoint
from zoo.errors import WeightsError
from zoo.hub import resolve_pretrained
from zoo.manifest import load_manifest
from zoo.registry import ModelInfo, registered_names, registration


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Sorted registered names matching a shell-style ``pattern``; with ``pretrained=True`` only those
    with weights in the manifest."""
    names = registered_names(pattern)
    if pretrained:
        manifest = load_manifest()
        names = [name for name in names if manifest.get(name)]
    return names


def model_info(name: str) -> ModelInfo:
    """The :class:`~zoo.registry.ModelInfo` of model ``name``, with its manifest tags."""
    return dataclasses.replace(registration(name).info, tags=tuple(load_manifest().get(name, {})))


def example_inputs(
    name: str, batch: int = 1, size: int | tuple[int, int] = 64, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, dict[str, Any]]:
    """``(image, conditions)`` that ``model(image, **conditions)`` accepts, random: an image of ``size`` (a side,
    or (H, W); super-resolution: the LR at ``size // scale``; recognizers: a crop ``input_height`` px high, ``size``
    wide), a text mask, degradation classes (every required and optional condition)."""
    info = model_info(name)
    height, width = (size, size) if isinstance(size, int) else size
    if info.input_height is not None:
        shape = (batch, info.input_channels, info.input_height, width)
    else:
        shape = (batch, info.input_channels, height // info.scale, width // info.scale)
    image = torch.rand(shape, generator=generator)
    conditions: dict[str, Any] = {}
    for condition in info.conditions:
        if condition == "mask":
            conditions["mask"] = (torch.rand(batch, 1, *shape[2:], generator=generator) > 0.8).float()
        elif condition in info.condition_values:
            conditions[condition] = torch.arange(batch) % len(info.condition_values[condition])
        else:
            raise ValueError(f"{name}: no example for the condition {condition!r}")
    return image, conditions


def read_pretrained(
    name: str, pretrained: bool | str | Path, progress: bool = True, use_ema: bool = True
) -> tuple[Path, Checkpoint]:
    """Resolve ``pretrained`` (True: the default tag; a manifest tag, a URL, a file in any supported format, or
    for a family whose official release is several files, a folder of them) to a local path and read it (a
    Lightning checkpoint: its EMA weights when it has them and ``use_ema``)."""
    entry = registration(name)
    folder = Path(str(pretrained)).expanduser()
    if entry.read_folder is not None and pretrained is not True and folder.is_dir():
        return folder, entry.read_folder(folder)
    spec = pretrained if pretrained is True else str(pretrained)
    path = resolve_pretrained(name, spec, entry.info.default_tag, progress)
    checkpoint = read_checkpoint(path, use_ema)
    if checkpoint.model_name not in (None, name):
        raise WeightsError(
            f"{path} holds weights of {checkpoint.model_name!r}, not {name!r}: "
            f"pass weights of {name!r} or use --model {checkpoint.model_name}"
        )
    return path, checkpoint


def load_weights(
    model: torch.nn.Module, name: str, pretrained: bool | str | Path, progress: bool = True
) -> torch.nn.Module:
    """Load ``pretrained`` (True, a manifest tag, a URL or a path in any supported format) into ``model``."""
    path, checkpoint = read_pretrained(name, pretrained, progress)
    return load_checkpoint(model, checkpoint, registration(name).remap, source=str(path))


def create_model(
    name: str, pretrained: bool | str | Path = False, progress: bool = True, **kwargs: Any
) -> torch.nn.Module:
    """Build a registered model, optionally with weights.

    ``pretrained``: ``False``; ``True`` (the model's default tag); a manifest tag; a URL; or a local
    file (official release, exported safetensors or a Lightning checkpoint; detected automatically);
    for a family whose release is several files (GramSR), also a folder of them.
    Architecture kwargs recorded in an exported or Lightning file are used unless overridden here.
    """
    if pretrained is False or pretrained is None:
        return registration(name).builder(**kwargs)
    path, checkpoint = read_pretrained(name, pretrained, progress)
    return build_model(name, checkpoint, str(path), **kwargs)


def build_model(name: str, checkpoint: Checkpoint, source: str = "checkpoint", **kwargs: Any) -> torch.nn.Module:
    """Model ``name`` built with the architecture arguments ``checkpoint`` records (``kwargs`` win) and its weights
    (official keys remapped by the family's hook); ``source`` names the file in errors."""
    entry = registration(name)
    model = entry.builder(**{**checkpoint.model_kwargs, **kwargs})
    return load_checkpoint(model, checkpoint, entry.remap, source=source)
