"""Image-quality metrics used in validation and evaluation (fp32, per image).

``psnr``/``ssim`` take (B,C,H,W) tensors in [0, data_range] and return one value per image, so
averages are per-image means as in the papers (not the PSNR of a pooled MSE).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

MIN_MSE = 1e-10  # identical images score 100 dB instead of inf
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights (OpenCV/PIL "L")
# ITU-R BT.601 RGB [0,1] -> YCbCr on 0-255 (columns Y, Cb, Cr), then the offsets (MATLAB's rgb2ycbcr)
BT601 = ((65.481, -37.797, 112.0), (128.553, -74.203, -93.786), (24.966, 112.0, -18.214))
BT601_OFFSET = (16.0, 128.0, 128.0)


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """Full-range BT.601 luma Y = 0.299R + 0.587G + 0.114B (OpenCV's grey; black 0, white 1), (B,3,H,W) ->
    (B,H,W), in the input's dtype and scale. The studio-range Y of YCbCr is :func:`ycbcr_y`."""
    return LUMA[0] * rgb[:, 0] + LUMA[1] * rgb[:, 1] + LUMA[2] * rgb[:, 2]


def ycbcr(images: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 YCbCr of (B,3,H,W) RGB in [0,1] -> (B,3,H,W) float32 on [0,1] (Y in [16/255, 235/255]):
    ``(RGB · BT601 + (16, 128, 128)) / 255``, one float32 matrix product per pixel."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (B,3,H,W) RGB images, got {tuple(images.shape)}")
    matrix = torch.tensor(BT601, dtype=torch.float32, device=images.device)
    offset = torch.tensor(BT601_OFFSET, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    return (torch.matmul(images.float().permute(0, 2, 3, 1), matrix).permute(0, 3, 1, 2) + offset) / 255.0


def ycbcr_y(images: torch.Tensor) -> torch.Tensor:
    """Studio-range BT.601 Y of YCbCr, offset 16 (MATLAB's ``rgb2ycbcr``, pyiqa's ``to_y_channel(x, 1, 'ycbcr')``):
    (B,3,H,W) RGB in [0,1] -> (B,1,H,W) float32, ``(65.481R + 128.553G + 24.966B + 16) / 255`` (black 16/255,
    white 235/255). The full-range luma is :func:`luma`.

    Taken from the full 3x3 float32 product (:func:`ycbcr`), which gives pyiqa's bits on every 8-bit colour
    and image size tried (CPU); a weighted sum, or a product with the Y column alone, differs in the last
    bit on 13-18% of pixels, enough to flip the rounding of Y·255 on a few.
    """
    return ycbcr(images)[:, :1]


class Scorer:
    """A test-set scorer (evaluation's ``scorers``, ``rezoo score``): :meth:`update` scores a batch of outputs
    against their targets (with the inputs, masks, names and annotated boxes where a scorer uses them) through
    :meth:`score_batch`, keeping one value per image and key in ``per_image`` and the images' ``names``;
    :meth:`compute` gives the test-set scores."""

    def __init__(self, keys: Sequence[str] = ()):
        self.per_image: dict[str, list[float]] = {key: [] for key in keys}
        self.names: list[str] = []

    def score_batch(
        self,
        output: torch.Tensor,
        target: torch.Tensor,
        image: torch.Tensor | None,
        mask: torch.Tensor | None,
        names: Sequence[str] | None,
        boxes: Sequence | None,
    ) -> dict[str, torch.Tensor | list[float]]:
        """Key -> one value per image of the batch."""
        raise NotImplementedError

    def update(
        self,
        output: torch.Tensor,
        target: torch.Tensor,
        image: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        names: Sequence[str] | None = None,
        boxes: Sequence | None = None,
    ) -> None:
        for key, values in self.score_batch(output, target, image, mask, names, boxes).items():
            values = values.double().cpu().tolist() if isinstance(values, torch.Tensor) else values
            self.per_image.setdefault(key, []).extend(values)
        self.names.extend(names or [str(len(self.names) + i) for i in range(len(output))])

    def compute(self) -> dict[str, float]:
        raise NotImplementedError


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
