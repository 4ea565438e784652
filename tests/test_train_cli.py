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
    captured = capfd.readouterr()
    out = captured.out
    assert "config" in out and "model_name" in out and "trainer" in out  # the rich config tree
    # a quiet normal path: no warning a user cannot act on, each log line once, the bar counting steps
    both = captured.out + captured.err
    for noise in ("LeafSpec", "is not writable", "Previous log files", "Tip:", "smaller than the logging interval"):
        assert noise not in both, noise
    assert "INFO: " not in captured.err  # Lightning's own handler: its lines came a second time
    assert sum("Seed set to 42" in line for line in both.splitlines()) == 1
    assert "/-2" not in out and "Step" in out and "2/2" in out


def test_to_tensor_of_a_read_only_array_is_quiet_and_exact():
    """Decoded files and Gradio uploads are read-only arrays: no "not writable" warning, the same values."""
    import warnings

    import numpy as np
    import torch

    from zoo.imaging.images import to_tensor

    array = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    expected = torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255
    plane = np.ascontiguousarray(array[:, :, 0])  # HxW: a view of it is already channels-first and contiguous
    array.flags.writeable = plane.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor, gray = to_tensor(array), to_tensor(plane)
    assert torch.equal(tensor, expected) and tensor.is_contiguous()
    assert torch.equal(gray, expected[:1])
