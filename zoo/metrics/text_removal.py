"""The scene-text-removal evaluation protocols, per image.

* :func:`erasenet_scores` — the de-facto SCUT-EnsText table (EraseNet's ``evaluatuion.py``, reused by
  PERT, ViTEraser, CTRNet, DeepEraser): RGB in [0,1] at 512 px; MSE, PSNR = 10·log10(1/MSE), AGE,
  pEPs, pCEPs on the luma Y = 0.299R + 0.587G + 0.114B, and MSSIM *as that script computes it* (its
  five "scales" all at full resolution, see :func:`erasenet_mssim`). :func:`ms_ssim` is the correct
  multi-scale SSIM, reported under its own name.
* :func:`garnet_scores` — GaRNet's ``CODE/eval.py``/``utils.py``: 0-255 RGB, PSNR = 20·log10(255/√(MSE+1e-10)),
  SSIM on the luma after a 2x2 average pool (piq style, 'valid'), AGE = mean |ΔY| (not rounded).

Both take (B,3,H,W) float tensors in [0,1] and return ``{name: (B,) tensor}``. Averaging over a test set
(with EraseNet's exclusion of identical pairs) is :func:`aggregate`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zoo.imaging.colors import alpha_blend
from zoo.metrics import Scorer, gaussian_kernel, luma, ssim_maps

EP_THRESHOLD = 20  # pEPs: |ΔY| > 20 on the 0-255 scale
EP_DENOMINATOR = 512 * 512  # the script divides by 512·512 whatever the image size
MSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
ERASENET_KEYS = ("psnr", "mssim", "mse", "age", "peps", "pceps", "ms_ssim")
GARNET_KEYS = ("psnr", "ssim", "age")


def erasenet_mssim(pred_y255: torch.Tensor, gt_y255: torch.Tensor) -> torch.Tensor:
    """MSSIM exactly as EraseNet's script computes it, on (B,H,W) luma in [0,255].

    The script's loop down-samples into new variables but keeps measuring the full-resolution images,
    so its five scales are identical: MSSIM = |cs|^(w1+w2+w3+w4) · sign(ssim)·|ssim|^w5 with the mean
    cs and SSIM maps at full resolution (window ``min(H, 11)``, σ 1.5, float64). Published tables use
    this number (×100).
    """
    x, y = gt_y255.double()[:, None], pred_y255.double()[:, None]
    kernel = gaussian_kernel(min(x.shape[-2], 11), 1.5, torch.float64, centered=False)
    ssim_map, cs = ssim_maps(x, y, kernel, 255.0)
    ssim_mean, cs_mean = ssim_map.flatten(1).mean(1), cs.flatten(1).mean(1)
    cs_term = cs_mean.abs() ** sum(MSSIM_WEIGHTS[:4])
    return cs_term * torch.sign(ssim_mean) * ssim_mean.abs() ** MSSIM_WEIGHTS[4]


def ms_ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Multi-scale SSIM (Wang et al. 2003) on (B,C,H,W): five scales with 2x2 average down-sampling,
    weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 11x11 Gaussian (σ 1.5, smaller at coarse scales
    that are smaller than the window), channel-averaged. Needs images of at least 16 px."""
    x, y = pred.double(), target.double()
    values = []
    for level, weight in enumerate(MSSIM_WEIGHTS):
        ssim_map, cs = ssim_maps(
            x, y, gaussian_kernel(min(11, x.shape[-1], x.shape[-2]), 1.5, torch.float64), data_range
        )
        term = (ssim_map if level == len(MSSIM_WEIGHTS) - 1 else cs).flatten(1).mean(1)
        values.append(term.clamp(min=0) ** weight)
        if level < len(MSSIM_WEIGHTS) - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return torch.stack(values).prod(0).to(pred.dtype)


def clustered_errors(errors: torch.Tensor) -> torch.Tensor:
    """Binary erosion with the 4-neighbour cross and a zero border (scipy's default), (B,H,W) bool."""
    padded = F.pad(errors.float()[:, None], (1, 1, 1, 1))[:, 0] > 0
    return (
        padded[:, 1:-1, 1:-1] & padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:]
    )


def erasenet_scores(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image EraseNet-protocol scores of (B,3,H,W) RGB in [0,1] (already at the protocol's 512 px).

    MSE and PSNR in float32 as the script (on ToTensor images); AGE/pEPs/pCEPs on
    ``round(|Y_pred·255 − Y_gt·255|)`` as uint8; pEPs/pCEPs divided by 512·512 as the script does.
    ``psnr`` is ``inf`` for identical pairs: :func:`aggregate` leaves those out, as the script does.
    """
    pred, gt = pred.float(), gt.float()
    mse = ((gt - pred) ** 2).flatten(1).mean(1)
    psnr = 10 * torch.log10(1 / mse.double())
    y_pred, y_gt = luma(pred) * 255, luma(gt) * 255
    diff = (y_pred - y_gt).abs().round().to(torch.uint8)
    errors = diff > EP_THRESHOLD
    return {
        "mse": mse.double(),
        "psnr": psnr,
        "age": diff.double().flatten(1).mean(1),
        "peps": errors.flatten(1).sum(1).double() / EP_DENOMINATOR,
        "pceps": clustered_errors(errors).flatten(1).sum(1).double() / EP_DENOMINATOR,
        "mssim": erasenet_mssim(y_pred, y_gt),
        "ms_ssim": ms_ssim(luma(pred)[:, None].double(), luma(gt)[:, None].double()),
    }


def garnet_ssim(pred_y255: torch.Tensor, gt_y255: torch.Tensor) -> torch.Tensor:
    """GaRNet's SSIM (piq): (B,H,W) luma on 0-255, 2x2·f average pool with f = round(min(H,W)/256),
    11x11 Gaussian σ 1.5, 'valid', float32."""
    x, y = pred_y255.float()[:, None] / 255, gt_y255.float()[:, None] / 255
    factor = max(1, round(min(x.shape[-2:]) / 256))
    if factor > 1:
        x, y = F.avg_pool2d(x, factor), F.avg_pool2d(y, factor)
    ssim_map, _ = ssim_maps(x, y, gaussian_kernel(11, 1.5), 1.0)
    return ssim_map.flatten(1).mean(1).double()


def garnet_scores(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image GaRNet-protocol scores of (B,3,H,W) RGB in [0,1] (composite before calling for the
    ``_c`` columns, see :func:`composite`)."""
    pred255, gt255 = pred.float().clamp(0, 1) * 255, gt.float().clamp(0, 1) * 255
    mse = ((gt255 - pred255) ** 2).flatten(1).mean(1)
    y_pred, y_gt = luma(pred255), luma(gt255)
    return {
        "psnr": (20 * torch.log10(255.0 / torch.sqrt(mse + 1e-10))).double(),
        "ssim": garnet_ssim(y_pred, y_gt),
        "age": (y_pred - y_gt).abs().flatten(1).mean(1).double(),
    }


def composite(output: torch.Tensor, outside: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``output`` inside ``mask`` (1 = text region), ``outside`` (the input or the GT) elsewhere."""
    return alpha_blend(outside, output, mask)


def aggregate(per_image: dict[str, list[float]], protocol: str) -> dict[str, float]:
    """Test-set means. EraseNet protocol: pairs with MSE 0 are left out of the count (their MSE of 0 is
    still summed), as the script does."""
    count = len(next(iter(per_image.values()), []))
    if count == 0:
        raise ValueError("no images to aggregate")
    if protocol != "erasenet":
        return {key: float(sum(values) / count) for key, values in per_image.items()}
    keep = [i for i, mse in enumerate(per_image["mse"]) if mse > 0]
    if not keep:
        raise ValueError(
            "every prediction is identical to its ground truth (MSE 0): the EraseNet averages are undefined"
        )
    result = {"mse": float(sum(per_image["mse"]) / len(keep))}
    for key, values in per_image.items():
        if key != "mse":
            result[key] = float(sum(values[i] for i in keep) / len(keep))
    return result


PROTOCOLS = ("erasenet", "garnet")


def quantize(image: torch.Tensor) -> torch.Tensor:
    """Round [0,1] images to 8 bits, as they are when saved and scored from files."""
    return torch.round(image.float().clamp(0, 1) * 255) / 255


class ProtocolScorer(Scorer):
    """Accumulates per-image scores of a protocol over a test set.

    ``erasenet``: keys ``psnr, mssim, mse, age, peps, pceps, ms_ssim`` on the output (composited with the
    input outside the mask when ``composite``, EraseNet's "WithMaskOutput"). ``garnet``: ``psnr, ssim,
    age`` on the raw output and, when a mask is given, ``psnr_c, ssim_c, age_c`` on the output
    composited with the ground truth outside the boxes (GaRNet's reported numbers).
    """

    def __init__(self, protocol: str, composite: bool = False):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        super().__init__()
        self.protocol, self.composite = protocol, composite

    def score_batch(self, output, target, image, mask, names, boxes) -> dict[str, torch.Tensor]:
        output, target = quantize(output), quantize(target)
        if self.protocol == "erasenet":
            if self.composite:
                if image is None or mask is None:
                    raise ValueError("composite=true needs the input image and the mask")
                output = composite(output, quantize(image), mask.float())
            scores = erasenet_scores(output, target)
        else:
            scores = garnet_scores(output, target)
            if mask is not None:
                composited = garnet_scores(composite(output, target, mask.float()), target)
                scores.update({f"{key}_c": value for key, value in composited.items()})
        return scores

    def compute(self) -> dict[str, float]:
        return aggregate(self.per_image, self.protocol)
