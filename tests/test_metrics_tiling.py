"""Per-image metrics and tiled inference."""

import math

import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from zoo.metrics import psnr, ssim
from zoo.nn.tiling import tiled_forward


def test_psnr_is_per_image():
    target = torch.zeros(2, 3, 8, 8)
    pred = target.clone()
    pred[0] += 0.1  # MSE 0.01 -> 20 dB
    pred[1] += 0.01  # MSE 1e-4 -> 40 dB
    assert psnr(pred, target).tolist() == pytest.approx([20.0, 40.0], abs=1e-4)
    assert psnr(target, target)[0] == pytest.approx(100.0)  # identical: capped, not inf
    assert psnr(pred * 255, target * 255, data_range=255.0)[0] == pytest.approx(20.0, abs=1e-4)


def test_ssim_matches_torchmetrics():
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(3, 3, 32, 40, generator=generator)
    pred = (target + 0.1 * torch.randn(3, 3, 32, 40, generator=generator)).clamp(0, 1)
    expected = structural_similarity_index_measure(pred, target, data_range=1.0, reduction="none")
    # torchmetrics pads (reflect) before its 'valid' crop; we filter 'valid' directly: close, not equal
    assert torch.allclose(ssim(pred, target), expected, atol=5e-3)
    noisier = (target + 0.2 * torch.randn(3, 3, 32, 40, generator=generator)).clamp(0, 1)
    assert (ssim(noisier, target) < ssim(pred, target)).all()
    assert ssim(target, target).tolist() == pytest.approx([1.0] * 3, abs=1e-6)


@pytest.mark.parametrize("height,width,tile,overlap", [(97, 131, 32, 8), (64, 64, 64, 16), (30, 50, 16, 4)])
def test_tiles_cover_the_image_and_blend_exactly(height, width, tile, overlap):
    image = torch.rand(2, 3, height, width)
    mask = (torch.rand(2, 1, height, width) > 0.5).float()
    out = tiled_forward(lambda x, m: x * 0.5 + m, image, mask, tile=tile, overlap=overlap)
    assert out.shape == image.shape
    assert torch.allclose(out, image * 0.5 + mask, atol=1e-6)  # pointwise fn: tiling is exact


def test_tiles_blend_seams_smoothly():
    """Tile-dependent outputs (a per-tile mean) blend: no jump larger than the tiles' own difference."""
    image = torch.linspace(0, 1, 96).repeat(1, 3, 32, 1)
    out = tiled_forward(lambda x, m: x.mean().expand_as(x), image, tile=32, overlap=16)
    steps = out[0, 0, 0].diff().abs()
    assert steps.max() < 0.1 and not math.isnan(out.sum().item())


def test_super_resolution_scale():
    image = torch.rand(1, 3, 40, 50)
    up = lambda x, m: torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")  # noqa: E731
    out = tiled_forward(up, image, tile=16, overlap=4, scale=2)
    assert out.shape == (1, 3, 80, 100)
    assert torch.allclose(out, up(image, None), atol=1e-6)


def test_overlap_must_be_smaller_than_tile():
    with pytest.raises(ValueError, match="overlap"):
        tiled_forward(lambda x, m: x, torch.rand(1, 3, 8, 8), tile=4, overlap=4)


def test_schedules_warm_up_decay_and_stretch():
    from zoo.training.optim import lr_factor

    cosine = lr_factor({"name": "cosine", "warmup_steps": 10, "min_lr_ratio": 0.01}, 110)
    assert cosine(0) == pytest.approx(0.1) and cosine(9) == pytest.approx(1.0)
    assert (
        cosine(60) == pytest.approx(0.505) and cosine(110) == pytest.approx(0.01) and cosine(500) == pytest.approx(0.01)
    )
    one_cycle = lr_factor({"name": "onecycle", "pct_start": 0.1}, 100)
    assert one_cycle(0) == pytest.approx(1 / 25) and one_cycle(10) == pytest.approx(1.0)
    assert one_cycle(100) == pytest.approx(1 / 25 / 1e4)
    assert lr_factor({"name": "onecycle", "pct_start": 0.1}, 200)(100) > one_cycle(99)  # a longer run decays later
    with pytest.raises(ValueError, match="scheduler.name"):
        lr_factor({"name": "step"}, 10)
