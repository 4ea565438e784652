"""rezoo: a model zoo for scene-text removal, image restoration and super-resolution.

Public API: :func:`list_models`, :func:`model_info`, :func:`create_model`, :func:`load_weights`.
"""

from zoo._compat import ensure_torchvision_importable

TORCHVISION_OPS = ensure_torchvision_importable()  # first: before anything imports torchvision

from importlib import metadata as _metadata  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

from zoo import weights as _weights  # noqa: E402

# Model families register themselves on import; their model files import torch only.
from zoo.craft import model as _craft  # noqa: E402,F401
from zoo.deeperaser import model as _deeperaser  # noqa: E402,F401
from zoo.errors import WeightsError  # noqa: E402
from zoo.garnet import model as _garnet  # noqa: E402,F401
from zoo.gramsr import model as _gramsr  # noqa: E402,F401  (diffusers/peft/transformers imported when built)
from zoo.pip import model as _pip  # noqa: E402,F401
from zoo.recognition import crnn as _crnn  # noqa: E402,F401
from zoo.recognition import easyocr as _easyocr  # noqa: E402,F401
from zoo.registry import get_entry, register_model, registered_names  # noqa: E402
from zoo.ste import model as _ste  # noqa: E402,F401
from zoo.textdiff import model as _textdiff  # noqa: E402,F401

try:
    __version__ = _metadata.version("rezoo")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__", "create_model", "list_models", "load_weights", "model_info", "register_model"]


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Sorted registered names matching a shell-style ``pattern``; with ``pretrained=True`` only those
    with weights in the manifest."""
    names = registered_names(pattern)
    if pretrained:
        manifest = _weights.load_manifest()
        names = [name for name in names if manifest.get(name)]
    return names


def model_info(name: str) -> dict[str, Any]:
    """What a registered model is, as a plain dict: ``name``, ``task``, ``inputs`` (the image, then the
    keyword conditions), ``optional`` (conditions it can do without), ``scale``, ``pad_multiple``,
    ``composites`` (eval output pasted into the input outside the mask), ``default_tag``, ``tags``
    (weights in the manifest), ``params`` (of the default configuration), ``onnx`` (exportable with
    ``rezoo export --format onnx``), ``onnx_note`` (why not, when it is not) and ``base`` (the
    kwargs naming an external frozen base the model needs, e.g. GramSR's ``base_model``/``dino_model``)."""
    entry = get_entry(name)
    return {
        "name": name,
        "task": entry.task,
        "inputs": entry.inputs,
        "optional": entry.optional,
        "scale": entry.scale,
        "pad_multiple": entry.pad_multiple,
        "composites": entry.composites,
        "default_tag": entry.default_tag,
        "tags": tuple(_weights.load_manifest().get(name, {})),
        "params": entry.params,
        "onnx": entry.onnx,
        "onnx_note": entry.onnx_note,
        "base": entry.base,
    }


def _read_pretrained(name: str, pretrained: bool | str | Path, progress: bool) -> tuple[Path, _weights.Checkpoint]:
    """Resolve ``pretrained`` to a local file of model ``name`` and read it (a folder, for a family
    whose official release is several files: its ``read_folder``)."""
    read_folder = get_entry(name).read_folder
    if read_folder is not None and pretrained is not True and Path(str(pretrained)).expanduser().is_dir():
        return Path(str(pretrained)).expanduser(), read_folder(Path(str(pretrained)).expanduser())
    spec = pretrained if pretrained is True else str(pretrained)
    path = _weights.resolve_pretrained(name, spec, get_entry(name).default_tag, progress)
    checkpoint = _weights.read_checkpoint(path)
    if checkpoint.model_name not in (None, name):
        raise WeightsError(
            f"{path} holds weights of {checkpoint.model_name!r}, not {name!r}: pass weights of {name!r} or use --model {checkpoint.model_name}"
        )
    return path, checkpoint


def load_weights(
    model: torch.nn.Module, name: str, pretrained: bool | str | Path, progress: bool = True
) -> torch.nn.Module:
    """Load ``pretrained`` (True, a manifest tag, a URL or a path in any supported format) into ``model``."""
    path, checkpoint = _read_pretrained(name, pretrained, progress)
    return _weights.load_weights(model, checkpoint, get_entry(name).remap, source=str(path))


def create_model(
    name: str, pretrained: bool | str | Path = False, progress: bool = True, **kwargs: Any
) -> torch.nn.Module:
    """Build a registered model, optionally with weights.

    ``pretrained``: ``False``; ``True`` (the model's default tag); a manifest tag; a URL; or a local
    file (official release, exported safetensors or a Lightning checkpoint; detected automatically);
    for a family whose release is several files (GramSR), also a folder of them.
    Architecture kwargs recorded in an exported or Lightning file are used unless overridden here.
    """
    entry = get_entry(name)
    if pretrained is False or pretrained is None:
        return entry.builder(**kwargs)
    path, checkpoint = _read_pretrained(name, pretrained, progress)
    model = entry.builder(**{**checkpoint.model_kwargs, **kwargs})
    return _weights.load_weights(model, checkpoint, entry.remap, source=str(path))
