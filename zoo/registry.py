"""Model registry: name -> builder, default pretrained tag and official-key remapping hook.

Model files register their builders with ``@register_model``; ``zoo.create_model`` looks them up.
Only torch is imported here, so ``hubconf.py`` stays light.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Callable

import torch

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., torch.nn.Module]
    default_tag: str | None = None
    remap: Callable[[StateDict], StateDict] | None = None  # official upstream keys -> ours


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, *, default_tag: str | None = None, remap: Callable[[StateDict], StateDict] | None = None
) -> Callable:
    """Decorator registering ``builder(**kwargs) -> nn.Module`` under ``name``."""

    def decorator(builder: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, default_tag, remap)
        return builder

    return decorator


def list_models(pattern: str = "*") -> list[str]:
    """Sorted registered names matching a shell-style ``pattern``."""
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(list_models()) or 'none'}") from None
