"""Optimizer and step-based learning-rate schedule from plain config dicts.

``optimizer``: ``{name: adamw|adam|sgd, lr, weight_decay, betas, ...}`` (extra keys go to torch).
``scheduler``: ``{name: cosine|onecycle|constant, warmup_steps, min_lr_ratio, pct_start}``; ``total_steps``
is the number of optimizer steps of the run (Lightning's ``estimated_stepping_batches``).
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch

OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def build_optimizer(params: Iterable[torch.nn.Parameter], config: dict[str, Any]) -> torch.optim.Optimizer:
    config = dict(config)
    name = config.pop("name", "adamw").lower()
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer.name must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    if "betas" in config:
        config["betas"] = tuple(config["betas"])
    return OPTIMIZERS[name](params, **config)


def build_scheduler(optimizer: torch.optim.Optimizer, config: dict[str, Any] | None, total_steps: int) -> dict[str, Any] | None:
    """A Lightning ``lr_scheduler`` dict stepping every optimizer step, or ``None`` for a constant lr."""
    config = dict(config or {})
    name = config.get("name", "constant").lower()
    if name in ("constant", "none"):
        return None
    total_steps = max(1, int(total_steps))
    if name == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total_steps + 1,
            pct_start=config.get("pct_start", 0.05), anneal_strategy="cos",
        )
    elif name == "cosine":
        warmup = int(config.get("warmup_steps", 0))
        floor = float(config.get("min_lr_ratio", 0.01))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    else:
        raise ValueError(f"scheduler.name must be cosine, onecycle or constant, got {name!r}")
    return {"scheduler": scheduler, "interval": "step", "frequency": 1}
