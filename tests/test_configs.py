"""Every config composes, and its datamodule/module/trainer instantiate (lightning-hydra-template style)."""

from __future__ import annotations

from importlib.resources import files

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

import zoo
from rezoo.runner import instantiate_group, register_resolvers, resolve_profile
from zoo.errors import UserError

CONFIGS = files("rezoo").joinpath("configs")
register_resolvers()


def names(group: str) -> list[str]:
    return sorted(p.name[:-5] for p in CONFIGS.joinpath(group).iterdir() if p.name.endswith(".yaml"))


def compose_train(overrides: list[str], config_name: str = "train"):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def data_root_overrides(data_name: str, tmp_path, paired_folder) -> list[str]:
    """``data.root`` (or the sources' roots) pointing at a generated fixture in the dataset's layout."""
    from tests import text_fixtures as fx
    from tests.restoration_fixtures import make_promptir
    from tests.sr_fixtures import make_hq_folder, make_realsr_pairs, make_sr_folder, write_textzoom

    builders = {
        "folder": lambda: [f"data.root={paired_folder}"],
        "allinone": lambda: [f"data.root={make_promptir(tmp_path / 'allinone')}"],
        "scut_enstext": lambda: [f"data.root={fx.make_scut_enstext(tmp_path / 'scut')}"],
        "scut_syn": lambda: [f"data.root={fx.make_scut_syn(tmp_path / 'syn')}"],
        "posterase": lambda: [f"data.root={fx.make_posterase(tmp_path / 'poster')}"],
        "synthtext": lambda: [f"data.root={fx.make_synthtext(tmp_path / 'synth')}"],
        "textzoom": lambda: (write_textzoom(tmp_path / "textzoom"), [f"data.root={tmp_path / 'textzoom'}"])[1],
        "sr_folder": lambda: (make_sr_folder(tmp_path / "srf"), [f"data.root={tmp_path / 'srf'}"])[1],
        "realsr_pairs": lambda: (make_realsr_pairs(tmp_path / "rsr"), [f"data.root={tmp_path / 'rsr'}"])[1],
        "hq_folder": lambda: (make_hq_folder(tmp_path / "hq"), [f"data.root={tmp_path / 'hq'}", "data.val_size=1"])[1],
        "scut_enstext_synthtext": lambda: [
            f"data.sources.scut.root={fx.make_scut_enstext(tmp_path / 'scut')}",
            f"data.sources.synth.root={fx.make_synthtext(tmp_path / 'synth')}",
        ],
    }
    return builders.get(data_name, list)()


# the family each data config feeds (the rest is text removal); every zoo is also composed with its own default data
DATA_FAMILY = {
    "allinone": "pip",
    "synthetic_restoration": "pip",
    "textzoom": "textdiff",
    "synthetic_textlines": "textdiff",
    "sr_folder": "textdiff",
    "realsr_pairs": "textdiff",
    "hq_folder": "textdiff",
    "synthetic_sr": "textdiff",
}
PAIRS = sorted(
    {(z, None) for z in names("zoo")} | {(DATA_FAMILY.get(d, "deeperaser"), d) for d in names("data")}, key=str
)


@pytest.mark.parametrize(("zoo_name", "data_name"), PAIRS)
def test_zoo_and_data_instantiate(zoo_name, data_name, paired_folder, tmp_path):
    data = [f"data={data_name}", *data_root_overrides(data_name, tmp_path, paired_folder)] if data_name else []
    base = (
        ["profile=quick"] if zoo.model_info(zoo_name).base else []
    )  # a frozen base by argument (GramSR): the quick random stack
    cfg = compose_train([f"zoo={zoo_name}", f"run_dir={tmp_path}", *base, *data])
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    assert len(datamodule.datasets["train"]) > 0
    module = instantiate(cfg.model)
    assert module.hparams.model_name == cfg.model_name == zoo_name


@pytest.mark.parametrize("trainer_name", names("trainer"))
@pytest.mark.parametrize("logger_name", names("logger"))
def test_trainer_logger_callbacks_instantiate(trainer_name, logger_name, tmp_path):
    cfg = compose_train(
        [
            f"trainer={trainer_name}",
            f"logger={logger_name}",
            "trainer.accelerator=cpu",
            "trainer.devices=1",
            f"run_dir={tmp_path}",
        ]
    )
    loggers = instantiate_group(cfg.logger)
    callbacks = instantiate_group(cfg.callbacks)
    trainer = instantiate(cfg.trainer, logger=loggers, callbacks=callbacks)
    assert trainer.max_steps == cfg.trainer.max_steps and len(loggers) == 1
    assert any(type(c).__name__ == "ModelCheckpoint" for c in trainer.callbacks)


TEXT_REMOVAL_RECIPES = [name for name in names("experiment") if name.split("_")[0] in ("deeperaser", "garnet", "ste")]


@pytest.mark.parametrize("experiment", TEXT_REMOVAL_RECIPES)  # the others: tests/test_recipes.py
def test_experiments_compose_and_instantiate(experiment, tmp_path, paired_folder):
    cfg = compose_train([f"experiment={experiment}", f"run_dir={tmp_path}"])
    data_name = cfg.data._target_.split(".")[1]
    selected = {"scut_enstext": "scut_enstext", "mixed": "scut_enstext_synthtext", "posterase": "posterase"}[data_name]
    cfg = compose_train(
        [f"experiment={experiment}", f"run_dir={tmp_path}", *data_root_overrides(selected, tmp_path, paired_folder)]
    )
    assert cfg.model_name in experiment and cfg.protocol in ("erasenet", "garnet", None)
    assert cfg.profile.name == "full"  # recipes run as the papers give them
    datamodule = instantiate(cfg.data)
    assert len(datamodule.build_dataset("test")) == {"posterase": 1}.get(selected, 3)  # the fixture's test split
    assert instantiate(cfg.model).hparams.model_name == cfg.model_name


def test_eval_config_composes(tmp_path):
    cfg = compose_train(["checkpoint=scut_enstext", f"run_dir={tmp_path}"], config_name="eval")
    assert cfg.checkpoint == "scut_enstext" and cfg.model_name == "deeperaser" and not cfg.save_images


def test_auto_profile_is_quick_on_cpu_and_full_with_a_gpu_or_a_recipe():
    overrides, profile, reason = resolve_profile(["zoo=pip"], cuda_available=False)
    assert overrides == ["zoo=pip", "profile=quick"] and profile == "quick" and "no CUDA GPU" in reason
    assert resolve_profile(["profile=auto"], cuda_available=False)[0] == ["profile=quick"]
    assert resolve_profile([], cuda_available=True)[1] == "full"
    assert resolve_profile(["experiment=ste_posterase"], cuda_available=False)[1] == "full"
    assert resolve_profile(["profile=full"], cuda_available=False) == (
        ["profile=full"],
        "full",
        "given on the command line",
    )
    with pytest.raises(UserError, match="profile=fast is not a profile"):
        resolve_profile(["profile=fast"])


@pytest.mark.parametrize("zoo_name", names("zoo"))
def test_quick_profile_shrinks_the_run_and_command_line_keys_win(zoo_name, tmp_path):
    full = compose_train([f"zoo={zoo_name}", "profile=full", f"run_dir={tmp_path}"])
    quick = compose_train([f"zoo={zoo_name}", "profile=quick", f"run_dir={tmp_path}"])
    assert quick.profile.name == "quick" and full.profile.name == "full"
    assert quick.trainer.max_steps < full.trainer.max_steps
    assert (
        quick.data.size < full.data.size
        if isinstance(full.data.size, int)
        else quick.data.train_samples < full.data.train_samples
    )  # text lines keep TextZoom's size
    assert quick.data.num_workers == 0
    explicit = compose_train(
        [f"zoo={zoo_name}", "profile=quick", "trainer.max_steps=7", "data.size=40", f"run_dir={tmp_path}"]
    )
    assert explicit.trainer.max_steps == 7 and explicit.data.size == 40


def test_quick_profile_leaves_user_data_alone(tmp_path, paired_folder):
    default = compose_train(["data=folder", f"data.root={paired_folder}", "profile=full", f"run_dir={tmp_path}"])
    cfg = compose_train(["data=folder", f"data.root={paired_folder}", "profile=quick", f"run_dir={tmp_path}"])
    assert cfg.data == default.data  # the zoo's quick data settings are for its embedded data only
    assert cfg.trainer.max_steps < default.trainer.max_steps


def test_precision_resolver_picks_32_on_cpu(tmp_path):
    cfg = compose_train(["trainer.accelerator=cpu", f"run_dir={tmp_path}"])
    assert cfg.trainer.precision == "32-true"
