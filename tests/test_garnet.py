"""GaRNet: official layout and loading, eval forward, batch-max quirk, adversarial training mechanics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import zoo
from tests.conftest import read_metrics, resume_run, run_tool
from zoo.garnet.model import PatchDiscriminator
from zoo.garnet.module import locality_labels, roi_target, stroke_masks
from zoo.training.gan import discriminator_state

GARNET_TINY = [
    "zoo=garnet",
    "data.size=64",
    "data.train_samples=16",
    "data.val_samples=2",
    "data.val_batch_size=2",
    "data.batch_size=2",
    "data.num_workers=0",
    "model.net.inference_size=null",
    "trainer.log_every_n_steps=1",
    "trainer.num_sanity_val_steps=0",
    "model.scheduler.name=cosine",
    "model.scheduler.warmup_steps=1",
]
# key -> shape, from the official state_dict (naver/garnet CODE/model.py)
OFFICIAL_SHAPES = {
    "mask_branch.initial.0.weight": (1, 1, 4, 4),
    "mask_branch.layer1_out.0.weight": (1, 1, 3, 3),
    "mask_branch.layer4_out.1.weight": (1, 1, 3, 3),
    "mask_branch.layer5.1.weight": (1, 1, 3, 3),
    "layer1.weight": (64, 4, 4, 4),
    "layer1_lc.0.model.0.weight": (32, 64, 1, 1),
    "layer1_lc.1.weight": (64, 32, 1, 1),
    "layer1_block.att_layer.alpha": (),
    "layer1_block.att_layer.beta": (),
    "layer1_block.att_layer.conv.weight": (1, 3, 7, 7),
    "layer1_block.att_layer.conv2.weight": (1, 3, 7, 7),
    "layer2_block.conv3.weight": (128, 64, 1, 1),
    "layer4_block.conv1.weight": (512, 256, 3, 3),
    "layer5.conv2.weight": (512, 512, 3, 3),
    "layer6.weight": (2, 512, 1, 1),
    "uplayer1.0.weight": (2, 256, 4, 4),
    "uplayer5.0.weight": (64, 3, 4, 4),
    "convs_1.weight": (3, 64, 1, 1),
    "convs_2.weight": (3, 64, 1, 1),
}


def test_parameter_count_keys_and_frozen_mask_branch():
    model = zoo.create_model("garnet")
    assert sum(p.numel() for p in model.parameters()) == 12_399_909
    assert sum(p.numel() for p in model.parameters() if not p.requires_grad) == 160
    state = model.state_dict()
    assert len(state) == 135 and not any(k.startswith("module.") for k in state)
    assert {k: tuple(state[k].shape) for k in OFFICIAL_SHAPES} == OFFICIAL_SHAPES
    assert sum(p.numel() for p in PatchDiscriminator().parameters()) == 1_716_161
    assert PatchDiscriminator(width=8)(torch.zeros(1, 6, 512, 512)).shape[-2:] == (62, 62)


@pytest.mark.parametrize("wrapper", [None, "model_state_dict"])
def test_official_format_loads(tmp_path, wrapper):
    source = zoo.create_model("garnet").eval()
    for p in source.parameters():
        if p.requires_grad:
            p.data.normal_(0, 0.05)
    state = source.state_dict()
    path = tmp_path / "saved_model.pth"
    torch.save({wrapper: state} if wrapper else state, path)
    loaded = zoo.create_model("garnet", pretrained=path, inference_size=None).eval()
    image, mask = torch.rand(1, 3, 64, 96), torch.zeros(1, 1, 64, 96)
    mask[..., 10:30, 20:70] = 1
    with torch.no_grad():
        assert torch.equal(loaded.forward_train(image, mask).full, source.forward_train(image, mask).full)


@pytest.mark.parametrize("inference_size", [None, 128])
def test_eval_forward_any_size_composited(inference_size):
    model = zoo.create_model("garnet", inference_size=inference_size).eval()
    image, mask = torch.rand(2, 3, 97, 131), torch.zeros(2, 1, 97, 131)
    mask[:, :, 20:50, 30:100] = 1
    with torch.no_grad():
        out = model(image, mask)
    assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out[mask.expand_as(out) == 0], image[mask.expand_as(image) == 0])  # input kept outside
    assert not torch.equal(out, image)
    with pytest.raises(ValueError, match="mask"):
        model(image)


def test_mask_normalisation_batch_quirk_and_per_sample_option():
    image, mask = torch.rand(2, 3, 64, 64), torch.zeros(2, 1, 64, 64)
    mask[0, :, 8:16, 8:16] = 1
    mask[1, :, :, :] = 1  # a much larger box in the other sample
    for norm, shared in (("batch", True), ("sample", False)):
        net = zoo.create_model("garnet", mask_norm=norm).eval()
        with torch.no_grad():
            alone = net.forward_train(image[:1], mask[:1]).full
            batched = net.forward_train(image, mask).full[:1]
        assert torch.allclose(alone, batched, atol=1e-5) != shared


def test_roi_targets_stroke_masks_and_locality_labels():
    image, target = torch.zeros(1, 3, 64, 64), torch.ones(1, 3, 64, 64)
    box = torch.zeros(1, 1, 64, 64)
    box[..., 0:32, 0:64] = 1
    roi = roi_target(image, target, box)
    assert roi[..., :32, :].eq(1).all() and roi[..., 32:, :].eq(0).all()
    target2 = image.clone()
    target2[..., 0:8, 0:8] = 1  # strokes: where input and GT differ, inside the box
    tsr, tssr = stroke_masks(image, target2, box)
    assert tsr.sum() == 64 and tssr.sum() == 32 * 64 - 64
    labels = locality_labels(torch.ones(1, 1, 512, 512), (62, 62))
    assert (
        labels.shape[-2:] == (62, 62)
        and float(labels.max()) == pytest.approx(1.0, abs=1e-4)
        and float(labels[..., 0, 0]) < 0.5
    )  # zero padding at the border


@pytest.fixture(scope="module")
def garnet_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("garnet") / "run"
    run_tool(
        "train.py", *GARNET_TINY, "trainer.max_steps=3", "trainer.val_check_interval=3", f"hydra.run.dir={run_dir}"
    )
    return run_dir


def test_train_logs_g_and_d_and_saves_the_discriminator(garnet_run):
    rows = read_metrics(garnet_run)
    assert any(r.get("train/g_loss") for r in rows) and any(r.get("train/d_loss") for r in rows)
    assert any(r.get("train/attention") for r in rows) and any(r.get("train/adversarial") for r in rows)
    assert [r for r in rows if r.get("val/psnr")]
    ckpt_path = garnet_run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt["global_step"] == 3  # generator steps, not generator + discriminator steps
    assert any(k.startswith("discriminator.") for k in ckpt["state_dict"]) and len(ckpt["optimizer_states"]) == 2
    assert discriminator_state(ckpt_path) is not None
    model = zoo.create_model("garnet", pretrained=str(ckpt_path))
    assert model.inference_size is None  # kwargs travel with the checkpoint


def test_resume_continues_at_the_generator_step(garnet_run, tmp_path):
    run_dir = tmp_path / "resumed"
    ckpt = resume_run(garnet_run, run_dir, *GARNET_TINY, "trainer.max_steps=5", "trainer.val_check_interval=5")
    assert ckpt["global_step"] == 5
    # both optimizers took exactly one step per generator step, across the two runs
    for optimizer_state in ckpt["optimizer_states"]:
        assert {int(state["step"]) for state in optimizer_state["state"].values()} == {5}
    assert len([r for r in read_metrics(run_dir) if r.get("train/g_loss")]) == 2  # only the two new steps ran


def test_fine_tuning_restores_the_discriminator(garnet_run):
    """At the start of fitting; a module built from the weights to evaluate them never reads it (its config may
    name another discriminator)."""
    import lightning as L

    from zoo.garnet.module import GaRNetModule

    ckpt_path = str(garnet_run / "checkpoints" / "last.ckpt")
    saved = torch.load(ckpt_path, weights_only=True)["state_dict"]
    evaluated = GaRNetModule(pretrained=ckpt_path, net={"inference_size": None}, discriminator={"width": 8})
    evaluated.trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    evaluated.setup("test")
    module = GaRNetModule(pretrained=ckpt_path, net={"inference_size": None})
    fresh = {k: v.clone() for k, v in module.discriminator.state_dict().items()}
    module.trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    module.setup("fit")
    for key, value in module.discriminator.state_dict().items():
        assert torch.equal(value, saved[f"discriminator.{key}"])
    assert any(not torch.equal(value, saved[f"discriminator.{key}"]) for key, value in fresh.items())


@pytest.mark.parametrize("size", [(97, 131), (200, 75)])
def test_infer_keeps_size_and_aspect_of_odd_non_square_inputs(garnet_run, tmp_path, size):
    import numpy as np
    from PIL import Image

    from tests.conftest import write_image

    height, width = size
    rng = np.random.default_rng(0)
    write_image(tmp_path / "in" / "poster.jpg", rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4 : height // 2, width // 5 : width // 2] = 255
    write_image(tmp_path / "masks" / "poster.png", mask)
    weights = str(garnet_run / "checkpoints" / "last.ckpt")
    for extra, out in (([], "native"), (["--set", "inference_size=64"], "resized")):  # native size; resized and back
        run_tool(
            "infer.py",
            "--model",
            "garnet",
            "--weights",
            weights,
            "--input",
            str(tmp_path / "in"),
            "--mask",
            str(tmp_path / "masks"),
            "--out",
            str(tmp_path / out),
            *extra,
        )
        with Image.open(tmp_path / out / "poster.png") as result:
            assert result.size == (width, height)
            output = np.asarray(result, dtype=np.int16)
        original = np.asarray(Image.open(tmp_path / "in" / "poster.jpg"), dtype=np.int16)
        assert np.abs(output - original)[mask == 0].max() <= 1  # untouched outside the mask (8-bit rounding)
        assert np.abs(output - original)[mask > 0].mean() > 1
