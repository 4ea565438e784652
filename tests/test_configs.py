"""Every config composes, and its datamodule/module/trainer instantiate (lightning-hydra-template style)."""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from tests.conftest import ROOT
from zoo.common.runner import apply_quickstart, instantiate_group, register_resolvers

CONFIGS = ROOT / "configs"
register_resolvers()


def names(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def compose_train(overrides: list[str], config_name: str = "train"):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def data_root_overrides(data_name: str, tmp_path, paired_folder) -> list[str]:
    """``data.root`` (or the sources' roots) pointing at a generated fixture in the dataset's layout."""
    from tests import text_fixtures as fx
    from tests.restoration_fixtures import make_promptir

    builders = {
        "folder": lambda: [f"data.root={paired_folder}"],
        "allinone": lambda: [f"data.root={make_promptir(tmp_path / 'allinone')}"],
        "scut_enstext": lambda: [f"data.root={fx.make_scut_enstext(tmp_path / 'scut')}"],
        "scut_syn": lambda: [f"data.root={fx.make_scut_syn(tmp_path / 'syn')}"],
        "posterase": lambda: [f"data.root={fx.make_posterase(tmp_path / 'poster')}"],
        "synthtext": lambda: [f"data.root={fx.make_synthtext(tmp_path / 'synth')}"],
        "scut_enstext_synthtext": lambda: [
            f"data.sources.scut.root={fx.make_scut_enstext(tmp_path / 'scut')}", f"data.sources.synth.root={fx.make_synthtext(tmp_path / 'synth')}",
        ],
    }
    return builders.get(data_name, list)()


@pytest.mark.parametrize("zoo_name", names("zoo"))
@pytest.mark.parametrize("data_name", names("data"))
def test_zoo_and_data_instantiate(zoo_name, data_name, paired_folder, tmp_path):
    overrides = [f"zoo={zoo_name}", f"data={data_name}", f"run_dir={tmp_path}", *data_root_overrides(data_name, tmp_path, paired_folder)]
    cfg = compose_train(overrides)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    assert len(datamodule.datasets["train"]) > 0
    module = instantiate(cfg.model)
    assert module.hparams.model_name == cfg.model_name == zoo_name


@pytest.mark.parametrize("trainer_name", names("trainer"))
@pytest.mark.parametrize("logger_name", names("logger"))
def test_trainer_logger_callbacks_instantiate(trainer_name, logger_name, tmp_path):
    cfg = compose_train([f"trainer={trainer_name}", f"logger={logger_name}", "trainer.accelerator=cpu", "trainer.devices=1", f"run_dir={tmp_path}"])
    loggers = instantiate_group(cfg.logger)
    callbacks = instantiate_group(cfg.callbacks)
    trainer = instantiate(cfg.trainer, logger=loggers, callbacks=callbacks)
    assert trainer.max_steps == cfg.trainer.max_steps and len(loggers) == 1
    assert any(type(c).__name__ == "ModelCheckpoint" for c in trainer.callbacks)


@pytest.mark.parametrize("experiment", names("experiment"))
def test_experiments_compose_and_instantiate(experiment, tmp_path, paired_folder):
    cfg = compose_train([f"experiment={experiment}", f"run_dir={tmp_path}"])
    data_name = cfg.data._target_.split(".")[1]
    selected = {"scut_enstext": "scut_enstext", "mixed": "scut_enstext_synthtext", "posterase": "posterase"}[data_name]
    cfg = compose_train([f"experiment={experiment}", f"run_dir={tmp_path}", *data_root_overrides(selected, tmp_path, paired_folder)])
    assert cfg.model_name in experiment and cfg.protocol in ("erasenet", "garnet", None)
    assert apply_quickstart(cfg, explicit_keys=set()) is False  # recipes are never shrunk
    datamodule = instantiate(cfg.data)
    assert len(datamodule.build_dataset("test")) == {"posterase": 1}.get(selected, 3)  # the fixture's test split
    assert instantiate(cfg.model).hparams.model_name == cfg.model_name


def test_eval_config_composes(tmp_path):
    cfg = compose_train(["checkpoint=scut_enstext", f"run_dir={tmp_path}"], config_name="eval")
    assert cfg.checkpoint == "scut_enstext" and cfg.model_name == "deeperaser" and not cfg.save_images


def test_quickstart_applies_on_cpu_except_explicit_keys(tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    cfg = compose_train([f"run_dir={tmp_path}"])
    assert apply_quickstart(cfg, explicit_keys={"trainer.max_steps"})
    assert cfg.data.size == cfg.quickstart_overrides["data.size"]
    assert cfg.trainer.max_steps == 300000  # given on the command line: left alone
    off = compose_train(["quickstart=false", f"run_dir={tmp_path}"])
    assert not apply_quickstart(off, explicit_keys=set()) and off.data.size == 256


def test_quickstart_leaves_user_data_alone(tmp_path, paired_folder, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    cfg = compose_train(["data=folder", f"data.root={paired_folder}", f"run_dir={tmp_path}"])
    batch_size = cfg.data.batch_size
    assert apply_quickstart(cfg, explicit_keys=set())
    assert cfg.data.batch_size == batch_size and cfg.trainer.max_steps == cfg.quickstart_overrides["trainer.max_steps"]


def test_precision_resolver_picks_32_on_cpu(tmp_path):
    cfg = compose_train(["trainer.accelerator=cpu", f"run_dir={tmp_path}"])
    assert cfg.trainer.precision == "32-true"
