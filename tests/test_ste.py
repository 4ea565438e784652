"""STE: official layout and loading, eval forward, controller masking and REINFORCE, synthesis, training."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

import zoo
from tests.conftest import read_metrics, run_tool
from tests.text_fixtures import make_posterase
from zoo.ste.model import MaskCritic, STEDiscriminator
from zoo.ste.module import STEModule, dice_loss
from zoo.ste.policy import NAMES, PolicyController, decision_mask, difficulty_reward, reinforce_loss, uniform_actions
from zoo.ste.synthesis import Placement, TextSynthesizer, extract_strokes, synthetic_text_mask

# key -> shape in the official DataParallel state_dict (models/src/erase/sa_gan.py, spectral norm buffers)
OFFICIAL_SHAPES = {
    "conv1.conv2d.weight_orig": (32, 3, 4, 4),
    "conv1.conv2d.weight_u": (32,),
    "conv1.conv2d.weight_v": (48,),
    "res3.conv3.weight": (128, 64, 1, 1),
    "res8.batch_norm2d.running_var": (512,),
    "conv2.conv2d.weight_orig": (512, 512, 1, 1),
    "deconv1.conv2d.weight_orig": (512, 256, 3, 3),
    "deconv1.conv2d.weight_u": (256,),
    "deconv5.conv2d.weight_orig": (64, 3, 3, 3),
    "lateral_connection1.1.weight": (512, 256, 3, 3),
    "conv_o1.weight": (3, 64, 1, 1),
    "mask_deconv_a.conv2d.weight_orig": (512, 256, 3, 3),
    "mask_conv_d.weight": (3, 32, 1, 1),
    "astrous_net.3.conv2d.weight_orig": (128, 128, 3, 3),
    "coarse_deconva.conv2d.weight_orig": (384, 64, 3, 3),
    "coarse_convn.1.conv2d.weight_orig": (3, 16, 3, 3),
    "c1.weight": (64, 32, 1, 1),
    "c2.weight": (128, 64, 1, 1),
}
STYLE = dict(
    T=1,
    F=0,
    C=0,
    S=1,
    Gau=0,
    Poi=0,
    Ital=0,
    Cur=0,
    A=0,
    A1=0,
    A1_S=0,
    A1_C=0,
    A2=0,
    A2_R=0,
    A2_D=0,
    A2_C=0,
    A2_G=0,
    A2_A=0,
)
STE_TINY = [
    "zoo=ste",
    "profile=full",
    "data.size=64",
    "data.train_samples=8",
    "data.val_samples=2",
    "data.val_batch_size=2",
    "data.batch_size=2",
    "data.num_workers=0",
    "model.vgg_weights=random",
    "model.discriminator.num_layers=4",
    "model.policy.update_every=2",
    "model.policy.refresh_every=2",
    "model.policy.update_batches=1",
    "trainer.log_every_n_steps=1",
    "trainer.num_sanity_val_steps=0",
    "model.scheduler.name=constant",
    "trainer.val_check_interval=4",
]


# ------------------------------------------------------------------------------------------ network
def test_parameter_counts_and_official_keys():
    model = zoo.create_model("ste")
    assert sum(p.numel() for p in model.parameters()) == 19_737_615
    state = model.state_dict()
    assert len(state) == 252
    assert {k: tuple(state[k].shape) for k in OFFICIAL_SHAPES} == OFFICIAL_SHAPES
    assert sum(p.numel() for p in STEDiscriminator().parameters()) == 7_618_945
    assert sum(p.numel() for p in MaskCritic().parameters()) == 1_171_235


def test_official_dataparallel_file_loads_and_reproduces_outputs(tmp_path):
    torch.manual_seed(0)
    source = zoo.create_model("ste", width=8).train()
    with torch.no_grad():  # power iterations and BN statistics: non-trivial spectral-norm buffers
        for _ in range(2):
            source.forward_train(torch.rand(2, 3, 64, 64))
    path = tmp_path / "best_net_G.pth"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)
    loaded = zoo.create_model("ste", pretrained=str(path), width=8).eval()
    source.eval()
    image = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        expected, actual = source.forward_train(image), loaded.forward_train(image)
    assert torch.equal(expected.refined, actual.refined) and torch.equal(expected.mask_logits, actual.mask_logits)
    assert not torch.equal(expected.refined, zoo.create_model("ste", width=8).eval().forward_train(image).refined)


def test_eval_forward_any_size_and_composites():
    torch.manual_seed(0)
    model = zoo.create_model("ste", width=8).eval()
    image = torch.rand(2, 3, 50, 70)
    mask = torch.zeros(2, 1, 50, 70)
    mask[:, :, 10:20, 10:40] = 1
    with torch.no_grad():
        plain = model(image)
        given = model(image, mask)
        predicted = model(image, composite="predicted")
        logits = model.forward_train(torch.nn.functional.pad(image, (0, 26, 0, 14), mode="reflect")).mask_logits[
            ..., :50, :70
        ]
    assert plain.shape == image.shape and 0 <= plain.min() and plain.max() <= 1
    assert torch.equal(given[..., mask[0, 0] == 0], image[..., mask[0, 0] == 0])
    assert torch.allclose(given[..., mask[0, 0] == 1], plain[..., mask[0, 0] == 1])
    text = logits >= 0.5
    assert torch.equal(predicted[~text], image[~text]) and torch.allclose(predicted[text], plain[text])


# ------------------------------------------------------------------------------------------- policy
def test_controller_masked_decisions_contribute_nothing():
    torch.manual_seed(0)
    controller = PolicyController()
    actions = uniform_actions(6, torch.Generator().manual_seed(1))
    actions[:3, NAMES.index("T")] = 0  # copy mode: every rendering decision is off
    actions[3:, NAMES.index("T")] = 1
    actions[3:, NAMES.index("A")] = 1
    actions[3:, NAMES.index("A1")] = 0  # no stroke: its width and colour are off
    assert decision_mask(actions)[:3, 1:].sum() == 0 and decision_mask(actions)[3:, NAMES.index("A1_S")].sum() == 0
    before = controller.evaluate(actions)
    with torch.no_grad():  # change only the heads of decisions that are masked in some rows
        for name in ("F", "A1_S"):
            controller.out[NAMES.index(name)].weight.add_(torch.randn_like(controller.out[NAMES.index(name)].weight))
    after = controller.evaluate(actions)
    assert torch.allclose(before.log_prob[:3], after.log_prob[:3]) and torch.allclose(
        before.entropy[:3], after.entropy[:3]
    )
    # rows 3..5 use F (active), so their log-probability must move; A1_S is masked there too
    assert not torch.allclose(before.log_prob[3:], after.log_prob[3:])


def test_reinforce_raises_the_probability_of_a_rewarded_action():
    torch.manual_seed(0)
    controller = PolicyController()
    optimizer = torch.optim.Adam(controller.parameters(), lr=0.02)

    def rewarded(actions: torch.Tensor) -> torch.Tensor:  # render mode with font 3
        return ((actions[:, NAMES.index("T")] == 1) & (actions[:, NAMES.index("F")] == 3)).float()

    with torch.no_grad():
        start = rewarded(controller(count=2000).actions).mean().item()
    for _ in range(15):
        sample = controller(count=32)
        reward = rewarded(sample.actions)
        loss = reinforce_loss(sample.log_prob, reward - reward.mean(), sample.entropy)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        end = rewarded(controller(count=2000).actions).mean().item()
    assert start < 0.08 and end > 3 * start


def test_difficulty_reward_peaks_at_twice_the_mean():
    losses = torch.linspace(0.0, 0.4, 81)
    reward = difficulty_reward(losses, torch.tensor(0.1))
    assert losses[reward.argmax()].item() == pytest.approx(0.2) and reward.max().item() == pytest.approx(5.0)


# ---------------------------------------------------------------------------------------- synthesis
def flat(height: int = 96, width: int = 128, value: int = 200) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def test_synthesis_is_deterministic_under_a_seed():
    synthesizer = TextSynthesizer()
    style = {**STYLE, "A": 1, "A2": 1, "A2_G": 2, "Gau": 3, "Poi": 1, "Cur": 1, "S": 0}
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    first = synthesizer(image, style, np.random.default_rng(7))
    second = synthesizer(image, style, np.random.default_rng(7))
    other = synthesizer(image, style, np.random.default_rng(8))
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert not np.array_equal(first[0], other[0])
    assert first[1].any() and not np.array_equal(first[0], image)


@pytest.mark.parametrize("mode", ["pixels", "boxes", "rotated"])
def test_synthetic_mask_covers_exactly_the_added_text(mode):
    image = flat()
    synthesizer = TextSynthesizer(mask_mode=mode, mask_dilation=1)
    placement = Placement("Erase", 24, 20, 30, colors=[(20, 20, 20)])
    drawn = np.clip(
        synthesizer.render(image.astype(np.float32), placement, STYLE, np.random.default_rng(0)), 0, 255
    ).astype(np.uint8)
    mask = synthetic_text_mask(image, drawn, mode=mode, dilation=1)
    changed = (
        np.abs(
            cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(int) - cv2.cvtColor(drawn, cv2.COLOR_RGB2GRAY).astype(int)
        )
        >= 20
    )
    assert changed.any() and mask[changed].all()  # every added stroke is in the mask
    ys, xs = np.nonzero(changed)
    outside = np.ones_like(mask)
    outside[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = False
    assert not mask[outside].any()  # nothing outside the added text's extent
    if mode == "pixels":
        assert np.array_equal(mask, changed)
    assert not synthetic_text_mask(image, image, mode=mode).any()


def test_copy_mechanism_moves_known_strokes():
    image = flat(80, 160, 230)
    strokes = np.zeros(image.shape[:2], bool)
    for k in range(4):  # four "characters" of two strokes each inside the box (10..90, 20..50)
        x = 14 + 19 * k
        strokes[24:46, x : x + 4] = True
        strokes[24:28, x : x + 12] = True
    image[strokes] = (30, 40, 50)
    image = cv2.GaussianBlur(image, (3, 3), 0.8)  # anti-aliased edges and sensor noise, as real text has
    image = np.clip(image + np.random.default_rng(0).normal(0, 3, image.shape), 0, 255).astype(np.uint8)
    crop, found = extract_strokes(image, (10, 20, 90, 50), n_chars=4)
    truth = strokes[18:52, 9:91]
    assert crop.shape[:2] == truth.shape
    near_truth = cv2.dilate(truth.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # blurred edges count as strokes
    recall = (found & truth).sum() / truth.sum()
    precision = (found & near_truth).sum() / max(found.sum(), 1)
    assert recall > 0.7 and precision > 0.95
    placement = Placement("abcd", 30, 105, 40, source_box=(10, 20, 90, 50))
    copied = TextSynthesizer.copy(image.astype(np.float32), placement)
    region = copied[30 : 30 + crop.shape[0], 100 : 100 + crop.shape[1]]  # anchor (x - 5, y - 10)
    inside = found[: region.shape[0], : region.shape[1]]
    assert inside.sum() > 100 and np.array_equal(
        region[inside], crop[: region.shape[0], : region.shape[1]][inside].astype(np.float32)
    )
    assert np.array_equal(
        region[~inside], image[30 : 30 + region.shape[0], 100 : 100 + region.shape[1]][~inside].astype(np.float32)
    )
    assert np.array_equal(copied[:, :100], image[:, :100].astype(np.float32))  # the source stays


def test_placements_from_poster_annotation_are_scaled():
    synthesizer = TextSynthesizer()
    place = {"obj": "促销,12,0;Big, Sale,30,1;", "text": [[[10, 20, ["255,0,0", "0,0,255"]], [40, 60, ["0,0,0"]]]]}
    placements = synthesizer.placements(
        flat(), np.array([[1, 2, 30, 14], [40, 5, 60, 70]]), place, (2.0, 0.5), np.random.default_rng(0)
    )
    assert [(p.text, p.size, p.x, p.y, p.vertical) for p in placements] == [
        ("促销", 12, 20, 10, False),
        ("Big, Sale", 30, 80, 30, True),
    ]
    assert placements[0].colors == [(255, 0, 0), (0, 0, 255)] and placements[1].source_box == (40, 5, 60, 70)


def test_dice_loss_matches_the_official_formula():
    prediction, target = torch.rand(2, 3, 8, 8), (torch.rand(2, 1, 8, 8) > 0.5).float()
    p, t = prediction.flatten(1), target.expand(2, 3, 8, 8).flatten(1)
    expected = 1 - 2 * (p * t).sum(1) / ((p * p).sum(1) + 0.001 + (t * t).sum(1) + 0.001)
    assert torch.allclose(dice_loss(prediction, target), expected)


# ----------------------------------------------------------------------------------------- training
def test_train_logs_rewards_and_resume_restores_the_policy(tmp_path):
    run = tmp_path / "run"
    run_tool("train.py", *STE_TINY, "trainer.max_steps=4", f"run_dir={run}")
    rows = read_metrics(run)
    for key in (
        "train/reward_difficulty",
        "train/reward_realism",
        "train/policy_entropy",
        "train/policy_loss",
        "train/d_loss",
        "train/g_loss",
        "train/critic_loss",
        "val/psnr",
        "val/psnr_mask",
    ):
        assert any(row.get(key) for row in rows), key
    last = run / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    state = checkpoint["state_dict"]
    assert state["difficulty_mean"] > 0 and state["data_actions"].shape == (2, 18)
    assert (
        len(checkpoint["optimizer_states"]) == 4 and checkpoint["global_step"] == 4
    )  # G, D, critic, policy; G steps counted
    module = STEModule.load_from_checkpoint(last, map_location="cpu")
    assert torch.equal(module.controller.out[1].weight, state["controller.out.1.weight"])
    assert not torch.equal(
        module.controller.out[1].weight, STEModule(net={"width": 32}, vgg_weights="random").controller.out[1].weight
    )
    resumed = tmp_path / "resumed"
    run_tool("train.py", *STE_TINY, "trainer.max_steps=6", f"ckpt_path={last}", f"run_dir={resumed}")
    after = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert after["global_step"] == 6 and not torch.equal(
        after["state_dict"]["controller.out.1.weight"], state["controller.out.1.weight"]
    )


def test_posterase_recipe_trains_without_ground_truth_and_evaluates_fid(tmp_path):
    from zoo.metrics.fid import _build_tf_inception

    root = make_posterase(tmp_path / "poster", archives=False)  # STE's examples/poster layout
    split = root / "ps_test.txt"  # a second test poster: FID needs two images per set
    line = split.read_text(encoding="utf-8").splitlines()[0].split("\t")
    for name in ("1.png", "1_g.png"):
        (root / "test" / name).write_bytes((root / "test" / name.replace("1", "0")).read_bytes())
    split.write_text(
        split.read_text(encoding="utf-8") + "\t".join(["9", "test/1.png", line[2], "test/1_g.png"]) + "\n",
        encoding="utf-8",
    )
    small = [
        "data.size=[96,64]",
        "data.train_size=[96,64]",
        "data.num_workers=0",
        "model.vgg_weights=random",
        "model.discriminator.num_layers=4",
        "model.policy.update_every=1",
        "model.policy.update_batches=1",
    ]
    run = tmp_path / "run"
    run_tool(
        "train.py",
        "experiment=ste_posterase",
        f"data.root={root}",
        *small,
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "trainer.num_sanity_val_steps=0",
        "trainer.log_every_n_steps=1",
        f"run_dir={run}",
    )
    rows = read_metrics(run)
    psnr = [float(r["val/psnr"]) for r in rows if r.get("val/psnr")]
    assert psnr and np.isfinite(psnr).all() and any(r.get("train/reward_realism") for r in rows)
    weights = tmp_path / "inception.pth"
    torch.save(_build_tf_inception().state_dict(), weights)
    out = tmp_path / "eval"
    run_tool(
        "eval.py",
        "experiment=ste_posterase",
        f"data.root={root}",
        *small,
        "data.val_batch_size=1",
        f"checkpoint={run / 'checkpoints' / 'last.ckpt'}",
        "fid=true",
        f"fid_weights={weights}",
        f"run_dir={out}",
    )
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert np.isfinite(metrics["test/fid"]) and metrics["test/psnr"] > 0


def test_vgg_weights_are_read_from_a_local_file_at_first_use(tmp_path):
    from zoo.training.losses import VGGFeatureLoss

    reference = VGGFeatureLoss("random")
    path = tmp_path / "vgg16.pth"
    torch.save(
        {f"features.{k}": v for k, v in reference.features.state_dict().items()}
        | {"classifier.0.weight": torch.zeros(1)},
        path,
    )
    loss = VGGFeatureLoss(str(path), normalize=False)
    assert not loss.loaded
    image = torch.rand(1, 3, 32, 32)
    unnormalised = reference.features[:17](image)  # STE feeds [0,1] images to VGG as they are
    assert torch.allclose(loss.extract(image)[2], unnormalised)
    assert loss.loaded and torch.equal(loss.features[0].weight, reference.features[0].weight)
    assert not torch.allclose(reference.extract(image)[2], unnormalised)  # the default normalises


@pytest.mark.parametrize("mode", ["random", "conditioned"])
def test_random_and_image_conditioned_policies_train(mode, tmp_path):
    run = tmp_path / mode
    run_tool(
        "train.py",
        *STE_TINY,
        f"model.policy.mode={mode}",
        "model.policy.feature_weights=random",
        "trainer.max_steps=2",
        f"run_dir={run}",
    )
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    rows = read_metrics(run)
    if mode == "random":  # uniform styles, nothing to learn
        assert not any(k.startswith("controller.") for k in state) and not any(r.get("train/policy_loss") for r in rows)
    else:  # one style per image from its VGG16 feature, and REINFORCE updates of the controller
        assert "controller.project.weight" in state
        assert any(r.get("train/reward_difficulty") for r in rows) and any(r.get("train/policy_loss") for r in rows)


def test_bf16_mixed_training_step(tmp_path):
    """The GPU recipe's precision, on CPU: synthesis, losses, critic and policy (kept in fp32) under autocast."""
    run = tmp_path / "bf16"
    run_tool(
        "train.py",
        *STE_TINY,
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "trainer.precision=bf16-mixed",
        f"run_dir={run}",
    )
    rows = read_metrics(run)
    assert any(r.get("train/policy_loss") for r in rows) and all(
        np.isfinite(float(r["train/g_loss"])) for r in rows if r.get("train/g_loss")
    )
