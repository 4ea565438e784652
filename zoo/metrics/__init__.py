"""Image-quality metrics used in validation and evaluation (fp32, per image).

``psnr``/``ssim`` take (B,C,H,W) tensors in [0, data_range] and return one value per image, so
averages are per-image means as in the papers (not the PSNR of a pooled MSE).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MIN_MSE = 1e-10  # identical images score 100 dB instead of inf
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights (OpenCV/PIL "L")


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """Y = 0.299R + 0.587G + 0.114B, (B,3,H,W) -> (B,H,W), in the input's dtype and scale."""
    return LUMA[0] * rgb[:, 0] + LUMA[1] * rgb[:, 1] + LUMA[2] * rgb[:, 2]


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB: 10·log10(data_range² / MSE)."""
    mse = (pred.float() - target.float()).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(data_range**2 / mse.clamp(min=MIN_MSE))


def gaussian_kernel(size: int, sigma: float, dtype: torch.dtype = torch.float32, centered: bool = True) -> torch.Tensor:
    """(size, size) Gaussian normalised to sum 1. ``centered=False`` uses the ``mgrid[-size//2+1 :
    size//2+1]`` offsets of the MATLAB-port scripts (EraseNet's), which differ for even sizes only."""
    if centered:
        coords = torch.arange(size, dtype=dtype) - (size - 1) / 2
    else:
        coords = torch.arange((-size) // 2 + 1, size // 2 + 1, dtype=dtype)
    g = torch.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def ssim_maps(
    x: torch.Tensor, y: torch.Tensor, kernel: torch.Tensor, data_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel SSIM and contrast-structure maps of (B,C,H,W) images: 'valid' filtering with the
    2-D ``kernel``, K1 = 0.01, K2 = 0.03 (Wang et al. 2004)."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    channels = x.shape[1]
    weight = kernel.to(x).expand(channels, 1, *kernel.shape).contiguous()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, weight, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    return (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs, cs


def ssim(
    pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5
) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004): 11x11 Gaussian window (σ=1.5), K1=0.01, K2=0.03, 'valid'
    filtering, averaged over channels and positions. Images smaller than the window use a window
    of their size."""
    pred, target = pred.float(), target.float()
    window = min(window, pred.shape[-1], pred.shape[-2])
    ssim_map, _ = ssim_maps(pred, target, gaussian_kernel(window, sigma), data_range)
    return ssim_map.flatten(1).mean(dim=1)


def ssim_uniform(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, window: int = 7) -> torch.Tensor:
    """Per-image SSIM as ``skimage.metrics.structural_similarity(..., channel_axis=-1, data_range=1)``
    with its defaults (the PromptIR/PIP tables): 7x7 uniform window, sample covariance (N/(N−1)),
    the border of (window − 1)/2 left out, averaged over channels and positions."""
    import torch.nn.functional as F

    x, y = pred.double(), target.double()
    window = min(window, x.shape[-1], x.shape[-2])

    def mean(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, window, stride=1)

    n = window * window
    ux, uy = mean(x), mean(y)
    vx, vy, vxy = (
        n / (n - 1) * (mean(a * b) - ua * ub) for a, b, ua, ub in ((x, x, ux, ux), (y, y, uy, uy), (x, y, ux, uy))
    )
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return ssim_map.flatten(1).mean(1).float()
