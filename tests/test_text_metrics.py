"""Text-removal protocols, FID and detection scores against independent implementations of their formulas."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tests.conftest import run_tool, write_image
from zoo.metrics.detection import DetectionScore, deteval_image, iou_image, polygon_iou
from zoo.metrics.fid import frechet_distance, statistics
from zoo.metrics.text_removal import ProtocolScorer, erasenet_scores, garnet_scores, ms_ssim


def script_reference(out: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """The EraseNet evaluation script's formulas, written with numpy/scipy on uint8 HxWx3 images."""
    from scipy import ndimage, signal

    img = torch.from_numpy(out).permute(2, 0, 1).float() / 255
    lbl = torch.from_numpy(gt).permute(2, 0, 1).float() / 255
    mse = float(((lbl - img) ** 2).mean())
    y_gt = (0.299 * lbl[0] + 0.587 * lbl[1] + 0.114 * lbl[2]).numpy() * 255
    y_out = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]).numpy() * 255
    diff = np.abs(y_out - y_gt).round().astype(np.uint8)
    errors = diff > 20
    eroded = ndimage.binary_erosion(errors, np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]]))
    size = min(y_gt.shape[0], 11)
    x, yy = np.mgrid[-size // 2 + 1 : size // 2 + 1, -size // 2 + 1 : size // 2 + 1]
    window = np.exp(-((x**2 + yy**2) / (2 * 1.5**2)))
    window /= window.sum()
    a, b = y_gt.astype(float), y_out.astype(float)
    mu1, mu2 = signal.fftconvolve(a, window, "valid"), signal.fftconvolve(b, window, "valid")
    s1 = signal.fftconvolve(a * a, window, "valid") - mu1**2
    s2 = signal.fftconvolve(b * b, window, "valid") - mu2**2
    s12 = signal.fftconvolve(a * b, window, "valid") - mu1 * mu2
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    cs = ((2 * s12 + c2) / (s1 + s2 + c2)).mean()
    ssim = (((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s1 + s2 + c2))).mean()
    weights = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
    mssim = np.prod([cs**w for w in weights[:4]]) * ssim ** weights[4]  # all five "scales" at full size
    return {
        "mse": mse,
        "psnr": 10 * math.log10(1 / mse),
        "age": float(diff.mean()),
        "peps": errors.sum() / 512**2,
        "pceps": eroded.sum() / 512**2,
        "mssim": float(mssim),
    }


def erased_pair(seed: int, size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = gt.astype(int)
    out[100:220, 60:300] = rng.integers(0, 256, (120, 240, 3))
    out = np.clip(out + rng.integers(-6, 7, out.shape), 0, 255).astype(np.uint8)
    return out, gt


def test_erasenet_scores_match_the_script_formulas():
    for seed in range(2):
        out, gt = erased_pair(seed)
        ours = erasenet_scores(
            torch.from_numpy(out).permute(2, 0, 1)[None] / 255.0, torch.from_numpy(gt).permute(2, 0, 1)[None] / 255.0
        )
        ref = script_reference(out, gt)
        assert abs(float(ours["psnr"]) - ref["psnr"]) < 1e-4 and abs(float(ours["age"]) - ref["age"]) < 1e-6
        assert abs(float(ours["peps"]) - ref["peps"]) < 1e-9 and abs(float(ours["pceps"]) - ref["pceps"]) < 1e-9
        assert abs(float(ours["mssim"]) - ref["mssim"]) < 1e-9 and abs(float(ours["mse"]) - ref["mse"]) < 1e-8
        assert (
            0 < float(ours["ms_ssim"]) < 1 and abs(float(ours["ms_ssim"]) - ref["mssim"]) > 1e-3
        )  # the correct one differs


def test_ms_ssim_and_garnet_scores_on_known_cases():
    image = torch.rand(2, 3, 64, 64)
    assert torch.allclose(ms_ssim(image, image), torch.ones(2))
    noisy = (image + 0.1 * torch.randn_like(image)).clamp(0, 1)
    assert float(ms_ssim(noisy, image).max()) < 0.99
    scores = garnet_scores(noisy, image)
    mse = ((noisy * 255 - image * 255) ** 2).flatten(1).mean(1)
    assert torch.allclose(scores["psnr"].float(), 20 * torch.log10(255 / mse.sqrt()), atol=1e-4)
    gray = lambda t: 0.299 * t[:, 0] + 0.587 * t[:, 1] + 0.114 * t[:, 2]  # noqa: E731
    assert torch.allclose(scores["age"].float(), (gray(noisy) - gray(image)).abs().flatten(1).mean(1) * 255, atol=1e-3)
    assert torch.allclose(garnet_scores(image, image)["ssim"].float(), torch.ones(2), atol=1e-6)


def test_protocol_scorer_leaves_identical_pairs_out_and_composites():
    scorer = ProtocolScorer("erasenet")
    gt = torch.rand(2, 3, 32, 32)
    pred = gt.clone()
    pred[1, :, 4:12, 4:12] = 0
    scorer.update(pred, gt, names=["same", "erased"])
    result = scorer.compute()
    assert result["psnr"] == pytest.approx(scorer.per_image["psnr"][1]) and result["mse"] == pytest.approx(
        scorer.per_image["mse"][1]
    )
    garnet = ProtocolScorer("garnet")
    mask = torch.zeros(2, 1, 32, 32)
    garnet.update(pred, gt, mask=mask)  # nothing inside the boxes: the composite equals the ground truth
    assert garnet.compute()["psnr_c"] > 99 and garnet.compute()["psnr"] < garnet.compute()["psnr_c"]


def test_frechet_distance_of_gaussians_and_feature_statistics():
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
    s1, s2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 9.0])
    expected = 5 + (1 + 4 - 2 * 2) + (4 + 1 - 2 * 2) + 0
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, abs=1e-8)
    features = np.random.default_rng(0).normal(size=(500, 4))
    mu, sigma = statistics(features)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        statistics(features[:1])


def test_fid_inception_loads_pytorch_fid_format_weights_offline(tmp_path):
    from zoo.metrics.fid import FIDInception, _build_tf_inception

    weights = tmp_path / "pt_inception.pth"
    torch.save(_build_tf_inception().state_dict(), weights)  # random weights, the release's key layout
    net = FIDInception(weights)
    features = net(torch.rand(2, 3, 80, 100))
    assert features.shape == (2, 2048) and torch.isfinite(features).all()
    with pytest.raises(ValueError, match="weights="):
        FIDInception(None, download=False)


def test_deteval_one_to_one_split_and_merge():
    gt = [np.array([0, 0, 99, 19]), np.array([200, 0, 249, 19]), np.array([300, 0, 349, 19])]
    det = [np.array([0, 0, 99, 19]), np.array([200, 0, 224, 19]), np.array([225, 0, 249, 19])]
    match = deteval_image(gt, det)  # 1 exact, 1 split in two, 1 missed
    assert (match.recall_credit, match.precision_credit, match.gt_count, match.det_count) == (1.8, 2.6, 3, 3)
    # three words in one detection (each covers a third of it, below the 0.4 area precision): many-to-one
    merged = deteval_image(
        [np.array([0, 0, 32, 19]), np.array([33, 0, 65, 19]), np.array([66, 0, 99, 19])], [np.array([0, 0, 99, 19])]
    )
    assert (merged.recall_credit, merged.precision_credit) == (3, 1)
    # two words, each more than 0.4 of the detection: the split rule is tried first and takes it
    halves = deteval_image([np.array([0, 0, 49, 19]), np.array([50, 0, 99, 19])], [np.array([0, 0, 99, 19])])
    assert (halves.recall_credit, halves.precision_credit) == (0.8, 0.8)
    ignored = deteval_image([np.array([0, 0, 49, 19])], [np.array([0, 0, 49, 19])], dont_care=[True])
    assert (ignored.gt_count, ignored.det_count) == (0, 0)


def test_iou_rule_and_dataset_scores():
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    assert polygon_iou(square, square + [5, 0]) == pytest.approx(1 / 3)
    assert polygon_iou(square, np.array([20, 20, 30, 30])) == 0
    score = DetectionScore("iou")
    score.update([square], [square + [1, 0]])  # IoU 0.82: matched
    score.update([square, square + [50, 0]], [])  # nothing detected on an erased image
    assert score.compute() == pytest.approx({"precision": 1.0, "recall": 1 / 3, "f": 0.5})
    assert iou_image([square], [square + [6, 0]]).recall_credit == 0


def test_score_tool_pairs_by_name_and_matches_the_formulas(tmp_path):
    pred_dir, gt_dir, mask_dir = tmp_path / "pred", tmp_path / "gt", tmp_path / "mask"
    refs = []
    for k, name in enumerate(["img_2", "10"]):
        out, gt = erased_pair(k)
        write_image(pred_dir / f"{name}.png", out)
        write_image(gt_dir / f"{name}.png", gt)
        mask = np.zeros((512, 512), np.uint8)
        mask[100:220, 60:300] = 255
        write_image(mask_dir / f"{name}.png", mask)
        refs.append(script_reference(out, gt))
    out_file = tmp_path / "scores.json"
    run_tool(
        "score.py", "--pred", str(pred_dir), "--gt", str(gt_dir), "--protocol", "erasenet", "--json", str(out_file)
    )
    scores = json.loads(out_file.read_text())
    for key in ("psnr", "mssim", "mse", "age", "peps", "pceps"):
        assert scores[key] == pytest.approx(np.mean([r[key] for r in refs]), rel=1e-6, abs=1e-6), key  # float32 sums
    assert scores["count"] == 2 and set(scores["per_image"]) == {"img_2", "10"}
    run_tool(
        "score.py",
        "--pred",
        str(pred_dir),
        "--gt",
        str(gt_dir),
        "--protocol",
        "garnet",
        "--mask",
        str(mask_dir),
        "--json",
        str(out_file),
    )
    garnet = json.loads(out_file.read_text())
    assert garnet["psnr_c"] > garnet["psnr"] and {"ssim", "ssim_c", "age_c"} <= set(
        garnet
    )  # noise outside the mask is forgiven
    (gt_dir / "10.png").unlink()
    write_image(gt_dir / "11.png", erased_pair(0)[1])
    result = run_tool("score.py", "--pred", str(pred_dir), "--gt", str(gt_dir), check=False)
    assert (
        result.returncode != 0 and "unpaired" in result.stderr and "'10'" in result.stderr and "'11'" in result.stderr
    )


def test_eval_on_scut_enstext_prints_the_protocol_table_that_score_reproduces(tmp_path):
    import zoo
    from tests.text_fixtures import eval_on_scut_enstext, make_scut_enstext

    root = make_scut_enstext(tmp_path / "SCUT-EnsText")
    weights = tmp_path / "deeperaser.pth"
    torch.save({f"module.{k}": v for k, v in zoo.create_model("deeperaser").state_dict().items()}, weights)
    run_dir = tmp_path / "eval"
    result = eval_on_scut_enstext(root, weights, run_dir, 2)
    assert "erasenet/pceps" in result.stdout and "erasenet/mssim" in result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    out_file = tmp_path / "scores.json"
    labels = root / "test" / "all_labels"
    run_tool(
        "score.py", "--pred", str(run_dir / "images"), "--gt", str(labels), "--size", "64", "--json", str(out_file)
    )
    scores = json.loads(out_file.read_text())
    assert scores["count"] == 3
    for key in ("psnr", "mssim", "mse", "age", "peps", "pceps"):  # in memory (8-bit outputs) == from the saved files
        assert metrics[f"erasenet/{key}"] == pytest.approx(scores[key], rel=1e-6, abs=1e-9), key


class ColourStatistics(torch.nn.Module):
    """A stand-in feature extractor: per-channel means and standard deviations on a 2x2 grid (24-d)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        cells = torch.nn.functional.adaptive_avg_pool2d(images, 2).flatten(1)
        spread = torch.nn.functional.adaptive_avg_pool2d(images**2, 2).flatten(1) - cells**2
        return torch.cat([cells, spread], 1)


def test_fid_scorer_accumulated_in_batches_equals_fid_of_the_saved_files(tmp_path):
    from zoo.metrics.fid import FIDScorer, fid
    from zoo.training.module import save_image

    generator = torch.Generator().manual_seed(0)
    outputs, targets = (
        torch.rand(40, 3, 16, 16, generator=generator),
        torch.rand(40, 3, 16, 16, generator=generator) ** 2,
    )
    scorer = FIDScorer(ColourStatistics())
    for start in range(0, 40, 16):  # uneven batches
        scorer.update(outputs[start : start + 16], targets[start : start + 16])
    for name, images in (("pred", outputs), ("gt", targets)):
        for i, image in enumerate(images):
            save_image(image, tmp_path / name / f"{i:03d}.png")
    from_files = fid(sorted((tmp_path / "pred").iterdir()), sorted((tmp_path / "gt").iterdir()), ColourStatistics())
    assert scorer.compute()["fid"] == pytest.approx(from_files, rel=1e-9) and from_files > 0.01
