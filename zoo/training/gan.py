"""Adversarial training with Lightning's manual optimization, shared by the GAN-trained families.

One training step = one discriminator update on the detached generator output, then one generator
update. ``trainer.global_step`` (and so ``max_steps``, step-based schedules, checkpoint names) counts
**generator** steps: Lightning counts every ``optimizer.step()`` in manual optimization, so the
discriminator steps through :func:`step_uncounted`. Both networks' weights (and optimizers) are in the
Lightning checkpoint, so a resumed or fine-tuned run continues adversarially; ``pretrained=<.ckpt>``
also restores the discriminator when the file has one, at the start of fitting (a module built from
weights only to evaluate never reads it). The step is the base's skeleton: :meth:`AdversarialModule.training_losses`
runs both updates and returns what the base logs (``train/d_loss``, ``train/g_loss``, the generator's terms).

DDP: the discriminator's backward leaves the generator's parameters without gradients (and vice versa),
so DDP needs ``find_unused_parameters`` (the GAN zoo configs set ``ddp_find_unused_parameters: true``,
read by ``trainer=ddp``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.checkpoints import lightning_state
from zoo.training.module import RestorationModule
from zoo.training.optim import build_optimizer, build_scheduler


def step_uncounted(optimizer: Any) -> None:
    """Step a LightningOptimizer without advancing ``global_step`` (the precision plugin still applies)."""
    before, after = optimizer._on_before_step, optimizer._on_after_step
    optimizer._on_before_step = optimizer._on_after_step = lambda: None
    try:
        optimizer.step()
    finally:
        optimizer._on_before_step, optimizer._on_after_step = before, after


def discriminator_state(path: str | Path) -> dict[str, torch.Tensor] | None:
    """The ``discriminator.*`` weights of a Lightning checkpoint, or ``None`` for other files."""
    path = Path(path)
    if path.suffix != ".ckpt" or not path.is_file():
        return None
    return lightning_state(path, "discriminator.") or None


class AdversarialModule(RestorationModule):
    """Generator ``net`` + ``discriminator`` trained in alternation; subclasses implement
    :meth:`build_discriminator`, :meth:`generate`, :meth:`discriminator_loss` and :meth:`generator_losses`.

    ``discriminator`` (its architecture kwargs), ``discriminator_optimizer`` (default: the generator's settings),
    ``gradient_clip`` (norm, every update, extra optimizers included; the Trainer's ``gradient_clip_val`` does not
    apply to manual optimization), ``gan_start_step`` (generator steps before the adversarial terms switch on).
    """

    progress_bar = ("d_loss", "g_loss")

    def __init__(
        self,
        model_name: str,
        net: dict[str, Any] | None = None,
        discriminator: dict[str, Any] | None = None,
        discriminator_optimizer: dict[str, Any] | None = None,
        gradient_clip: float | None = None,
        gan_start_step: int = 0,
        **kwargs: Any,
    ):
        super().__init__(model_name, net, **kwargs)
        self.automatic_optimization = False
        self.save_arguments(discriminator=dict(discriminator or {}))
        self.discriminator = self.build_discriminator(**self.hparams.discriminator)

    def setup(self, stage: str) -> None:
        """Fitting from ``pretrained=<.ckpt>``: the discriminator's weights too, when the file has them."""
        super().setup(stage)
        pretrained = self.hparams.pretrained
        state = discriminator_state(pretrained) if stage == "fit" and isinstance(pretrained, str) else None
        if state is not None:
            self.discriminator.load_state_dict(state)

    # ------------------------------------------------------------------ subclass hooks
    def build_discriminator(self, **kwargs: Any) -> nn.Module:
        """The discriminator, from the ``discriminator`` config block."""
        raise NotImplementedError

    def generate(self, batch: dict[str, Any]) -> Any:
        """The generator's training outputs for a batch."""
        raise NotImplementedError

    def discriminator_loss(self, batch: dict[str, Any], outputs: Any) -> torch.Tensor:
        """The discriminator's loss (generator outputs detached by the subclass)."""
        raise NotImplementedError

    def generator_losses(self, batch: dict[str, Any], outputs: Any, adversarial: bool) -> dict[str, torch.Tensor]:
        """Named, already weighted generator losses; the adversarial term only when ``adversarial``."""
        raise NotImplementedError

    def prepare_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Training inputs/targets from a loader batch (e.g. RoI targets); identity by default."""
        return batch

    def after_generator_step(self, batch: dict[str, Any], outputs: Any) -> None:
        """Extra updates after each generator step (STE: mask critic, policy); none by default."""

    def extra_optimizers(self) -> list[torch.optim.Optimizer]:
        """Optimizers after the generator's and the discriminator's (no schedule), for ``after_generator_step``."""
        return []

    # ------------------------------------------------------------------ training
    @property
    def adversarial(self) -> bool:
        return self.global_step >= self.hparams.gan_start_step

    def _update(self, optimizer: Any, loss: torch.Tensor, counted: bool) -> None:
        self.toggle_optimizer(optimizer)
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.hparams.gradient_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.gradient_clip, gradient_clip_algorithm="norm")
        optimizer.step() if counted else step_uncounted(optimizer)
        self.untoggle_optimizer(optimizer)

    def training_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """One discriminator update (from ``gan_start_step``), one generator update, the schedules' step and
        :meth:`after_generator_step`; returns ``d_loss``, ``g_loss`` and the generator's terms (nothing under
        ``loss``: the updates are done)."""
        batch = self.prepare_batch(batch)
        opt_g, opt_d = self.optimizers()[:2]
        adversarial = self.adversarial
        outputs = self.generate(batch)
        logged = {}
        if adversarial:
            logged["d_loss"] = self.discriminator_loss(batch, outputs)
            self._update(opt_d, logged["d_loss"], counted=False)
        losses = self.generator_losses(batch, outputs, adversarial)
        logged["g_loss"] = sum(losses.values())
        self._update(opt_g, logged["g_loss"], counted=True)
        for scheduler in self.lr_schedulers():
            scheduler.step()
        self.after_generator_step(batch, outputs)
        return {**logged, **losses}

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The generator's optimizer holds every parameter of ``net``, frozen ones included (GaRNet's fixed
        mask-branch filters), so the optimizer states of existing checkpoints keep loading."""
        return list(self.net.parameters())

    def lr_schedulers(self) -> list:
        schedulers = super().lr_schedulers()
        if schedulers is None:
            return []
        return schedulers if isinstance(schedulers, list) else [schedulers]

    def configure_optimizers(self) -> Any:
        total = self.trainer.estimated_stepping_batches
        opt_g = build_optimizer(self.trainable_parameters(), self.hparams.optimizer)
        opt_d = build_optimizer(
            self.discriminator.parameters(), self.hparams.discriminator_optimizer or self.hparams.optimizer
        )
        optimizers = [opt_g, opt_d, *self.extra_optimizers()]
        schedulers = [build_scheduler(opt, self.hparams.scheduler, total) for opt in (opt_g, opt_d)]
        if schedulers[0] is None:
            return optimizers
        return optimizers, schedulers
