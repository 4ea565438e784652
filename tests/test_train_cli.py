"""``rezoo train`` as the ecosystem expects it: the profile in the composed config and the first log
line, the config tree, hyperparameters in the logger, the monitored metric as the return value (for
``-m`` sweeps) and ``test_after_fit``."""

from __future__ import annotations

import math

import yaml

from rezoo.cli import run
from tests.conftest import TINY_TRAIN, read_metrics


def test_train_returns_the_monitored_metric_and_tests_the_best_checkpoint(tmp_path, capfd):
    run_dir = tmp_path / "run"
    value = run(
        [
            "train",
            *TINY_TRAIN,
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "data.test_samples=4",
            "test_after_fit=true",
            f"hydra.run.dir={run_dir}",
        ]
    )
    rows = read_metrics(run_dir)
    last_val = [float(r["val/psnr"]) for r in rows if r.get("val/psnr")][-1]
    assert math.isclose(value, last_val, rel_tol=1e-6)
    assert any(r.get("test/psnr") and r.get("test/psnr_identity") for r in rows)  # test_after_fit ran
    assert "profile=quick" in yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    assert yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["profile"] == {"name": "quick"}
    first_line = (run_dir / "train.log").read_text().splitlines()[0]
    assert "profile=quick (auto: no CUDA GPU" in first_line
    hparams = yaml.safe_load((run_dir / "hparams.yaml").read_text())
    assert hparams["model_name"] == "deeperaser" and hparams["model"]["net"]["iters"] == 2
    out = capfd.readouterr().out
    assert "config" in out and "model_name" in out and "trainer" in out  # the rich config tree
