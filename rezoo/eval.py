"""Evaluate weights on a test split: ``rezoo eval zoo=<model> data=<name> checkpoint=<tag|path>``.

``checkpoint`` is a manifest tag, an official release file, an exported safetensors or a Lightning
checkpoint (EMA weights when it has them). Prints a table and writes ``metrics.json`` (and, with
``save_images=true``, the outputs under ``images/``) in the run directory.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

import zoo  # torchvision compat first
from rezoo.runner import log, resolve_profile, run_hydra
from zoo.errors import UserError


def evaluate(cfg: DictConfig) -> dict[str, float]:
    import lightning as L
    from hydra.utils import instantiate
    from rich.console import Console

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
    if cfg.protocol == "realsr":
        from zoo.metrics.realsr import RealSRScorer

        module.scorers["realsr"] = RealSRScorer(
            cfg.get("metrics"), cfg.get("lpips_weights"), cfg.get("dists_weights"), cfg.fid_weights
        )
    elif cfg.protocol:
        from zoo.metrics.text_removal import ProtocolScorer

        module.scorers[cfg.protocol] = ProtocolScorer(cfg.protocol, composite=cfg.composite)
    if cfg.fid:
        from zoo.metrics.fid import FIDInception, FIDScorer

        module.scorers["test"] = FIDScorer(FIDInception(cfg.fid_weights))
    if cfg.get("recognizer"):
        if not hasattr(module, "recognizer"):
            raise UserError(
                f"recognizer={cfg.recognizer}: model {cfg.model_name!r} is not a scene-text super-resolution model"
            )
        weights = cfg.recognizer_weights or bool(
            zoo.model_info(cfg.recognizer).default_tag
        )  # easyocr_en: its released weights
        module.recognizer = [zoo.create_model(cfg.recognizer, pretrained=weights).eval()]
        if not weights:
            log.warning(
                "recognizer=%s without recognizer_weights: random weights, the accuracies mean nothing", cfg.recognizer
            )
    if cfg.get("detector"):
        from rezoo.score import load_detector
        from zoo.metrics.detection import DetectorScorer

        detector = load_detector(cfg.detector, cfg.detector_weights)
        module.scorers["detection"] = DetectorScorer(
            lambda images: detector.to(images.device).detect(images), cfg.detector_rule
        )
    trainer.test(module, datamodule=datamodule, verbose=False)  # our table below
    metrics = {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if k.startswith("test/")}
    for name, scorer in module.scorers.items():
        metrics.update({f"{name}/{key}": value for key, value in scorer.compute().items()})
    result = {
        "model": cfg.model_name,
        "checkpoint": str(cfg.checkpoint),
        "data": cfg.data.get("_target_"),
        "metrics": metrics,
    }
    skipped = {
        key: reason for scorer in module.scorers.values() for key, reason in getattr(scorer, "skipped", {}).items()
    }
    if skipped:  # realsr metrics that could not run, and why
        result["skipped"] = skipped
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    console = Console() if sys.stdout.isatty() else Console(width=200)  # logs and CI: no column cut at 80
    console.print(
        per_set_table(metrics, module.metric_names(), f"{cfg.model_name} - {cfg.checkpoint}")
        or metric_table(metrics, f"{cfg.model_name} - {cfg.checkpoint}")
    )
    print(f"metrics written to {run_dir / 'metrics.json'}")
    return metrics


def metric_table(metrics: dict[str, float], title: str):
    """One row per metric."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}")
    return table


def per_set_table(metrics: dict[str, float], names: list[str], title: str):
    """One row per evaluation set (``test/<set>/<name>``) and one for all samples (``test/<name>``, the
    sample-weighted average), a column per metric name; None when the test split has no sets."""
    from rich.table import Table

    sets = list(dict.fromkeys(key.split("/")[1] for key in metrics if key.startswith("test/") and key.count("/") == 2))
    if not sets:
        return None
    columns = [name for name in names if any(f"test/{s}/{name}" in metrics for s in sets)]
    table = Table(title=title)
    table.add_column("set")
    for name in columns:
        table.add_column(name, justify="right")
    for label, prefix in [*((s, f"test/{s}/") for s in sets), ("average", "test/")]:
        table.add_row(label, *(f"{metrics[prefix + n]:.4f}" if prefix + n in metrics else "" for n in columns))
    extra = {k: v for k, v in metrics.items() if not k.startswith("test/")}  # protocol / FID scorers
    if extra:
        table.caption = ", ".join(f"{k} {v:.4f}" for k, v in extra.items())
    return table


def main(argv: Sequence[str] | None = None, prog: str = "rezoo eval") -> dict[str, float]:
    overrides, profile, reason = resolve_profile(sys.argv[1:] if argv is None else argv)

    def task(cfg: DictConfig) -> dict[str, float]:
        log.info("profile=%s (%s)", profile, reason)
        return evaluate(cfg)

    return run_hydra(task, "eval", overrides, prog)


if __name__ == "__main__":
    main()
