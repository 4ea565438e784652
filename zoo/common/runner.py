"""What tools/train.py and tools/eval.py share: config resolvers, the CPU quick-start profile and
building the datamodule / module / trainer from a composed Hydra config."""
from __future__ import annotations

import logging
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


def auto_precision(accelerator: str = "auto") -> str:
    """bf16-mixed on GPUs with bf16, 16-mixed on older GPUs, 32 on CPU."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("auto_precision", auto_precision, replace=True)


def selected(group: str) -> str | None:
    """The choice of config ``group`` (``experiment``, ``data`` ...) of the running Hydra job, if any."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    choice = HydraConfig.get().runtime.choices.get(group)
    return None if choice in (None, "null", "None") else str(choice)


def command_line_keys() -> set[str]:
    """Keys set on the command line of the running Hydra job (``a.b=1``, ``+a.b=1``, ``++a.b=1``)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return set()
    return {override.split("=", 1)[0].lstrip("+~") for override in HydraConfig.get().overrides.task}


def apply_quickstart(cfg: DictConfig, explicit_keys: set[str] | None = None) -> bool:
    """Apply the zoo's ``quickstart_overrides`` when ``quickstart`` says so (``auto``: no CUDA GPU and
    no experiment). Keys given on the command line, or absent from the config, are left alone, and
    ``data.*`` keys apply only to the zoo's default data (``quickstart_data``), not to a user's."""
    mode = str(cfg.get("quickstart", "auto")).lower()
    on = mode in ("true", "1", "yes") or (mode == "auto" and not torch.cuda.is_available() and selected("experiment") is None)
    if not on or not cfg.get("quickstart_overrides"):
        return False
    explicit = command_line_keys() if explicit_keys is None else explicit_keys
    default_data = selected("data") in (None, cfg.get("quickstart_data"))
    applied = []
    with open_dict(cfg):
        for key, value in cfg.quickstart_overrides.items():
            if key in explicit or any(key.startswith(k + ".") or k.startswith(key + ".") for k in explicit):
                continue
            if key.startswith("data.") and not default_data:
                continue
            if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
                continue
            OmegaConf.update(cfg, key, value, merge=False)
            applied.append(key)
    log.info("CPU quick start (quickstart=%s): set %s", mode, ", ".join(applied))
    return True


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry with a ``_target_`` in a callbacks/logger group."""
    from hydra.utils import instantiate

    if not group:
        return []
    return [instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]
