"""Exponential moving average of the generator's weights (BasicSR's ``net_g_ema``)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema_copy(net: nn.Module) -> nn.Module:
    """A frozen copy of ``net`` in eval mode that holds the averaged weights."""
    ema = copy.deepcopy(net).eval()
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """ema <- decay·ema + (1-decay)·net for floating parameters; buffers are copied."""
    ema_params = [p for p in ema.parameters() if p.dtype.is_floating_point]
    net_params = [p.detach() for p in net.parameters() if p.dtype.is_floating_point]
    if ema_params:
        torch._foreach_lerp_(ema_params, net_params, 1.0 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), net.buffers()):
        ema_buffer.copy_(buffer)
