"""DDP on two CPU processes for every trainable model (``trainer=ddp``), and per-set validation numbers
that do not depend on the number of processes."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_NETS, read_metrics, run_tool

DDP = [
    "profile=full",
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "data.num_workers=0",
    "data.batch_size=2",
    "data.train_samples=8",
]
# 4 validation samples: 2 per process, no padding by the distributed sampler; on the restoration data the
# two processes see different sets (0,2: denoise, dehaze; 1,3: derain, deblur) and none sees enhance
VAL = ["data.val_samples=4", "data.val_batch_size=2"]
DATA = {
    "deeperaser": ["data.size=32"],
    "garnet": ["data.size=64", "model.scheduler.name=constant"],
    "ste": [
        "data.size=64",
        "model.vgg_weights=random",
        "model.discriminator.num_layers=4",
        "model.policy.update_every=2",
        "model.policy.refresh_every=2",
        "model.policy.update_batches=1",
        "model.scheduler.name=constant",
    ],
    "pip": ["data.size=32", "model.scheduler.warmup_steps=1"],
    "pip_nafnet": ["data.size=32", "model.scheduler.warmup_steps=1"],
    "textdiff": [],  # 32x128 text lines
    # the quick profile's tiny stand-in stack (its real base cannot be downloaded; every rank fits it, rank 0 writes
    # it); stages 1 and 2
    "gramsr": ["model.stage_steps=[1,1,1]", "model.standin.steps=2"],
}
QUICK_BASE = {"gramsr"}  # models whose tiny configuration is the quick profile's, not TINY_NETS overrides


def net_overrides(name: str) -> list[str]:
    return [f"++model.net.{k}={json.dumps(v).replace(' ', '')}" for k, v in TINY_NETS[name].items()]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Callable[[str], Path]:
    """The run directory of a 2-process DDP training of ``name`` (trained once per test module)."""
    runs: dict[str, Path] = {}

    def run(name: str) -> Path:
        if name not in runs:
            run_dir = tmp_path_factory.mktemp("ddp") / name
            setup = ["profile=quick", *DDP[1:]] if name in QUICK_BASE else [*DDP, *net_overrides(name)]
            run_tool("train.py", f"zoo={name}", *setup, *VAL, *DATA[name], f"hydra.run.dir={run_dir}")
            runs[name] = run_dir
        return runs[name]

    return run


def test_every_trainable_model_has_a_ddp_case():
    assert sorted(
        p.name[:-5] for p in files("rezoo").joinpath("configs", "zoo").iterdir() if p.name.endswith(".yaml")
    ) == sorted(DATA)


@pytest.mark.parametrize("name", sorted(DATA))
def test_ddp_on_two_cpu_processes(name, ddp_run):
    run_dir = ddp_run(name)
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    val = [r for r in read_metrics(run_dir) if r.get("val/psnr")]
    assert len(val) == 1 and math.isfinite(float(val[0]["val/psnr"]))


def test_ddp_validation_per_set_equals_one_process(ddp_run, tmp_path):
    """The 2-process validation of the PIP run (the processes hold different sets) against one process
    validating the same weights: every ``val/<set>/<metric>``, and no set without samples."""
    import lightning as L
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    run_dir = ddp_run("pip")
    ddp = {
        k: float(v)
        for k, v in next(r for r in read_metrics(run_dir) if r.get("val/psnr")).items()
        if k.startswith("val/") and v
    }
    cfg = OmegaConf.load(run_dir / "config.yaml")
    module = instantiate(cfg.model)
    module.load_state_dict(torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"])
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    [single] = trainer.validate(module, datamodule=instantiate(cfg.data), verbose=False)
    sets = {"denoise", "derain", "dehaze", "deblur"}
    assert {k.split("/")[1] for k in ddp if k.count("/") == 2} == sets  # enhance: no validation sample
    assert {k for k in ddp if k.startswith("val/denoise/")} == {
        f"val/denoise/{m}" for m in ("psnr", "ssim", "psnr_identity", "sensor_accuracy")
    }
    assert ddp.keys() == single.keys()
    for key, value in ddp.items():
        assert value == pytest.approx(single[key], rel=1e-5, abs=1e-6), key
    assert len({round(ddp[f"val/{s}/psnr"], 3) for s in sets}) == 4  # per-set numbers, not one number repeated
