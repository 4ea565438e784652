"""Fréchet Inception Distance compatible with pytorch-fid (Heusel et al. 2017; Seitzer's port).

Features: the 2048-d pool3 (final average pool) output of the TF-ported Inception-v3
(``pt_inception-2015-12-05``), whose Mixed blocks differ from torchvision's (average pools that do not
count padding, a max pool in the last block). Images: RGB [0,1] at their stored size, resized to 299x299
**inside the network with bilinear interpolation (align_corners=False)** and mapped to [-1,1] — pytorch-fid's
choice, used by ViTEraser's tables. clean-fid (PIL bicubic before the network) and torch-fidelity (TF-1
bilinear) give different numbers; compare FIDs only within one tool and one image count.

Weights: the manifest's ``fid_inception`` file, downloaded once into the zoo cache and checked against its
sha256, or read from ``weights=<path>`` on offline machines.
Any callable ``images -> (B, D) features`` can stand in for the Inception network (tests use a tiny one).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def _avg_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def _build_tf_inception() -> torch.nn.Module:
    """torchvision's Inception-v3 skeleton (1008 classes, no aux head) with the TF graph's pooling in the
    Mixed blocks, so that the TF-ported FID weights reproduce TF's features."""
    from torchvision.models import inception as tv

    class BlockA(tv.InceptionA):
        def forward(self, x):
            b5 = self.branch5x5_2(self.branch5x5_1(x))
            b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool_3x3(x))], 1)

    class BlockC(tv.InceptionC):
        def forward(self, x):
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            b7d = x
            for layer in (
                self.branch7x7dbl_1,
                self.branch7x7dbl_2,
                self.branch7x7dbl_3,
                self.branch7x7dbl_4,
                self.branch7x7dbl_5,
            ):
                b7d = layer(b7d)
            return torch.cat([self.branch1x1(x), b7, b7d, self.branch_pool(_avg_pool_3x3(x))], 1)

    class BlockE(tv.InceptionE):
        def __init__(self, in_channels: int, pool: Callable[[torch.Tensor], torch.Tensor]):
            super().__init__(in_channels)
            self.pool = pool

        def forward(self, x):
            b3 = self.branch3x3_1(x)
            b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
            bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
            return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(self.pool(x))], 1)

    net = tv.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    net.Mixed_5b, net.Mixed_5c, net.Mixed_5d = BlockA(192, 32), BlockA(256, 64), BlockA(288, 64)
    net.Mixed_6b, net.Mixed_6c, net.Mixed_6d, net.Mixed_6e = (
        BlockC(768, 128),
        BlockC(768, 160),
        BlockC(768, 160),
        BlockC(768, 192),
    )
    net.Mixed_7b, net.Mixed_7c = BlockE(1280, _avg_pool_3x3), BlockE(2048, _max_pool_3x3)
    return net


class FIDInception(torch.nn.Module):
    """pytorch-fid's feature extractor: (B,3,H,W) in [0,1] -> (B,2048) pool3 features."""

    STAGES = (
        "Conv2d_1a_3x3",
        "Conv2d_2a_3x3",
        "Conv2d_2b_3x3",
        "maxpool1",
        "Conv2d_3b_1x1",
        "Conv2d_4a_3x3",
        "maxpool2",
        "Mixed_5b",
        "Mixed_5c",
        "Mixed_5d",
        "Mixed_6a",
        "Mixed_6b",
        "Mixed_6c",
        "Mixed_6d",
        "Mixed_6e",
        "Mixed_7a",
        "Mixed_7b",
        "Mixed_7c",
    )

    def __init__(self, weights: str | os.PathLike | None = None, download: bool = True):
        super().__init__()
        self.net = _build_tf_inception()
        if weights is None and not download:
            raise ValueError(
                "FID needs the Inception weights: pass weights=<path to pt_inception-2015-12-05-6726825d.pth>"
            )
        from zoo.checkpoints import load_state_dict_strict
        from zoo.hub import fetch_auxiliary

        path = fetch_auxiliary("fid_inception", weights)
        load_state_dict_strict(self.net, torch.load(path, map_location="cpu", weights_only=True), str(path))
        self.eval().requires_grad_(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.float(), size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
        for name in self.STAGES:
            x = getattr(self.net, name)(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (rowvar=False, float64) of (N, D) features."""
    features = np.asarray(features, np.float64)
    if len(features) < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {len(features)}")
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """||μ1−μ2||² + Tr(Σ1 + Σ2 − 2·sqrtm(Σ1Σ2)); ``eps``·I is added when the product is singular."""
    from scipy import linalg

    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"FID: imaginary component {np.max(np.abs(covmean.imag))} in sqrtm(Σ1Σ2)")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def folder_features(
    paths: Iterable[Path], extractor: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 50
) -> np.ndarray:
    """Features of image files (RGB [0,1] at stored size; images of equal size are batched)."""
    from zoo.imaging.images import read_image, to_tensor

    features, pending = [], []

    def flush() -> None:
        if pending:
            features.append(extractor(torch.stack(pending)).double().cpu().numpy())
            pending.clear()

    for path in paths:
        image = to_tensor(read_image(path))
        if pending and (image.shape != pending[0].shape or len(pending) == batch_size):
            flush()
        pending.append(image)
    flush()
    return np.concatenate(features)


def fid(
    pred_paths: Iterable[Path],
    gt_paths: Iterable[Path],
    extractor: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 50,
) -> float:
    """FID between two sets of image files."""
    return frechet_distance(
        *statistics(folder_features(pred_paths, extractor, batch_size)),
        *statistics(folder_features(gt_paths, extractor, batch_size)),
    )


class FIDScorer:
    """FID of a test run, accumulated batch by batch: outputs (rounded to 8 bits, as saved files) vs
    ground truths, both through ``extractor`` (an :class:`FIDInception`); ``compute() -> {"fid": ...}``."""

    def __init__(self, extractor: torch.nn.Module):
        self.extractor = extractor
        self.features: dict[str, list[np.ndarray]] = {"pred": [], "gt": []}

    def update(self, output: torch.Tensor, target: torch.Tensor, *unused: object, boxes: object = None) -> None:
        from zoo.metrics.text_removal import quantize

        self.extractor.to(output.device)
        for key, images in (("pred", quantize(output)), ("gt", quantize(target))):
            self.features[key].append(self.extractor(images).double().cpu().numpy())

    def compute(self) -> dict[str, float]:
        pred, gt = (np.concatenate(self.features[k]) for k in ("pred", "gt"))
        return {"fid": frechet_distance(*statistics(pred), *statistics(gt))}
