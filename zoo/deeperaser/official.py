"""The official DeepEraser release format -> our state_dict.

``deeperaser.pth`` is a plain state_dict saved from a DataParallel-wrapped model: every key carries a
``module.`` prefix. Our parameter names equal the official ones otherwise, so stripping the prefix
(done generically by ``zoo.weights``) is all the mapping there is. The official ``InstanceNorm2d``
layers have no affine weights and so no keys.
"""
from __future__ import annotations

import torch


def remap_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official keys (already without ``module.``) map one to one."""
    return dict(state_dict)
