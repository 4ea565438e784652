"""GramSR training: each stage's gradient set, frozen tensors untouched through real Lightning steps (AdamW weight
decay, accumulation, clipping), the Gram and CSD losses, checkpoints of trainable tensors only, and tools/train.py."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
import torch

import zoo
from tests.conftest import TINY_NETS, read_metrics, run_tool
from zoo.errors import WeightsError
from zoo.gramsr.module import GramSRModule, csd_loss, gram_loss, lpips_vgg

TINY = TINY_NETS["gramsr"]
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def tiny_module(**kwargs) -> GramSRModule:
    return GramSRModule(
        net={**TINY, "color_fix": None},
        **{"lpips_weight": 0.0, "optimizer": {"name": "adamw", "lr": 1e-2, "weight_decay": 1e-2}, **kwargs},
    )


def trainable(module: GramSRModule) -> set[str]:
    return {name for name, p in module.net.named_parameters() if p.requires_grad}


def lora_names(module: GramSRModule, marker: str) -> set[str]:
    return {name for name, _ in module.net.named_parameters() if ".lora_" in name and marker in name}


def snapshot(module: GramSRModule) -> dict[str, torch.Tensor]:
    """Every tensor of the network, the frozen base included."""
    return {name: p.detach().clone() for name, p in module.net.named_parameters()}


def fit_tiny(module: GramSRModule, root, max_steps: int, batch_size: int, **options):
    """Fit ``module`` quietly on the CPU, without validation, on 16 synthetic 32 px HQ images; the trainer."""
    import lightning as L

    from datamodules.realsr import SyntheticSRDataModule

    data = SyntheticSRDataModule(
        size=32, train_samples=16, val_samples=2, batch_size=batch_size, val_batch_size=2, num_workers=0
    )
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        **options,
    )
    trainer.fit(module, datamodule=data)
    return trainer


def test_each_stage_trains_its_own_set():
    module = tiny_module(adapter_stages=[1, 2])
    adapter = {name for name, _ in module.net.named_parameters() if name.startswith("adapter.")}
    pix, sem, tex = lora_names(module, "_pix"), lora_names(module, "_sem"), lora_names(module, "unet_dino")
    assert pix and sem and tex and len(pix) == len(sem)
    expected = {1: (pix | adapter, ("pix",)), 2: (sem | adapter, ("pix", "sem")), 3: (tex, ("pix", "sem", "tex"))}
    for stage, (names, active) in expected.items():
        module.enter_stage(stage)
        assert trainable(module) == names and module.net.active_sets == active, stage
    module = tiny_module()  # the adapter trains in stage 3 too by default (the release saves it with the texture LoRA)
    module.enter_stage(3)
    assert trainable(module) == tex | adapter


def test_stage_schedule():
    module = tiny_module(stage_steps=[3, 4, 5])
    assert module.total_steps == 12 and [module.stage_at(s) for s in (0, 2, 3, 6, 7, 11, 12)] == [1, 1, 2, 2, 3, 3, 3]
    alone = tiny_module(stage=2, stage_steps=[3, 4, 5])
    assert alone.total_steps == 4 and alone.current_stage == 2 and alone.stage_at(0) == alone.stage_at(9) == 2
    assert trainable(alone) == lora_names(alone, "_sem") | {
        n for n, _ in alone.net.named_parameters() if n.startswith("adapter.")
    }
    alone.on_test_start()  # tested before any training step (built from weights): the whole model
    assert alone.net.active_sets == ("pix", "sem", "tex")
    with pytest.raises(ValueError, match="ema_decay"):
        tiny_module(ema_decay=0.999)
    with pytest.raises(ValueError, match="stage"):
        tiny_module(stage=4)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real Lightning fit through the three stages (2 optimizer steps each, 2 accumulated micro-batches,
    clipping, weight decay): (module, snapshots per step, checkpoint path)."""
    import lightning as L

    class Recorder(L.Callback):
        def __init__(self):
            self.at = {}

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.at.setdefault(trainer.global_step, snapshot(pl_module))

        def on_train_end(self, trainer, pl_module):
            self.at[trainer.global_step] = snapshot(pl_module)

    L.seed_everything(0)
    root = tmp_path_factory.mktemp("gramsr_fit")
    module = tiny_module(stage_steps=[2, 2, 2], csd_weight=1.0, gram_weight=1.0)
    recorder = Recorder()
    trainer = fit_tiny(module, root, 6, 2, accumulate_grad_batches=2, gradient_clip_val=1.0, callbacks=[recorder])
    path = root / "last.ckpt"
    trainer.save_checkpoint(path)
    return module, recorder.at, path


def test_steps_move_only_the_stage_set(trained):
    module, at, _ = trained
    assert sorted(at) == list(range(7))
    adapter = {name for name in at[0] if name.startswith("adapter.")}
    sets = {1: lora_names(module, "_pix"), 2: lora_names(module, "_sem"), 3: lora_names(module, "unet_dino")}
    for stage, (start, end) in {1: (0, 2), 2: (2, 4), 3: (4, 6)}.items():
        changed = {name for name in at[start] if not torch.equal(at[start][name], at[end][name])}
        allowed = sets[stage] | adapter
        assert changed <= allowed, (
            stage,
            sorted(changed - allowed)[:5],
        )  # frozen tensors bit-identical (AdamW skips grad None)
        assert changed & sets[stage] and changed & adapter, stage  # and the stage's own set did train
    base = [name for name in at[0] if ".lora_" not in name and not name.startswith("adapter.")]
    assert base and all(torch.equal(at[0][name], at[6][name]) for name in base)


def test_checkpoint_holds_only_trainable_tensors_and_reloads(trained):
    module, _, path = trained
    checkpoint = torch.load(path, weights_only=True)
    keys = set(checkpoint["state_dict"])
    assert keys == {f"net.{k}" for k in module.net.state_dict()}
    assert all(".lora_" in k or k.startswith("net.adapter.") for k in keys)
    loras = lora_names(module, "_pix") | lora_names(module, "_sem") | lora_names(module, "unet_dino")
    assert len(keys) == 4 + len(loras)  # adapter.{0,2}.{weight,bias} and every LoRA tensor
    own = sum(p.numel() for n, p in module.net.named_parameters() if ".lora_" in n or n.startswith("adapter."))
    assert sum(t.numel() for t in checkpoint["state_dict"].values()) == own
    assert checkpoint["optimizer_states"] and checkpoint["hyper_parameters"]["net"]["base_model"] == TINY["base_model"]
    assert checkpoint["gramsr_base"]["base_model"] == "random-init config"
    state = module.net.state_dict()
    fresh = GramSRModule.load_from_checkpoint(path, weights_only=True)  # built from the recorded hyperparameters
    assert fresh.net.state_dict().keys() == state.keys() and all(
        torch.equal(v, state[k]) for k, v in fresh.net.state_dict().items()
    )
    net = zoo.create_model("gramsr", pretrained=str(path))  # the base ids come from the checkpoint
    assert net.state_dict().keys() == state.keys() and all(
        torch.equal(v, state[k]) for k, v in net.state_dict().items()
    )


def test_gram_loss_by_hand(monkeypatch):
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # F (N=2 tokens, C=2): G = FᵀF/N = I/2
    output = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])  # G = [[.5, .5], [.5, .5]]
    # (1/N²)·‖FᵀF − FᵀF‖²_F = ¼·‖[[0, 1], [1, 0]]‖² = 0.5; "mean" divides by the C² = 4 entries
    assert gram_loss(output, target, "sum").item() == pytest.approx(0.5)
    assert gram_loss(output, target, "mean").item() == pytest.approx(0.125)
    module = tiny_module()
    registers = module.net.dino.config.num_register_tokens

    def tokens(image):  # CLS + registers carry garbage: the patch tokens alone must give the hand value
        patches = output if image.sum() > 0 else target
        return torch.cat([torch.full((1, 1 + registers, 2), 9.0 if image.sum() > 0 else -9.0), patches], dim=1)

    monkeypatch.setattr(module.net, "dino_features", tokens)
    assert module.gram(torch.ones(1, 3, 32, 32), torch.zeros(1, 3, 32, 32)).item() == pytest.approx(0.125)
    # other layers: hidden_states entries (patch embedding, blocks), gradients reach the output image
    layered = tiny_module(gram_layers=[1, -1], gram_tokens="all")
    output = torch.rand(2, 3, 32, 40, requires_grad=True)  # 40: cropped to whole 16-px patches
    loss = layered.gram(output, torch.rand(2, 3, 32, 40))
    loss.backward()
    assert loss > 0 and output.grad[..., :32].abs().sum() > 0 and output.grad[..., 32:].abs().sum() == 0


def test_csd_gradient_points_to_the_guided_prediction(monkeypatch):
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    real, fake = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    csd_loss(z, real, fake).backward()
    weight = (z.detach() - real).abs().mean(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(z.grad, 2 * (fake - real) / weight / z.numel(), atol=1e-6)  # descent moves z by real − fake

    # the module's teacher inputs: zero tokens (unconditional) and the adapter's tokens (conditional), CFG-combined
    module = tiny_module(csd_cfg=3.0)
    seen = []

    def teacher(noisy, t, encoder_hidden_states):  # ε = the mean of the tokens it is given
        seen.append(encoder_hidden_states)
        return SimpleNamespace(sample=encoder_hidden_states.mean(dim=(1, 2)).view(-1, 1, 1, 1).expand_as(noisy))

    teacher.dtype = torch.float32
    monkeypatch.setattr(module.net, "frozen_unet", contextlib.contextmanager(lambda: (yield teacher)))
    latents = torch.zeros(2, 4, 3, 3, requires_grad=True)
    tokens = torch.full((2, 5, 32), 0.5)
    module.csd(latents, tokens).backward()
    (inputs,) = seen
    assert torch.equal(inputs[:2], torch.zeros_like(tokens)) and torch.equal(inputs[2:], tokens)
    # ε_u = 0, ε_c = 0.5: x̂0_real = x̂0_fake − √(1−ᾱ)/√ᾱ·3·0.5 < x̂0_fake, so descent lowers z
    assert (latents.grad > 0).all()


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        module = tiny_module(gradient_checkpointing=checkpointing).train()
        with torch.no_grad():
            for name, p in module.net.named_parameters():
                if ".lora_B." in name:
                    p.normal_(0, 0.1)
        torch.manual_seed(1)
        lr, hr = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 32, 32)
        module.net.forward_train(lr, hr).output.square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in module.net.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-6) for n in grads[0])


def test_lpips_without_its_weights_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match="model.lpips_weight=0"):
        lpips_vgg(str(tmp_path / "missing-vgg16.pth"))


def test_stage_two_losses_with_a_stand_in_lpips():
    """The stage-2 step with every term on (LPIPS-VGG with random weights: the real ones cannot be had offline)."""
    from torchmetrics.functional.image.lpips import _LPIPS

    module = tiny_module(stage=2, lpips_weight=2.0)
    module._lpips.append(_LPIPS(pretrained=False, net="vgg", pnet_rand=True).eval().requires_grad_(False))
    logged = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, float(value))
    module.log_dict = lambda values, **kwargs: logged.update({k: float(v) for k, v in values.items()})
    batch = {"lr": torch.rand(2, 3, 8, 8), "target": torch.rand(2, 3, 32, 32)}
    loss = module.training_step(batch, 0)
    loss.backward()
    assert logged["train/stage"] == 2 and logged["train/loss_gram"] == 0
    assert all(logged[f"train/loss_{k}"] != 0 for k in ("l2", "lpips", "csd")), (
        logged
    )  # (random LPIPS layers may score < 0)
    assert logged["train/loss"] == pytest.approx(
        sum(logged[f"train/loss_{k}"] for k in ("l2", "lpips", "csd")), rel=1e-5
    )
    assert {n for n, p in module.net.named_parameters() if p.grad is not None} == trainable(module)


def test_train_tool_runs_the_three_stages(tmp_path):
    run_tool(
        "train.py",
        "zoo=gramsr",
        "profile=quick",
        f"hydra.run.dir={tmp_path}",
        "model.stage_steps=[2,2,2]",
        "trainer.max_steps=6",
        "trainer.val_check_interval=2",
        "trainer.log_every_n_steps=1",
        "trainer.num_sanity_val_steps=0",
        "data.size=32",
        "data.train_samples=16",
        "data.val_samples=2",
        "data.val_batch_size=2",
        "data.batch_size=2",
        "print_config=false",
        "model.standin.steps=5",
        "model.standin.pool_size=8",
    )
    rows = read_metrics(tmp_path)
    stages = [float(r["train/stage"]) for r in rows if r.get("train/stage")]
    assert stages == [1, 1, 2, 2, 3, 3]
    assert len([r for r in rows if r.get("val/psnr")]) == 3  # one validation at the end of each stage
    stage2 = [r for r in rows if r.get("train/stage") == "2.0"]
    assert all(float(r["train/loss_csd"]) > 0 and float(r["train/loss_gram"]) == 0 for r in stage2)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["state_dict"] and all(
        ".lora_" in k or k.startswith("net.adapter.") for k in checkpoint["state_dict"]
    )
    standin = tmp_path / "standin_base"  # the quick profile's stand-in base, named by the checkpoint
    assert (
        checkpoint["hyper_parameters"]["net"]["base_model"] == str(standin)
        and checkpoint["hyper_parameters"]["standin"] is None
    )
    assert checkpoint["hyper_parameters"]["net"]["dino_model"] == str(standin / "dino")
    assert all((standin / part).is_dir() for part in ("unet", "vae", "scheduler", "dino"))


# ------------------------------------------------------------------------------ the stand-in base
def test_fit_autoencoder_learns_to_reconstruct():
    from diffusers import AutoencoderKL

    from datamodules.realsr import SyntheticSRDataset
    from tests.gramsr_fixtures import VAE
    from zoo.gramsr.standin import fit_autoencoder

    torch.manual_seed(0)
    vae = AutoencoderKL.from_config(
        {
            **VAE,
            "block_out_channels": [32],
            "down_block_types": ["DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D"],
            "mid_block_add_attention": False,
        }
    )
    images = SyntheticSRDataset(16, size=32)
    batches = [torch.stack([images[i]["hr"] for i in range(start, start + 8)]) for start in (0, 8)]
    losses = fit_autoencoder(vae, batches, steps=80, batch=8, crop=24, pool_size=16, lr=2e-3)
    assert len(losses) == 80 and sum(losses[-10:]) / 10 < 0.4 * sum(losses[:10]) / 10
    assert not any(p.requires_grad for p in vae.parameters()) and not vae.training
    with pytest.raises(ValueError, match="gave none"):
        fit_autoencoder(vae, [], steps=1)


def test_standin_base_is_written_and_rebuilt_from_the_checkpoint(tmp_path):
    """model.standin: the VAE fitted on the training images, the UNet's output scaled, the base written in the real
    layouts and named by the checkpoint, which rebuilds exactly this model."""
    import lightning as L

    from datamodules.realsr import SyntheticSRDataModule

    L.seed_everything(0)
    module = tiny_module(
        stage_steps=[1, 0, 0],
        standin={"steps": 40, "batch": 8, "crop": 24, "pool_size": 16, "lr": 2e-3, "unet_output_scale": 0.0},
    )
    vae_before = {k: v.clone() for k, v in module.net.vae.state_dict().items()}
    trainer = fit_tiny(module, tmp_path, 1, 4)
    folder = tmp_path / "standin_base"
    assert (
        module.hparams.net["base_model"] == str(folder)
        and module.hparams.net["dino_model"] == str(folder / "dino")
        and module.hparams.standin is None
    )
    assert any(not torch.equal(v, module.net.vae.state_dict()[k]) for k, v in vae_before.items())  # the VAE was fitted
    conv_out = module.net.unet.conv_out.get_base_layer()
    assert not conv_out.weight.any() and not conv_out.bias.any()
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    record = torch.load(path, weights_only=True)["gramsr_base"]
    assert (
        record["base_model"] == str(folder)
        and str(folder / "vae" / "diffusion_pytorch_model.safetensors") in record["sha256"]
    )
    validation = SyntheticSRDataModule(size=32, val_samples=2, num_workers=0)
    validation.setup("validate")
    sample = validation.val_dataloader().dataset[0]
    net = zoo.create_model(
        "gramsr", pretrained=str(path)
    ).eval()  # base from the named folder, LoRAs from the checkpoint
    module.net.eval()
    with torch.no_grad():
        ours, rebuilt = module.net(sample["lr"][None]), net(sample["lr"][None])
    assert torch.equal(ours, rebuilt)
    with pytest.raises(ValueError, match="config dicts"):
        GramSRModule(net={"base_model": str(folder), "dino_model": str(folder / "dino")}, standin={"steps": 1})
