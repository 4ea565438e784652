"""The realsr protocol (zoo/metrics/realsr.py, ``rezoo score --protocol realsr``): pyiqa's PSNR/SSIM recipe
against an independent numpy/scipy implementation of its formulas, the scorer's skips and errors, and the
LPIPS wiring through torchmetrics with a stand-in backbone (the ImageNet weights are not downloaded here)."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy.signal import convolve2d

from rezoo.cli import run
from tests.conftest import ROOT, write_image
from zoo.metrics import ycbcr_y
from zoo.metrics.realsr import RealSRScorer, psnr_y, ssim_y


def reference_y(rgb8: np.ndarray) -> np.ndarray:
    """BT.601 "ycbcr" luma with offset 16 on [0,1] RGB, float64, from (H,W,3) uint8."""
    rgb = rgb8.astype(np.float64) / 255
    return (rgb @ np.array([65.481, 128.553, 24.966]) + 16) / 255


def reference_psnr(pred8: np.ndarray, gt8: np.ndarray, round_y: bool = False) -> float:
    a, b = reference_y(pred8), reference_y(gt8)
    if round_y:
        a, b = np.round(a * 255) / 255, np.round(b * 255) / 255
    return float(10 * np.log10(1 / (np.mean((a - b) ** 2) + 1e-8)))


def reference_ssim(pred8: np.ndarray, gt8: np.ndarray, round_y: bool = True, clip_cs: bool = True) -> float:
    """Wang et al. on Y·255 (rounded unless told): 11x11 Gaussian σ 1.5, 'valid', C1/C2 on 0-255, cs ≥ 0."""
    x, y = reference_y(pred8) * 255, reference_y(gt8) * 255
    if round_y:
        x, y = np.round(x), np.round(y)
    r = np.arange(11) - 5
    window = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    window /= window.sum()

    def blur(a: np.ndarray) -> np.ndarray:
        return convolve2d(a, window, mode="valid")

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    cs = (2 * cov + c2) / (vx + vy + c2)
    if clip_cs:
        cs = np.maximum(cs, 0)
    return float(np.mean((2 * mx * my + c1) / (mx**2 + my**2 + c1) * cs))


def image_pair(seed: int, height: int, width: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """A smooth 8-bit image and a noisy copy."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    gt = np.stack([np.sin(xx / (5 + c) + yy / (7 - c) + seed) for c in range(3)], -1) * 100 + 128
    pred = gt + rng.normal(0, noise, gt.shape)
    return np.clip(pred, 0, 255).astype(np.uint8), np.clip(gt, 0, 255).astype(np.uint8)


def tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).permute(2, 0, 1)[None].float() / 255


def test_ycbcr_y_on_hand_computed_colours():
    colours = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128]]], np.uint8)
    expected = np.array([16, 235, 16 + 65.481, 16 + 128.553, 16 + 24.966, 16 + 219 * 128 / 255]) / 255
    assert np.allclose(ycbcr_y(tensor(colours))[0, 0, 0].numpy(), expected, atol=1e-7)
    assert ycbcr_y(tensor(colours)).dtype == torch.float32


@pytest.mark.parametrize(("height", "width", "noise"), [(40, 52, 6.0), (31, 17, 25.0)])
def test_psnr_and_ssim_follow_the_pyiqa_recipe(height, width, noise):
    pred8, gt8 = image_pair(height, height, width, noise)
    psnr, ssim = float(psnr_y(tensor(pred8), tensor(gt8))), float(ssim_y(tensor(pred8), tensor(gt8)))
    assert psnr == pytest.approx(reference_psnr(pred8, gt8), abs=1e-4)  # float32 as pyiqa
    assert ssim == pytest.approx(reference_ssim(pred8, gt8), abs=1e-7)
    # PSNR on the unrounded Y and SSIM on the rounded one: the other choice is measurably different
    assert abs(psnr - reference_psnr(pred8, gt8, round_y=True)) > 1e-3
    assert abs(ssim - reference_ssim(pred8, gt8, round_y=False)) > 1e-5


def test_ssim_clips_negative_contrast_structure_and_identical_images_score_80_db():
    pred8, gt8 = image_pair(3, 32, 40, 2.0)
    inverted = 255 - gt8  # anti-correlated: cs < 0 almost everywhere
    assert reference_ssim(inverted, gt8, clip_cs=False) < -0.5
    assert float(ssim_y(tensor(inverted), tensor(gt8))) == pytest.approx(reference_ssim(inverted, gt8), abs=1e-7)
    assert 0 <= float(ssim_y(tensor(inverted), tensor(gt8))) < 0.05
    batch = torch.cat([tensor(pred8), tensor(gt8)])
    assert psnr_y(batch, batch).tolist() == pytest.approx([80.0, 80.0])  # 10·log10(1/1e-8), pyiqa's value, not inf
    assert ssim_y(batch, batch).tolist() == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_y(tensor(pred8[:10]), tensor(gt8[:10]))


def write_pairs(root: Path, sizes: dict[str, tuple[int, int]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    pairs = {}
    for k, (name, (height, width)) in enumerate(sizes.items()):
        pairs[name] = image_pair(k, height, width, 5.0 + 5 * k)
        write_image(root / "pred" / f"{name}.png", pairs[name][0])
        write_image(root / "gt" / f"{name}.png", pairs[name][1])
    return pairs


def score(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "s.json"
    run(
        [
            "score",
            "--pred",
            str(tmp_path / "pred"),
            "--gt",
            str(tmp_path / "gt"),
            "--protocol",
            "realsr",
            "--json",
            str(out),
            *args,
        ]
    )
    return json.loads(out.read_text())


def test_score_cli_writes_means_count_per_image_and_skips_pyiqa_metrics_with_the_reason(tmp_path, monkeypatch, capsys):
    pairs = write_pairs(tmp_path, {"Canon_001_LR4": (48, 40), "Nikon_050_LR4": (33, 45)})
    monkeypatch.setitem(sys.modules, "pyiqa", None)  # not installed, whatever this machine has
    result = score(tmp_path, "--metrics", "psnr,ssim,musiq")
    assert result["protocol"] == "realsr" and result["count"] == 2 and result["metrics"] == ["psnr", "ssim", "musiq"]
    assert set(result["per_image"]) == set(pairs) and set(result["per_image"]["Canon_001_LR4"]) == {"psnr", "ssim"}
    for name, (pred8, gt8) in pairs.items():
        assert result["per_image"][name]["psnr"] == pytest.approx(reference_psnr(pred8, gt8), abs=1e-4)
        assert result["per_image"][name]["ssim"] == pytest.approx(reference_ssim(pred8, gt8), abs=1e-7)
    assert result["psnr"] == pytest.approx(np.mean([v["psnr"] for v in result["per_image"].values()]), abs=1e-9)
    assert result["ssim"] == pytest.approx(np.mean([v["ssim"] for v in result["per_image"].values()]), abs=1e-12)
    assert (
        "musiq" not in result
        and "pyiqa is not installed" in result["skipped"]["musiq"]
        and "pip install pyiqa" in result["skipped"]["musiq"]
    )
    assert "musiq skipped" in capsys.readouterr().err


def test_score_cli_refuses_mis_sized_and_unpaired_files(tmp_path, capsys):
    write_pairs(tmp_path, {"a": (40, 40)})
    write_image(tmp_path / "pred" / "b.png", np.zeros((40, 44, 3), np.uint8))
    write_image(tmp_path / "gt" / "b.png", np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(SystemExit) as exit_info:
        score(tmp_path, "--metrics", "psnr")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "b.png is 44x40 but" in err and "is 40x40" in err and "without resizing" in err
    (tmp_path / "gt" / "b.png").unlink()
    with pytest.raises(SystemExit) as exit_info:
        score(tmp_path, "--metrics", "psnr")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "unpaired files" in err and "['b']" in err
    with pytest.raises(SystemExit) as exit_info:
        score(tmp_path, "--metrics", "psnr,bogus")
    assert exit_info.value.code == 2 and "unknown realsr metric(s) bogus" in capsys.readouterr().err


def test_missing_backbone_weights_skip_the_defaults_and_fail_when_asked_for(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("REZOO_CACHE", str(tmp_path / "cache"))
    manifest = yaml.safe_load((ROOT / "zoo" / "manifest.yaml").read_text(encoding="utf-8"))
    for entry in manifest["auxiliary"].values():  # the backbones' downloads fail: file:// URLs to nothing
        entry["url"] = f"file://{tmp_path}/offline/{entry['url'].rsplit('/', 1)[-1]}"
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(manifest), encoding="utf-8")
    monkeypatch.setenv("REZOO_MANIFEST", str(tmp_path / "manifest.yaml"))
    write_pairs(tmp_path, {"a": (24, 24)})
    result = score(tmp_path)  # default psnr,ssim,lpips,dists: what cannot run is skipped, loudly
    assert set(result["per_image"]["a"]) == {"psnr", "ssim"} and set(result["skipped"]) == {"lpips", "dists"}
    assert (
        "alexnet-owt-7be5be79.pth" in result["skipped"]["lpips"] and "vgg16-397923af.pth" in result["skipped"]["dists"]
    )
    assert "lpips skipped" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        score(tmp_path, "--metrics", "psnr,lpips")
    err = capsys.readouterr().err
    assert (
        exit_info.value.code == 2
        and "alexnet-owt-7be5be79.pth" in err
        and "file://" in err
        and "--lpips-weights FILE" in err
    )
    with pytest.raises(SystemExit) as exit_info:
        score(tmp_path, "--metrics", "dists", "--dists-weights", str(tmp_path / "nowhere.pth"))
    assert exit_info.value.code == 2 and "nowhere.pth is not a file" in capsys.readouterr().err


def test_lpips_runs_torchmetrics_network_on_the_given_backbone_file(tmp_path, monkeypatch):
    import torchvision.models
    import torchvision.models._api as api

    with torch.device("meta"):
        shapes = {k: v.shape for k, v in torchvision.models.alexnet().state_dict().items()}
    torch.manual_seed(0)
    features = {k: torch.randn(shape) * 0.05 for k, shape in shapes.items() if k.startswith("features.")}
    user_file = tmp_path / "my_alexnet.pth"
    torch.save(features, user_file)
    asked = []

    def cached_only(url, *args, **kwargs):  # torchvision's loader, without the network: the hub cache or nothing
        cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        asked.append(cached.resolve())
        return {**torch.load(cached), **{k: torch.zeros(s) for k, s in shapes.items() if k not in features}}

    monkeypatch.setattr(api, "load_state_dict_from_url", cached_only)
    monkeypatch.delenv("TORCH_HOME", raising=False)
    scorer = RealSRScorer(["lpips", "psnr"], lpips_weights=user_file)
    assert asked == [user_file.resolve()] and "TORCH_HOME" not in os.environ  # the file, through a temporary hub folder
    pred8, gt8 = image_pair(1, 64, 64, 20.0)
    scorer.update(
        torch.cat([tensor(pred8), tensor(gt8)]), torch.cat([tensor(gt8), tensor(gt8)]), names=["noisy", "same"]
    )
    noisy, same = scorer.per_image["lpips"]
    assert noisy > 1e-4 and same == pytest.approx(0.0, abs=1e-7)
    single = scorer.nets["lpips"](tensor(pred8), tensor(gt8), normalize=True).item()  # batch == one at a time
    assert noisy == pytest.approx(single, rel=1e-5)
    assert list(scorer.compute()) == ["lpips", "psnr"]


def test_pyiqa_metrics_run_when_importable_and_failed_ones_are_recorded(monkeypatch):
    def create_metric(name, device=None, as_loss=False):
        if name == "musiq":
            raise OSError("cannot download musiq_koniq_ckpt-e95806b9.pth")
        return lambda images: images.mean(dim=(1, 2, 3))  # a stand-in no-reference score

    monkeypatch.setitem(sys.modules, "pyiqa", types.SimpleNamespace(create_metric=create_metric))
    warnings = []
    scorer = RealSRScorer("psnr,niqe,musiq", device="cpu", warn=warnings.append)
    pred, gt = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    scorer.update(pred, gt)
    assert scorer.per_image["niqe"] == pytest.approx(torch.round(pred * 255).div(255).mean(dim=(1, 2, 3)).tolist())
    assert "musiq_koniq_ckpt" in scorer.skipped["musiq"] and len(warnings) == 1 and "musiq" in warnings[0]
    assert set(scorer.compute()) == {"psnr", "niqe"}
