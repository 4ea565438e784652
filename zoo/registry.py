"""Model registry: name -> builder and :class:`ModelInfo`, the one description of a model that tools read.

Model files register their builders with ``@register_model(name, **fields)`` (timm's ``@register_model``
with its ``PretrainedCfg`` beside it); ``zoo.create_model`` builds them and ``zoo.model_info`` describes
them. Only torch is imported here, so ``hubconf.py`` stays light.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zoo.errors import UnknownModelError

StateDict = dict[str, torch.Tensor]
TASKS = ("text_removal", "restoration", "super_resolution", "recognition", "text_detection")


@dataclass(frozen=True)
class ModelInfo:
    """What a registered model is and what tools may switch on (its default configuration).

    ``inputs``: what the eval forward takes, the image first (``"image"``, or ``"lr"`` for super-resolution),
    then its conditions as keyword arguments (``model(image, mask=m)``, ``model(image, degradation=d)``);
    ``optional``: the conditions it can do without; ``condition_values``: the named values a condition takes
    (PIP's degradation classes, index = class). ``scale``: output size / input size. ``pad_multiple``: the
    multiple the forward pads H and W to internally (1: none needed). ``composites``: the eval output is pasted
    into the input outside the (given) mask. ``params``: parameters of the default configuration (declared, so
    listing models builds none; the tests build each model and compare). ``default_tag`` and ``tags``: weights
    in the manifest.

    Capabilities: ``blind_flag``, the architecture argument that adds a sensor so the optional conditions may be
    omitted (PIP's ``sensor``); ``train_forward``, ``model.forward_train(image, **conditions)`` returns the typed
    training output; ``refiner``, ``model.refine(lr, coarse, steps=None)`` refines another method's SR output;
    ``sampler``, an iterative sampler (``model.sample_residual(lr, steps=)``, its steps the ``sample_steps``
    argument); ``recognizer``, ``model.recognize(crops)`` reads words, from ``input_channels``-channel crops
    ``input_height`` px high, over ``alphabet`` (class i+1 = alphabet[i], 0 = the CTC blank); ``detector``,
    ``model.detect(images)`` finds word boxes. ``onnx``: ``rezoo export --format onnx`` exports the eval forward
    (dynamic height and width), taking ``inputs`` less those in ``optional``; otherwise ``onnx_note`` says why
    not. ``base``: the builder's arguments naming an external frozen base it loads (GramSR: ``base_model``,
    ``dino_model``); ``state_dict()`` then holds only the model's own weights and ``params`` counts those.
    ``base_configs``: those arguments as the released base's configurations, which build it at its real size with
    random weights (benchmarks, without a download).
    """

    name: str
    task: str
    inputs: tuple[str, ...] = ("image",)
    optional: tuple[str, ...] = ()
    condition_values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    scale: int = 1
    pad_multiple: int = 1
    composites: bool = False
    params: int = 0
    default_tag: str | None = None
    tags: tuple[str, ...] = ()
    blind_flag: str | None = None
    train_forward: bool = False
    refiner: bool = False
    sampler: bool = False
    recognizer: bool = False
    detector: bool = False
    input_channels: int = 3
    input_height: int | None = None
    alphabet: str = ""
    onnx: bool = False
    onnx_note: str = ""
    base: tuple[str, ...] = ()
    base_configs: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if not self.inputs or self.inputs[0] not in ("image", "lr") or not set(self.optional) <= set(self.conditions):
            raise ValueError(f"inputs must start with 'image' or 'lr' and hold every optional one; got {self.inputs}")

    @property
    def conditions(self) -> tuple[str, ...]:
        """The keyword conditions (every input after the image)."""
        return self.inputs[1:]

    @property
    def required(self) -> tuple[str, ...]:
        """The conditions a call cannot do without."""
        return tuple(name for name in self.conditions if name not in self.optional)


# The fields every model of a kind shares, spread into ``@register_model`` (``**TEXT_ERASER``): a text eraser takes the
# image and its text mask and has a typed training forward and an ONNX export; a super-resolver takes the LR image and
# has a typed training forward; a word recognizer reads grey crops.
TEXT_ERASER = dict(task="text_removal", inputs=("image", "mask"), train_forward=True, onnx=True)
SUPER_RESOLVER = dict(task="super_resolution", inputs=("lr",), train_forward=True)
WORD_RECOGNIZER = dict(task="recognition", recognizer=True, input_channels=1)


@dataclass(frozen=True)
class Registration:
    """A builder with its description and the weight hooks: ``remap`` (official upstream keys -> ours) and
    ``read_folder`` (reads ``pretrained=<folder>``, an official release of several files, into a checkpoint)."""

    builder: Callable[..., torch.nn.Module]
    info: ModelInfo
    remap: Callable[[StateDict], StateDict] | None = None
    read_folder: Callable[[Path], Any] | None = None


_REGISTRY: dict[str, Registration] = {}


def register_model(
    name: str,
    *,
    remap: Callable[[StateDict], StateDict] | None = None,
    read_folder: Callable[[Path], Any] | None = None,
    **fields: Any,
) -> Callable:
    """Decorator registering ``builder(**kwargs) -> nn.Module`` under ``name`` with ``ModelInfo(name, **fields)``."""
    tuples = {key: tuple(value) for key, value in fields.items() if key in ("inputs", "optional", "tags", "base")}
    info = ModelInfo(name=name, **{**fields, **tuples})

    def decorator(builder: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = Registration(builder, info, remap, read_folder)
        return builder

    return decorator


def registered_names(pattern: str = "*") -> list[str]:
    """Sorted registered names matching a shell-style ``pattern``."""
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


def registration(name: str) -> Registration:
    """The builder, description and weight hooks of model ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(registered_names()) or "none"
        raise UnknownModelError(f"unknown model {name!r}; registered models: {known}") from None
