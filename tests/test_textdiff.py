"""TextDiff: shapes, the DocDiff schedule and sampler, plug-and-play refinement, the objective and its stages."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

import zoo
from tests.conftest import ROOT, TINY_NETS
from zoo.textdiff.model import TextDiff
from zoo.textdiff.module import TextDiffModule, laplacian, text_mask

TINY = TINY_NETS["textdiff"]


class ConstantDenoiser(torch.nn.Module):
    """Stands in for the MRD: always predicts ``value`` as x0, and records the timesteps it was asked."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.value, self.calls, self.multiple = value, [], 2

    def forward(self, noisy, coarse, mask, t):
        self.calls.append(int(t[0]))
        return self.value.expand_as(noisy)


def test_default_configuration_and_registry():
    model = zoo.create_model("textdiff")
    info = zoo.model_info("textdiff")
    assert info.task == "super_resolution" and info.inputs == ("lr",) and info.scale == 2
    assert sum(p.numel() for p in model.parameters()) == info.params
    assert len(model.tem.blocks) == 5 and model.timesteps == 100 and model.lr_multiple == info.pad_multiple
    assert [m.conv.dilation[0] for m in model.mrd.gated] == [2, 4, 8, 16]


@pytest.mark.parametrize("size", [(16, 64), (20, 75)])
def test_torch_hub_local_returns_twice_the_size_without_lightning_or_hydra(size):
    code = (
        "import sys, torch; "
        f"m = torch.hub.load({str(ROOT)!r}, 'textdiff', source='local', **{TINY!r}).eval(); "
        f"y = m(torch.rand(1, 3, {size[0]}, {size[1]})); "
        "assert 'lightning' not in sys.modules and 'hydra' not in sys.modules, 'heavy imports'; "
        "print(tuple(y.shape), float(y.min()) >= 0, float(y.max()) <= 1)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[-2] == f"(1, 3, {2 * size[0]}, {2 * size[1]}) True True"


def test_schedule_is_docdiffs_linear_beta():
    model = TextDiff(**{**TINY, "timesteps": 100})
    betas = torch.linspace(1e-5, 0.2, 100, dtype=torch.float64)
    assert torch.allclose(model.alphas_cumprod.double(), torch.cumprod(1 - betas, 0), rtol=1e-6)
    assert model.timestep_schedule(None) == list(range(99, -1, -1))
    fast = model.timestep_schedule(10)
    assert len(fast) == 10 and fast[0] == 99 and fast[-1] == 0 and fast == sorted(fast, reverse=True)
    x0, noise, t = torch.rand(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.tensor([0, 99])
    alpha = model.alphas_cumprod[t].view(-1, 1, 1, 1)
    assert torch.allclose(model.q_sample(x0, t, noise), alpha.sqrt() * x0 + (1 - alpha).sqrt() * noise)


def test_ddim_visits_every_step_and_returns_the_last_x0():
    model = TextDiff(**{**TINY, "timesteps": 20}).eval()
    value = torch.full((1, 3, 1, 1), 0.25)
    model.mrd = ConstantDenoiser(value)
    coarse, mask = torch.rand(2, 3, 8, 8), torch.rand(2, 1, 8, 8)
    residual = model.sample_residual(coarse, mask)
    assert model.mrd.calls == list(range(19, -1, -1)) and torch.equal(residual, value.expand_as(coarse))
    model.mrd.calls.clear()
    model.sample_residual(coarse, mask, steps=5)
    assert len(model.mrd.calls) == 5 and model.mrd.calls[-1] == 0


def test_ddim_update_is_deterministic_eta_zero():
    """With x̂0 fixed, one DDIM step from t to t' gives sqrt(ᾱ_t')·x̂0 + sqrt(1-ᾱ_t')·ε̂,
    ε̂ = (x_t - sqrt(ᾱ_t)·x̂0)/sqrt(1-ᾱ_t)."""
    model = TextDiff(**{**TINY, "timesteps": 10}).eval()
    seen = []

    class Recorder(ConstantDenoiser):
        def forward(self, noisy, coarse, mask, t):
            seen.append(noisy.clone())
            return super().forward(noisy, coarse, mask, t)

    value = torch.full((1, 3, 1, 1), -0.1)
    model.mrd = Recorder(value)
    model.sample_residual(torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 4), steps=2)  # timesteps 9, 0
    a9, a0 = model.alphas_cumprod[9], model.alphas_cumprod[0]
    eps = (seen[0] - a9.sqrt() * value) / (1 - a9).sqrt()
    assert torch.allclose(seen[1], a0.sqrt() * value + (1 - a0).sqrt() * eps, atol=1e-6)


def test_same_seed_same_output_and_seed_matters():
    torch.manual_seed(0)
    model = zoo.create_model("textdiff", **TINY).eval()
    torch.nn.init.normal_(model.mrd.head[1].weight, std=0.1)  # zero-initialised: the noise would not show
    lr = torch.rand(2, 3, 16, 64)
    with torch.no_grad():
        first, second = model(lr), model(lr)
        model.seed = 1
        third = model(lr)
    assert torch.equal(first, second) and not torch.equal(first, third)


def test_refine_replaces_the_coarse_image():
    model = zoo.create_model("textdiff", **TINY).eval()
    model.mrd = ConstantDenoiser(torch.full((1, 3, 1, 1), 0.1))
    lr, coarse = torch.rand(1, 3, 7, 9), torch.rand(1, 3, 14, 18) * 0.8
    with torch.no_grad():
        refined = model.refine(lr, coarse)
    assert torch.allclose(refined, (coarse + 0.1).clamp(0, 1))
    with pytest.raises(ValueError, match="2x the LR size 7x9"):
        model.refine(lr, torch.rand(1, 3, 16, 18))


def test_residual_target_trains_the_tem_unless_detached():
    model = zoo.create_model("textdiff", **TINY)
    lr, hr = torch.rand(2, 3, 16, 64), torch.rand(2, 3, 32, 128)
    for detach, expect_grad in ((False, True), (True, False)):
        model.zero_grad()
        out = model.forward_train(lr, hr, detach_residual_target=detach)
        assert out.coarse.shape == hr.shape and out.mask.shape == (2, 1, 32, 128) and out.residual.shape == hr.shape
        torch.nn.functional.mse_loss(out.residual, out.residual_target).backward()
        tem_grads = [p.grad for p in model.tem.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
        assert bool(tem_grads) == expect_grad


def test_laplacian_and_tatt_mask():
    flat = torch.full((1, 3, 6, 6), 0.5)
    assert torch.equal(laplacian(flat)[..., 1:-1, 1:-1], torch.zeros(1, 3, 4, 4))
    impulse = torch.zeros(1, 1, 5, 5)
    impulse[0, 0, 2, 2] = 1
    assert laplacian(impulse)[0, 0, 2, 2] == 8 and laplacian(impulse)[0, 0, 1, 1] == -1
    hr = torch.ones(1, 3, 4, 4)
    hr[..., 1:3, 1:3] = 0  # dark text on a light background
    assert torch.equal(text_mask(hr)[0, 0], (hr[0, 0] == 0).float())


@pytest.mark.parametrize("stage", ["joint", "tem", "mrd"])
def test_stages_train_what_they_say(stage):
    module = TextDiffModule(net=TINY, stage=stage)
    batch = {"lr": torch.rand(2, 3, 16, 64), "target": torch.rand(2, 3, 32, 128)}
    module.train()
    loss = module.training_step(batch, 0)
    loss.backward()
    tem = any(p.grad is not None for p in module.net.tem.parameters())
    mrd = any(p.grad is not None for p in module.net.mrd.parameters())
    assert (
        torch.isfinite(loss)
        and (tem, mrd) == {"joint": (True, True), "tem": (True, False), "mrd": (False, True)}[stage]
    )
    if stage == "mrd":
        assert not module.net.tem.training and module.net.mrd.training
    module._trainer = SimpleNamespace(estimated_stepping_batches=10)  # what configure_optimizers reads
    optimized = {id(p) for group in module.configure_optimizers().param_groups for p in group["params"]}
    tem_params = {id(p) for p in module.net.tem.parameters()}
    assert (
        optimized
        and (optimized >= tem_params) == (stage != "mrd")
        and optimized.isdisjoint(tem_params) == (stage == "mrd")
    )


def test_recognizer_text_prior_loads_a_frozen_crnn(tmp_path):
    """TATT's text prior: a CRNN (official ``crnn.pth`` layout) frozen in eval mode inside the TEM."""
    crnn = zoo.create_model("crnn")
    torch.save(crnn.state_dict(), tmp_path / "crnn.pth")
    model = zoo.create_model(
        "textdiff", **{**TINY, "text_prior": "recognizer", "recognizer_weights": str(tmp_path / "crnn.pth")}
    )
    recognizer = model.tem.prior.recognizer
    assert all(torch.equal(v, crnn.state_dict()[k]) for k, v in recognizer.state_dict().items())
    model.train()
    assert not recognizer.training and not any(p.requires_grad for p in recognizer.parameters())
    out = model.forward_train(torch.rand(2, 3, 16, 64), torch.rand(2, 3, 32, 128))
    out.coarse.mean().backward()
    assert model.tem.prior.queries.grad is not None and all(p.grad is None for p in recognizer.parameters())
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 3, 20, 75)).shape == (1, 3, 40, 150)


def test_ema_is_a_copy_until_it_starts_then_updates_every_n_steps():
    """DocDiff's EMA schedule (``ema_start``, ``ema_every``), in the shared module."""
    from types import SimpleNamespace

    module = TextDiffModule(net=TINY, ema_decay=0.5, ema_every=2, ema_start=2)
    param, ema = next(module.net.parameters()), next(module.ema_net.parameters())

    def step(global_step: int, value: float) -> None:
        with torch.no_grad():
            param.fill_(value)
        module._trainer = SimpleNamespace(global_step=global_step, max_steps=0, should_stop=False)
        module.on_train_batch_end(None, None, 0)

    step(1, 1.0)
    assert torch.all(ema == 1)  # before ema_start: a copy
    step(2, 3.0)
    assert torch.all(ema == 2)  # 0.5·1 + 0.5·3
    step(3, 5.0)
    assert torch.all(ema == 2)  # not an update step
    step(4, 5.0)
    assert torch.all(ema == 3.5)
