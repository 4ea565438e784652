"""Evaluate weights on a test split: ``rezoo eval zoo=<model> data=<name> checkpoint=<tag|path>``.

``checkpoint`` is a manifest tag, an official release file, an exported safetensors or a Lightning
checkpoint (EMA weights when it has them): the model's module is built from it (``pretrained=``), with the
architecture arguments the file records. Prints a table and writes ``metrics.json`` (and, with
``save_images=true``, the outputs under ``images/``) in the run directory.

Extras come from config groups, switched on by the keys users type: ``protocol=``, ``fid=true``, ``detector=``
turn on entries of the ``scorers`` group (``rezoo/configs/scorers/``), ``save_images=true`` the
``save_test_outputs`` callback (``rezoo/configs/callbacks/``), ``recognizer=`` builds ``recognizer_model``
(a module argument of the scene-text SR models).
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

import zoo  # torchvision compat first
from rezoo.predictor import load_detector
from rezoo.runner import hydra_command, instantiate_group, instantiate_named, log
from zoo.errors import InputError


def switched_on(cfg: DictConfig) -> tuple[dict[str, DictConfig], dict[str, DictConfig]]:
    """The ``scorers`` and ``callbacks`` entries the switches turn on. Scorers come under the prefix of their
    metrics in ``metrics.json``: ``protocol=realsr`` the ``realsr`` entry (``realsr/...``), another ``protocol``
    the ``text_removal`` entry (``<protocol>/...``), ``fid=true`` the ``fid`` entry (``test/fid``),
    ``detector=<name>`` the ``detection`` entry (``detection/...``); ``save_images=true`` the ``save_test_outputs``
    callback. Entries added by hand (``+scorers.<name>=``, ``+callbacks.<name>=``) are always on."""
    protocol = cfg.get("protocol")
    prefixes = {  # entry -> its metrics prefix, or None when its switch is off
        "realsr": "realsr" if protocol == "realsr" else None,
        "text_removal": protocol if protocol and protocol != "realsr" else None,
        "fid": "test" if cfg.get("fid") else None,
        "detection": "detection" if cfg.get("detector") else None,
        "save_test_outputs": "save_test_outputs" if cfg.get("save_images") else None,
    }

    def chosen(group: DictConfig | None) -> dict[str, DictConfig]:
        named = ((prefixes.get(name, name), node) for name, node in (group or {}).items())
        return {prefix: node for prefix, node in named if prefix}

    return chosen(cfg.get("scorers")), chosen(cfg.get("callbacks"))


def detect_with(name: str, weights: str | None = None) -> Callable[[torch.Tensor], list]:
    """``detector=<name>``: the registered text detector's ``detect``, run on the device of the images given."""
    detector = load_detector(name, weights)
    return lambda images: detector.to(images.device).detect(images)


def load_recognizer(name: str, weights: str | None = None) -> torch.nn.Module:
    """``recognizer=<name>``: a registered word recognizer (crnn) in eval mode, with ``weights`` (default: its
    default tag where it has one, easyocr_en; else random weights, with a warning)."""
    info = zoo.model_info(name)
    if not info.recognizer:
        recognizers = [n for n in zoo.list_models() if zoo.model_info(n).recognizer]
        raise InputError(f"recognizer={name} is not a word recognizer; choose one of {', '.join(recognizers)}")
    weights = weights or bool(info.default_tag)
    if not weights:
        log.warning("recognizer=%s without recognizer_weights: random weights, the accuracies mean nothing", name)
    return zoo.create_model(name, pretrained=weights).eval()


def build_module(cfg: DictConfig, scorers: dict[str, Any]) -> Any:
    """The model's module built from ``checkpoint`` (its architecture arguments and, of a Lightning checkpoint, the
    EMA weights: no ``net`` block, no second EMA copy), with the scorers and, for ``recognizer=``, the recognizer."""
    from hydra.utils import get_class, instantiate

    extras: dict[str, Any] = {"scorers": scorers}
    if cfg.get("recognizer"):
        if "recognizer" not in inspect.signature(get_class(cfg.model._target_)).parameters:
            raise InputError(
                f"recognizer={cfg.recognizer}: model {cfg.model_name!r} is not a scene-text super-resolution model; "
                "leave recognizer out"
            )
        extras["recognizer"] = instantiate(cfg.recognizer_model)
    return instantiate(cfg.model, pretrained=str(cfg.checkpoint), net=None, ema_decay=None, **extras)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    import lightning as L
    from hydra.utils import instantiate
    from rich.console import Console

    from zoo.training.callbacks import EvaluationNotEmpty

    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    scorer_configs, callback_configs = switched_on(cfg)
    module = build_module(cfg, instantiate_named(scorer_configs))
    # one device: a distributed sampler would pad the test set and change the numbers
    trainer = instantiate(
        cfg.trainer,
        devices=1,
        num_nodes=1,
        strategy="auto",
        logger=False,
        callbacks=[*instantiate_group(callback_configs), EvaluationNotEmpty()],
    )
    run_dir = Path(trainer.default_root_dir)
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
    return hydra_command(evaluate, "eval", argv, prog)


if __name__ == "__main__":
    main()
