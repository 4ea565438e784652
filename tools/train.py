"""Train a zoo model: ``python tools/train.py zoo=<model> [overrides]``.

Overrides: ``data=<name> data.root=...``, ``trainer.*``, ``trainer=ddp``, ``pretrained=<tag|path>``
(weights only, fine-tuning), ``ckpt_path=<last.ckpt>`` (exact resume), ``experiment=<recipe>``,
``logger=tensorboard``, ``hydra.run.dir=...``. Without a CUDA GPU the zoo's quick-start profile
applies (``quickstart=false`` to disable). The run directory holds the resolved config
(``.hydra/``), ``checkpoints/`` (last.ckpt, best by val/psnr), ``metrics.csv`` and ``samples/``.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo  # noqa: E402,F401  (torchvision compat before Lightning imports torchvision)
import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from zoo.common.runner import apply_quickstart, instantiate_group, register_resolvers  # noqa: E402

register_resolvers()


def train(cfg: DictConfig) -> dict[str, float]:
    import lightning as L
    from hydra.utils import instantiate

    apply_quickstart(cfg)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    trainer = instantiate(cfg.trainer, callbacks=instantiate_group(cfg.get("callbacks")), logger=instantiate_group(cfg.get("logger")) or False)
    if trainer.global_rank == 0:
        Path(trainer.default_root_dir).mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, Path(trainer.default_root_dir) / "config.yaml", resolve=True)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
