"""CRAFT (zoo.craft): the official state_dict layout, score shapes, EasyOCR's box post-processing and its
mapping back to input pixels, the zip / installed-package weight sources, and the released weights."""

from __future__ import annotations

import hashlib
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import zoo
from tests.conftest import needs_ocr_weights, released_ocr_model
from zoo import hub
from zoo.craft.model import CRAFT, boxes_from_scores, fit_to_canvas, polygon_from_box
from zoo.errors import DownloadError
from zoo.imaging.fonts import load_font
from zoo.manifest import manifest_entry

# clovaai/CRAFT-pytorch's CRAFT() (EasyOCR's craft.py), DataParallel's "module." stripped: the VGG16-BN
# layers in torchvision numbering (conv, batch norm) per slice, fc6/fc7, the decoder and the head.
VGG_SLICES = {1: (0, 3, 7, 10), 2: (14, 17), 3: (20, 24, 27), 4: (30, 34, 37)}
BATCHNORM_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
OFFICIAL_KEYS = (
    [
        k
        for s, convs in VGG_SLICES.items()
        for c in convs
        for k in [f"basenet.slice{s}.{c}.weight", f"basenet.slice{s}.{c}.bias"]
        + [f"basenet.slice{s}.{c + 1}.{t}" for t in BATCHNORM_TENSORS]
    ]
    + [f"basenet.slice5.{i}.{t}" for i in (1, 2) for t in ("weight", "bias")]
    + [
        k
        for u in range(1, 5)
        for i in (0, 3)
        for k in [f"upconv{u}.conv.{i}.weight", f"upconv{u}.conv.{i}.bias"]
        + [f"upconv{u}.conv.{i + 1}.{t}" for t in BATCHNORM_TENSORS]
    ]
    + [f"conv_cls.{i}.{t}" for i in (0, 2, 4, 6, 8) for t in ("weight", "bias")]
)


@pytest.fixture(scope="module")
def model() -> CRAFT:
    return CRAFT().eval()


def test_state_dict_and_parameter_count_are_the_official_ones(model):
    state = model.state_dict()
    assert list(state) == OFFICIAL_KEYS
    assert state["basenet.slice5.1.weight"].shape == (1024, 512, 3, 3) and state["basenet.slice5.2.weight"].shape == (
        1024,
        1024,
        1,
        1,
    )
    assert state["upconv1.conv.0.weight"].shape == (512, 1536, 1, 1) and state["conv_cls.8.weight"].shape == (
        2,
        16,
        1,
        1,
    )
    assert sum(p.numel() for p in model.parameters()) == zoo.model_info("craft").params == 20_770_466
    info = zoo.model_info("craft")
    assert info.task == "text_detection" and info.inputs == ("image",) and info.default_tag == "mlt_25k"


@pytest.mark.parametrize(("size", "scores"), [((64, 96), (32, 48)), ((37, 53), (18, 26))])
def test_scores_are_half_resolution_region_and_affinity(model, size, scores):
    with torch.no_grad():
        out = model(torch.rand(2, 3, *size))
    assert out.shape == (2, 2, *scores) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match=r"expected \(B,3,H,W\)"):
        model(torch.rand(2, 1, 64, 64))


def blob_scores(model: CRAFT, monkeypatch, blobs, links=()):
    """Make ``model.scores`` return region score 0.9 on ``blobs`` and affinity 0.9 on ``links``
    ((row0, row1, col0, col1) half-open rectangles in score-map pixels), whatever the canvas."""
    calls = []

    def scores(pixels):
        calls.append(tuple(pixels.shape))
        out = torch.zeros(pixels.shape[0], 2, pixels.shape[2] // 2, pixels.shape[3] // 2)
        for channel, rectangles in ((0, blobs), (1, links)):
            for r0, r1, c0, c1 in rectangles:
                out[:, channel, r0:r1, c0:c1] = 0.9
        return out

    monkeypatch.setattr(model, "scores", scores)
    return calls


def test_fit_to_canvas_is_easyocrs_resize_aspect_ratio():
    image = np.full((100, 150, 3), 200, np.uint8)
    canvas, scale = fit_to_canvas(image, canvas_size=1280, mag_ratio=1.5)
    assert scale == 1.5 and canvas.shape == (160, 256, 3) and canvas.dtype == np.float32  # 150x225 padded to 32s
    assert (canvas[:150, :225] == 200).all() and (canvas[150:] == 0).all() and (canvas[:, 225:] == 0).all()
    canvas, scale = fit_to_canvas(image, canvas_size=120, mag_ratio=1.5)  # capped: the longer side becomes 120
    assert scale == 0.8 and canvas.shape == (96, 128, 3)


def test_detect_maps_the_score_boxes_back_to_input_pixels(model, monkeypatch):
    """Two separated blobs on the score map (half of a 1.5x canvas) give two boxes at (score px) x 2 / 1.5."""
    calls = blob_scores(model, monkeypatch, blobs=[(10, 21, 10, 41), (50, 61, 70, 111)])
    (words,) = model.detect(torch.rand(1, 3, 100, 150))  # canvas 150x225 -> 160x256, scores 80x128
    assert calls == [(1, 3, 160, 256)]
    # 31x11 blob: dilation n = int(2 sqrt(11)) = 6, a 7x7 square: 3 px each side -> x 7..43, y 7..23
    expected = [
        np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32) * 2 / 1.5
        for x0, y0, x1, y1 in [(7, 7, 43, 23), (67, 47, 113, 63)]
    ]
    assert len(words) == 2 and all(w.dtype == np.float32 and w.shape == (4, 2) for w in words)
    for word, box in zip(sorted(words, key=lambda w: w[0, 0]), expected):
        np.testing.assert_allclose(word, box, atol=1e-4)
    (at_one,) = model.detect(
        torch.rand(1, 3, 100, 150), mag_ratio=1.0
    )  # canvas 100x150 -> scores x 2, no magnification
    np.testing.assert_allclose(sorted(at_one, key=lambda w: w[0, 0])[0], expected[0] * 1.5, atol=1e-4)


def test_detect_takes_batches_and_lists_of_sizes(model, monkeypatch):
    calls = blob_scores(model, monkeypatch, blobs=[(4, 12, 4, 20)])
    assert [len(words) for words in model.detect(torch.rand(2, 3, 64, 64))] == [1, 1] and calls == [(2, 3, 96, 96)]
    calls.clear()
    results = model.detect([torch.rand(3, 64, 64), torch.rand(3, 40, 100)], mag_ratio=1.0)
    assert calls == [(1, 3, 64, 64), (1, 3, 64, 128)] and [len(words) for words in results] == [1, 1]
    with pytest.raises(ValueError, match="list of"):
        model.detect([torch.rand(64, 64)])


def test_detect_restores_training_flags_and_runs_real_scores(model):
    model.train()
    model.basenet.slice1.eval()
    results = model.detect(torch.rand(1, 3, 48, 64))  # random weights: any number of boxes, in input coordinates
    assert model.training and not model.basenet.slice1.training and model.upconv1.training
    assert all(w.shape == (4, 2) for w in results[0]) and all((w >= -64).all() and (w <= 160).all() for w in results[0])
    model.eval()


def test_box_post_processing_rules():
    text, link = np.zeros((40, 60), np.float32), np.zeros((40, 60), np.float32)
    text[5:10, 5:15] = 0.9  # a word
    text[5:10, 22:32] = 0.9  # joined to the first one by a link: one word
    link[6:9, 15:22] = 0.9
    text[20:23, 5:8] = 0.9  # 9 pixels: too small
    text[20:30, 20:30] = 0.5  # above low_text but never reaches text_threshold
    text[30:38, 40:48] = 0.8  # a square: axis-aligned ("diamond" alignment), clockwise from the top left
    boxes, labels, box_labels = boxes_from_scores(text, link, text_threshold=0.7, link_threshold=0.4, low_text=0.4)
    assert len(boxes) == 2 and labels.shape == text.shape and len(box_labels) == 2
    joined, square = sorted(boxes, key=lambda b: b[0, 1])
    assert joined[:, 0].min() < 5 and joined[:, 0].max() > 31  # spans both blobs and the link
    # 8x8 blob (x 40..47, y 30..37): n = int(2 sqrt(8)) = 5, a 6x6 square anchored at (3, 3) grows it 2 px
    # left/up and 3 px right/down, clipped at the map's last row (39)
    np.testing.assert_array_equal(square, np.array([[38, 28], [50, 28], [50, 39], [38, 39]], np.float32))
    assert polygon_from_box(square, labels, box_labels[1]) is None  # not longer than high: no polygon


def test_polygons_of_a_curved_word(model, monkeypatch):
    """Eight characters on a wave joined by links: a 14-point polygon, mapped back like the boxes."""
    chars = [(20 + int(6 * np.sin(i / 2)), 8 + i * 13) for i in range(8)]
    blobs, links = [(y, y + 14, x, x + 9) for y, x in chars], [(y + 5, y + 9, x + 9, x + 13) for y, x in chars]
    blob_scores(model, monkeypatch, blobs, links)
    (polygons,) = model.detect(torch.rand(1, 3, 100, 150), poly=True)  # scores 80x128 at scale 1.5
    (boxes,) = model.detect(torch.rand(1, 3, 100, 150))
    assert len(polygons) == len(boxes) == 1 and polygons[0].shape == (14, 2) and polygons[0].dtype == np.float32
    text, link = np.zeros((80, 128), np.float32), np.zeros((80, 128), np.float32)
    for r0, r1, c0, c1 in blobs:
        text[r0:r1, c0:c1] = 0.9
    for r0, r1, c0, c1 in links:
        link[r0:r1, c0:c1] = 0.9
    (box,), labels, (label,) = boxes_from_scores(text, link, 0.7, 0.4, 0.4)
    np.testing.assert_allclose(polygons[0], polygon_from_box(box, labels, label) * 2 / 1.5, atol=1e-4)
    np.testing.assert_allclose(boxes[0], box * 2 / 1.5, atol=1e-4)


# ------------------------------------------------------------------------------------------ weight sources
def zip_manifest(tmp_path, monkeypatch, member_bytes: bytes, member="weights.pth", package=None, sha256=None):
    """A test manifest whose craft/mlt_25k entry is a zip behind a file:// URL; an empty cache."""
    import yaml

    monkeypatch.setenv("REZOO_CACHE", str(tmp_path / "cache"))
    archive = tmp_path / "server" / "weights.zip"
    archive.parent.mkdir(exist_ok=True)
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("README.txt", "not the weights")
        zipped.writestr(member, member_bytes)
    entry = {
        "url": archive.as_uri(),
        "archive_member": "weights.pth",
        "sha256": sha256 or hashlib.sha256(member_bytes).hexdigest(),
    }
    if package:
        entry["package"] = package
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump({"models": {"craft": {"mlt_25k": entry}}}))
    monkeypatch.setenv("REZOO_MANIFEST", str(tmp_path / "manifest.yaml"))
    return entry


def test_zip_entry_extracts_the_member_into_the_cache(tmp_path, monkeypatch):
    payload = b"weights" * 1000
    zip_manifest(tmp_path, monkeypatch, payload, package={"name": "not_an_installed_package_xyz", "path": "w.pth"})
    path = hub.resolve_pretrained("craft", True, "mlt_25k", progress=False)
    assert path == hub.cache_dir() / "weights.pth" and path.read_bytes() == payload
    assert sorted(p.name for p in hub.cache_dir().iterdir()) == ["weights.pth"]  # the archive is not kept
    monkeypatch.setattr(hub.urllib.request, "urlopen", lambda *a, **k: pytest.fail("network used although cached"))
    assert hub.resolve_pretrained("craft", "mlt_25k") == path


@pytest.mark.parametrize(
    ("member", "sha256", "reason"),
    [
        ("other.pth", None, "the zip archive has no member weights.pth (members: README.txt, other.pth)"),
        ("weights.pth", "0" * 64, "sha256 mismatch: expected " + "0" * 64),
    ],
)
def test_zip_entry_failures_leave_nothing(tmp_path, monkeypatch, member, sha256, reason):
    entry = zip_manifest(tmp_path, monkeypatch, b"weights", member=member, sha256=sha256)
    with pytest.raises(DownloadError, match="cannot download") as error:
        hub.fetch(entry, progress=False)
    assert f"{entry['url']}: {reason}" in str(error.value) and str(hub.cache_dir() / "weights.pth") in str(error.value)
    assert list(hub.cache_dir().iterdir()) == []


def test_zip_download_that_is_not_a_zip(tmp_path, monkeypatch):
    monkeypatch.setenv("REZOO_CACHE", str(tmp_path / "cache"))
    plain = tmp_path / "plain.zip"
    plain.write_bytes(b"not a zip")
    with pytest.raises(DownloadError, match="not a zip archive"):
        hub.download(plain.as_uri(), archive_member="w.pth", progress=False)
    assert list(hub.cache_dir().iterdir()) == []


def fake_package(tmp_path, monkeypatch) -> dict:
    """An installed package ``fake_weights_pkg`` holding models/w.pth; its manifest ``package:`` spec."""
    package = tmp_path / "site" / "fake_weights_pkg"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "models" / "w.pth").write_bytes(b"packaged")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return {"name": "fake_weights_pkg", "path": "models/w.pth"}


def test_installed_package_file_comes_first(tmp_path, monkeypatch):
    zip_manifest(tmp_path, monkeypatch, b"downloaded", package=fake_package(tmp_path, monkeypatch))
    monkeypatch.setattr(
        hub.urllib.request, "urlopen", lambda *a, **k: pytest.fail("network used although the package has the file")
    )
    assert (
        hub.resolve_pretrained("craft", True, "mlt_25k") == tmp_path / "site" / "fake_weights_pkg" / "models" / "w.pth"
    )
    assert not hub.cache_dir().exists()


def test_package_without_the_file_falls_back_to_the_url(tmp_path, monkeypatch):
    package = {**fake_package(tmp_path, monkeypatch), "path": "models/absent.pth"}
    zip_manifest(tmp_path, monkeypatch, b"downloaded", package=package)
    assert hub.resolve_pretrained("craft", True, "mlt_25k", progress=False).read_bytes() == b"downloaded"


def test_shipped_manifest_entry():
    entry = manifest_entry("craft", "mlt_25k")
    assert entry["url"] == "https://github.com/JaidedAI/EasyOCR/releases/download/pre-v1.1.6/craft_mlt_25k.zip"
    assert entry["archive_member"] == "craft_mlt_25k.pth" and entry["source"] == "official"
    assert entry["package"] == {"name": "easyocr_en_models", "path": "models/craft_mlt_25k.pth"}
    assert entry["sha256"] == "4a5efbfb48b4081100544e75e1e2b57f8de3d84f213004b14b85fd4b3748db17"
    assert hub.entry_file(entry) == hub.cache_dir() / "craft-official-mlt_25k.pth"


# ------------------------------------------------------------------------------------- released weights
WORDS = [("STOP", (20, 24)), ("Main", (190, 24)), ("Street", (20, 110)), ("2024", (220, 110))]


def render_words(size=(180, 360), font_size=40) -> tuple[torch.Tensor, list[tuple[str, tuple[int, int, int, int]]]]:
    """Dark words on a light, slightly noisy background: (3,H,W) in [0,1] and each word's (x0,y0,x1,y1)."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(np.clip(rng.normal(235, 6, (*size, 3)), 0, 255).astype(np.uint8))
    draw, font = ImageDraw.Draw(image), load_font("default", font_size)
    placed = []
    for text, xy in WORDS:
        draw.text(xy, text, font=font, fill=(20, 30, 60))
        placed.append((text, draw.textbbox(xy, text, font=font)))
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255, placed


@pytest.fixture(scope="module")
def pretrained() -> CRAFT:
    return released_ocr_model("craft")


@pytest.mark.weights
@needs_ocr_weights
def test_pretrained_resolves_to_the_installed_package_without_network(tmp_path, monkeypatch):
    import easyocr_en_models

    monkeypatch.setenv("REZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(hub.urllib.request, "urlopen", lambda *a, **k: pytest.fail("network used"))
    path = hub.resolve_pretrained("craft", True, zoo.model_info("craft").default_tag)
    assert path.samefile(f"{easyocr_en_models.model_dir()}/craft_mlt_25k.pth") and not (tmp_path / "cache").exists()


@pytest.mark.weights
@needs_ocr_weights
@pytest.mark.parametrize("mag_ratio", [1.0, 1.5])
def test_pretrained_detects_one_box_per_rendered_word(pretrained, mag_ratio):
    image, placed = render_words()
    (boxes,) = pretrained.detect(image[None], mag_ratio=mag_ratio)
    assert len(boxes) == len(placed)
    for text, (x0, y0, x1, y1) in placed:
        inside = [b for b in boxes if x0 <= b[:, 0].mean() <= x1 and y0 <= b[:, 1].mean() <= y1]
        assert len(inside) == 1, f"{text}: {len(inside)} boxes"
        np.testing.assert_allclose(
            [*inside[0].min(axis=0), *inside[0].max(axis=0)], [x0, y0, x1, y1], atol=6, err_msg=text
        )
