"""The paper recipes of PIP, TextDiff and GramSR (``experiment=...``): each composes on its real datamodule with
the papers' values, the commands print it with ``--cfg job``, and the PIP recipe trains on a PromptIR tree."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.conftest import ROOT, TINY_NETS, read_metrics, run_tool
from tests.restoration_fixtures import make_promptir
from tests.sr_fixtures import make_hq_folder, write_textzoom
from tests.test_configs import compose_train

# recipe -> (data config, datamodule, model name, the values the recipe sets)
RECIPES = {
    "pip_allinone": (
        "allinone",
        "datamodules.restoration.AllInOneDataModule",
        "pip",
        {
            "data.tasks": ["denoise", "derain", "dehaze"],
            "data.patch_size": 128,
            "data.batch_size": 6,
            "trainer.accumulate_grad_batches": 8,  # 6 x 8 = the official 6 per GPU x 8 GPUs
            "trainer.max_epochs": 120,
            "trainer.max_steps": -1,
            "model.scheduler.name": "cosine",
            "model.scheduler.warmup_steps": 29670,  # 10 epochs of 142,431 / 48
            "model.optimizer.lr": 3.6e-4,
            "model.optimizer.weight_decay": 0.01,
        },
    ),
    "pip_allinone5": (
        "allinone",
        "datamodules.restoration.AllInOneDataModule",
        "pip",
        {
            "data.tasks": ["denoise", "derain", "dehaze", "deblur", "enhance"],
            "data.patch_size": 128,
            "data.batch_size": 6,
            "trainer.accumulate_grad_batches": 8,
            "trainer.max_epochs": 120,
            "model.scheduler.warmup_steps": 33880,  # 10 epochs of 162,646 / 48
            "model.optimizer.lr": 3.6e-4,
        },
    ),
    "textdiff_textzoom": (
        "textzoom",
        "datamodules.textzoom.TextZoomDataModule",
        "textdiff",
        {
            "data.hr_size": [32, 128],
            "data.lr_size": [16, 64],
            "data.batch_size": 32,
            "trainer.max_steps": 1_000_000,
            "model.optimizer.lr": 1.0e-4,
            "model.ema_decay": 0.9999,
            "model.net.timesteps": 100,
        },
    ),
    "gramsr_realsr": (
        "hq_folder",
        "datamodules.realsr.HQFolderDataModule",
        "gramsr",
        {
            "data.crop_size": 512,
            "data.scale": 4,
            "data.batch_size": 2,
            "trainer.accumulate_grad_batches": 2,
            "model.stage": "all",
            "model.stage_steps": [4000, 8500, 40500],
            "trainer.max_steps": 53000,
            "model.optimizer.lr": 5.0e-5,
        },
    ),
}


def fixture_root(data_name: str, tmp_path) -> list[str]:
    """``data.root`` overrides pointing at a small tree in the dataset's released layout."""
    if data_name == "allinone":
        return [f"data.root={make_promptir(tmp_path / 'PromptIR')}"]
    if data_name == "textzoom":
        write_textzoom(tmp_path / "TextZoom")
        return [f"data.root={tmp_path / 'TextZoom'}"]
    make_hq_folder(tmp_path / "hq")
    return [f"data.root=[{tmp_path / 'hq' / 'LSDIR'},{tmp_path / 'hq' / 'FFHQ'}]", "data.val_size=1"]


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipe_composes_on_the_real_datamodule_with_the_paper_values(recipe, tmp_path):
    data_name, target, model_name, values = RECIPES[recipe]
    cfg = compose_train([f"experiment={recipe}", f"run_dir={tmp_path}"])
    assert cfg.hydra.runtime.choices.data == data_name and cfg.data._target_ == target
    assert OmegaConf.is_missing(cfg.data, "root")  # the dataset is the user's to give
    assert cfg.model_name == cfg.model.model_name == model_name and cfg.profile.name == "full"
    for key, value in values.items():
        assert OmegaConf.to_container(OmegaConf.create({"v": OmegaConf.select(cfg, key)}))["v"] == value, key
    if model_name == "gramsr":
        assert sum(cfg.model.stage_steps) == cfg.trainer.max_steps and cfg.data.scale == cfg.model.net.scale

    cfg = compose_train([f"experiment={recipe}", f"run_dir={tmp_path}", *fixture_root(data_name, tmp_path)])
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    sample = datamodule.datasets["train"][0]
    if data_name == "allinone":
        assert datamodule.tasks == values["data.tasks"] and sample["image"].shape == (3, 128, 128)
        assert {s.split("_")[0] for s in datamodule.eval_sets("val")} == set(values["data.tasks"])
    elif data_name == "textzoom":
        assert sample["lr"].shape == (3, 16, 64) and sample["hr"].shape == (3, 32, 128)
    else:
        assert sample["hr"].shape == (3, 512, 512)  # LR 128 after the on-device degradation (x4)
    module = instantiate(cfg.model, net={**cfg.model.net, **TINY_NETS[model_name]})
    assert module.hparams.model_name == model_name
    if model_name == "gramsr":
        assert module.total_steps == cfg.trainer.max_steps


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_the_commands_print_the_recipe_with_cfg_job(recipe):
    """``rezoo train experiment=<recipe> --cfg job`` as typed: Hydra's flag after the overrides (the runner adds the
    profile and the job name behind them)."""
    data_name, target, model_name, values = RECIPES[recipe]
    rezoo = [sys.executable, "-c", "from rezoo.cli import main; main()", "train"]  # the `rezoo` entry point
    printed = subprocess.run(
        [*rezoo, f"experiment={recipe}", "--cfg", "job"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert printed.returncode == 0, printed.stderr[-3000:]
    cfg = OmegaConf.create(printed.stdout)
    assert cfg.data._target_ == target and cfg.model_name == model_name and cfg.profile.name == "full"
    assert OmegaConf.select(cfg, "data.batch_size") == values["data.batch_size"]
    tool = run_tool("train.py", f"experiment={recipe}", "--cfg", "job")
    assert OmegaConf.create(tool.stdout) == cfg


def test_pip_recipe_trains_on_a_promptir_tree(tmp_path):
    """The three-task recipe as given (batch 6 of 128-px crops, 8 batches accumulated, epoch-long schedule with its
    warm-up, validation each epoch on every test set), on a tiny network and one batch an epoch."""
    run = tmp_path / "run"
    net = [f"++model.net.{k}={json.dumps(v).replace(' ', '')}" for k, v in TINY_NETS["pip"].items()]
    run_tool(
        "train.py",
        "experiment=pip_allinone",
        *fixture_root("allinone", tmp_path),
        "++data.repeats={denoise:1,derain:1,dehaze:1}",  # 2 x 3 sigmas + 2 + 2 = 10 crops: one batch of 6 an epoch
        "data.num_workers=0",
        "trainer.max_epochs=2",
        "trainer.log_every_n_steps=1",
        "trainer.num_sanity_val_steps=0",
        *net,
        f"run_dir={run}",
    )
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 2 and checkpoint["epoch"] == 1  # one optimizer step an epoch
    rows = read_metrics(run)
    assert float(next(r["lr-AdamW"] for r in rows if r.get("lr-AdamW"))) == pytest.approx(3.6e-4 / 29670)
    validated = [r for r in rows if r.get("val/psnr")]
    assert len(validated) == 2  # once an epoch
    assert {"val/denoise_bsd68_25/psnr", "val/derain_rain100l/psnr", "val/dehaze_sots/psnr"} <= {
        k for k, v in validated[-1].items() if v
    }
