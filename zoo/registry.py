"""Model registry: name -> builder plus what tools need to know about the model (timm-style metadata).

Model files register their builders with ``@register_model``; ``zoo.create_model`` builds them and
``zoo.model_info`` describes them. Only torch is imported here, so ``hubconf.py`` stays light.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from zoo.errors import UnknownModelError

StateDict = dict[str, torch.Tensor]
TASKS = ("text_removal", "restoration", "super_resolution", "recognition", "text_detection")


@dataclass(frozen=True)
class ModelEntry:
    """A registered model.

    ``inputs``: what the eval forward takes, the image first, then its conditions as keyword
    arguments (``model(image, mask=m)``, ``model(image, degradation=d)``, ``model(lr)``);
    ``optional``: the conditions it can do without. ``scale``: output size / input size.
    ``pad_multiple``: the multiple the forward pads H and W to internally (1: none needed).
    ``composites``: the eval output is pasted into the input outside the (given) mask.
    ``params``: parameters of the default configuration (declared, so that listing models builds
    none; the tests build each model and compare). ``onnx``: ``rezoo export --format onnx`` can
    export the eval forward (dynamic height and width); otherwise ``onnx_note`` says why not.
    ``base``: the builder's keyword arguments naming an external frozen base it loads (GramSR:
    ``base_model``, ``dino_model``); the model's ``state_dict()`` then holds only its own weights and
    ``params`` counts those (of the released configuration), not the base. ``read_folder``: reads
    ``pretrained=<folder>`` (an official release of several files) into a ``weights.Checkpoint``.
    """

    name: str
    builder: Callable[..., torch.nn.Module]
    task: str
    inputs: tuple[str, ...] = ("image",)
    optional: tuple[str, ...] = ()
    scale: int = 1
    pad_multiple: int = 1
    composites: bool = False
    params: int = 0
    default_tag: str | None = None
    remap: Callable[[StateDict], StateDict] | None = None  # official upstream keys -> ours
    onnx: bool = False
    onnx_note: str = ""
    base: tuple[str, ...] = ()
    read_folder: Callable[[Path], Any] | None = None

    @property
    def conditions(self) -> tuple[str, ...]:
        """The keyword conditions (every input after the image)."""
        return self.inputs[1:]

    @property
    def required(self) -> tuple[str, ...]:
        """The conditions a call cannot do without."""
        return tuple(name for name in self.conditions if name not in self.optional)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    *,
    task: str,
    inputs: tuple[str, ...] = ("image",),
    optional: tuple[str, ...] = (),
    scale: int = 1,
    pad_multiple: int = 1,
    composites: bool = False,
    params: int = 0,
    default_tag: str | None = None,
    remap: Callable[[StateDict], StateDict] | None = None,
    onnx: bool = False,
    onnx_note: str = "",
    base: tuple[str, ...] = (),
    read_folder: Callable[[Path], Any] | None = None,
) -> Callable:
    """Decorator registering ``builder(**kwargs) -> nn.Module`` under ``name`` with its metadata."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if not inputs or inputs[0] not in ("image", "lr") or not set(optional) <= set(inputs[1:]):
        raise ValueError(
            f"inputs must start with 'image' or 'lr' and contain every optional one; got {inputs}, {optional}"
        )

    def decorator(builder: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(
            name,
            builder,
            task,
            tuple(inputs),
            tuple(optional),
            scale,
            pad_multiple,
            composites,
            params,
            default_tag,
            remap,
            onnx,
            onnx_note,
            tuple(base),
            read_folder,
        )
        return builder

    return decorator


def registered_names(pattern: str = "*") -> list[str]:
    """Sorted registered names matching a shell-style ``pattern``."""
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; registered models: {', '.join(registered_names()) or 'none'}"
        ) from None
