"""Real-world super-resolution metrics as the field's tables compute them (RealSR, DRealSR, DIV2K-val:
OSEDiff, PiSA-SR, GramSR, ...). Those tables come from pyiqa (chaofengc/IQA-PyTorch); the full-reference
scores here reproduce its conventions without using it (pyiqa is PolyForm Noncommercial: it was read for
facts, none of its code is here), the no-reference ones go through pyiqa itself, as an optional extra.

Full reference (``pred`` vs ``gt``, at the stored size — no crop, no resize, no border):

* ``psnr`` = pyiqa ``create_metric('psnr', test_y_channel=True, color_space='ycbcr')``: on the luma
  Y = (65.481R + 128.553G + 24.966B + 16)/255 of RGB in [0,1] (ITU-R BT.601 "ycbcr", offset 16,
  :func:`zoo.metrics.ycbcr_y`) **not rounded**, data range 1, float32, 10·log10(1/(MSE + 1e-8)): identical images
  score 80 dB (pyiqa's value), never inf.
* ``ssim`` = pyiqa ``create_metric('ssim', test_y_channel=True, color_space='ycbcr')``: on Y·255
  **rounded to integers**, float64, 11x11 Gaussian window (σ 1.5, normalised, held in float32 as pyiqa's
  ``fspecial``), 'valid' filtering, C1 = (0.01·255)², C2 = (0.03·255)², the contrast-structure map clipped
  at 0, mean of the SSIM map; no down-sampling (pyiqa's ``downsample=False``). Needs sides of 11 px or more.
* ``lpips`` — LPIPS v0.1, AlexNet (pyiqa's ``lpips``), through torchmetrics: RGB [0,1] mapped to [-1,1].
  Its linear layers ship with torchmetrics (``lpips_models/alex.pth``, sha256 df73285e…: the very file
  pyiqa downloads as ``LPIPS_v0.1_alex-df73285e.pth``); the backbone is torchvision's ImageNet AlexNet
  (``alexnet-owt-7be5be79.pth``, as in pyiqa and the ``lpips`` package).
* ``dists`` — DISTS through torchmetrics (``DISTSNetwork``): its α/β ship with torchmetrics
  (``dists_models/weights.pt``, sha256 f5e65c96…, pyiqa's ``DISTS_weights-f5e65c96.pth``); the backbone is
  torchvision's ImageNet VGG-16 (``vgg16-397923af.pth``).
* ``fid`` (set-level, no per-image value) — :mod:`zoo.metrics.fid`, pytorch-fid's Inception
  (``pt_inception-2015-12-05``, bilinear resize to 299 inside the network). pyiqa's ``fid`` (the one in
  the SR papers' tables) is a port of clean-fid (PIL bicubic resize to 299 before the network), so
  these FIDs differ from the published ones: compare them only with each other.

Backbone weights (LPIPS, DISTS): a local file (``lpips_weights=`` / ``dists_weights=``; ``rezoo score
--lpips-weights``), else the manifest's ``alexnet_imagenet`` / ``vgg16_imagenet`` files through
:func:`zoo.hub.fetch_auxiliary` (the zoo cache or the torch hub cache, where torchvision keeps them, else a
download; checked against their sha256). A metric named in ``metrics`` whose weights cannot be had is an
error naming the file, its URL and the ways out; with the default metric list it is skipped instead, with a
warning and an entry in :attr:`RealSRScorer.skipped`.

No reference (``pred`` only), through pyiqa when it is installed (``pip install pyiqa``; PolyForm
Noncommercial licence, weights downloaded by pyiqa on first use): ``niqe``, ``musiq`` (KonIQ), ``maniqa``
(pyiqa's default, KonIQ; ``maniqa-pipal`` is the PIPAL one OSEDiff reports), ``clipiqa``. When pyiqa is
missing or cannot build a metric (its weights cannot be fetched), that metric is skipped with one printed
warning and recorded in :attr:`RealSRScorer.skipped` with the reason — never silently.

Averages are plain means over images of the per-image values (what pyiqa's users do). Images enter as
8-bit values (as they are read from PNG files: PIL RGB, value/255 in float32, pyiqa's ``imread2tensor``).
Checked against pyiqa 0.1.16 on CPU: PSNR and SSIM bit-identical on 8-bit pairs of 11x11 to 512x512 px;
LPIPS/DISTS identical given the same backbone. On a GPU the float32 products and means may differ from
pyiqa's CPU numbers in the last bits (far below the tables' 0.01 dB / 1e-4).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

from zoo.errors import DownloadError, InputError, WeightsError
from zoo.metrics import Scorer, gaussian_kernel, ycbcr_y

PSNR_EPS = 1e-8  # added to the MSE: identical images score 10·log10(1e8) = 80 dB
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5

FULL_REFERENCE = ("psnr", "ssim", "lpips", "dists")
NO_REFERENCE = ("niqe", "musiq", "maniqa", "maniqa-pipal", "clipiqa")  # pyiqa metric names
SET_LEVEL = ("fid",)
METRICS = FULL_REFERENCE + NO_REFERENCE + SET_LEVEL
DEFAULT_METRICS = ("psnr", "ssim", "lpips", "dists")
PYIQA_HINT = (
    "pip install pyiqa to enable them (optional; PolyForm Noncommercial licence, weights download on first use)"
)

# metric -> (the manifest's auxiliary entry, architecture): the torchvision ImageNet backbones torchmetrics builds
BACKBONES = {"lpips": ("alexnet_imagenet", "AlexNet"), "dists": ("vgg16_imagenet", "VGG-16")}


def psnr_y(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (B,) on the un-rounded Y (:func:`zoo.metrics.ycbcr_y`), data range 1, float32 as pyiqa:
    10·log10(1 / (MSE + 1e-8)) — 80 dB for identical images."""
    _check_pair(pred, target)
    mse = (ycbcr_y(pred) - ycbcr_y(target)).pow(2).mean(dim=(1, 2, 3))
    return 10 * torch.log10(1.0 / (mse + PSNR_EPS))


def ssim_window(dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> torch.Tensor:
    """The 11x11 Gaussian (σ 1.5) normalised to sum 1 in float64, rounded to float32 (as MATLAB's
    ``fspecial`` in pyiqa) and returned in ``dtype``, shaped (1,1,11,11)."""
    kernel = gaussian_kernel(SSIM_WINDOW, SSIM_SIGMA, torch.float64).float()
    return kernel.to(dtype=dtype, device=device)[None, None]


def ssim_y(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (B,) on the rounded Y·255 in float64: 11x11 Gaussian σ 1.5 'valid', K1 0.01, K2 0.03
    on the 0-255 range, contrast-structure clipped at 0 (pyiqa's ``ssim`` with ``test_y_channel``)."""
    _check_pair(pred, target)
    if min(pred.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} px, got {pred.shape[-1]}x{pred.shape[-2]}"
        )
    x = (ycbcr_y(pred) * 255).round().double()
    y = (ycbcr_y(target) * 255).round().double()
    window = ssim_window(torch.float64, x.device)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_x, mu_y = F.conv2d(x, window), F.conv2d(y, window)
    var_x = F.conv2d(x * x, window) - mu_x**2
    var_y = F.conv2d(y * y, window) - mu_y**2
    cov = F.conv2d(x * y, window) - mu_x * mu_y
    cs = F.relu((2 * cov + c2) / (var_x + var_y + c2))
    return ((2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs).mean(dim=(1, 2, 3))


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")


def parse_metrics(metrics: str | Sequence[str] | None) -> list[str]:
    """``"psnr,ssim"`` or a sequence -> the names in order, lower-cased, without repeats; unknown names are
    an :class:`InputError` listing the known ones."""
    if metrics is None:
        return list(DEFAULT_METRICS)
    items = metrics.split(",") if isinstance(metrics, str) else [str(m) for m in metrics]
    names = list(dict.fromkeys(m.strip().lower() for m in items if m.strip()))
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise InputError(
            f"unknown realsr metric(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(METRICS)}"
        )
    return names


def backbone_url(metric: str) -> str:
    """The URL of the torchvision ImageNet weights torchmetrics' ``metric`` network loads (the manifest's auxiliary
    entry: torchvision's ``.DEFAULT``, whose file name torchvision looks for in its cache)."""
    from zoo.manifest import auxiliary_entry

    return auxiliary_entry(BACKBONES[metric][0])["url"]


def backbone_weights(metric: str, path: str | os.PathLike | None = None) -> Path:
    """The backbone file of ``lpips``/``dists``: ``path``, else the manifest's file from the cache or a download
    (:func:`zoo.hub.fetch_auxiliary`); one-line errors naming the file, its URL and the ways out."""
    from zoo.hub import fetch_auxiliary

    return fetch_auxiliary(BACKBONES[metric][0], path)


@contextmanager
def torchvision_cache_entry(path: Path, name: str) -> Iterator[None]:
    """Make torchvision's ``load_state_dict_from_url`` find ``path`` as its cached ``name`` (no network):
    nothing when it is the hub cache's copy, else a temporary hub folder holding a link to it."""
    if (Path(torch.hub.get_dir()) / "checkpoints" / name).resolve() == path.resolve():
        yield
        return
    with tempfile.TemporaryDirectory(prefix="rezoo-hub-") as tmp:
        hub = Path(tmp) / "hub"
        (hub / "checkpoints").mkdir(parents=True)
        try:
            (hub / "checkpoints" / name).symlink_to(path.resolve())
        except OSError:
            shutil.copyfile(path, hub / "checkpoints" / name)
        previous_home = os.environ.get("TORCH_HOME")
        os.environ["TORCH_HOME"] = tmp
        try:
            if Path(torch.hub.get_dir()) == hub:  # the hub folder follows $TORCH_HOME
                yield
            else:  # torch.hub.set_dir() was called: swap it and put it back
                previous_dir = torch.hub.get_dir()
                torch.hub.set_dir(str(hub))
                try:
                    yield
                finally:
                    torch.hub.set_dir(previous_dir)
        finally:
            if previous_home is None:
                os.environ.pop("TORCH_HOME", None)
            else:
                os.environ["TORCH_HOME"] = previous_home


def build_network(metric: str, weights: str | os.PathLike | None = None) -> torch.nn.Module:
    """torchmetrics' LPIPS (AlexNet, v0.1) or DISTS network with its ImageNet backbone from
    :func:`backbone_weights`, in eval mode, gradients off. Called as ``net(pred, target)`` on [0,1] images."""
    path = backbone_weights(metric, weights)
    name = backbone_url(metric).rsplit("/", 1)[-1]
    try:
        with torchvision_cache_entry(path, name):
            if metric == "lpips":
                from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

                net = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True).net
            else:
                from torchmetrics.functional.image.dists import DISTSNetwork

                net = DISTSNetwork()
    except (RuntimeError, KeyError, EOFError, OSError) as error:  # a file of another network, or not a state dict
        arch = BACKBONES[metric][1]
        raise WeightsError(
            f"{metric}: {path} is not torchvision's ImageNet {arch} ({name}): {str(error).splitlines()[0]}"
        ) from error
    return net.eval().requires_grad_(False)


def _lpips(net: torch.nn.Module, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return net(pred, target, normalize=True).reshape(len(pred))


def _dists(net: torch.nn.Module, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return net(pred, target).reshape(len(pred))


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class RealSRScorer(Scorer):
    """Per-image real-world SR scores over a test set (the ``realsr`` protocol of ``rezoo score`` / ``eval``).

    ``metrics``: names or a comma list from :data:`METRICS` (default :data:`DEFAULT_METRICS`:
    ``psnr, ssim, lpips, dists``). ``lpips_weights`` / ``dists_weights``: local torchvision backbone files;
    ``fid_weights``: pytorch-fid's Inception file. ``device``: where the networks run (default: the images').
    ``strict`` (default: whether ``metrics`` was given): LPIPS/DISTS weights that cannot be had raise
    instead of being skipped. ``per_image`` maps each computed metric to its values, ``names`` the images;
    ``compute()`` returns the means (and ``fid``); ``skipped`` maps each metric left out to the reason.
    """

    def __init__(
        self,
        metrics: str | Sequence[str] | None = None,
        lpips_weights: str | os.PathLike | None = None,
        dists_weights: str | os.PathLike | None = None,
        fid_weights: str | os.PathLike | None = None,
        device: torch.device | str | None = None,
        strict: bool | None = None,
        warn: Callable[[str], None] = _warn,
    ):
        explicit = metrics is not None if strict is None else strict
        self.metrics = parse_metrics(metrics)
        self.device = torch.device(device) if device is not None else None
        self.skipped: dict[str, str] = {}
        self.nets: dict[str, torch.nn.Module] = {}
        self.fid = None
        for metric in self.metrics:
            if metric not in BACKBONES:
                continue
            try:
                self.nets[metric] = build_network(metric, lpips_weights if metric == "lpips" else dists_weights)
            except (DownloadError, WeightsError) as error:
                if explicit:
                    raise
                self.skipped[metric] = str(error)
                warn(f"{metric} skipped: {error}")
        no_reference = [m for m in self.metrics if m in NO_REFERENCE]
        if no_reference:
            self._load_pyiqa(no_reference, warn)
        if "fid" in self.metrics:
            from zoo.metrics.fid import FIDInception, FIDScorer

            self.fid = FIDScorer(FIDInception(fid_weights))
        self.computed = [m for m in self.metrics if m not in self.skipped and m not in SET_LEVEL]
        super().__init__(self.computed)

    def _load_pyiqa(self, names: list[str], warn: Callable[[str], None]) -> None:
        try:
            import pyiqa
        except ImportError as error:
            reason = f"pyiqa is not installed ({error}); {PYIQA_HINT}"
            self.skipped.update(dict.fromkeys(names, reason))
            warn(f"{', '.join(names)} skipped: {reason}")
            return
        self.pyiqa_device = self.device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        for name in names:
            try:
                self.nets[name] = pyiqa.create_metric(name, device=self.pyiqa_device, as_loss=False)
            # pyiqa fails in many ways offline (urllib, requests, huggingface_hub): every one is a skipped metric
            except Exception as error:  # noqa: BLE001
                why = (
                    "a dependency of pyiqa is missing: pip install pyiqa with its dependencies"
                    if isinstance(error, ImportError)
                    else "its weights are downloaded on first use"
                )
                first_line = (str(error).splitlines() or [""])[0]
                reason = f"pyiqa could not create {name} ({why}): {type(error).__name__}: {first_line}"
                self.skipped[name] = reason
                warn(f"{name} skipped: {reason}")

    def score_batch(self, output, target, image, mask, names, boxes) -> dict[str, torch.Tensor]:
        """Score a batch of (B,3,H,W) outputs against their targets (both rounded to 8 bits first, as
        files); ``image``, ``mask`` and ``boxes`` are unused."""
        from zoo.metrics.text_removal import quantize

        if output.shape != target.shape:
            raise InputError(
                f"output {tuple(output.shape)} and target {tuple(target.shape)} differ in size: "
                "realsr scores at the stored size, without resizing"
            )
        output, target = quantize(output), quantize(target)
        scores: dict[str, torch.Tensor] = {}
        if "psnr" in self.per_image:
            scores["psnr"] = psnr_y(output, target)
        if "ssim" in self.per_image:
            if min(output.shape[-2:]) < SSIM_WINDOW:
                raise InputError(
                    f"{', '.join(names or ['an image'])}: {output.shape[-1]}x{output.shape[-2]} px, "
                    f"SSIM needs {SSIM_WINDOW}x{SSIM_WINDOW} or more"
                )
            scores["ssim"] = ssim_y(output, target)
        device = self.device or output.device
        with torch.no_grad():
            for metric, net in self.nets.items():
                if metric in BACKBONES:
                    score = _lpips if metric == "lpips" else _dists
                    scores[metric] = score(net.to(device), output.to(device), target.to(device))
                else:  # pyiqa (on its own device), one image at a time: some of its networks take one size per batch
                    scores[metric] = torch.cat(
                        [net(output[i : i + 1].to(self.pyiqa_device)).reshape(-1) for i in range(len(output))]
                    )
        if self.fid is not None:
            self.fid.update(output, target)
        return scores

    def compute(self) -> dict[str, float]:
        """The mean over the images of every computed metric (and ``fid``), in the order of ``metrics``."""
        if not self.names:
            raise ValueError("no images scored")
        fid = self.fid.compute() if self.fid is not None else {}
        return {
            m: fid[m] if m in fid else sum(self.per_image[m]) / len(self.names)
            for m in self.metrics
            if m in self.per_image or m in fid
        }
