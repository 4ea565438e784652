"""The speed switches every family inherits (``model.channels_last``, ``model.compile``, ``model.optimizer.fused``):
same losses as without them, checkpoints with the same keys, settable from the command line, nothing recorded
when off. Whether they pay off is measured on the GPU (README "GPUs, mixed precision and many nodes")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from tests.test_configs import compose_train
from zoo.deeperaser.module import DeepEraserModule
from zoo.errors import InputError
from zoo.garnet.module import GaRNetModule
from zoo.training.optim import build_optimizer

CHANNELS_LAST = torch.channels_last


def make_module(family: str, **options: Any) -> L.LightningModule:
    L.seed_everything(0, verbose=False)
    if family == "garnet":  # a GAN family: manual optimization through zoo/training/gan.py
        return GaRNetModule(net={"inference_size": None}, discriminator={"width": 8}, **options)
    return DeepEraserModule(net={"iters": 2}, **{"optimizer": {"name": "adamw", "lr": 1e-3}, **options})


def batches(size: int, steps: int) -> DataLoader:
    generator = torch.Generator().manual_seed(1)
    samples = []
    for _ in range(2 * steps):
        mask = torch.zeros(1, size, size)
        mask[:, size // 4 : size // 2, size // 8 : -size // 8] = 1.0
        image = torch.rand(3, size, size, generator=generator)
        samples.append({"image": image, "target": image * (1 - mask) + 0.5 * mask, "mask": mask})
    return DataLoader(samples, batch_size=2)


def fit(module: L.LightningModule, size: int, steps: int, root: Path, seen: list | None = None) -> list[dict]:
    """Every step's losses of ``steps`` fp32 steps on the CPU (fixed data and seed); ``seen``: the memory formats
    of the 4-D tensors the family's losses got, and of the 4-D parameters at the start of fitting."""
    losses: list[dict[str, float]] = []
    family_losses = module.training_losses

    def recorded(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if seen is not None:
            seen.extend(
                value.is_contiguous(memory_format=CHANNELS_LAST) for value in batch.values() if value.dim() == 4
            )
        values = family_losses(batch)
        losses.append({name: float(value.detach()) for name, value in values.items()})
        return values

    class Formats(L.Callback):
        def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            if seen is not None:
                seen.extend(
                    p.is_contiguous(memory_format=CHANNELS_LAST) for p in pl_module.parameters() if p.dim() == 4
                )

    module.training_losses = recorded
    L.seed_everything(2, verbose=False)  # the families' random choices (DeepEraser's text instances)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        precision="32-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        default_root_dir=root,
        callbacks=[Formats()],
    )
    trainer.fit(module, train_dataloaders=batches(size, steps))
    trainer.save_checkpoint(root / "last.ckpt")
    assert len(losses) == steps
    return losses


def assert_same_losses(actual: list[dict], expected: list[dict], tolerance: float) -> None:
    assert [a.keys() for a in actual] == [e.keys() for e in expected]
    for a, e in zip(actual, expected):
        for name in e:
            assert a[name] == pytest.approx(e[name], abs=tolerance, rel=tolerance), (name, actual, expected)


def state_keys(path: Path) -> list[str]:
    return list(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])


@pytest.mark.parametrize(("family", "size"), [("deeperaser", 16), ("garnet", 64)])
def test_channels_last_gives_the_same_losses_and_puts_parameters_and_inputs_in_channels_last(family, size, tmp_path):
    expected = fit(make_module(family), size, 3, tmp_path / "off")
    seen: list[bool] = []
    module = make_module(family, channels_last=True)
    actual = fit(module, size, 3, tmp_path / "on", seen)
    assert_same_losses(actual, expected, 1e-5)
    assert seen and all(seen)  # every 4-D parameter (discriminator included) and every 4-D batch tensor
    assert state_keys(tmp_path / "on" / "last.ckpt") == state_keys(tmp_path / "off" / "last.ckpt")
    # the weights load back as usual (into a module in the default format)
    reloaded = make_module(family, pretrained=str(tmp_path / "on" / "last.ckpt"))
    for name, value in reloaded.net.state_dict().items():
        assert torch.equal(value, module.net.state_dict()[name]), name


def test_compile_gives_the_same_losses_and_the_same_checkpoint_keys(tmp_path):
    """``torch.compile`` of the network's training forward (the eager backend: the wiring, not the CPU compiler,
    which takes ~40 s for this network here); the checkpoint keys have no ``_orig_mod.``."""
    expected = fit(make_module("deeperaser"), 16, 2, tmp_path / "off")
    module = make_module("deeperaser", compile={"backend": "eager"})
    assert module.compile_options == {"backend": "eager"} and module.hparams.compile == {"backend": "eager"}
    actual = fit(module, 16, 2, tmp_path / "on")
    assert "forward_train" in vars(module.net)  # the compiled forward, an attribute of the network, not a wrapper
    assert_same_losses(actual, expected, 1e-4)
    keys = state_keys(tmp_path / "on" / "last.ckpt")
    assert keys == state_keys(tmp_path / "off" / "last.ckpt") and not any("_orig_mod" in key for key in keys)
    reloaded = make_module("deeperaser", pretrained=str(tmp_path / "on" / "last.ckpt"))
    assert all(torch.equal(v, module.net.state_dict()[k]) for k, v in reloaded.net.state_dict().items())
    torch._dynamo.reset()


def test_fused_adamw_trains_on_the_cpu_like_the_default(tmp_path):
    expected = fit(make_module("deeperaser"), 16, 2, tmp_path / "default")
    module = make_module("deeperaser", optimizer={"name": "adamw", "lr": 1e-3, "fused": True})
    actual = fit(module, 16, 2, tmp_path / "fused")
    assert module.trainer.optimizers[0].defaults["fused"] is True
    assert_same_losses(actual, expected, 1e-5)
    parameters = torch.nn.Linear(2, 2).parameters()
    with pytest.raises(InputError, match=r"optimizer\.fused=true, optimizer\.foreach=true: torch .* refuses it"):
        build_optimizer(parameters, {"name": "adamw", "fused": True, "foreach": True})


def test_options_are_off_and_unrecorded_by_default_and_settable_from_the_command_line(tmp_path):
    module = make_module("deeperaser")
    assert not module.channels_last and module.compile_options is None
    assert "channels_last" not in module.hparams and "compile" not in module.hparams  # hparams as before
    for family in ("deeperaser", "garnet"):
        cfg = compose_train([f"zoo={family}", f"run_dir={tmp_path}", "model.channels_last=true", "model.compile=true"])
        module = instantiate(cfg.model)
        assert module.channels_last and module.compile_options == {}
        assert module.hparams.channels_last is True and module.hparams.compile is True
        cfg = compose_train([f"zoo={family}", f"run_dir={tmp_path}", "model.compile={backend: eager, dynamic: false}"])
        assert instantiate(cfg.model).compile_options == {"backend": "eager", "dynamic": False}
