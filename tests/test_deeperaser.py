"""DeepEraser network and its training logic."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.deeperaser.module import select_text_instances, sequence_loss


@pytest.fixture(scope="module")
def model():
    return zoo.create_model("deeperaser", iters=2).eval()


def test_any_size_in_same_size_out(model):
    image, mask = torch.rand(2, 3, 97, 131), (torch.rand(2, 1, 97, 131) > 0.7).float()
    with torch.no_grad():
        out = model(image, mask)
    assert out.shape == image.shape
    assert out.min() >= 0 and out.max() <= 1


def test_iterates_are_input_plus_residual(model):
    image, mask = torch.rand(1, 3, 20, 24), torch.ones(1, 1, 20, 24)
    with torch.no_grad():
        iterates = model.forward_train(image, mask, iters=3).iterates
        final = model(image, mask, iters=3)
    assert len(iterates) == 3
    assert torch.allclose(iterates[-1].clamp(0, 1), final)
    assert not torch.allclose(iterates[0], iterates[-1])  # the update block refines


def test_mask_is_required(model):
    with pytest.raises(ValueError, match="needs a mask"):
        model(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="mask must be"):
        model(torch.rand(1, 3, 8, 8), torch.ones(1, 1, 4, 4))


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = zoo.create_model("deeperaser", iters=2)
    image, mask = torch.rand(1, 3, 16, 16), torch.ones(1, 1, 16, 16)
    grads = []
    for checkpointing in (False, True):
        model.zero_grad()
        sequence_loss(model.forward_train(image, mask, checkpoint_iterations=checkpointing).iterates, image).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_sequence_loss_weights_later_iterates_more():
    target = torch.zeros(1, 3, 4, 4)
    iterates = [torch.ones(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)]
    assert sequence_loss(iterates, target, gamma=0.8) == pytest.approx(0.8)  # first iterate weighs 0.8
    assert sequence_loss(iterates[::-1], target, gamma=0.8) == pytest.approx(1.0)
    assert sequence_loss(iterates, target, gamma=0.5, loss="l2") == pytest.approx(0.5)


def _two_instances():
    image = torch.zeros(1, 3, 20, 40)
    target = torch.full((1, 3, 20, 40), 0.5)  # the clean background
    image[..., 5:10, 2:10] = 1.0  # instance A
    image[..., 5:10, 25:35] = 1.0  # instance B
    image[..., :5, :] = target[..., :5, :]
    mask = (image[:, :1] == 1).float()
    target_full = torch.where(mask.bool().expand(-1, 3, -1, -1), target, image)
    boxes = [torch.tensor([[2.0, 5.0, 10.0, 10.0], [25.0, 5.0, 35.0, 10.0]])]
    return image, target_full, mask, boxes


def test_instance_subsets_keep_unselected_text():
    image, target, mask, boxes = _two_instances()
    seen = set()
    for seed in range(30):
        generator = torch.Generator().manual_seed(seed)
        chosen, new_target = select_text_instances(image, target, mask, boxes, all_text_prob=0.0, generator=generator)
        picked = (bool(chosen[0, 0, 7, 5]), bool(chosen[0, 0, 7, 30]))
        assert any(picked)  # never an empty selection
        seen.add(picked)
        for selected, xs in zip(picked, (slice(2, 10), slice(25, 35))):
            region = new_target[..., 5:10, xs]
            expected = target[..., 5:10, xs] if selected else image[..., 5:10, xs]
            assert torch.equal(region, expected)  # erased if chosen, kept as input otherwise
        assert torch.equal(new_target * (1 - chosen), image * (1 - chosen))
    assert seen == {(True, False), (False, True), (True, True)}


def test_all_text_and_box_modes():
    image, target, mask, boxes = _two_instances()
    chosen, new_target = select_text_instances(image, target, mask, boxes, all_text_prob=1.0)
    assert torch.equal(chosen, mask) and torch.equal(new_target, target)
    chosen, _ = select_text_instances(image, target, mask, boxes, all_text_prob=1.0, box_prob=1.0)
    assert chosen.sum() == 8 * 5 + 10 * 5  # both rectangles
    chosen, _ = select_text_instances(image, target, mask, None, all_text_prob=0.0)
    assert torch.equal(chosen, mask)  # no boxes: all text
    generator = torch.Generator().manual_seed(0)
    dilated, _ = select_text_instances(
        image, target, mask, boxes, all_text_prob=1.0, max_dilation=2, generator=generator
    )
    assert dilated.sum() >= mask.sum()


def test_module_training_step_and_ema():
    from zoo.deeperaser.module import DeepEraserModule
    from zoo.training.ema import update_ema

    module = DeepEraserModule(net={"iters": 2}, ema_decay=0.5, optimizer={"name": "adamw", "lr": 1e-3})
    assert module.eval_net is module.ema_net and not any(p.requires_grad for p in module.ema_net.parameters())
    batch = {
        "image": torch.rand(2, 3, 16, 16),
        "target": torch.rand(2, 3, 16, 16),
        "mask": torch.ones(2, 1, 16, 16),
        "boxes": [torch.tensor([[0.0, 0.0, 8.0, 8.0]]), torch.zeros(0, 4)],
    }
    module.log = lambda *args, **kwargs: None  # outside a Trainer
    loss = module.training_step(batch, 0)
    loss.backward()
    assert loss.item() > 0 and module.net.fnet.conv1.weight.grad is not None
    before = module.ema_net.fnet.conv1.weight.clone()
    with torch.no_grad():
        module.net.fnet.conv1.weight.add_(1.0)
    update_ema(module.ema_net, module.net, decay=0.5)
    expected = 0.5 * before + 0.5 * module.net.fnet.conv1.weight
    assert torch.allclose(module.ema_net.fnet.conv1.weight, expected)
    assert set(module.hparams) >= {"model_name", "net", "loss", "gamma", "all_text_prob", "ema_decay"}


def test_base_step_logs_the_family_losses_and_predicts_with_the_conditions_model_info_names(monkeypatch):
    """The base's training step: empty batches skipped, every entry of ``training_losses`` logged as
    ``train/<name>`` (the total ``loss`` on the progress bar) with the batch size, the total returned; the eval
    call: the image and, as keywords, the conditions of ``zoo.model_info`` that the batch holds."""
    from zoo.deeperaser.module import DeepEraserModule

    module = DeepEraserModule(net={"iters": 1})
    logged = {}
    module.log = lambda name, value, prog_bar=False, batch_size=None: logged.__setitem__(
        name, (float(value), prog_bar, batch_size)
    )
    total = torch.tensor(2.0, requires_grad=True)
    monkeypatch.setattr(module, "training_losses", lambda batch: {"loss": total, "term": torch.tensor(0.5)})
    batch = {"image": torch.rand(3, 3, 8, 8), "mask": torch.ones(3, 1, 8, 8), "text": ["a", "b", "c"]}
    assert module.training_step({}, 0) is None and not logged
    assert module.training_step(batch, 0) is total
    assert logged == {"train/loss": (2.0, True, 3), "train/term": (0.5, False, 3)}
    calls = []

    class Recorder(torch.nn.Module):
        def forward(self, image, **conditions):
            calls.append((image, conditions))
            return image

    module.net = Recorder()
    module.predict_batch(batch)
    module(batch["image"], mask=batch["mask"])
    for image, conditions in calls:
        assert image is batch["image"] and conditions.keys() == {"mask"} and conditions["mask"] is batch["mask"]
