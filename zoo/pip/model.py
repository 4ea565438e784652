"""PIP: prompt-in-prompt universal image restoration (Li et al., arXiv 2312.05038), plug-and-play on
Restormer and NAFNet.

On every encoder→decoder skip connection (Sec. 3):

* **Prompt-in-prompt** (:class:`PromptInPrompt`, official ``PromptInPrompt``): T learnable
  *degradation-aware prompts* (1, T, d, 1, 1), selected by the one-hot of the degradation class (a pair
  of classes averages their one-hots); as the official code, the weighted prompts are *averaged* over
  T, so the selected prompt is scaled by 1/T. The skip feature, bilinearly resized to s×s and
  truncated / zero-padded to d channels, is multiplied by it, and a learnable *basic restoration
  prompt* (1, d, s, s) attends to the product (**prompt-to-prompt interaction**: a transposed
  cross-attention block, query = basic prompt); the result is resized to the feature's size and
  convolved 3×3 → the *universal restoration prompt*.
* **Selective prompt-to-feature interaction** (:class:`PromptToFeature`, official
  ``Topm_CrossTransformerRestormer_Block_PIM``): layer-normalised feature (query) and prompt (key/value)
  meet in a top-m sparse transposed cross-attention (four masks keeping the top C/2, 2C/3, 3C/4, 4C/5
  scores per row, mixed by learnable weights, init 0.2) with a residual on the normalised feature;
  when the feature is wider than the prompt only its first d channels interact (the rest pass through),
  when narrower it is zero-padded and reduced back by a 1×1 conv; then a dual-gated FFN.

:class:`PIPRestormer` reproduces the released ``PIPNet_Restormer_onskip_inter`` (parameter names
included; its latent channel reduction and three unused ``reduce_noise_channel_*`` convolutions kept,
frozen, for checkpoint compatibility): **27,429,510 parameters** with the defaults. Every channel count is a
parameter (the official class only works with ``dim=48``). :class:`PIPNAFNet` puts the same modules on
NAFNet's four skips. ``sensor=True`` adds a small degradation classifier for blind restoration (the
"degradation sensor" the official code left unimplemented).

``checkpointing=True`` trades compute for memory in training: every backbone block (Restormer's
transformer blocks, NAFNet's blocks) and every PIP modulation of a skip (prompt-in-prompt and the
prompt-to-feature interaction) is recomputed in the backward pass (``torch.utils.checkpoint``,
``use_reentrant=False``) instead of storing its activations; the same numbers, about a fifth of the
saved activations (zoo/pip/README.md). Without gradients (inference) it changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from zoo.errors import InputError
from zoo.nn.padding import crop_to, pad_to_multiple
from zoo.registry import register_model

__all__ = [
    "PIPRestormer",
    "PIPNAFNet",
    "PIPOutput",
    "DegradationSensor",
    "degradation_weights",
    "pip",
    "pip_nafnet",
    "DEGRADATIONS",
]

DEGRADATIONS = ("noise", "rain", "haze", "blur", "low-light")  # class indices 0..4


# ------------------------------------------------------------------------------- Restormer pieces
class LayerNormBody(nn.Module):
    def __init__(self, dim: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None


class ChannelLayerNorm(nn.Module):
    """Restormer's LayerNorm over channels at every pixel ('WithBias' or 'BiasFree'; keys ``body.*``)."""

    def __init__(self, dim: int, bias: bool = True):
        super().__init__()
        self.body = LayerNormBody(dim, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        if self.body.bias is None:  # BiasFree: scale only, no centring
            x = x * torch.rsqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-5) * self.body.weight
        else:
            x = F.layer_norm(x, x.shape[-1:], self.body.weight, self.body.bias, 1e-5)
        return x.permute(0, 3, 1, 2)


class GatedFFN(nn.Module):
    """Restormer's GDFN (``gelu(x1)·x2``) or, ``dual``, LLFormer's dual-gated FFN (``gelu(x2)·x1 + gelu(x1)·x2``)."""

    def __init__(self, dim: int, expansion: float, bias: bool, dual: bool = False):
        super().__init__()
        hidden = int(dim * expansion)
        self.dual = dual
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x2) * x1 + F.gelu(x1) * x2 if self.dual else F.gelu(x1) * x2)


def transposed_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: int,
    temperature: torch.Tensor,
    top_m: tuple[nn.Parameter, ...] | None = None,
) -> torch.Tensor:
    """Channel ("transposed") attention of Restormer's MDTA: per head, softmax over channels of
    L2-normalised q·kᵀ × temperature. ``top_m``: the four mixing weights of DRSformer-style sparse
    attention keeping the top C/2, 2C/3, 3C/4, 4C/5 scores of each row."""
    b, c, h, w = q.shape
    q, k, v = (t.reshape(b, heads, c // heads, h * w) for t in (q, k, v))
    attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1) * temperature
    if top_m is None:
        out = attn.softmax(dim=-1) @ v
    else:
        channels = attn.shape[-1]
        keep = [int(channels / 2), int(channels * 2 / 3), int(channels * 3 / 4), int(channels * 4 / 5)]
        order = attn.topk(max(keep), dim=-1).indices  # sorted: the first k are the top k
        out = 0
        for count, weight in zip(keep, top_m):
            mask = torch.zeros_like(attn, dtype=torch.bool).scatter_(-1, order[..., :count], True)
            out = out + (attn.masked_fill(~mask, float("-inf")).softmax(dim=-1) @ v) * weight
    return out.reshape(b, c, h, w)


def projection(dim: int, channels: int, bias: bool) -> tuple[nn.Conv2d, nn.Conv2d]:
    """Restormer's q/k/v projection: a 1x1 convolution to ``channels``, then a 3x3 depthwise one."""
    return (
        nn.Conv2d(dim, channels, 1, bias=bias),
        nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=bias),
    )


class SelfAttention(nn.Module):
    """Restormer's MDTA (keys ``temperature``, ``qkv``, ``qkv_dwconv``, ``project_out``)."""

    def __init__(self, dim: int, heads: int, bias: bool):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv, self.qkv_dwconv = projection(dim, dim * 3, bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        return self.project_out(transposed_attention(q, k, v, self.heads, self.temperature))


class CrossAttention(nn.Module):
    """Transposed cross-attention, query from ``x_q``, key/value from ``x_kv`` (official
    ``CrossAttention_RestormerV2``; ``top_m`` = ``Topm_CrossAttention_Restormer`` with ``attn1..4``)."""

    def __init__(self, dim: int, heads: int, bias: bool, top_m: bool = False):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.kv, self.kv_dwconv = projection(dim, dim * 2, bias)
        self.q, self.q_dwconv = projection(dim, dim, bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)
        self.top_m = top_m
        if top_m:
            for i in range(1, 5):
                setattr(self, f"attn{i}", nn.Parameter(torch.tensor([0.2])))

    def forward(self, x_q: torch.Tensor, x_kv: torch.Tensor) -> torch.Tensor:
        k, v = self.kv_dwconv(self.kv(x_kv)).chunk(2, dim=1)
        weights = (self.attn1, self.attn2, self.attn3, self.attn4) if self.top_m else None
        return self.project_out(
            transposed_attention(self.q_dwconv(self.q(x_q)), k, v, self.heads, self.temperature, weights)
        )


class TransformerBlock(nn.Module):
    """Restormer block: x + MDTA(LN(x)), then + GDFN(LN(x))."""

    def __init__(self, dim: int, heads: int, expansion: float, bias: bool, norm_bias: bool = True):
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim, norm_bias)
        self.attn = SelfAttention(dim, heads, bias)
        self.norm2 = ChannelLayerNorm(dim, norm_bias)
        self.ffn = GatedFFN(dim, expansion, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def blocks(count: int, dim: int, heads: int, expansion: float, bias: bool, norm_bias: bool) -> nn.Sequential:
    return nn.Sequential(*(TransformerBlock(dim, heads, expansion, bias, norm_bias) for _ in range(count)))


class Resample(nn.Module):
    """Restormer's Downsample (conv to C/2, PixelUnshuffle) / Upsample (conv to 2C, PixelShuffle)."""

    def __init__(self, channels: int, down: bool):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels // 2 if down else channels * 2, 3, padding=1, bias=False),
            nn.PixelUnshuffle(2) if down else nn.PixelShuffle(2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, dim: int, bias: bool):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, 3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


# ------------------------------------------------------------------------------------ PIP modules
def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """The first ``channels`` channels of ``x``, zero-padded when it has fewer."""
    if x.shape[1] >= channels:
        return x[:, :channels]
    return torch.cat([x, x.new_zeros(x.shape[0], channels - x.shape[1], *x.shape[2:])], dim=1)


class CrossTransformerBlock(nn.Module):
    """Prompt-to-prompt block (official ``CrossTransformerRestormer_BlockV2``): x_q + CA(LN(x_q), LN(x_kv)),
    then + GDFN(LN(·))."""

    def __init__(self, dim: int, heads: int, expansion: float, bias: bool, norm_bias: bool = True):
        super().__init__()
        self.norm11 = ChannelLayerNorm(dim, norm_bias)
        self.norm12 = ChannelLayerNorm(dim, norm_bias)
        self.attn = CrossAttention(dim, heads, bias)
        self.norm2 = ChannelLayerNorm(dim, norm_bias)
        self.ffn = GatedFFN(dim, expansion, bias)

    def forward(self, x_q: torch.Tensor, x_kv: torch.Tensor) -> torch.Tensor:
        x = x_q + self.attn(self.norm11(x_q), self.norm12(x_kv))
        return x + self.ffn(self.norm2(x))


class PromptInPrompt(nn.Module):
    """Degradation-aware prompt + basic restoration prompt -> universal restoration prompt (module docstring)."""

    def __init__(
        self,
        prompt_dim: int,
        prompt_size: int,
        classes: int = 5,
        heads: int = 2,
        expansion: float = 2.66,
        norm_bias: bool = True,
    ):
        super().__init__()
        self.prompt_dim, self.prompt_size = prompt_dim, prompt_size
        self.detask_prompt_param = nn.Parameter(torch.randn(1, classes, prompt_dim, 1, 1))
        self.low_prompt_param = nn.Parameter(torch.randn(1, prompt_dim, prompt_size, prompt_size))
        self.LGM = CrossTransformerBlock(prompt_dim, heads, expansion, False, norm_bias)
        self.outconv = nn.Conv2d(prompt_dim, prompt_dim, 3, padding=1, bias=False)

    def forward(self, feature: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """(B,C,H,W) skip feature, (B,T) class weights -> (B,d,H,W) prompt."""
        b, _, h, w = feature.shape
        degradation_prompt = (weights.to(feature.dtype)[:, :, None, None, None] * self.detask_prompt_param).mean(
            dim=1
        )  # 1/T scaling
        size = (self.prompt_size, self.prompt_size)
        semantic = degradation_prompt * match_channels(
            F.interpolate(feature, size, mode="bilinear", align_corners=False), self.prompt_dim
        )
        prompt = self.LGM(self.low_prompt_param.expand(b, -1, -1, -1), semantic)
        return self.outconv(F.interpolate(prompt, (h, w), mode="bilinear", align_corners=False))

    def orthogonality_loss(self) -> torch.Tensor:
        """0.01·Σ_{i<j} relu(cos(p_i, p_j)) over the T degradation prompts: pushes them to >= 90° (the
        official ``angle`` regulariser, its 0.01 factor included)."""
        prompts = F.normalize(self.detask_prompt_param[0].flatten(1), dim=1)
        cosine = prompts @ prompts.t()
        return 0.01 * torch.relu(torch.triu(cosine, diagonal=1)).sum()


class TopMCrossBlock(nn.Module):
    """Selective prompt-to-feature interaction (official ``Topm_CrossTransformerRestormer_Block_PIM``)."""

    def __init__(
        self, feat_dim: int, prompt_dim: int, heads: int, expansion: float, bias: bool, norm_bias: bool = True
    ):
        super().__init__()
        self.norm11 = ChannelLayerNorm(feat_dim, norm_bias)
        self.norm12 = ChannelLayerNorm(prompt_dim, norm_bias)
        self.attn = CrossAttention(prompt_dim, heads, bias, top_m=True)
        self.reduce_channel = nn.Conv2d(prompt_dim, feat_dim, 1, bias=False) if feat_dim < prompt_dim else None
        self.norm2 = ChannelLayerNorm(feat_dim, norm_bias)
        self.ffn = GatedFFN(feat_dim, expansion, bias, dual=True)

    def forward(self, feature: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        feature, prompt = self.norm11(feature), self.norm12(prompt)
        channels, prompt_channels = feature.shape[1], prompt.shape[1]
        interacting = match_channels(feature, prompt_channels)
        x = interacting + self.attn(interacting, prompt)  # residual on the normalised feature, as upstream
        if channels > prompt_channels:
            x = torch.cat([x, feature[:, prompt_channels:]], dim=1)  # the other channels pass through
        elif self.reduce_channel is not None:
            x = self.reduce_channel(x)
        return x + self.ffn(self.norm2(x))


class PromptToFeature(nn.Module):
    def __init__(
        self, feat_dim: int, prompt_dim: int, heads: int, expansion: float, bias: bool, norm_bias: bool = True
    ):
        super().__init__()
        self.prompt_transformer_cross = TopMCrossBlock(feat_dim, prompt_dim, heads, expansion, bias, norm_bias)

    def forward(self, feature: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        return self.prompt_transformer_cross(feature, prompt)


def degradation_weights(degradation: Any, batch: int, classes: int, device: torch.device) -> torch.Tensor:
    """(B, T) prompt weights from an int, a LongTensor (B,) of classes, pairs (B, 2) / a list of pairs
    for mixed degradations (mean of the two one-hots), or float weights (B, T) as they are."""
    if (
        isinstance(degradation, (list, tuple))
        and degradation
        and isinstance(degradation[0], (list, tuple, torch.Tensor))
    ):
        degradation = torch.stack([torch.as_tensor(pair) for pair in degradation])
    degradation = torch.as_tensor(degradation, device=device)
    if degradation.is_floating_point():
        if degradation.shape != (batch, classes):
            raise ValueError(
                f"float degradation weights must be (B, {classes}) = ({batch}, {classes}), "
                f"got {tuple(degradation.shape)}"
            )
        return degradation
    if degradation.numel() and (degradation.min() < 0 or degradation.max() >= classes):
        raise ValueError(
            f"degradation classes must be in 0..{classes - 1} ({', '.join(DEGRADATIONS[:classes])}), "
            f"got {degradation.tolist()}"
        )
    if degradation.dim() == 0:
        return F.one_hot(degradation, classes).float().expand(batch, classes)
    if degradation.dim() == 2 and degradation.shape[1] == 2:
        return F.one_hot(degradation, classes).float().mean(dim=1)
    if degradation.shape != (batch,):
        raise ValueError(
            f"degradation must be an int, (B,) classes or (B, 2) pairs for a batch of {batch}, "
            f"got shape {tuple(degradation.shape)}"
        )
    return F.one_hot(degradation, classes).float()


class DegradationSensor(nn.Module):
    """Blind mode's degradation classifier: 5 stride-2 conv stages (3x3, BN, ReLU), global average and
    max pooling, a linear layer over the classes. Ours: the official code planned one and left it
    unimplemented; this small network is trained with cross-entropy next to the restorer."""

    def __init__(self, classes: int = 5, width: int = 32):
        super().__init__()
        layers, channels = [], 3
        for i in range(5):
            out = width * min(2**i, 8)
            layers += [
                nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(2 * channels, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.features(image)
        return self.classifier(torch.cat([x.mean((2, 3)), x.amax((2, 3))], dim=1))


@dataclass
class PIPOutput:
    restored: torch.Tensor  # (B,3,H,W), not clamped
    weights: torch.Tensor  # (B,T) prompt weights used
    sensor_logits: torch.Tensor | None  # (B,T) when the sensor ran


class PIPBase(nn.Module):
    """Shared prompt plumbing, blind sensor and eval forward of both backbones."""

    multiple = 8

    def _init_pip(
        self,
        feat_dims: Sequence[int],
        prompt_dims: Sequence[int],
        prompt_sizes: Sequence[int],
        classes: int,
        prompt_heads: int,
        interaction_heads: int,
        expansion: float,
        bias: bool,
        norm_bias: bool,
        sensor: bool,
        checkpointing: bool = False,
    ) -> None:
        if not len(feat_dims) == len(prompt_dims) == len(prompt_sizes):
            raise ValueError(
                f"one prompt dim and size per skip level ({len(feat_dims)}); "
                f"got {list(prompt_dims)}, {list(prompt_sizes)}"
            )
        self.classes, self.levels = classes, len(feat_dims)
        for level, (feat_dim, prompt_dim, size) in enumerate(zip(feat_dims, prompt_dims, prompt_sizes), start=1):
            setattr(
                self, f"prompt{level}", PromptInPrompt(prompt_dim, size, classes, prompt_heads, expansion, norm_bias)
            )
            setattr(
                self,
                f"low_prompt_interaction_level{level}",
                PromptToFeature(feat_dim, prompt_dim, interaction_heads, expansion, bias, norm_bias),
            )
        self.sensor = DegradationSensor(classes) if sensor else None
        self.checkpointing = checkpointing

    def _checkpointing_now(self) -> bool:
        return self.checkpointing and torch.is_grad_enabled()

    def run_blocks(self, layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        """``layers(x)``; with ``checkpointing`` (and gradients) each block recomputed in the backward pass."""
        if not self._checkpointing_now():
            return layers(x)
        for layer in layers:
            x = checkpoint(layer, x, use_reentrant=False)
        return x

    def modulate(self, level: int, feature: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The skip feature of ``level`` (1 = full resolution) after PIP (checkpointed with ``checkpointing``)."""
        if self._checkpointing_now():
            return checkpoint(self._modulate, level, feature, weights, use_reentrant=False)
        return self._modulate(level, feature, weights)

    def _modulate(self, level: int, feature: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        prompt = getattr(self, f"prompt{level}")(feature, weights)
        return getattr(self, f"low_prompt_interaction_level{level}")(feature, prompt)

    def orthogonality_loss(self) -> torch.Tensor:
        return sum(getattr(self, f"prompt{level}").orthogonality_loss() for level in range(1, self.levels + 1))

    def resolve(self, image: torch.Tensor, degradation: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(prompt weights, sensor logits): the given degradation, else the sensor's prediction (one-hot)."""
        logits = self.sensor(image) if self.sensor is not None else None
        if degradation is None:
            if logits is None:
                raise InputError(
                    "PIP needs the degradation class (int, (B,) or (B,2) pairs) "
                    "unless built with sensor=True (blind mode)"
                )
            return F.one_hot(logits.argmax(1), self.classes).float(), logits
        return degradation_weights(degradation, image.shape[0], self.classes, image.device), logits

    def forward_train(self, image: torch.Tensor, degradation: Any = None) -> PIPOutput:
        weights, logits = self.resolve(image, degradation)
        return PIPOutput(self.restore(image, weights), weights, logits)

    def restore(self, image: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, image: torch.Tensor, degradation: Any = None) -> torch.Tensor:
        """Restore (B,3,H,W) RGB in [0,1], any H x W (reflect-padded to the backbone's multiple), clamped
        to [0,1]. ``degradation``: class(es) 0 noise, 1 rain, 2 haze, 3 blur, 4 low-light, pairs for mixed
        degradations, or ``None`` (blind, needs ``sensor=True``)."""
        output = self.forward_train(pad_to_multiple(image, self.multiple), degradation).restored
        return crop_to(output, image.shape[-2:]).clamp(0, 1)


class PIPRestormer(PIPBase):
    """Restormer with PIP on its three skips (official ``PIPNet_Restormer_onskip_inter``).

    ``legacy_convs``: the official class creates three 1x1 ``reduce_noise_channel_*`` convolutions that
    its forward never uses. They are kept under the same names, so official checkpoints load strictly
    and the parameter count is the official one, but frozen (``requires_grad=False``): they get no
    gradient, so DDP (which leaves frozen parameters out of its gradient reduction) runs without
    ``find_unused_parameters``, and the optimizers skip them.
    """

    def __init__(
        self,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        layer_norm: str = "WithBias",
        prompt_dims: Sequence[int] = (64, 128, 256),
        prompt_sizes: Sequence[int] = (64, 32, 16),
        classes: int = 5,
        prompt_heads: int = 2,
        interaction_heads: int | None = None,
        legacy_convs: bool = True,
        sensor: bool = False,
        checkpointing: bool = False,
    ):
        super().__init__()
        d, e, nb = dim, ffn_expansion_factor, layer_norm == "WithBias"
        self._init_pip(
            (d, 2 * d, 4 * d),
            prompt_dims,
            prompt_sizes,
            classes,
            prompt_heads,
            interaction_heads or heads[2],
            e,
            bias,
            nb,
            sensor,
            checkpointing,
        )
        self.patch_embed = PatchEmbed(3, d, bias)
        self.chnl_reduce3 = nn.Conv2d(8 * d, 4 * d, 1, bias=bias)
        if legacy_convs:  # never used upstream: kept, frozen, so official checkpoints load (class docstring)
            for level, (channels, prompt_dim) in enumerate(zip((d, 2 * d, 4 * d), prompt_dims), start=1):
                setattr(
                    self,
                    f"reduce_noise_channel_{level}",
                    nn.Conv2d(channels + prompt_dim, channels, 1, bias=bias).requires_grad_(False),
                )
        self.encoder_level1 = blocks(num_blocks[0], d, heads[0], e, bias, nb)
        self.down1_2 = Resample(d, down=True)
        self.encoder_level2 = blocks(num_blocks[1], 2 * d, heads[1], e, bias, nb)
        self.down2_3 = Resample(2 * d, down=True)
        self.encoder_level3 = blocks(num_blocks[2], 4 * d, heads[2], e, bias, nb)
        self.down3_4 = Resample(4 * d, down=True)
        self.latent = blocks(num_blocks[3], 8 * d, heads[3], e, bias, nb)
        self.up4_3 = Resample(4 * d, down=False)  # after chnl_reduce3: 4d -> 2d channels at 2x size
        self.reduce_chan_level3 = nn.Conv2d(2 * d + 4 * d, 4 * d, 1, bias=bias)
        self.decoder_level3 = blocks(num_blocks[2], 4 * d, heads[2], e, bias, nb)
        self.up3_2 = Resample(4 * d, down=False)
        self.reduce_chan_level2 = nn.Conv2d(4 * d, 2 * d, 1, bias=bias)
        self.decoder_level2 = blocks(num_blocks[1], 2 * d, heads[1], e, bias, nb)
        self.up2_1 = Resample(2 * d, down=False)
        self.decoder_level1 = blocks(num_blocks[0], 2 * d, heads[0], e, bias, nb)
        self.refinement = blocks(num_refinement_blocks, 2 * d, heads[0], e, bias, nb)
        self.output = nn.Conv2d(2 * d, 3, 3, padding=1, bias=bias)

    def restore(self, image: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        run = self.run_blocks
        enc1 = run(self.encoder_level1, self.patch_embed(image))
        enc2 = run(self.encoder_level2, self.down1_2(enc1))
        enc3 = run(self.encoder_level3, self.down2_3(enc2))
        latent = self.chnl_reduce3(run(self.latent, self.down3_4(enc3)))
        x = self.reduce_chan_level3(torch.cat([self.up4_3(latent), self.modulate(3, enc3, weights)], dim=1))
        x = run(self.decoder_level3, x)
        x = self.reduce_chan_level2(torch.cat([self.up3_2(x), self.modulate(2, enc2, weights)], dim=1))
        x = run(self.decoder_level2, x)
        x = run(self.decoder_level1, torch.cat([self.up2_1(x), self.modulate(1, enc1, weights)], dim=1))
        return self.output(run(self.refinement, x)) + image


# ---------------------------------------------------------------------------------------- NAFNet
class LayerNorm2d(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, 1e-6).permute(0, 3, 1, 2)


class NAFBlock(nn.Module):
    """NAFNet block (Chen et al., ECCV 2022): LN, 1x1, depthwise 3x3, SimpleGate, simplified channel
    attention, 1x1, scaled residual; then LN, 1x1, SimpleGate, 1x1, scaled residual (NAFNet's key names)."""

    def __init__(self, c: int, expansion: int = 2):
        super().__init__()
        dw = c * expansion
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1))
        self.conv4 = nn.Conv2d(c, 2 * c, 1)
        self.conv5 = nn.Conv2d(c, c, 1)
        self.norm1, self.norm2 = LayerNorm2d(c), LayerNorm2d(c)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(self.norm1(x)))
        y1, y2 = y.chunk(2, dim=1)
        y = y1 * y2
        y = self.conv3(y * self.sca(y))
        x = x + y * self.beta
        z1, z2 = self.conv4(self.norm2(x)).chunk(2, dim=1)
        return x + self.conv5(z1 * z2) * self.gamma


class PIPNAFNet(PIPBase):
    """NAFNet with PIP on its skips (the paper's second backbone; the official release has none, so the
    PIP settings per level are ours: prompt dims, sizes and interaction heads are parameters)."""

    def __init__(
        self,
        width: int = 32,
        enc_blk_nums: Sequence[int] = (2, 2, 4, 8),
        middle_blk_num: int = 12,
        dec_blk_nums: Sequence[int] = (2, 2, 2, 2),
        prompt_dims: Sequence[int] = (32, 64, 128, 128),
        prompt_sizes: Sequence[int] = (64, 32, 16, 8),
        classes: int = 5,
        prompt_heads: int = 2,
        interaction_heads: int = 4,
        ffn_expansion_factor: float = 2.66,
        sensor: bool = False,
        checkpointing: bool = False,
    ):
        super().__init__()
        widths = [width * 2**i for i in range(len(enc_blk_nums))]
        self._init_pip(
            widths,
            prompt_dims,
            prompt_sizes,
            classes,
            prompt_heads,
            interaction_heads,
            ffn_expansion_factor,
            False,
            True,
            sensor,
            checkpointing,
        )
        self.multiple = 2 ** len(enc_blk_nums)
        self.intro = nn.Conv2d(3, width, 3, padding=1)
        self.ending = nn.Conv2d(width, 3, 3, padding=1)
        self.encoders = nn.ModuleList(
            nn.Sequential(*(NAFBlock(c) for _ in range(n))) for c, n in zip(widths, enc_blk_nums)
        )
        self.downs = nn.ModuleList(nn.Conv2d(c, 2 * c, 2, stride=2) for c in widths)
        self.middle_blks = nn.Sequential(*(NAFBlock(2 * widths[-1]) for _ in range(middle_blk_num)))
        self.ups = nn.ModuleList(
            nn.Sequential(nn.Conv2d(2 * c, 4 * c, 1, bias=False), nn.PixelShuffle(2)) for c in reversed(widths)
        )
        self.decoders = nn.ModuleList(
            nn.Sequential(*(NAFBlock(c) for _ in range(n))) for c, n in zip(reversed(widths), dec_blk_nums)
        )

    def restore(self, image: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        x = self.intro(image)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = self.run_blocks(encoder, x)
            skips.append(x)
            x = down(x)
        x = self.run_blocks(self.middle_blks, x)
        for level, (decoder, up, skip) in zip(range(self.levels, 0, -1), zip(self.decoders, self.ups, reversed(skips))):
            x = self.run_blocks(decoder, up(x) + self.modulate(level, skip, weights))
        return self.ending(x) + image


# what both backbones share: an optional degradation condition, the blind-mode sensor, a training forward
PIP_FIELDS = dict(
    task="restoration",
    inputs=("image", "degradation"),
    optional=("degradation",),
    condition_values={"degradation": DEGRADATIONS},
    blind_flag="sensor",
    train_forward=True,
    onnx=True,
)


@register_model("pip", pad_multiple=8, params=27_429_510, **PIP_FIELDS)
def pip(**kwargs: Any) -> PIPRestormer:
    """PIP on Restormer, the released configuration (27,429,510 parameters with the defaults).
    ``sensor=True`` adds the blind-mode degradation classifier (``degradation`` may then be omitted)."""
    return PIPRestormer(**kwargs)


@register_model("pip_nafnet", pad_multiple=16, params=31_102_223, **PIP_FIELDS)
def pip_nafnet(**kwargs: Any) -> PIPNAFNet:
    """PIP on NAFNet, the paper's second backbone (our per-level PIP settings: no release exists).
    ``sensor=True`` adds the blind-mode degradation classifier."""
    return PIPNAFNet(**kwargs)
