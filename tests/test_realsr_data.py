"""Real-world SR data: Real-ESRGAN's degradation, StableSR-style pairs, HQ folders degraded on the fly,
the synthetic default."""

from __future__ import annotations

import math
import shutil
from importlib.resources import files

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from datamodules.base import BadSampleError, read_image, to_tensor
from datamodules.realesrgan import (
    KERNEL_TYPES,
    DegradationParams,
    RealESRGANDegradation,
    gaussian_kernel,
    generalized_gaussian_kernel,
    jpeg,
    kernel_sizes,
    plateau_kernel,
    quantize,
    random_blur_kernel,
    random_final_sinc,
    seeded_generator,
    sinc_kernel,
)
from datamodules.realsr import HQCropDataset, HQFolderDataModule, RealSRPairsDataModule, SyntheticSRDataModule
from datamodules.textzoom import upsample_bicubic
from tests.sr_fixtures import REALSR_NAMES, make_hq_folder, make_realsr_pairs, write_list_file
from zoo.errors import LayoutError

# GramSR's src/datasets/params.yml (aimagelab/GramSR HEAD 2d34012), kernel_info flattened: each knob of the two
# degradation rounds as (first, second); the second round's key ends in "2"
GRAMSR_ROUNDS = {
    "resize_prob": ([0.2, 0.7, 0.1], [0.3, 0.4, 0.3]),
    "resize_range": ([0.3, 1.5], [0.6, 1.2]),
    "gaussian_noise_prob": (0.5, 0.5),
    "noise_range": ([1, 15], [1, 12]),
    "poisson_scale_range": ([0.05, 2.0], [0.05, 1.0]),
    "gray_noise_prob": (0.4, 0.4),
    "jpeg_range": ([60, 95], [60, 100]),
    "blur_kernel_size": (21, 21),
    "kernel_list": (list(KERNEL_TYPES), list(KERNEL_TYPES)),
    "kernel_prob": ([0.45, 0.25, 0.12, 0.03, 0.12, 0.03], [0.45, 0.25, 0.12, 0.03, 0.12, 0.03]),
    "sinc_prob": (0.1, 0.1),
    "blur_sigma": ([0.2, 3], [0.2, 1.5]),
    "betag_range": ([0.5, 4], [0.5, 4]),
    "betap_range": ([1, 2], [1, 2]),
}
GRAMSR_PARAMS = {
    "scale": 4,
    "second_blur_prob": 0.5,
    "final_sinc_prob": 0.8,
    **{key: first for key, (first, _) in GRAMSR_ROUNDS.items()},
    **{f"{key}2": second for key, (_, second) in GRAMSR_ROUNDS.items()},
}
# every stage off: no blur, no resize but the final one, no noise, no JPEG, no sinc
OFF = {
    "first_blur_prob": 0.0,
    "second_blur_prob": 0.0,
    "resize_prob": [0, 0, 1],
    "resize_prob2": [0, 0, 1],
    "noise_prob": 0.0,
    "noise_prob2": 0.0,
    "jpeg_prob": 0.0,
    "jpeg_prob2": 0.0,
    "final_sinc_prob": 0.0,
}


def hq_batch(batch: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth random images with edges (a stand-in for HQ crops), (B,3,size,size) in [0,1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, size // 8, size // 8, generator=g)
    return quantize(F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1))


# ------------------------------------------------------------------------------------------ kernels
def test_kernels_sum_to_one_and_have_the_drawn_sizes():
    rng = np.random.default_rng(0)
    for _ in range(30):
        kernel = random_blur_kernel(
            rng, 21, KERNEL_TYPES, GRAMSR_PARAMS["kernel_prob"], 0.1, (0.2, 3), (0.5, 4), (1, 2)
        )
        assert kernel.shape == (21, 21) and math.isclose(kernel.sum(), 1.0, abs_tol=1e-9)
        assert np.allclose(kernel, kernel[::-1, ::-1])  # every kind is point-symmetric about the centre
    assert kernel_sizes(21) == [7, 9, 11, 13, 15, 17, 19, 21]
    final = random_final_sinc(rng, 21, 1.0)
    assert final.shape == (21, 21) and math.isclose(final.sum(), 1.0, abs_tol=1e-9)
    assert random_final_sinc(rng, 21, 0.0) is None  # the official pulse: no filtering


def test_gaussian_family_kernels():
    from kornia.filters import get_gaussian_kernel2d

    iso = gaussian_kernel(7, 1.3)
    assert np.allclose(iso, get_gaussian_kernel2d((7, 7), (1.3, 1.3))[0].double().numpy(), atol=1e-6)
    assert np.allclose(
        generalized_gaussian_kernel(21, 1.5, None, 0.0, 1.0), gaussian_kernel(21, 1.5)
    )  # β = 1 is the Gaussian
    aniso = gaussian_kernel(21, 3.0, 0.5, 0.0)  # wide along x
    assert aniso[10, 14] > aniso[14, 10] and np.allclose(gaussian_kernel(21, 3.0, 0.5, math.pi / 2), aniso.T)
    plateau = plateau_kernel(21, 2.0, None, 0.0, 2.0)
    assert (plateau > 0).all() and plateau[10, 10] == plateau.max() and np.all(np.diff(plateau[10, 10:]) < 0)
    assert np.all(np.diff(generalized_gaussian_kernel(21, 2.0, None, 0.0, 4.0)[10, 10:]) <= 0)


def test_sinc_kernel_is_a_circular_low_pass():
    kernel = sinc_kernel(math.pi / 3, 21)
    assert math.isclose(kernel.sum(), 1.0, abs_tol=1e-9) and kernel[10, 10] == kernel.max()
    assert (
        np.allclose(kernel, kernel.T) and np.allclose(kernel, kernel[::-1]) and kernel.min() < 0
    )  # symmetric, with negative lobes
    response = np.abs(np.fft.fft2(kernel, (128, 128)))
    freq = np.fft.fftfreq(128) * 2 * np.pi
    radius = np.hypot(*np.meshgrid(freq, freq))
    assert np.all(np.abs(response[radius < math.pi / 3 * 0.6] - 1) < 0.15)  # passes below the cutoff
    assert response[radius > math.pi / 3 * 1.6].max() < 0.1  # stops above it
    padded = sinc_kernel(math.pi / 2, 9, pad_to=21)
    assert (
        padded.shape == (21, 21)
        and np.all(padded[:6] == 0)
        and np.allclose(padded[6:15, 6:15], sinc_kernel(math.pi / 2, 9))
    )


# -------------------------------------------------------------------------------------- degradation
def test_params_default_to_gramsr_values_and_configs_list_them():
    params = DegradationParams().as_dict()
    assert {k: params[k] for k in GRAMSR_PARAMS} == GRAMSR_PARAMS
    defaults = {k: v for k, v in params.items() if k != "scale"}
    for name in ("hq_folder", "synthetic_sr"):
        config = yaml.safe_load(files("rezoo").joinpath("configs", "data", f"{name}.yaml").read_text())
        assert config["degradation"] == defaults, name
    with pytest.raises(ValueError, match="unknown degradation settings.*nois_range"):
        DegradationParams.from_dict({"nois_range": [1, 2]})
    assert RealESRGANDegradation({"noise_range": [1, 30]}, scale=2).params.noise_range == (1, 30)


def test_degradation_shape_range_levels_and_seeding():
    degradation = RealESRGANDegradation()
    hr = hq_batch(3, 64)
    lr = degradation(hr, torch.Generator().manual_seed(0))
    assert lr.shape == (3, 3, 16, 16) and lr.dtype == hr.dtype
    assert 0 <= float(lr.min()) and float(lr.max()) <= 1
    assert torch.equal(lr, quantize(lr))  # on 8-bit levels
    assert torch.equal(lr, degradation(hr, torch.Generator().manual_seed(0)))  # same seed, same LR
    assert not torch.equal(lr, degradation(hr, torch.Generator().manual_seed(1)))
    seeds = [11, 12, 13]  # an image's LR depends on its seed only, not on its batch-mates
    assert torch.equal(degradation.degrade(hr, seeds)[1:2], degradation.degrade(hr[1:2], seeds[1:2]))
    with pytest.raises(ValueError, match="multiple of the scale 4"):
        degradation(hr[..., :62, :62])


@pytest.mark.parametrize("mode", ["area", "bicubic"])
def test_all_stages_off_is_a_plain_downscale(mode):
    degradation = RealESRGANDegradation({**OFF, "resize_modes": [mode]})
    hr = hq_batch(2, 64)
    expected = quantize(F.interpolate(hr, size=(16, 16), mode=mode))
    assert torch.equal(degradation(hr, torch.Generator().manual_seed(3)), expected)


def stage_alone(**stage) -> RealESRGANDegradation:
    """A scale-1 degradation with every stage off but ``stage`` (area resize)."""
    return RealESRGANDegradation({**OFF, "resize_modes": ["area"], **stage}, scale=1)


def test_each_stage_switches_on_alone():
    hr = hq_batch(1, 64, seed=5)
    assert torch.equal(stage_alone()(hr), quantize(hr))  # scale 1, all off: the identity (on 8-bit levels)
    out = stage_alone(jpeg_prob=1.0, jpeg_range=[40, 40])(hr, torch.Generator().manual_seed(0))
    assert torch.equal(out, quantize(jpeg(hr, 40))) and not torch.equal(out, quantize(hr))
    only_blur = stage_alone(
        first_blur_prob=1.0,
        blur_kernel_size=7,
        kernel_list=["iso"],
        kernel_prob=[1],
        sinc_prob=0.0,
        blur_sigma=[1.5, 1.5],
    )
    from kornia.filters import filter2d

    expected = filter2d(hr, torch.from_numpy(gaussian_kernel(7, 1.5)).float()[None], border_type="reflect")
    assert torch.allclose(only_blur(hr), quantize(expected), atol=1.5 / 255)
    grey = torch.full((1, 3, 64, 64), 0.5)
    noisy = stage_alone(noise_prob=1.0, gaussian_noise_prob=1.0, noise_range=[10, 10], gray_noise_prob=1.0)(
        grey, torch.Generator().manual_seed(0)
    )
    assert torch.equal(noisy[:, 0], noisy[:, 1]) and torch.equal(noisy[:, 1], noisy[:, 2])  # grey noise: one plane
    assert abs(float((noisy - 0.5).std()) * 255 - 10) < 1.0
    poisson = stage_alone(noise_prob=1.0, gaussian_noise_prob=0.0, poisson_scale_range=[2, 2], gray_noise_prob=0.0)(
        hr, torch.Generator().manual_seed(0)
    )
    assert (
        not torch.equal(poisson[:, 0] - hr[:, 0], poisson[:, 1] - hr[:, 1]) and abs(float((poisson - hr).mean())) < 0.01
    )


def test_plans_draw_with_the_official_probabilities():
    degradation = RealESRGANDegradation()
    plans = [degradation.plan(np.random.default_rng(i)) for i in range(400)]
    rate = lambda flags: float(np.mean(flags))  # noqa: E731
    assert abs(rate([p.sinc is not None for p in plans]) - 0.8) < 0.07  # final_sinc_prob
    assert abs(rate([p.kernel2 is not None for p in plans]) - 0.5) < 0.08  # second_blur_prob
    assert all(p.kernel1 is not None and p.noise1 and p.jpeg1 and p.jpeg2 for p in plans)  # always, as the official
    assert (
        abs(rate([p.resize1[0] < 1 for p in plans]) - 0.7) < 0.08
        and abs(rate([p.resize1[0] == 1 for p in plans]) - 0.1) < 0.05
    )
    assert all(
        0.3 <= p.resize1[0] <= 1.5 and 0.6 <= p.resize2[0] <= 1.2 and 60 <= p.jpeg1 <= 95 and 60 <= p.jpeg2 <= 100
        for p in plans
    )
    assert (
        abs(rate([p.noise1.kind == "gaussian" for p in plans]) - 0.5) < 0.08
        and abs(rate([p.noise2.gray for p in plans]) - 0.4) < 0.08
    )
    assert abs(rate([p.sinc_first for p in plans]) - 0.5) < 0.08
    assert {p.final_mode for p in plans} == {"area", "bilinear", "bicubic"}


# -------------------------------------------------------------------------------------------- pairs
@pytest.mark.parametrize("layout", ["stablesr", "lqgt"])
def test_realsr_pairs_pair_every_file_by_name(tmp_path, layout):
    root = tmp_path / "RealSRVal_crop128"
    names = make_realsr_pairs(root, layout=layout)
    dm = RealSRPairsDataModule(str(root), val_batch_size=8)
    assert dm.eval_sets("test") == []
    batch = next(iter(dm.test_dataloader()))
    assert batch["name"] == sorted(names)
    assert batch["lr"].shape == (3, 3, 32, 32) and batch["hr"].shape == batch["image"].shape == batch[
        "target"
    ].shape == (3, 3, 128, 128)
    lr_dir, hr_dir = ("test_LR", "test_HR") if layout == "stablesr" else ("lq", "gt")
    assert torch.equal(batch["lr"][0], to_tensor(read_image(root / lr_dir / f"{batch['name'][0]}.png")))  # as stored
    assert torch.equal(batch["hr"][2], to_tensor(read_image(root / hr_dir / f"{batch['name'][2]}.png")))
    assert torch.equal(batch["target"], batch["hr"]) and torch.equal(
        batch["image"][1], upsample_bicubic(batch["lr"][1], (128, 128))
    )
    assert len(dm.build_dataset("val")) == 3


def test_realsr_pairs_missing_partner_and_wrong_root(tmp_path):
    root = tmp_path / "set"
    make_realsr_pairs(root)
    (root / "test_HR" / f"{REALSR_NAMES[1]}.png").unlink()
    shutil.copy(root / "test_HR" / f"{REALSR_NAMES[0]}.png", root / "test_HR" / "Extra_009_LR4.png")
    with pytest.raises(LayoutError) as error:
        RealSRPairsDataModule(str(root))
    message = str(error.value)
    assert (
        f"test_LR/{REALSR_NAMES[1]}.png (no test_HR/ partner)" in message
        and "test_HR/Extra_009_LR4.png (no test_LR/ partner)" in message
    )
    assert "Expected layout" in message and "test_LR/<name>.png" in message
    assert len(RealSRPairsDataModule(str(root), on_unmatched="skip").build_dataset("test")) == 2
    with pytest.raises(LayoutError, match="does not exist"):
        RealSRPairsDataModule(str(tmp_path / "nowhere"))
    (tmp_path / "flat" / "images").mkdir(parents=True)
    with pytest.raises(LayoutError, match=r"no test_LR/ \+ test_HR/ or lq/ \+ gt/ folders \(it has: images/\)"):
        RealSRPairsDataModule(str(tmp_path / "flat"))


def test_realsr_pairs_scale_must_match(tmp_path):
    root = tmp_path / "set"
    make_realsr_pairs(root)
    dataset = RealSRPairsDataModule(str(root), scale=2).build_dataset("test")
    with pytest.raises(
        BadSampleError,
        match=rf"test_HR/{REALSR_NAMES[0]}.png is 128x128, not 2x .*test_LR/{REALSR_NAMES[0]}.png \(32x32\)",
    ):
        dataset[0]


def test_realsr_pairs_sets_and_aligned_training_crops(tmp_path):
    roots = [tmp_path / "RealSR", tmp_path / "DRealSR"]
    make_realsr_pairs(roots[0])
    make_realsr_pairs(roots[1], names=("a_x1", "b_x1"), layout="lqgt", seed=1)
    dm = RealSRPairsDataModule([str(r) for r in roots], crop_size=64, val_size=1, batch_size=2, val_batch_size=4)
    assert dm.eval_sets("val") == dm.eval_sets("test") == ["RealSR", "DRealSR"]
    loaders = dm.test_dataloader()
    assert [next(iter(loader))["set"] for loader in loaders] == [["RealSR"] * 3, ["DRealSR"] * 2]
    assert [s["set"] for s in dm.build_dataset("val")] == ["RealSR", "DRealSR"]
    train = dm.build_dataset("train")
    assert len(train) == 5
    sample = train[0]
    full_lr, full_hr = (to_tensor(read_image(roots[0] / d / f"{sample['name']}.png")) for d in ("test_LR", "test_HR"))
    found = False
    for flip in (False, True):
        lr, hr = (sample["lr"].flip(-1), sample["hr"].flip(-1)) if flip else (sample["lr"], sample["hr"])
        for y in range(17):
            for x in range(17):
                if torch.equal(full_lr[:, y : y + 16, x : x + 16], lr):
                    found |= torch.equal(full_hr[:, 4 * y : 4 * y + 64, 4 * x : 4 * x + 64], hr)
    assert sample["lr"].shape == (3, 16, 16) and found  # the LR crop sits at the HR crop's position / 4


# ---------------------------------------------------------------------------------------- HQ folder
def test_hq_folder_crops_and_degrades_on_the_fly(tmp_path):
    images = make_hq_folder(tmp_path / "hq")
    dm = HQFolderDataModule(str(tmp_path / "hq"), crop_size=64, val_size=1, batch_size=2, seed=0)
    assert len(dm.train_paths) == 4 and len(dm.held_out) == 1 and set(dm.train_paths + dm.held_out) == set(images)
    path = next(
        p for p in images if p.stem == "0000002"
    )  # 40x56: reflect-padded (bottom/right) to the crop, then cropped
    small = HQCropDataset([path], crop_size=64, hflip=False)[0]["hr"]
    assert small.shape == (3, 64, 64) and torch.equal(small[:, :40, :56], to_tensor(read_image(path)))
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"hr", "name"} and batch["hr"].shape == (2, 3, 64, 64)
    hr = batch["hr"].clone()
    out = dm.on_after_batch_transfer(dict(batch), 0)
    assert out["lr"].shape == (2, 3, 16, 16) and torch.equal(out["target"], hr)
    assert torch.equal(
        out["image"], F.interpolate(out["lr"], size=(64, 64), mode="bicubic", align_corners=False).clamp(0, 1)
    )
    again = HQFolderDataModule(
        str(tmp_path / "hq"), crop_size=64, val_size=1, seed=0
    )  # a fresh run draws the same degradations
    assert torch.equal(again.on_after_batch_transfer({"hr": hr}, 0)["lr"], out["lr"])
    assert not torch.equal(
        again.on_after_batch_transfer({"hr": hr}, 0)["lr"], out["lr"]
    )  # the next batch, another draw
    val = dm.build_dataset("val")[0]
    assert val["lr"].shape == (3, 16, 16) and val["hr"].shape == (3, 64, 64) and val["name"] == dm.held_out[0].stem
    assert torch.equal(again.build_dataset("val")[0]["lr"], val["lr"])  # held-out crops degraded deterministically
    assert (
        dm.on_after_batch_transfer({"lr": val["lr"][None], "hr": val["hr"][None]}, 0)["lr"] is not None
    )  # paired batches pass as they are


def test_hq_folder_list_files_and_val_root(tmp_path):
    images = make_hq_folder(tmp_path / "hq")
    listing = write_list_file(tmp_path / "lists" / "train.txt", images[:3], relative=False)
    relative = write_list_file(tmp_path / "hq" / "ffhq.txt", images[3:])
    make_realsr_pairs(tmp_path / "RealSRVal_crop128", lr_size=16)
    dm = HQFolderDataModule(
        [str(listing), str(relative)], crop_size=32, val_root=str(tmp_path / "RealSRVal_crop128"), val_size=2
    )
    assert dm.train_paths == images and dm.held_out == []
    assert len(dm.build_dataset("val")) == 2 and len(dm.build_dataset("test")) == 3
    batch = next(iter(dm.test_dataloader()))
    assert batch["lr"].shape == (3, 3, 16, 16) and batch["hr"].shape == (3, 3, 64, 64)
    assert torch.equal(dm.on_after_batch_transfer(batch, 0)["lr"], batch["lr"])
    (tmp_path / "bad.txt").write_text("missing/a.png\n")
    with pytest.raises(LayoutError, match="missing/a.png, the first image of the list file"):
        HQFolderDataModule(str(tmp_path / "bad.txt"))
    with pytest.raises(ValueError, match="cannot spare data.val_size=8"):
        HQFolderDataModule(str(listing))


# ---------------------------------------------------------------------------------------- synthetic
def test_synthetic_sr_is_deterministic_per_index_and_degraded_on_the_fly():
    dm = SyntheticSRDataModule(size=64, train_samples=6, val_samples=3, batch_size=3)
    train, again = dm.build_dataset("train"), SyntheticSRDataModule(size=64).build_dataset("train")
    assert torch.equal(train[4]["hr"], again[4]["hr"]) and not torch.equal(train[4]["hr"], train[5]["hr"])
    assert set(train[0]) == {"hr", "name"} and train[0]["name"] == "synthetic_train_000000"
    val = dm.build_dataset("val")
    assert torch.equal(val[1]["lr"], SyntheticSRDataModule(size=64).build_dataset("val")[1]["lr"])
    assert val[1]["lr"].shape == (3, 16, 16) and torch.equal(val[1]["target"], val[1]["hr"])
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert batch["lr"].shape == (3, 3, 16, 16) and batch["image"].shape == (3, 3, 64, 64)
    with pytest.raises(ValueError, match="multiple of data.scale=4"):
        SyntheticSRDataModule(size=66)


def test_lightning_calls_the_datamodule_hook_and_seeds_by_step():
    from lightning.pytorch.utilities.model_helpers import is_overridden

    dm = SyntheticSRDataModule(size=32)
    assert is_overridden("on_after_batch_transfer", dm)

    class Trainer:  # what the hook reads from a trainer
        global_rank, global_step = 0, 5

    dm.trainer = Trainer()
    first, second = dm.batch_generator(), dm.batch_generator()  # two micro-batches of step 5
    assert torch.equal(torch.rand(4, generator=first), torch.rand(4, generator=seeded_generator(0, 0, 6, 0)))
    assert torch.equal(torch.rand(4, generator=second), torch.rand(4, generator=seeded_generator(0, 0, 6, 1)))
    Trainer.global_step = 6
    assert torch.equal(
        torch.rand(4, generator=dm.batch_generator()), torch.rand(4, generator=seeded_generator(0, 0, 7, 0))
    )


def test_configs_compose_and_instantiate(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    make_realsr_pairs(tmp_path / "pairs")
    make_hq_folder(tmp_path / "hq")
    overrides = {
        "realsr_pairs": [f"data.root={tmp_path / 'pairs'}"],
        "hq_folder": [f"data.root={tmp_path / 'hq'}", "data.crop_size=64", "data.val_size=1"],
        "synthetic_sr": ["data.size=32", "data.degradation.noise_range=[1,30]"],
    }
    with initialize_config_dir(config_dir=str(files("rezoo").joinpath("configs")), version_base="1.3"):
        for name, extra in overrides.items():
            cfg = compose(config_name="train", overrides=[f"data={name}", *extra])
            dm = instantiate(cfg.data)
            dm.setup("fit")
            assert len(dm.datasets["train"]) > 0 and dm.scale == 4, name
    assert dm.degradation.params.noise_range == (1, 30)
