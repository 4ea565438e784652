"""Train a zoo model: ``rezoo train zoo=<model> [overrides]`` (or ``python tools/train.py ...``).

Overrides: ``data=<name> data.root=...``, ``trainer.*``, ``trainer=ddp``, ``pretrained=<tag|path>``
(weights only, fine-tuning), ``ckpt_path=<last.ckpt>`` (exact resume), ``experiment=<recipe>``,
``profile=quick|full|auto``, ``logger=tensorboard``, ``test_after_fit=true``, ``hydra.run.dir=...``,
``-m`` sweeps (the task returns ``optimized_metric``). The run directory holds the composed config
(``.hydra/`` and ``config.yaml``), ``checkpoints/`` (last.ckpt, best by val/psnr), ``metrics.csv``
(with ``hparams.yaml``) and ``samples/``.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

import zoo  # noqa: F401  (torchvision compat before Lightning imports torchvision)
from rezoo.runner import hydra_command, instantiate_group, log, print_config_tree


def quiet_fresh_log_folder(run_dir: Path) -> None:
    """Lightning's CSV logger warns that the previous log files in a non-empty folder will be deleted; in a run
    folder without ``metrics.csv`` (Hydra's ``.hydra/`` and log file are there, never deleted) that is false."""
    if not (run_dir / "metrics.csv").exists():
        warnings.filterwarnings(
            "ignore", message=rf"Experiment logs directory {re.escape(str(run_dir))}/? exists and is not empty"
        )


def train(cfg: DictConfig) -> float | None:
    """Fit (and with ``test_after_fit`` test the best checkpoint); returns ``optimized_metric``."""
    import lightning as L
    from hydra.utils import instantiate

    from zoo.training.callbacks import EvaluationNotEmpty

    L.seed_everything(cfg.seed, workers=True)
    quiet_fresh_log_folder(Path(cfg.trainer.default_root_dir))
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    trainer = instantiate(
        cfg.trainer,
        callbacks=[*instantiate_group(cfg.get("callbacks")), EvaluationNotEmpty()],
        logger=instantiate_group(cfg.get("logger")) or False,
    )
    if trainer.global_rank == 0:
        if cfg.get("print_config"):
            print_config_tree(cfg)
        Path(trainer.default_root_dir).mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, Path(trainer.default_root_dir) / "config.yaml", resolve=True)
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.get("test_after_fit"):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        log.info("testing %s", best or "the last weights (no best checkpoint)")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
    value = metrics.get(cfg.get("optimized_metric") or "")
    if value is not None and not math.isfinite(value):
        log.warning("%s is %s", cfg.optimized_metric, value)
    return value


def main(argv: Sequence[str] | None = None, prog: str = "rezoo train") -> float | None:
    return hydra_command(train, "train", argv, prog)


if __name__ == "__main__":
    main()
