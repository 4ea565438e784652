"""Image-quality metrics used in validation and evaluation (fp32, per image).

``psnr``/``ssim`` take (B,C,H,W) tensors in [0, data_range] and return one value per image, so
averages are per-image means as in the papers (not the PSNR of a pooled MSE).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

MIN_MSE = 1e-10  # identical images score 100 dB instead of inf


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB: 10·log10(data_range² / MSE)."""
    mse = (pred.float() - target.float()).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(data_range**2 / mse.clamp(min=MIN_MSE))


def _gaussian_window(size: int, sigma: float, channels: int, device: torch.device) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004): 11x11 Gaussian window (σ=1.5), K1=0.01, K2=0.03, 'valid'
    filtering, averaged over channels and positions. Images smaller than the window use a window
    of their size."""
    pred, target = pred.float(), target.float()
    window = min(window, pred.shape[-1], pred.shape[-2])
    kernel = _gaussian_window(window, sigma, pred.shape[1], pred.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, kernel, groups=pred.shape[1])

    mu_p, mu_t = blur(pred), blur(target)
    var_p = blur(pred * pred) - mu_p**2
    var_t = blur(target * target) - mu_t**2
    cov = blur(pred * target) - mu_p * mu_t
    ssim_map = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    return ssim_map.flatten(1).mean(dim=1)
