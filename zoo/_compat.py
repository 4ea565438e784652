"""torchvision on a CPU-only torch.

PyPI's torchvision wheels are CUDA builds; next to a CPU torch their compiled ops (``_C``) fail to
load, and ``import torchvision`` then dies with "operator torchvision::nms does not exist" because
its meta registrations expect the ``nms``/``qnms`` schemas. ``ensure_torchvision_importable`` runs
before anything imports torchvision: if the compiled ops load, it does nothing; if not, it defines the
two schemas with a pure-torch NMS so that torchvision (and timm, kornia, ... which import it) work.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys
from collections.abc import Callable

import torch

_LIBRARY: torch.library.Library | None = None  # keeps our registrations alive


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression (xyxy boxes); indices of kept boxes by decreasing score."""
    order = scores.argsort(descending=True)
    boxes = boxes[order].float()
    area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    top_left = torch.max(boxes[:, None, :2], boxes[None, :, :2])
    bottom_right = torch.min(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    iou = inter / (area[:, None] + area[None, :] - inter).clamp(min=torch.finfo(torch.float32).tiny)
    suppressed = torch.zeros(len(order), dtype=torch.bool, device=boxes.device)
    keep = []
    for i in range(len(order)):
        if not suppressed[i]:
            keep.append(i)
            suppressed |= iou[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


def _quantized_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    return nms(boxes.dequantize(), scores.dequantize(), iou_threshold)


def _load_compiled_ops() -> None:
    """Load torchvision's ``_C`` library without importing torchvision (raises when it cannot)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    candidates = glob.glob(os.path.join(spec.submodule_search_locations[0], "_C*.so")) + glob.glob(
        os.path.join(spec.submodule_search_locations[0], "_C*.pyd")
    )
    if not candidates:
        raise OSError("torchvision has no compiled _C library")
    torch.ops.load_library(candidates[0])


def register_pure_torch_ops() -> None:
    """Define ``torchvision::nms`` and ``torchvision::qnms`` backed by :func:`nms`."""
    global _LIBRARY
    if _LIBRARY is not None:
        return
    library = torch.library.Library("torchvision", "DEF")
    for name, impl in (("nms", nms), ("qnms", _quantized_nms)):
        library.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.impl(name, impl, "CompositeExplicitAutograd")
    _LIBRARY = library


def ensure_torchvision_importable(load_compiled_ops: Callable[[], None] = _load_compiled_ops) -> str:
    """Make ``import torchvision`` work. Returns ``"native"`` (nothing done), ``"pure-torch"`` (schemas
    registered), ``"absent"`` (torchvision not installed) or ``"already-imported"``."""
    if "torchvision" in sys.modules:
        return "already-imported"
    if importlib.util.find_spec("torchvision") is None:
        return "absent"
    try:
        load_compiled_ops()
    except (OSError, ImportError, RuntimeError):
        register_pure_torch_ops()
        return "pure-torch"
    return "native"
