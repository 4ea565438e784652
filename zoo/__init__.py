"""rezoo: a model zoo for scene-text removal, image restoration and super-resolution.

Public API: :func:`list_models`, :func:`model_info` (a :class:`ModelInfo`), :func:`example_inputs`,
:func:`create_model`, :func:`build_model`, :func:`load_weights`, :func:`read_pretrained` (``zoo.factory``),
:func:`register_model`.
"""

from zoo._compat import ensure_torchvision_importable

TORCHVISION_OPS = ensure_torchvision_importable()  # first: before anything imports torchvision

from importlib import metadata as _metadata  # noqa: E402

# Model families register themselves on import; their model files import torch only.
from zoo.craft import model as _craft  # noqa: E402,F401
from zoo.deeperaser import model as _deeperaser  # noqa: E402,F401
from zoo.factory import (  # noqa: E402
    build_model,
    create_model,
    example_inputs,
    list_models,
    load_weights,
    model_info,
    read_pretrained,
)
from zoo.garnet import model as _garnet  # noqa: E402,F401
from zoo.gramsr import model as _gramsr  # noqa: E402,F401  (diffusers/peft/transformers imported when built)
from zoo.pip import model as _pip  # noqa: E402,F401
from zoo.recognition import crnn as _crnn  # noqa: E402,F401
from zoo.recognition import easyocr as _easyocr  # noqa: E402,F401
from zoo.registry import ModelInfo, register_model  # noqa: E402
from zoo.ste import model as _ste  # noqa: E402,F401
from zoo.textdiff import model as _textdiff  # noqa: E402,F401

try:
    __version__ = _metadata.version("rezoo")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "ModelInfo",
    "__version__",
    "build_model",
    "create_model",
    "example_inputs",
    "list_models",
    "load_weights",
    "model_info",
    "read_pretrained",
    "register_model",
]
