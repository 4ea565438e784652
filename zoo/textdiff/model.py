"""TextDiff (Liu, Yang et al., "TextDiff: Mask-Guided Residual Diffusion Models for Scene Text Image
Super-Resolution", arXiv 2308.06743; Pattern Recognition 164, 2025): the architecture (torch only).

No official code or weights exist. The topology follows the paper's Fig. 2 (the repository's
``model.png``); what the figure leaves open follows the two code bases the authors name, DocDiff (the
diffusion core) and TATT (the text-prior SR blocks). Every choice is listed in ``zoo/textdiff/README.md``
and is an argument here.

* **TEM** (text enhancement module, :class:`TextEnhancementModule`): LR -> multi-kernel "sample
  inception" -> five TATT-style recurrent residual SR blocks fed by a text prior -> conv + PixelShuffle
  -> the coarse SR image B_T; a text-region block on (inception features, LR) -> the text mask B_M at
  HR size.
* **MRD** (mask-guided residual diffusion, :class:`MaskGuidedUNet`): a time-conditioned UNet on
  ``cat(noisy residual, B_T, B_M)`` whose bottleneck takes B_M again and runs four gated dilated
  convolutions; it predicts x0 = the residual HR - B_T (DocDiff's ``PRE_ORI``).
* **Sampling** (:meth:`TextDiff.sample_residual`): DocDiff's deterministic DDIM (eta = 0) from seeded
  Gaussian noise through all T steps, or through a subsequence of them (the fast sampler); the SR
  image is B_T + the sampled residual, clamped to [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from zoo.nn.padding import crop_to, pad_to_multiple
from zoo.recognition.crnn import CRNN, preprocess
from zoo.registry import SUPER_RESOLVER, register_model

__all__ = ["MaskGuidedUNet", "TextDiff", "TextDiffOutput", "TextEnhancementModule", "textdiff"]

CHANNEL_MULTIPLIERS = (1, 2, 3, 4)  # DocDiff's denoiser levels
TEXT_CLASSES = 37  # CRNN's classes (blank + 0-9a-z): the recognizer text prior's input


# --------------------------------------------------------------------------------------------- TEM
class SampleInception(nn.Module):
    """Fig. 2 "Sample Inception": parallel 5x5/7x7/9x9/11x11 convolutions, concatenated, 7x7 conv,
    PReLU, 7x7 conv."""

    def __init__(self, in_channels: int, channels: int, kernels: tuple[int, ...] = (5, 7, 9, 11)):
        super().__init__()
        if channels % len(kernels):
            raise ValueError(f"channels ({channels}) must be divisible by the number of kernels ({len(kernels)})")
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, channels // len(kernels), k, padding=k // 2) for k in kernels
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(channels, channels, 7, padding=3), nn.PReLU(), nn.Conv2d(channels, channels, 7, padding=3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([branch(x) for branch in self.branches], dim=1))


class BidirectionalGRU2d(nn.Module):
    """TATT's ``GruBlock``: 1x1 conv, then a bidirectional GRU along the width of every row."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        if channels % 2:
            raise ValueError(f"channels must be even, got {channels}")
        self.project = nn.Conv2d(in_channels, channels, 1)
        self.gru = nn.GRU(channels, channels // 2, bidirectional=True, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project(x)
        batch, channels, height, width = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(batch * height, width, channels)
        rows, _ = self.gru(rows)
        return rows.reshape(batch, height, width, channels).permute(0, 3, 1, 2)


class TextPriorSRBlock(nn.Module):
    """Fig. 2 "DSRB", as TATT's ``RecurrentResidualBlockTL``: conv-BN-Mish-conv-BN, the text prior
    concatenated, a bidirectional GRU along the height, the input added, a bidirectional GRU along
    the width."""

    def __init__(self, channels: int, prior_channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.Mish(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
        )
        self.gru_height = BidirectionalGRU2d(channels + prior_channels, channels)
        self.gru_width = BidirectionalGRU2d(channels, channels)

    def forward(self, x: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        residual = torch.cat([self.body(x), prior], dim=1)
        residual = self.gru_height(residual.transpose(-1, -2)).transpose(-1, -2)
        return self.gru_width(x + residual)


class LearnedTextPrior(nn.Module):
    """The "semantic block" without a recognizer: a text-prior map learned from the LR image itself
    (our choice when no recognizer weights are given; README)."""

    def __init__(self, channels: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1), nn.PReLU(), nn.Conv2d(channels, channels, 3, padding=1)
        )

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.net(lr)


def sinusoid(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer sinusoidal embedding of ``positions`` (N,) -> (N, dim)."""
    half = dim // 2
    frequencies = torch.exp(
        -math.log(10000.0) * torch.arange(half, device=positions.device, dtype=torch.float32) / max(half - 1, 1)
    )
    angles = positions.float()[:, None] * frequencies[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class RecognizerTextPrior(nn.Module):
    """The "semantic block" with a recognizer, as TATT's text-prior interpreter: a frozen CRNN's per-step
    class probabilities on the LR image (TATT's preprocessing) -> Linear + PReLU -> a transformer whose
    decoder queries are learned positions of a ``query_size`` map -> a (B, channels, h, w) prior."""

    def __init__(
        self,
        channels: int,
        heads: int = 4,
        encoder_layers: int = 1,
        decoder_layers: int = 2,
        query_size: tuple[int, int] = (16, 64),
        recognizer_weights: str | None = None,
    ):
        super().__init__()
        self.recognizer = CRNN()
        if recognizer_weights:
            from zoo.factory import load_weights

            load_weights(self.recognizer, "crnn", recognizer_weights)
        self.recognizer.requires_grad_(False)
        self.embed = nn.Sequential(nn.Linear(TEXT_CLASSES, channels), nn.PReLU())
        self.query_size = tuple(query_size)
        self.queries = nn.Parameter(torch.zeros(self.query_size[0] * self.query_size[1], channels))
        nn.init.normal_(self.queries, std=0.02)
        self.transformer = nn.Transformer(
            channels, heads, encoder_layers, decoder_layers, dim_feedforward=2 * channels, dropout=0.1, batch_first=True
        )

    def train(self, mode: bool = True) -> RecognizerTextPrior:
        super().train(mode)
        self.recognizer.eval()  # frozen: BatchNorm statistics stay the released ones
        return self

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            probabilities = self.recognizer(preprocess(lr)).softmax(-1).permute(1, 0, 2)  # (B, T, 37)
        tokens = self.embed(probabilities) + sinusoid(
            torch.arange(probabilities.shape[1], device=lr.device), self.queries.shape[1]
        )
        queries = self.queries.unsqueeze(0).expand(lr.shape[0], -1, -1)
        prior = self.transformer(tokens, queries)  # (B, h0*w0, C)
        prior = prior.transpose(1, 2).reshape(lr.shape[0], -1, *self.query_size)
        if prior.shape[-2:] != lr.shape[-2:]:
            prior = F.interpolate(prior, size=lr.shape[-2:], mode="bilinear", align_corners=False)
        return prior


class TextRegionBlock(nn.Module):
    """Fig. 2 "Text Region Block": Conv-BN-ReLU-ConvT-Conv-BN-ReLU-ConvT-Conv-BN-Sigmoid -> the text mask
    B_M at HR size. The first transposed conv upsamples by ``scale``, the second keeps the size (the
    figure gives no strides; README)."""

    def __init__(self, in_channels: int, channels: int, scale: int):
        super().__init__()
        half = channels // 2
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(channels, half, 2 * scale, stride=scale, padding=scale // 2),
            nn.Conv2d(half, half, 3, padding=1),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(half, half, 3, stride=1, padding=1),
            nn.Conv2d(half, 1, 3, padding=1),
            nn.BatchNorm2d(1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TextEnhancementModule(nn.Module):
    """TEM: LR (B,3,h,w) -> (B_T (B,3,sh,sw), B_M (B,1,sh,sw)).

    ``text_prior``: ``"learned"`` (:class:`LearnedTextPrior`) or ``"recognizer"``
    (:class:`RecognizerTextPrior`, a frozen CRNN; ``recognizer_weights`` its ``crnn.pth``).
    ``global_residual``: B_T = bicubic(LR) + the network's output (our choice; README).
    """

    def __init__(
        self,
        channels: int = 64,
        blocks: int = 5,
        scale: int = 2,
        text_prior: str = "learned",
        recognizer_weights: str | None = None,
        global_residual: bool = True,
    ):
        super().__init__()
        if text_prior not in ("learned", "recognizer"):
            raise ValueError(f"text_prior must be 'learned' or 'recognizer', got {text_prior!r}")
        self.scale, self.global_residual = scale, global_residual
        self.inception = SampleInception(3, channels)
        self.prior = (
            LearnedTextPrior(channels)
            if text_prior == "learned"
            else RecognizerTextPrior(channels, recognizer_weights=recognizer_weights)
        )
        self.blocks = nn.ModuleList(TextPriorSRBlock(channels, channels) for _ in range(blocks))
        self.body_tail = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels))
        self.upsample = nn.Sequential(
            nn.Conv2d(channels, channels * scale**2, 3, padding=1), nn.PixelShuffle(scale), nn.Mish()
        )
        self.to_image = nn.Conv2d(channels, 3, 9, padding=4)
        if global_residual:  # start at the bicubic upsampling (our choice; README)
            nn.init.zeros_(self.to_image.weight)
            nn.init.zeros_(self.to_image.bias)
        self.text_region = TextRegionBlock(channels + 3, channels, scale)

    def forward(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.inception(lr)
        prior = self.prior(lr)
        x = features
        for block in self.blocks:
            x = block(x, prior)
        coarse = self.to_image(self.upsample(features + self.body_tail(x)))
        if self.global_residual:
            coarse = coarse + F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return coarse, self.text_mask(lr, features)

    def text_mask(self, lr: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """B_M from the text-region block (``features``: the inception features, computed when absent)."""
        if features is None:
            features = self.inception(lr)
        return self.text_region(torch.cat([features, lr], dim=1))


# --------------------------------------------------------------------------------------------- MRD
class TimeEmbedding(nn.Module):
    """DocDiff: sinusoid of ``channels`` -> Linear 4·channels -> Swish -> Linear 4·channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.net = nn.Sequential(nn.Linear(channels, 4 * channels), nn.SiLU(), nn.Linear(4 * channels, 4 * channels))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.net(sinusoid(t, self.channels))


class TimeResidualBlock(nn.Module):
    """DocDiff's residual block: Swish-conv3, + Linear(time), Swish-Dropout-conv3, 1x1 shortcut; no norm."""

    def __init__(self, in_channels: int, channels: int, time_channels: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.time = nn.Linear(time_channels, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.shortcut = nn.Conv2d(in_channels, channels, 1) if in_channels != channels else nn.Identity()

    def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(x)) + self.time(time)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(h)))
        return h + self.shortcut(x)


class GatedDilatedConv(nn.Module):
    """Fig. 2 "Gated Dilated Conv": a dilated 3x3 conv giving features and a gate, ``f·sigmoid(g)``,
    added to the input (DocDiff's bottleneck uses plain dilated convs; the gate is TextDiff's)."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, 2 * channels, 3, padding=dilation, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, gate = self.conv(x).chunk(2, dim=1)
        return x + features * torch.sigmoid(gate)


class MaskGuidedUNet(nn.Module):
    """The MRD denoiser: ``cat(x_t, B_T, B_M)`` and t -> x0 (the residual).

    DocDiff's UNet (``channels`` × ``multipliers`` per level, ``blocks_per_level`` time-embedded residual
    blocks, stride-2 conv down, 4x4 stride-2 transposed conv up, no attention) with TextDiff's
    bottleneck: residual block, B_M resized and concatenated (1x1 fuse), four gated dilated convs
    (dilations 2/4/8/16), residual block. H and W must be multiples of ``2**(levels-1)``.
    """

    def __init__(
        self,
        in_channels: int = 7,
        out_channels: int = 3,
        channels: int = 32,
        multipliers: tuple[int, ...] = CHANNEL_MULTIPLIERS,
        blocks_per_level: int = 1,
        dilations: tuple[int, ...] = (2, 4, 8, 16),
        dropout: float = 0.1,
    ):
        super().__init__()
        time_channels = 4 * channels
        widths = [channels * m for m in multipliers]
        self.time = TimeEmbedding(channels)
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        previous = channels
        for level, width in enumerate(widths):
            self.down.append(
                nn.ModuleList(
                    TimeResidualBlock(previous if i == 0 else width, width, time_channels, dropout)
                    for i in range(blocks_per_level)
                )
            )
            previous = width
            if level < len(widths) - 1:
                self.downsample.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
        self.middle_in = TimeResidualBlock(previous, previous, time_channels, dropout)
        self.mask_fuse = nn.Conv2d(previous + 1, previous, 1)
        self.gated = nn.Sequential(*(GatedDilatedConv(previous, d) for d in dilations))
        self.middle_out = TimeResidualBlock(previous, previous, time_channels, dropout)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(widths))):
            width = widths[level]
            if level < len(widths) - 1:
                self.upsample.append(nn.ConvTranspose2d(previous, width, 4, stride=2, padding=1))
            self.up.append(
                nn.ModuleList(
                    TimeResidualBlock(2 * width if i == 0 else width, width, time_channels, dropout)
                    for i in range(blocks_per_level)
                )
            )
            previous = width
        self.head = nn.Sequential(nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        nn.init.zeros_(self.head[1].weight)  # x̂0 = 0 at the start: the SR image starts as B_T (our choice; README)
        nn.init.zeros_(self.head[1].bias)
        self.multiple = 2 ** (len(widths) - 1)

    def forward(self, noisy: torch.Tensor, coarse: torch.Tensor, mask: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        time = self.time(t)
        x = self.stem(torch.cat([noisy, coarse, mask], dim=1))
        skips = []
        for level, blocks in enumerate(self.down):
            for block in blocks:
                x = block(x, time)
            skips.append(x)
            if level < len(self.downsample):
                x = self.downsample[level](x)
        x = self.middle_in(x, time)
        x = self.mask_fuse(
            torch.cat([x, F.interpolate(mask, size=x.shape[-2:], mode="bilinear", align_corners=False)], dim=1)
        )
        x = self.middle_out(self.gated(x), time)
        for index, blocks in enumerate(self.up):
            if index > 0:
                x = self.upsample[index - 1](x)
            x = torch.cat([x, skips.pop()], dim=1)
            for block in blocks:
                x = block(x, time)
        return self.head(x)


# ----------------------------------------------------------------------------------------- TextDiff
@dataclass
class TextDiffOutput:
    """Training-time outputs: B_T, B_M, the predicted and the true residual, and the sampled t."""

    coarse: torch.Tensor
    mask: torch.Tensor
    residual: torch.Tensor | None = None  # x0 predicted by the MRD (None when the MRD was not run)
    residual_target: torch.Tensor | None = None  # HR - B_T
    t: torch.Tensor | None = None


class TextDiff(nn.Module):
    """TEM + MRD (module docstring). ``forward(lr)`` -> SR (B,3,scale·h,scale·w) in [0,1] for any h×w.

    Diffusion (DocDiff ``conf.yml``): ``timesteps`` T, linear β from ``beta_start``·1000/T to
    ``beta_end``·1000/T, x0-prediction. ``sample_steps``: the steps of the eval sampler (None: all T,
    DocDiff's deterministic DDIM; fewer: DDIM over an evenly spaced subsequence); β is clipped at 0.999
    (only T < 21 reaches it). ``seed``: the
    initial noise's seed, so the same input gives the same output.
    """

    def __init__(
        self,
        scale: int = 2,
        channels: int = 64,
        blocks: int = 5,
        text_prior: str = "learned",
        recognizer_weights: str | None = None,
        global_residual: bool = True,
        unet_channels: int = 32,
        unet_multipliers: tuple[int, ...] = CHANNEL_MULTIPLIERS,
        unet_blocks: int = 1,
        dilations: tuple[int, ...] = (2, 4, 8, 16),
        dropout: float = 0.1,
        timesteps: int = 100,
        beta_start: float = 1e-6,
        beta_end: float = 0.02,
        sample_steps: int | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.scale, self.timesteps, self.sample_steps, self.seed = scale, timesteps, sample_steps, seed
        self.tem = TextEnhancementModule(channels, blocks, scale, text_prior, recognizer_weights, global_residual)
        self.mrd = MaskGuidedUNet(7, 3, unet_channels, tuple(unet_multipliers), unet_blocks, tuple(dilations), dropout)
        betas = torch.linspace(
            beta_start * 1000 / timesteps, beta_end * 1000 / timesteps, timesteps, dtype=torch.float64
        )
        betas = betas.clamp(max=0.999)  # the 1000/T scaling passes 1 for T < 21: keep ᾱ_t positive
        self.register_buffer("alphas_cumprod", torch.cumprod(1 - betas, 0).float(), persistent=False)

    @property
    def lr_multiple(self) -> int:
        """The multiple the LR input is padded to (the UNet's at HR size, divided by the scale)."""
        return max(1, self.mrd.multiple // math.gcd(self.mrd.multiple, self.scale))

    # ---------------------------------------------------------------------------- diffusion
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(ᾱ_t)·x0 + sqrt(1-ᾱ_t)·ε (DDPM Eq. 4)."""
        alpha = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        return alpha.sqrt() * x0 + (1 - alpha).sqrt() * noise

    def timestep_schedule(self, steps: int | None) -> list[int]:
        """The sampler's timesteps, T-1 down to 0: all of them, or ``steps`` evenly spaced ones."""
        if steps is None or steps >= self.timesteps:
            return list(range(self.timesteps - 1, -1, -1))
        if steps < 1:
            raise ValueError(f"sample steps must be at least 1, got {steps}")
        return sorted({round(float(v)) for v in torch.linspace(self.timesteps - 1, 0, steps)}, reverse=True)

    @torch.no_grad()
    def sample_residual(
        self, coarse: torch.Tensor, mask: torch.Tensor, steps: int | None = None, seed: int | None = None
    ) -> torch.Tensor:
        """Deterministic DDIM (η = 0) with x0-prediction from seeded Gaussian noise (DocDiff's sampler;
        ``steps`` < T skips steps): x_{t'} = sqrt(ᾱ_{t'})·x̂0 + sqrt(1-ᾱ_{t'})·ε̂, ε̂ from x̂0;
        at t = 0 x̂0."""
        generator = torch.Generator(device=coarse.device).manual_seed(self.seed if seed is None else seed)
        x = torch.randn(coarse.shape, generator=generator, device=coarse.device, dtype=coarse.dtype)
        schedule = self.timestep_schedule(self.sample_steps if steps is None else steps)
        x0 = x
        for index, t in enumerate(schedule):
            x0 = self.mrd(x, coarse, mask, torch.full((coarse.shape[0],), t, device=coarse.device))
            if index == len(schedule) - 1:
                break
            alpha, alpha_next = self.alphas_cumprod[t], self.alphas_cumprod[schedule[index + 1]]
            eps = (x - alpha.sqrt() * x0) / (1 - alpha).sqrt()
            x = alpha_next.sqrt() * x0 + (1 - alpha_next).sqrt() * eps
        return x0

    # ------------------------------------------------------------------------------ forward
    def forward_train(
        self,
        lr: torch.Tensor,
        hr: torch.Tensor,
        diffusion: bool = True,
        detach_residual_target: bool = False,
        generator: torch.Generator | None = None,
    ) -> TextDiffOutput:
        """TEM on ``lr``; with ``diffusion``, the MRD's x0 prediction at a random t ~ U{0..T-1} (DocDiff's
        training step; the UNet sees B_T and B_M detached; the target HR - B_T is not, unless asked)."""
        coarse, mask = self.tem(lr)
        if not diffusion:
            return TextDiffOutput(coarse, mask)
        target = hr - (coarse.detach() if detach_residual_target else coarse)
        t = torch.randint(0, self.timesteps, (lr.shape[0],), device=lr.device, generator=generator)
        noise = torch.randn(target.shape, device=lr.device, dtype=target.dtype, generator=generator)
        residual = self.mrd(self.q_sample(target.detach(), t, noise), coarse.detach(), mask.detach(), t)
        return TextDiffOutput(coarse, mask, residual, target, t)

    def forward(self, lr: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """SR of ``lr`` (B,3,h,w) in [0,1]: B_T + the sampled residual, clamped to [0,1]."""
        height, width = lr.shape[-2:]
        lr = pad_to_multiple(lr, self.lr_multiple)
        coarse, mask = self.tem(lr)
        return crop_to((coarse + self.sample_residual(coarse, mask, steps)).clamp(0, 1), (height, width), self.scale)

    def refine(self, lr: torch.Tensor, coarse: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Plug-and-play (paper Sec. 4.4): the MRD refines another method's SR output ``coarse``
        (B,3,scale·h,scale·w) in place of B_T; the mask B_M comes from the TEM's text-region block on ``lr``."""
        height, width = lr.shape[-2:]
        if coarse.shape[-2:] != (height * self.scale, width * self.scale):
            raise ValueError(
                f"coarse SR must be {self.scale}x the LR size {height}x{width}, got {tuple(coarse.shape[-2:])}"
            )
        lr = pad_to_multiple(lr, self.lr_multiple)
        coarse = pad_to_multiple(coarse, self.lr_multiple * self.scale)
        mask = self.tem.text_mask(lr)
        return crop_to((coarse + self.sample_residual(coarse, mask, steps)).clamp(0, 1), (height, width), self.scale)


@register_model(
    "textdiff",
    **SUPER_RESOLVER,
    scale=2,
    pad_multiple=4,
    params=5_132_363,
    refiner=True,
    sampler=True,
    onnx_note=(
        "iterative diffusion sampler (a Python loop over the timesteps, their number chosen per call); "
        "exporting its networks separately is not supported"
    ),
)
def textdiff(**kwargs) -> TextDiff:
    """TextDiff (2x scene-text SR: TEM + mask-guided residual diffusion; no official weights exist)."""
    return TextDiff(**kwargs)
