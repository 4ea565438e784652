"""STE's synthesis policy (Sec. 3.3): an autoregressive LSTM controller over the text-style decisions,
trained with REINFORCE on the difficulty and realism rewards.

The controller follows the official ``models/controller.py`` (NAS/AutoAugment style, parameter names
kept so its ``*_net_Controller.pth`` files load): ``Embedding(Σ sizes, 32)``, an LSTM (hidden 100), one
linear head per decision, all parameters initialised U(−0.1, 0.1); step 0 reads zeros (global policy)
or ``tanh(project(feature))`` of a 1000-d image feature (image-conditioned policy); step j>0 reads the
embedding of the previous action. Decisions switched off by an earlier one (copy mode switches off
every rendering decision, no art switches off the art decisions, no stroke / no shadow their
sub-decisions) are still sampled, to feed the next step, but contribute no log-probability and no
entropy. (The official table masks only the stroke colour under "no stroke", not the stroke width; we
mask both, as the paper's hierarchy describes: the width has no effect without a stroke.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DECISIONS",
    "PolicyController",
    "PolicySample",
    "decision_mask",
    "uniform_actions",
    "actions_to_styles",
    "difficulty_reward",
    "realism_reward",
    "update_running_mean",
    "reinforce_loss",
]

# The official "random8" space, in its order: name -> number of choices.
DECISIONS: dict[str, int] = {
    "T": 2,  # 0 = copy real strokes (MSER), 1 = render
    "F": 12,  # font index
    "C": 3,  # candidate colour index
    "S": 3,  # size mode relative to the original text
    "Gau": 4,  # feathering level
    "Poi": 2,  # Poisson blending
    "Ital": 2,  # italic
    "Cur": 2,  # curved baseline
    "A": 2,  # art effects
    "A1": 2,  # stroke
    "A1_S": 4,  # stroke width index
    "A1_C": 3,  # stroke colour rule
    "A2": 2,  # shadow
    "A2_R": 8,  # shadow angle (multiples of π/4)
    "A2_D": 4,  # shadow distance range
    "A2_C": 3,  # shadow colour rule
    "A2_G": 5,  # shadow blur
    "A2_A": 5,  # shadow opacity
}
NAMES = tuple(DECISIONS)
# decision whose value 0 switches off the listed later decisions
SWITCHES: dict[str, tuple[str, ...]] = {
    "T": NAMES[1:],
    "A": ("A1", "A1_S", "A1_C", "A2", "A2_R", "A2_D", "A2_C", "A2_G", "A2_A"),
    "A1": ("A1_S", "A1_C"),
    "A2": ("A2_R", "A2_D", "A2_C", "A2_G", "A2_A"),
}


def decision_mask(actions: torch.Tensor) -> torch.Tensor:
    """(B, 18) actions -> (B, 18) float, 0 for the decisions that an earlier decision switched off."""
    mask = torch.ones_like(actions, dtype=torch.float32)
    for switch, switched in SWITCHES.items():
        off = actions[:, NAMES.index(switch)] == 0
        for name in switched:
            mask[off, NAMES.index(name)] = 0.0
    return mask


def actions_to_styles(actions: torch.Tensor) -> list[dict[str, int]]:
    """(B, 18) actions -> one ``{decision: value}`` dict per row."""
    return [dict(zip(NAMES, (int(v) for v in row))) for row in actions.cpu()]


def uniform_actions(count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The ``random`` policy: every decision uniform, independently."""
    return torch.stack([torch.randint(size, (count,), generator=generator) for size in DECISIONS.values()], dim=1)


@dataclass
class PolicySample:
    actions: torch.Tensor  # (B, 18) long
    log_prob: torch.Tensor  # (B,) sum over the active decisions
    entropy: torch.Tensor  # (B,) sum over the active decisions


class PolicyController(nn.Module):
    """Autoregressive controller (see the module docstring); 94,676 parameters with the defaults."""

    def __init__(
        self,
        embedding_dim: int = 32,
        hidden_dim: int = 100,
        layers: int = 1,
        feature_dim: int = 1000,
        init_range: float = 0.1,
    ):
        super().__init__()
        self.sizes = list(DECISIONS.values())
        self.register_buffer("offsets", torch.tensor([0] + self.sizes[:-1]).cumsum(0), persistent=False)
        self.embedding_dim = embedding_dim
        self.project = nn.Linear(feature_dim, embedding_dim)
        self.embedding = nn.Embedding(sum(self.sizes), embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_dim, layers)
        self.out = nn.ModuleList(nn.Linear(hidden_dim, size) for size in self.sizes)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -init_range, init_range)

    def _start(self, count: int | None, features: torch.Tensor | None) -> torch.Tensor:
        if features is not None:
            return torch.tanh(self.project(features))
        if count is None:
            raise ValueError("give the number of policies to sample (count) or image features (B, feature_dim)")
        return self.embedding.weight.new_zeros(count, self.embedding_dim)

    def _decide(
        self,
        count: int | None,
        features: torch.Tensor | None,
        actions: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> PolicySample:
        with torch.autocast(self.embedding.weight.device.type, enabled=False):  # tiny network: fp32 log-probabilities
            step_input = self._start(count, None if features is None else features.float())
            state = None
            chosen, log_probs, entropies = [], [], []
            for index, head in enumerate(self.out):
                if index > 0:
                    step_input = self.embedding(chosen[-1] + self.offsets[index - 1])
                output, state = self.lstm(step_input.unsqueeze(0), state)
                logits = head(output.squeeze(0))
                log_p = F.log_softmax(logits, dim=-1)
                if actions is None:
                    action = torch.multinomial(log_p.exp().detach(), 1, generator=generator).squeeze(1)
                else:
                    action = actions[:, index]
                chosen.append(action)
                log_probs.append(log_p.gather(1, action[:, None]).squeeze(1))
                entropies.append(-(log_p.exp() * log_p).sum(-1))
            actions = torch.stack(chosen, dim=1)
            mask = decision_mask(actions).to(log_probs[0].dtype)
            return PolicySample(
                actions, (torch.stack(log_probs, 1) * mask).sum(1), (torch.stack(entropies, 1) * mask).sum(1)
            )

    def forward(
        self, count: int | None = None, features: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> PolicySample:
        """Sample ``count`` policies (global) or one per row of ``features`` (image-conditioned)."""
        return self._decide(count, features, None, generator)

    def evaluate(self, actions: torch.Tensor, features: torch.Tensor | None = None) -> PolicySample:
        """Log-probability and entropy of given ``actions`` (B, 18) under the current policy."""
        return self._decide(len(actions), features, actions, None)


# ---------------------------------------------------------------------------------------- rewards
def update_running_mean(
    mean: torch.Tensor, value: torch.Tensor, momentum: float = 0.95, init_from_first: bool = False
) -> torch.Tensor:
    """EMA baseline of the official training (``mean = 0.95·mean + 0.05·value``); with
    ``init_from_first`` a zero mean is first set to ``value`` (the difficulty baseline)."""
    if init_from_first and float(mean) == 0.0:
        mean = value.detach().clone()
    return momentum * mean + (1 - momentum) * value.detach()


def difficulty_reward(
    loss: torch.Tensor,
    running_mean: torch.Tensor,
    target_ratio: float = 2.0,
    sharpness: float = 20.0,
    scale: float = 5.0,
) -> torch.Tensor:
    """R_d = 5·(1 − |1 − exp(20·(L − 2·L̄))|): highest when the eraser's loss on the synthesised sample is
    about ``target_ratio`` times its running mean — hard, but not too hard (official ``exp`` norm)."""
    return scale * (1 - (1 - torch.exp(sharpness * (loss - target_ratio * running_mean))).abs())


def realism_reward(critic_loss: torch.Tensor, running_mean: torch.Tensor, scale: float = 10.0) -> torch.Tensor:
    """R_r = −10·(L_n − L̄_n): the real-text critic's dice loss on the synthetic text, above its mean,
    means the critic took synthetic text for real text."""
    return -scale * (critic_loss - running_mean)


def reinforce_loss(
    log_prob: torch.Tensor, reward: torch.Tensor, entropy: torch.Tensor, entropy_weight: float = 1e-5
) -> torch.Tensor:
    """Score-function loss ``mean(−log π(a)·R) − w·mean(H)``."""
    return (-log_prob * reward.detach()).mean() - entropy_weight * entropy.mean()
