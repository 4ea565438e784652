"""Evaluate weights on a test split: ``python tools/eval.py zoo=<model> data=<name> checkpoint=<tag|path>``.

``checkpoint`` is a manifest tag, an official release file, an exported safetensors or a Lightning
checkpoint (EMA weights when it has them). Prints a table and writes ``metrics.json`` (and, with
``save_images=true``, the outputs under ``images/``) in the run directory.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo  # noqa: E402  (torchvision compat first)
import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from zoo.common.runner import apply_quickstart, register_resolvers  # noqa: E402

register_resolvers()


def evaluate(cfg: DictConfig) -> dict[str, float]:
    import lightning as L
    from hydra.utils import instantiate
    from rich.console import Console
    from rich.table import Table

    apply_quickstart(cfg)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    module = instantiate(cfg.model, pretrained=None)
    module.net = zoo.create_model(cfg.model_name, pretrained=str(cfg.checkpoint))
    module.ema_net = None  # create_model already picked the EMA weights of a Lightning checkpoint
    # one device: a distributed sampler would pad the test set and change the numbers
    trainer = instantiate(cfg.trainer, devices=1, num_nodes=1, strategy="auto", logger=False, callbacks=[])
    run_dir = Path(trainer.default_root_dir)
    if cfg.save_images:
        module.save_dir = run_dir / "images"
    if cfg.protocol:
        from zoo.metrics.text_removal import ProtocolScorer

        module.scorers[cfg.protocol] = ProtocolScorer(cfg.protocol, composite=cfg.composite)
    if cfg.fid:
        from zoo.metrics.fid import FIDInception, FIDScorer

        module.scorers["test"] = FIDScorer(FIDInception(cfg.fid_weights))
    trainer.test(module, datamodule=datamodule)
    metrics = {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if k.startswith("test/")}
    for name, scorer in module.scorers.items():
        metrics.update({f"{name}/{key}": value for key, value in scorer.compute().items()})
    result = {"model": cfg.model_name, "checkpoint": str(cfg.checkpoint), "data": cfg.data.get("_target_"), "metrics": metrics}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    table = Table(title=f"{cfg.model_name} - {cfg.checkpoint}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}")
    Console().print(table)
    print(f"metrics written to {run_dir / 'metrics.json'}")
    return metrics


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
