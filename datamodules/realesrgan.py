"""Real-ESRGAN's second-order degradation (HQ -> LQ), as GramSR / PiSA-SR / OSEDiff train with it.

References (facts only; the code here is ours): Wang et al., *Real-ESRGAN: Training Real-World Blind
Super-Resolution with Pure Synthetic Data* (ICCVW 2021); BasicSR ``basicsr/data/degradations.py`` (the
kernels and noises), Real-ESRGAN ``realesrgan/data/realesrgan_dataset.py`` (the kernels drawn per image) and
``realesrgan/models/realesrgan_model.py`` ``feed_data`` (the order of the steps); GramSR's
``src/datasets/realesrgan.py`` + ``params.yml`` (the values :class:`DegradationParams` defaults to).

The pipeline (:meth:`RealESRGANDegradation.apply`), for an HQ image of H×W and ``scale`` s:

1. first stage: blur with ``kernel1`` -> random resize (up/down/keep, then a factor in ``resize_range``, mode
   area/bilinear/bicubic, ``F.interpolate(scale_factor=...)``) -> Gaussian noise (prob.
   ``gaussian_noise_prob``) or else Poisson noise, grey with ``gray_noise_prob``, clipped to [0, 1] -> JPEG at
   a quality in ``jpeg_range``;
2. second stage: blur with ``kernel2`` with ``second_blur_prob`` -> resize to ``(int(H/s·f), int(W/s·f))``,
   f drawn as in 1 from ``resize_prob2``/``resize_range2`` -> noise as in 1 with the ``*2`` ranges ->
   with probability 1/2 ``[resize to (H//s, W//s) + final sinc]`` then JPEG, else JPEG then
   ``[resize + final sinc]`` (the final sinc with ``final_sinc_prob``, else no filter);
3. clamp and round to 8-bit levels: ``clamp(round(x·255), 0, 255) / 255``.

Kernels (:func:`random_blur_kernel`): a size drawn among the odd sizes 7..``blur_kernel_size``; with
``sinc_prob`` a 2-D sinc (:func:`sinc_kernel`, cutoff in [π/3, π] below size 13, [π/5, π] from 13), else one
of ``kernel_list`` with ``kernel_prob`` (iso/aniso Gaussian, generalized Gaussian, plateau; σ in
``blur_sigma`` for both axes, rotation in [-π, π], β from ``betag_range``/``betap_range`` split evenly either
side of 1); zero-padded to ``blur_kernel_size``. The final sinc: size as above, cutoff in [π/3, π].

How this implementation differs from Real-ESRGAN/BasicSR (all deliberate, all documented here):

- **Per image, not per batch.** Every image draws *all* its choices (kernels, resize factors and modes,
  noise kind, the final order, JPEG qualities) from its own seed, as GramSR's dataset does (one image per
  ``degrade_process`` call); Real-ESRGAN's ``feed_data`` shares the resize factors/modes, the noise kind, the
  second-blur coin and the final order across a batch (and then mixes batches with a pair pool, which we do
  not have). An image's LQ depends only on its seed, never on its batch-mates.
- **Seeding.** All draws come from a ``numpy.random.Generator`` of the image's seed (no global ``random`` /
  ``np.random`` / torch RNG); the pixel noise comes from a ``torch.Generator`` on the image's device seeded from
  it. Same seed, same device type -> the same LQ; the noise of a CUDA run differs from a CPU run's (different
  generators), the rest agrees to float rounding.
- **JPEG** is kornia's ``jpeg_codec_differentiable`` (Reich et al. 2024), not BasicSR's ``DiffJPEG``
  (``differentiable=False``): kornia rounds the DCT coefficients with ``round(x) + (x - round(x))³`` (a
  residual of up to 1/8 quantization step that DiffJPEG's hard ``torch.round`` does not have), scales the
  tables as libjpeg does (``floor((Q·scale + 50)/100)`` clipped to [1, 255], scale floored) where DiffJPEG
  multiplies the tables by the unrounded factor, subsamples chroma with an antialiased bilinear ×½ and
  upsamples it bilinearly (DiffJPEG: 2×2 average, nearest), and pads to a multiple of 16 by replication
  (DiffJPEG: zeros). Both differ from libjpeg/cv2 at the same quality; the artefacts are alike, the pixel
  values are not. The output is clamped to [0, 1] afterwards, as DiffJPEG does.
- **Grey noise** draws one noise plane for the image; BasicSR's ``generate_gaussian_noise_pt`` draws one
  (H, W) plane shared by the whole batch and scales it per image.
- **No USM sharpening** of the HQ before the first blur (Real-ESRGAN blurs ``gt_usm``; GramSR comments it out
  and degrades the plain HQ: we follow GramSR), no colour jitter / grey conversion (``color_jitter_prob`` and
  ``gray_prob`` are 0 in GramSR's ``params.yml``), and no ``resize_bak`` (GramSR resizes the LQ back to the HQ
  size with a random mode; our ``image`` is the bicubic upsampling of the SR batch contract).
- **Small images**: a blur whose half-size is not smaller than the image's side pads by replication instead
  of reflection (reflection is undefined there); the official code fails on such images.
- Stage switches the official pipeline does not have, for tests and ablations: ``first_blur_prob``,
  ``noise_prob``/``noise_prob2`` and ``jpeg_prob``/``jpeg_prob2`` (all 1.0 = always, as the official), and
  ``resize_modes`` (the modes drawn from).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")
GREY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale, which BasicSR's Poisson noise uses
SEED_BOUND = 2**63 - 1


# ------------------------------------------------------------------------------------------ kernels
def mesh_grid(size: int) -> np.ndarray:
    """(size, size, 2) offsets (x, y) from the centre, integers in [-(size//2), size//2] (BasicSR's ``mesh_grid``)."""
    axis = np.arange(-(size // 2), size // 2 + 1, dtype=np.float64)
    xx, yy = np.meshgrid(axis, axis)
    return np.stack((xx, yy), axis=-1)


def sigma_matrix(sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """The covariance ``R diag(σx², σy²) Rᵀ`` of a Gaussian rotated by ``theta`` radians."""
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return rotation @ np.diag([sigma_x**2, sigma_y**2]) @ rotation.T


def _quadratic_form(size: int, sigma_x: float, sigma_y: float | None, theta: float) -> np.ndarray:
    """``xᵀ Σ⁻¹ x`` on the kernel grid; ``sigma_y=None`` is isotropic (σy = σx, no rotation)."""
    cov = sigma_matrix(sigma_x, sigma_x, 0.0) if sigma_y is None else sigma_matrix(sigma_x, sigma_y, theta)
    grid = mesh_grid(size)
    return np.einsum("hwi,ij,hwj->hw", grid, np.linalg.inv(cov), grid)


def _normalised(kernel: np.ndarray) -> np.ndarray:
    return kernel / kernel.sum()


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> np.ndarray:
    """Bivariate Gaussian ``exp(-½ xᵀΣ⁻¹x)``, normalised to sum 1 (BasicSR ``bivariate_Gaussian``)."""
    return _normalised(np.exp(-0.5 * _quadratic_form(size, sigma_x, sigma_y, theta)))


def generalized_gaussian_kernel(
    size: int, sigma_x: float, sigma_y: float | None, theta: float, beta: float
) -> np.ndarray:
    """Generalized Gaussian ``exp(-½ (xᵀΣ⁻¹x)^β)`` (β = 1: Gaussian), sum 1
    (BasicSR ``bivariate_generalized_Gaussian``)."""
    return _normalised(np.exp(-0.5 * np.power(_quadratic_form(size, sigma_x, sigma_y, theta), beta)))


def plateau_kernel(size: int, sigma_x: float, sigma_y: float | None, theta: float, beta: float) -> np.ndarray:
    """Plateau ``1 / (1 + (xᵀΣ⁻¹x)^β)``, sum 1 (BasicSR ``bivariate_plateau``)."""
    return _normalised(1.0 / (np.power(_quadratic_form(size, sigma_x, sigma_y, theta), beta) + 1.0))


def sinc_kernel(cutoff: float, size: int, pad_to: int = 0) -> np.ndarray:
    """Circularly symmetric low-pass (2-D sinc) ``ωc J₁(ωc r) / (2π r)``, centre ``ωc²/(4π)``, normalised to
    sum 1 and zero-padded to ``pad_to`` (BasicSR ``circular_lowpass_kernel``); ``cutoff`` ωc in radians (π: none)."""
    if size % 2 != 1:
        raise ValueError(f"kernel size must be odd, got {size}")
    r = np.hypot(*np.moveaxis(mesh_grid(size), -1, 0))
    centre = r == 0
    r_safe = np.where(centre, 1.0, r)
    j1 = torch.special.bessel_j1(torch.from_numpy(cutoff * r_safe)).numpy()
    kernel = np.where(centre, cutoff**2 / (4 * np.pi), cutoff * j1 / (2 * np.pi * r_safe))
    kernel = _normalised(kernel)
    return pad_kernel(kernel, pad_to) if pad_to > size else kernel


def pad_kernel(kernel: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad a square odd kernel to ``size`` (centred)."""
    pad = (size - kernel.shape[0]) // 2
    return np.pad(kernel, pad) if pad > 0 else kernel


def _beta(rng: np.random.Generator, beta_range: Sequence[float]) -> float:
    """β below or above 1 with equal odds (BasicSR draws it so: ``uniform(lo, 1)`` or ``uniform(1, hi)``)."""
    return float(rng.uniform(beta_range[0], 1.0) if rng.random() < 0.5 else rng.uniform(1.0, beta_range[1]))


def random_mixed_kernel(
    rng: np.random.Generator,
    kernel_list: Sequence[str],
    kernel_prob: Sequence[float],
    size: int,
    sigma_range: Sequence[float],
    betag_range: Sequence[float],
    betap_range: Sequence[float],
    rotation_range: Sequence[float] = (-math.pi, math.pi),
) -> np.ndarray:
    """One kernel of a type drawn from ``kernel_list`` with ``kernel_prob`` (BasicSR ``random_mixed_kernels``, no kernel
    noise): σx (and, anisotropic, σy and the rotation) uniform in ``sigma_range`` / ``rotation_range``; β for the
    generalized (``betag_range``) and plateau (``betap_range``) kinds."""
    probs = np.asarray(kernel_prob, dtype=np.float64)
    kind = kernel_list[int(rng.choice(len(kernel_list), p=probs / probs.sum()))]
    sigma_x = float(rng.uniform(*sigma_range))
    sigma_y, theta = None, 0.0
    if kind.endswith("aniso"):
        sigma_y, theta = float(rng.uniform(*sigma_range)), float(rng.uniform(*rotation_range))
    if kind in ("iso", "aniso"):
        return gaussian_kernel(size, sigma_x, sigma_y, theta)
    if kind.startswith("generalized"):
        return generalized_gaussian_kernel(size, sigma_x, sigma_y, theta, _beta(rng, betag_range))
    if kind.startswith("plateau"):
        return plateau_kernel(size, sigma_x, sigma_y, theta, _beta(rng, betap_range))
    raise ValueError(f"unknown kernel type {kind!r}; known: {list(KERNEL_TYPES)}")


def kernel_sizes(max_size: int) -> list[int]:
    """The odd kernel sizes drawn from: 7, 9, ..., ``max_size`` (Real-ESRGAN: 7..21)."""
    return list(range(7, max_size + 1, 2)) or [max_size]


def random_blur_kernel(
    rng: np.random.Generator,
    max_size: int,
    kernel_list: Sequence[str],
    kernel_prob: Sequence[float],
    sinc_prob: float,
    sigma_range: Sequence[float],
    betag_range: Sequence[float],
    betap_range: Sequence[float],
) -> np.ndarray:
    """A stage's blur kernel, ``max_size``² (Real-ESRGAN dataset ``__getitem__``): a size among
    :func:`kernel_sizes`; with ``sinc_prob`` a sinc (cutoff in [π/3, π] below size 13, else [π/5, π]), else
    :func:`random_mixed_kernel`."""
    size = int(rng.choice(kernel_sizes(max_size)))
    if rng.random() < sinc_prob:
        cutoff = float(rng.uniform(np.pi / 3, np.pi) if size < 13 else rng.uniform(np.pi / 5, np.pi))
        kernel = sinc_kernel(cutoff, size)
    else:
        kernel = random_mixed_kernel(rng, kernel_list, kernel_prob, size, sigma_range, betag_range, betap_range)
    return pad_kernel(kernel, max_size)


def random_final_sinc(rng: np.random.Generator, max_size: int, probability: float) -> np.ndarray | None:
    """The final sinc kernel (cutoff in [π/3, π], size among :func:`kernel_sizes`, padded) with ``probability``, else
    ``None`` (Real-ESRGAN's pulse: no filtering)."""
    if rng.random() >= probability:
        return None
    size = int(rng.choice(kernel_sizes(max_size)))
    return sinc_kernel(float(rng.uniform(np.pi / 3, np.pi)), size, pad_to=max_size)


# ------------------------------------------------------------------------------------------ params
def _pair(*values: float) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


@dataclass
class DegradationParams:
    """The pipeline's settings; the defaults are GramSR's ``src/datasets/params.yml`` (Real-ESRGAN's x4plus recipe with
    milder ranges). Names follow the official file (``kernel_info`` flattened); ``*2`` keys are the second stage.
    ``first_blur_prob``, ``noise_prob*``, ``jpeg_prob*`` and ``resize_modes`` are ours (module docstring)."""

    scale: int = 4
    # the first degradation
    first_blur_prob: float = 1.0
    blur_kernel_size: int = 21
    kernel_list: tuple[str, ...] = KERNEL_TYPES
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = _pair(0.2, 3)
    betag_range: tuple[float, float] = _pair(0.5, 4)
    betap_range: tuple[float, float] = _pair(1, 2)
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = _pair(0.3, 1.5)
    noise_prob: float = 1.0
    gaussian_noise_prob: float = 0.5  # else Poisson
    noise_range: tuple[float, float] = _pair(1, 15)  # Gaussian σ, 0-255
    poisson_scale_range: tuple[float, float] = _pair(0.05, 2.0)
    gray_noise_prob: float = 0.4
    jpeg_prob: float = 1.0
    jpeg_range: tuple[float, float] = _pair(60, 95)
    # the second degradation
    second_blur_prob: float = 0.5
    blur_kernel_size2: int = 21
    kernel_list2: tuple[str, ...] = KERNEL_TYPES
    kernel_prob2: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob2: float = 0.1
    blur_sigma2: tuple[float, float] = _pair(0.2, 1.5)
    betag_range2: tuple[float, float] = _pair(0.5, 4)
    betap_range2: tuple[float, float] = _pair(1, 2)
    resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = _pair(0.6, 1.2)
    noise_prob2: float = 1.0
    gaussian_noise_prob2: float = 0.5
    noise_range2: tuple[float, float] = _pair(1, 12)
    poisson_scale_range2: tuple[float, float] = _pair(0.05, 1.0)
    gray_noise_prob2: float = 0.4
    jpeg_prob2: float = 1.0
    jpeg_range2: tuple[float, float] = _pair(60, 100)
    # the last step
    final_sinc_prob: float = 0.8
    resize_modes: tuple[str, ...] = field(default=RESIZE_MODES)

    def __post_init__(self) -> None:
        for name in ("kernel_list", "kernel_list2"):
            unknown = set(getattr(self, name)) - set(KERNEL_TYPES)
            if unknown:
                raise ValueError(
                    f"degradation {name} has unknown kernel types {sorted(unknown)}; known: {list(KERNEL_TYPES)}"
                )
        for kinds, probs in (("kernel_list", "kernel_prob"), ("kernel_list2", "kernel_prob2")):
            if len(getattr(self, kinds)) != len(getattr(self, probs)) or sum(getattr(self, probs)) <= 0:
                raise ValueError(f"degradation {probs} needs one positive-sum weight per {kinds} entry")
        for name in ("resize_prob", "resize_prob2"):
            if len(getattr(self, name)) != 3 or sum(getattr(self, name)) <= 0:
                raise ValueError(f"degradation {name} is [up, down, keep] weights, got {list(getattr(self, name))}")
        if not self.resize_modes or set(self.resize_modes) - set(RESIZE_MODES):
            raise ValueError(
                f"degradation resize_modes must be among {list(RESIZE_MODES)}, got {list(self.resize_modes)}"
            )
        for name in ("blur_kernel_size", "blur_kernel_size2"):
            if getattr(self, name) % 2 != 1 or getattr(self, name) < 1:
                raise ValueError(f"degradation {name} must be odd, got {getattr(self, name)}")
        if int(self.scale) != self.scale or self.scale < 1:
            raise ValueError(f"degradation scale must be a positive integer, got {self.scale}")
        for name in ("jpeg_range", "jpeg_range2"):
            low, high = getattr(self, name)
            if not 0 < low <= high <= 100:
                raise ValueError(f"degradation {name} must lie in (0, 100], got {[low, high]}")

    @classmethod
    def from_dict(cls, overrides: dict[str, Any] | None) -> DegradationParams:
        """The defaults with ``overrides`` (config lists become tuples); an unknown key is an error naming the
        known ones."""
        known = set(cls.__dataclass_fields__)
        unknown = set(overrides or {}) - known
        if unknown:
            raise ValueError(f"unknown degradation settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in (overrides or {}).items()})

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# -------------------------------------------------------------------------------------------- plan
@dataclass
class Noise:
    kind: str  # "gaussian" | "poisson"
    strength: float  # Gaussian σ (0-255) or the Poisson scale
    gray: bool


@dataclass
class DegradationPlan:
    """Every random choice of one image's degradation (drawn by :meth:`RealESRGANDegradation.plan`)."""

    kernel1: np.ndarray | None  # None: no first blur
    resize1: tuple[float, str]  # factor, mode
    noise1: Noise | None
    jpeg1: float | None  # quality, None: no JPEG
    kernel2: np.ndarray | None
    resize2: tuple[float, str]
    noise2: Noise | None
    sinc_first: bool  # [resize + sinc] before the last JPEG
    final_mode: str
    sinc: np.ndarray | None
    jpeg2: float | None
    noise_seed: int


def _resize_factor(rng: np.random.Generator, probs: Sequence[float], factor_range: Sequence[float]) -> float:
    weights = np.asarray(probs, dtype=np.float64)
    kind = int(rng.choice(3, p=weights / weights.sum()))  # up, down, keep
    if kind == 0:
        return float(rng.uniform(1.0, factor_range[1]))
    if kind == 1:
        return float(rng.uniform(factor_range[0], 1.0))
    return 1.0


def _noise(
    rng: np.random.Generator,
    probability: float,
    gaussian_prob: float,
    sigma_range: Sequence[float],
    poisson_range: Sequence[float],
    gray_prob: float,
) -> Noise | None:
    use = rng.random() < probability
    gaussian = rng.random() < gaussian_prob
    strength = float(rng.uniform(*sigma_range) if gaussian else rng.uniform(*poisson_range))
    gray = bool(rng.random() < gray_prob)
    return Noise("gaussian" if gaussian else "poisson", strength, gray) if use else None


def _jpeg(rng: np.random.Generator, probability: float, quality_range: Sequence[float]) -> float | None:
    use = rng.random() < probability
    quality = float(rng.uniform(*quality_range))
    return quality if use else None


# ------------------------------------------------------------------------------------------ pixels
def blur(image: torch.Tensor, kernel: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Correlate (B,C,H,W) with one 2-D kernel (kornia ``filter2d``, reflect padding — BasicSR ``filter2D``; replicate
    where the image is not larger than the kernel's half-size)."""
    from kornia.filters import filter2d

    weights = torch.as_tensor(kernel, dtype=image.dtype).to(image.device)[None]
    border = "reflect" if min(image.shape[-2:]) > weights.shape[-1] // 2 else "replicate"
    return filter2d(image, weights, border_type=border, normalized=False, padding="same")


def to_grey(image: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) -> (B,1,H,W) with torchvision's luma weights."""
    weights = image.new_tensor(GREY_WEIGHTS).view(1, 3, 1, 1)
    return (image * weights).sum(dim=1, keepdim=True)


def gaussian_noise(image: torch.Tensor, sigma: float, gray: bool, generator: torch.Generator) -> torch.Tensor:
    """``image`` + N(0, (σ/255)²), one plane for all channels when ``gray``, clipped to [0, 1] (BasicSR
    ``random_add_gaussian_noise_pt``, ``clip=True, rounds=False``)."""
    b, c, h, w = image.shape
    noise = torch.randn((b, 1 if gray else c, h, w), generator=generator, device=image.device, dtype=image.dtype)
    return (image + noise * (sigma / 255.0)).clamp_(0, 1)


def _poisson(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shot noise of an image rounded to 8 bits, with ``2^ceil(log2(#levels))`` photon levels (scikit-image's rule)."""
    rounded = (image * 255.0).round().clamp(0, 255) / 255.0
    levels = 2.0 ** math.ceil(math.log2(max(int(torch.unique(rounded).numel()), 1)))
    return torch.poisson(rounded * levels, generator=generator) / levels - rounded


def poisson_noise(image: torch.Tensor, scale: float, gray: bool, generator: torch.Generator) -> torch.Tensor:
    """``image`` + ``scale`` × Poisson noise (of the grey image, repeated, when ``gray``), clipped to [0, 1] (BasicSR
    ``random_add_poisson_noise_pt``, ``clip=True, rounds=False``)."""
    noise = _poisson(to_grey(image), generator) if gray else _poisson(image, generator)
    return (image + noise * scale).clamp_(0, 1)


def jpeg(image: torch.Tensor, quality: float) -> torch.Tensor:
    """JPEG encode-decode at ``quality`` (kornia ``jpeg_codec_differentiable``; see the module docstring for how it
    differs from DiffJPEG), input clamped to [0, 1] first and output after, as Real-ESRGAN does."""
    from kornia.enhance import jpeg_codec_differentiable

    image = image.clamp(0, 1)
    qualities = torch.full((image.shape[0],), float(quality), device=image.device, dtype=image.dtype)
    return jpeg_codec_differentiable(image, qualities).clamp_(0, 1)


def quantize(image: torch.Tensor) -> torch.Tensor:
    """Real-ESRGAN's last step: ``clamp(round(x·255), 0, 255) / 255``."""
    return (image * 255.0).round().clamp(0, 255) / 255.0


# ------------------------------------------------------------------------------------------ module
class RealESRGANDegradation:
    """The second-order degradation (module docstring). ``params``: a :class:`DegradationParams`, a dict of overrides
    (a config's ``degradation:`` block) or ``None`` (GramSR's values); ``scale`` overrides ``params.scale``.

    ``degradation(hr, generator)`` -> LR: ``hr`` (B,3,H,W) float in [0,1] on any device (H, W multiples of ``scale``),
    the LR (B,3,H/scale,W/scale) in [0,1], on 8-bit levels, on the same device. Each image gets a seed drawn from
    ``generator`` (a CPU ``torch.Generator``; ``None``: torch's global generator) and is degraded from it alone
    (:meth:`degrade` takes the seeds directly).
    """

    def __init__(self, params: DegradationParams | dict[str, Any] | None = None, scale: int | None = None):
        params = params if isinstance(params, DegradationParams) else DegradationParams.from_dict(params)
        if scale is not None and scale != params.scale:
            params = DegradationParams.from_dict({**params.as_dict(), "scale": scale})
        self.params = params

    @property
    def scale(self) -> int:
        return int(self.params.scale)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self.scale})"

    def __call__(self, hr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        seeds = torch.randint(0, SEED_BOUND, (hr.shape[0],), generator=generator).tolist()
        return self.degrade(hr, seeds)

    def plan(self, rng: np.random.Generator) -> DegradationPlan:
        """Draw every choice of one image, in the official order (kernels first, as the dataset draws them)."""
        p = self.params
        kernel1 = random_blur_kernel(
            rng,
            p.blur_kernel_size,
            p.kernel_list,
            p.kernel_prob,
            p.sinc_prob,
            p.blur_sigma,
            p.betag_range,
            p.betap_range,
        )
        kernel2 = random_blur_kernel(
            rng,
            p.blur_kernel_size2,
            p.kernel_list2,
            p.kernel_prob2,
            p.sinc_prob2,
            p.blur_sigma2,
            p.betag_range2,
            p.betap_range2,
        )
        sinc = random_final_sinc(rng, p.blur_kernel_size2, p.final_sinc_prob)
        modes = list(p.resize_modes)
        first_blur = rng.random() < p.first_blur_prob
        resize1 = (_resize_factor(rng, p.resize_prob, p.resize_range), str(rng.choice(modes)))
        noise1 = _noise(
            rng, p.noise_prob, p.gaussian_noise_prob, p.noise_range, p.poisson_scale_range, p.gray_noise_prob
        )
        jpeg1 = _jpeg(rng, p.jpeg_prob, p.jpeg_range)
        second_blur = rng.random() < p.second_blur_prob
        resize2 = (_resize_factor(rng, p.resize_prob2, p.resize_range2), str(rng.choice(modes)))
        noise2 = _noise(
            rng, p.noise_prob2, p.gaussian_noise_prob2, p.noise_range2, p.poisson_scale_range2, p.gray_noise_prob2
        )
        sinc_first = rng.random() < 0.5
        final_mode = str(rng.choice(modes))
        jpeg2 = _jpeg(rng, p.jpeg_prob2, p.jpeg_range2)
        return DegradationPlan(
            kernel1 if first_blur else None,
            resize1,
            noise1,
            jpeg1,
            kernel2 if second_blur else None,
            resize2,
            noise2,
            sinc_first,
            final_mode,
            sinc,
            jpeg2,
            int(rng.integers(0, SEED_BOUND)),
        )

    @torch.no_grad()
    def degrade(self, hr: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        """The LR of every image of ``hr`` (B,3,H,W), image ``i`` degraded from ``seeds[i]`` alone."""
        if hr.ndim != 4 or hr.shape[1] != 3:
            raise ValueError(f"the degradation takes (B,3,H,W) images, got {tuple(hr.shape)}")
        height, width = hr.shape[-2:]
        if height % self.scale or width % self.scale:
            raise ValueError(f"the HQ size {height}x{width} must be a multiple of the scale {self.scale}")
        if len(seeds) != hr.shape[0]:
            raise ValueError(f"{len(seeds)} seeds for {hr.shape[0]} images")
        images = hr.float()
        with _no_autocast(hr.device.type):  # float32 throughout, also when called inside a mixed-precision region
            lr = torch.cat(
                [
                    self.apply(images[i : i + 1], self.plan(np.random.default_rng(int(seed))))
                    for i, seed in enumerate(seeds)
                ]
            )
        return lr.to(hr.dtype)

    def apply(self, hr: torch.Tensor, plan: DegradationPlan) -> torch.Tensor:
        """Run ``plan`` on (1,3,H,W) ``hr`` (float32, [0,1]); see the module docstring for each step."""
        scale = self.scale
        height, width = hr.shape[-2:]
        generator = torch.Generator(device=hr.device)
        generator.manual_seed(plan.noise_seed)
        # ---- the first degradation: blur, random resize, noise, JPEG
        out = blur(hr, plan.kernel1) if plan.kernel1 is not None else hr
        factor, mode = plan.resize1
        if factor != 1.0:  # the official also interpolates at factor 1, an identity
            out = F.interpolate(out, scale_factor=factor, mode=mode)
        out = self._noise(out, plan.noise1, generator)
        if plan.jpeg1 is not None:
            out = jpeg(out, plan.jpeg1)
        # ---- the second degradation: blur (sometimes), resize relative to the final size, noise
        if plan.kernel2 is not None:
            out = blur(out, plan.kernel2)
        factor, mode = plan.resize2
        size2 = (max(1, int(height / scale * factor)), max(1, int(width / scale * factor)))
        out = F.interpolate(out, size=size2, mode=mode)
        out = self._noise(out, plan.noise2, generator)
        # ---- [resize to the final size + sinc] and JPEG, in either order
        if plan.sinc_first:
            out = self._resize_sinc(out, (height // scale, width // scale), plan)
            out = jpeg(out, plan.jpeg2) if plan.jpeg2 is not None else out
        else:
            out = jpeg(out, plan.jpeg2) if plan.jpeg2 is not None else out
            out = self._resize_sinc(out, (height // scale, width // scale), plan)
        return quantize(out)

    @staticmethod
    def _noise(image: torch.Tensor, noise: Noise | None, generator: torch.Generator) -> torch.Tensor:
        if noise is None:
            return image
        if noise.kind == "gaussian":
            return gaussian_noise(image, noise.strength, noise.gray, generator)
        return poisson_noise(image, noise.strength, noise.gray, generator)

    @staticmethod
    def _resize_sinc(image: torch.Tensor, size: tuple[int, int], plan: DegradationPlan) -> torch.Tensor:
        image = F.interpolate(image, size=size, mode=plan.final_mode)
        return blur(image, plan.sinc) if plan.sinc is not None else image


def _no_autocast(device_type: str):
    try:
        return torch.autocast(device_type, enabled=False)
    except RuntimeError:  # a device type without autocast
        return contextlib.nullcontext()


def seeded_generator(*key: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from the integers ``key`` (through numpy's ``SeedSequence``)."""
    seed = int(np.random.SeedSequence([int(k) for k in key]).generate_state(1, np.uint64)[0]) % SEED_BOUND
    return torch.Generator().manual_seed(seed)
