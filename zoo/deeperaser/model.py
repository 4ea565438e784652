"""DeepEraser: Deep Iterative Context Mining for Generic Text Eraser (Feng et al., TMM 2024).

Architecture as the official implementation (fh2019ustc/DeepEraser): a RAFT-style network that
runs entirely at the input resolution (no stride anywhere).

* Context encoder (paper Sec. III-A): 7x7 conv on image+mask (4 ch), six stages of two residual
  blocks (widths 16/32/32/64/64/128) with parameter-free instance norm, 1x1 projection; its output is
  split into the initial hidden state (tanh) and the context features (ReLU).
* Iterative eraser (Sec. III-B): one update block shared across the ``iters`` iterations; it encodes
  the current estimate, runs a separable ConvGRU (1x5 then 5x1) and predicts a residual, and every
  iterate is ``input + residual`` (the residual is always relative to the input, Eq. 2).

Parameter names equal the official ones: the released ``deeperaser.pth`` (a state_dict saved from a
DataParallel model) loads once ``zoo.checkpoints`` strips its ``module.`` prefix, with no key remapping.
The official ``InstanceNorm2d`` layers have no affine weights and so no keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from zoo.registry import TEXT_ERASER, register_model

__all__ = ["DeepEraser", "DeepEraserOutput", "deeperaser"]


@dataclass
class DeepEraserOutput:
    """Training-time outputs: every iterate ``image + residual_k`` (unclamped), for the sequence loss."""

    iterates: list[torch.Tensor]

    @property
    def final(self) -> torch.Tensor:
        return self.iterates[-1]


def instance_norm(x: torch.Tensor) -> torch.Tensor:
    """Parameter-free instance norm (the official ``InstanceNorm2d`` layers have no affine weights)."""
    return F.instance_norm(x, eps=1e-5)


class ResidualBlock(nn.Module):
    """conv3x3-IN-ReLU-conv3x3-IN-ReLU plus an identity (or 1x1 conv + IN) shortcut, then ReLU."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        # ``downsample`` is a Sequential to keep the official key ``downsample.0.*``.
        self.downsample = nn.Sequential(nn.Conv2d(in_channels, channels, 1)) if in_channels != channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(instance_norm(self.conv1(x)))
        y = F.relu(instance_norm(self.conv2(y)))
        if self.downsample is not None:
            x = instance_norm(self.downsample(x))
        return F.relu(x + y)


class ContextEncoder(nn.Module):
    """Full-resolution feature/context encoder (the official ``BasicEncoder``, instance norm)."""

    def __init__(
        self, in_channels: int = 4, widths: Sequence[int] = (16, 32, 32, 64, 64, 128), out_channels: int = 128
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 7, padding=3)
        previous = widths[0]
        for index, width in enumerate(widths, start=1):
            setattr(self, f"layer{index}", nn.Sequential(ResidualBlock(previous, width), ResidualBlock(width, width)))
            previous = width
        self.num_stages = len(widths)
        self.conv2 = nn.Conv2d(previous, out_channels, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(instance_norm(self.conv1(x)))
        for index in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{index}")(x)
        return self.conv2(x)


class EstimateEncoder(nn.Module):
    """Encodes the current estimate: 7x7 and 3x3 convs, concatenated with the estimate itself."""

    def __init__(self, features: int = 64, hidden: int = 128):
        super().__init__()
        self.convf1 = nn.Conv2d(3, hidden, 7, padding=3)
        self.convf2 = nn.Conv2d(hidden, features - 3, 3, padding=1)

    def forward(self, estimate: torch.Tensor) -> torch.Tensor:
        features = F.relu(self.convf2(F.relu(self.convf1(estimate))))
        return torch.cat([features, estimate], dim=1)


class SepConvGRU(nn.Module):
    """Separable ConvGRU: a horizontal (1x5) then a vertical (5x1) GRU pass.

    The gates read ``[hidden, context, estimate features]``. A convolution is a sum over its input
    channels, so the context's share of every gate (constant across iterations) is computed once by
    :meth:`context_terms` and each iteration convolves only ``[hidden, estimate features]`` — the same
    result as the official full convolutions, with a third less GRU compute per iteration. The update
    (z) and reset (r) gates of a pass read the same input and run as one convolution.
    """

    PASSES = (("1", (1, 5), (0, 2)), ("2", (5, 1), (2, 0)))

    def __init__(self, hidden_dim: int = 64, input_dim: int = 128, context_dim: int = 64):
        super().__init__()
        self.hidden_dim, self.context_dim = hidden_dim, context_dim
        for suffix, kernel, padding in self.PASSES:
            for gate in "zrq":
                setattr(
                    self, f"conv{gate}{suffix}", nn.Conv2d(hidden_dim + input_dim, hidden_dim, kernel, padding=padding)
                )

    def _split(self, suffix: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(zr weight without the context channels, its context part, q likewise) for one pass."""
        zr = torch.cat([getattr(self, f"convz{suffix}").weight, getattr(self, f"convr{suffix}").weight])
        q = getattr(self, f"convq{suffix}").weight
        h, c = self.hidden_dim, self.context_dim
        return (
            torch.cat([zr[:, :h], zr[:, h + c :]], 1),
            zr[:, h : h + c],
            torch.cat([q[:, :h], q[:, h + c :]], 1),
            q[:, h : h + c],
        )

    def context_terms(self, context: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per pass, the context's contribution (with the biases) to the z|r and q pre-activations."""
        terms = []
        for suffix, _, padding in self.PASSES:
            _, zr_context, _, q_context = self._split(suffix)
            zr_bias = torch.cat([getattr(self, f"convz{suffix}").bias, getattr(self, f"convr{suffix}").bias])
            q_bias = getattr(self, f"convq{suffix}").bias
            terms.append(
                (
                    F.conv2d(context, zr_context, zr_bias, padding=padding),
                    F.conv2d(context, q_context, q_bias, padding=padding),
                )
            )
        return terms

    def forward(
        self, h: torch.Tensor, features: torch.Tensor, context_terms: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> torch.Tensor:
        """One GRU step from the hidden state, the estimate features and :meth:`context_terms`."""
        for (suffix, _, padding), (zr_context, q_context) in zip(self.PASSES, context_terms):
            zr_weight, _, q_weight, _ = self._split(suffix)
            z, r = torch.sigmoid(F.conv2d(torch.cat([h, features], 1), zr_weight, padding=padding) + zr_context).chunk(
                2, dim=1
            )
            q = torch.tanh(F.conv2d(torch.cat([r * h, features], 1), q_weight, padding=padding) + q_context)
            h = torch.lerp(h, q, z)  # (1 - z) * h + z * q
        return h


class PredictionHead(nn.Module):
    """conv3x3 - LeakyReLU(0.2) - conv3x3 - LeakyReLU(0.2): the residual (the official head keeps the
    output activation)."""

    def __init__(self, hidden_dim: int = 64, channels: int = 128):
        super().__init__()
        self.conv1 = nn.Conv2d(hidden_dim, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.conv2(F.leaky_relu(self.conv1(h), 0.2)), 0.2)


class UpdateBlock(nn.Module):
    """The weight-shared iterative eraser: estimate encoder, SepConvGRU, prediction head."""

    def __init__(self, hidden_dim: int = 64, context_dim: int = 64, estimate_dim: int = 64):
        super().__init__()
        self.encoder = EstimateEncoder(estimate_dim)
        self.gru = SepConvGRU(hidden_dim, context_dim + estimate_dim, context_dim)
        self.pre_head = PredictionHead(hidden_dim)

    def forward(
        self, hidden: torch.Tensor, context_terms: list, estimate: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One iteration; ``context_terms`` = ``self.gru.context_terms(context)``, computed once per image."""
        hidden = self.gru(hidden, self.encoder(estimate), context_terms)
        return hidden, self.pre_head(hidden)


class DeepEraser(nn.Module):
    """DeepEraser text eraser.

    ``forward(image, mask)`` takes RGB in [0,1] (B,3,H,W) and a mask (B,1,H,W), 1 = text to erase
    (used soft, no thresholding), and returns the last iterate clamped to [0,1]. Any H x W works:
    the network is convolutional at stride 1. ``forward_train`` returns every iterate, unclamped.
    """

    def __init__(
        self,
        iters: int = 8,
        hidden_dim: int = 64,
        context_dim: int = 64,
        encoder_widths: Sequence[int] = (16, 32, 32, 64, 64, 128),
    ):
        super().__init__()
        self.iters = iters
        self.hidden_dim = hidden_dim
        self.context_dim = context_dim
        self.fnet = ContextEncoder(4, tuple(encoder_widths), hidden_dim + context_dim)
        self.update_block = UpdateBlock(hidden_dim, context_dim)

    def _initial_state(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, list]:
        """Initial hidden state and the context's (iteration-independent) share of the GRU gates."""
        if mask is None:
            raise ValueError("DeepEraser needs a mask (B,1,H,W) with 1 = text to erase; got mask=None")
        if mask.shape[-2:] != image.shape[-2:] or mask.shape[1] != 1:
            raise ValueError(f"mask must be (B,1,H,W) matching image {tuple(image.shape)}; got {tuple(mask.shape)}")
        features = self.fnet(torch.cat([image, mask.to(image.dtype)], dim=1))
        hidden, context = torch.split(features, [self.hidden_dim, self.context_dim], dim=1)
        return torch.tanh(hidden), self.update_block.gru.context_terms(torch.relu(context))

    def forward_train(
        self, image: torch.Tensor, mask: torch.Tensor, iters: int | None = None, checkpoint_iterations: bool = False
    ) -> DeepEraserOutput:
        """All ``iters`` iterates ``image + residual_k`` (unclamped), for the sequence loss.

        ``checkpoint_iterations`` recomputes each iteration in the backward pass instead of keeping its
        activations (gradient checkpointing; needed for 512-px training).
        """
        hidden, context_terms = self._initial_state(image, mask)
        estimate = image
        iterates = []
        for _ in range(iters or self.iters):
            if checkpoint_iterations and torch.is_grad_enabled():
                hidden, residual = checkpoint(self.update_block, hidden, context_terms, estimate, use_reentrant=False)
            else:
                hidden, residual = self.update_block(hidden, context_terms, estimate)
            estimate = image + residual
            iterates.append(estimate)
        return DeepEraserOutput(iterates)

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None, iters: int | None = None) -> torch.Tensor:
        hidden, context_terms = self._initial_state(image, mask)
        estimate = image
        for _ in range(iters or self.iters):
            hidden, residual = self.update_block(hidden, context_terms, estimate)
            estimate = image + residual
        return estimate.clamp(0, 1)


@register_model(
    "deeperaser",
    **TEXT_ERASER,
    params=1_438_512,
    default_tag="scut_enstext",
)
def deeperaser(**kwargs) -> DeepEraser:
    """DeepEraser (1,438,512 parameters with the default arguments)."""
    return DeepEraser(**kwargs)
