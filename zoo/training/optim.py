"""Optimizer and step-based learning-rate schedule from plain config dicts.

``optimizer``: ``{name: adamw|adam|sgd, lr, weight_decay, betas, ...}`` (extra keys go to torch). Among them the
implementation: torch's default is ``foreach`` (one multi-tensor kernel per group of parameters) where it can;
``fused: true`` (``model.optimizer.fused=true``) runs the whole update in one fused kernel per device and dtype
(CUDA, and the CPU in recent torch), less launch overhead for networks of many small tensors (to be measured per
family before becoming a default: README "GPUs, mixed precision and many nodes"); ``foreach: false`` the
per-parameter loop. ``fused`` and ``foreach`` cannot both be true; what torch refuses is an
:class:`~zoo.errors.InputError` naming the key.
``scheduler``: ``{name: cosine|onecycle|linear|constant, ...}``, a factor on the lr per optimizer step:

* ``cosine``: linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_ratio``;
* ``onecycle``: cosine rise from lr/``div_factor`` over ``pct_start`` of the run, then cosine decay
  to lr/(``div_factor``·``final_div_factor``) (OneCycleLR's learning-rate shape, without momentum cycling);
* ``linear``: constant for the first ``decay_start`` fraction of the run, then linear decay to 0
  (pix2pix's/STE's "linear" policy: 100 constant + 100 decaying epochs = ``decay_start: 0.5``).

Both are functions of (step, total steps), recomputed from the current run's length: a resumed run
with a larger ``max_steps`` stretches the remaining schedule instead of failing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from zoo.errors import InputError

OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def build_optimizer(params: Iterable[torch.nn.Parameter], config: dict[str, Any]) -> torch.optim.Optimizer:
    config = dict(config)
    name = config.pop("name", "adamw").lower()
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer.name must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    if "betas" in config:
        config["betas"] = tuple(config["betas"])
    try:
        return OPTIMIZERS[name](params, **config)
    except RuntimeError as error:  # e.g. fused=True on a device or dtype torch has no fused kernel for
        chosen = {key: config[key] for key in ("fused", "foreach") if config.get(key)}
        if not chosen:
            raise
        keys = ", ".join(f"optimizer.{key}={str(value).lower()}" for key, value in chosen.items())
        raise InputError(
            f"{keys}: torch {torch.__version__} refuses it here ({error}); leave it unset (torch's default)"
        ) from error


def _cosine_between(start: float, end: float, progress: float) -> float:
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def lr_factor(config: dict[str, Any], total_steps: int) -> Callable[[int], float]:
    """The lr multiplier as a function of the optimizer step."""
    name = config.get("name", "constant").lower()
    total_steps = max(1, int(total_steps))
    if name == "cosine":
        warmup = int(config.get("warmup_steps", 0))
        floor = float(config.get("min_lr_ratio", 0.01))
        return lambda step: (
            (step + 1) / warmup
            if step < warmup
            else _cosine_between(1.0, floor, (step - warmup) / max(1, total_steps - warmup))
        )
    if name == "onecycle":
        rise = max(1, int(float(config.get("pct_start", 0.05)) * total_steps))
        initial = 1.0 / float(config.get("div_factor", 25.0))
        final = initial / float(config.get("final_div_factor", 1e4))
        return lambda step: (
            _cosine_between(initial, 1.0, step / rise)
            if step < rise
            else _cosine_between(1.0, final, (step - rise) / max(1, total_steps - rise))
        )
    if name == "linear":
        start = int(float(config.get("decay_start", 0.5)) * total_steps)
        return lambda step: 1.0 if step < start else max(0.0, 1.0 - (step - start) / max(1, total_steps - start))
    raise ValueError(f"scheduler.name must be cosine, onecycle, linear or constant, got {name!r}")


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: dict[str, Any] | None, total_steps: int
) -> dict[str, Any] | None:
    """A Lightning ``lr_scheduler`` dict stepping every optimizer step, or ``None`` for a constant lr."""
    config = dict(config or {})
    if config.get("name", "constant").lower() in ("constant", "none"):
        return None
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, total_steps))
    return {"scheduler": scheduler, "interval": "step", "frequency": 1}
