"""EasyOCR's English recognizer (zoo.recognition.easyocr): the official state_dict layout, the character
list, EasyOCR's crop preprocessing and greedy CTC decoding, and reading rendered words with the released
weights (alone and on CRAFT's boxes)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

import zoo
from tests.conftest import needs_ocr_weights, released_ocr_model
from zoo.imaging.fonts import load_font
from zoo.recognition.easyocr import CHARACTERS, EasyOCRRecognizer, prepare, stretch_contrast, to_grey

LSTM_TENSORS = [
    f"{kind}_{part}_l0{suffix}"
    for suffix in ("", "_reverse")
    for kind, part in (("weight", "ih"), ("weight", "hh"), ("bias", "ih"), ("bias", "hh"))
]
BATCHNORM_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
# EasyOCR's vgg_model.Model(1, 256, 256, 97), DataParallel's "module." stripped
OFFICIAL_KEYS = (
    [f"FeatureExtraction.ConvNet.{i}.{t}" for i in (0, 3, 6, 8) for t in ("weight", "bias")]
    + ["FeatureExtraction.ConvNet.11.weight"]
    + [f"FeatureExtraction.ConvNet.12.{t}" for t in BATCHNORM_TENSORS]
    + ["FeatureExtraction.ConvNet.14.weight"]
    + [f"FeatureExtraction.ConvNet.15.{t}" for t in BATCHNORM_TENSORS]
    + [f"FeatureExtraction.ConvNet.18.{t}" for t in ("weight", "bias")]
    + [
        k
        for j in range(2)
        for k in [f"SequenceModeling.{j}.rnn.{t}" for t in LSTM_TENSORS]
        + [f"SequenceModeling.{j}.linear.weight", f"SequenceModeling.{j}.linear.bias"]
    ]
    + ["Prediction.weight", "Prediction.bias"]
)


def test_state_dict_parameter_count_and_characters():
    model = EasyOCRRecognizer()
    state = model.state_dict()
    assert list(state) == OFFICIAL_KEYS
    assert state["FeatureExtraction.ConvNet.0.weight"].shape == (32, 1, 3, 3) and state[
        "FeatureExtraction.ConvNet.18.weight"
    ].shape == (256, 256, 2, 2)
    assert state["SequenceModeling.0.rnn.weight_ih_l0"].shape == (1024, 256) and state["Prediction.weight"].shape == (
        97,
        256,
    )
    assert sum(p.numel() for p in model.parameters()) == zoo.model_info("easyocr_en").params == 3_781_345
    info = zoo.model_info("easyocr_en")
    assert info.task == "recognition" and info.inputs == ("image",) and info.default_tag == "english_g2"
    # EasyOCR config.py english_g2: digits, the 32 ASCII punctuation marks, space, euro, A-Z, a-z; class 0 is the blank
    assert len(CHARACTERS) == 96 == len(set(CHARACTERS)) and CHARACTERS[:10] == "0123456789"
    assert CHARACTERS[42:44] == " €" and CHARACTERS[44:] == "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    assert set(CHARACTERS[10:42]) == set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


@pytest.mark.parametrize(("width", "steps"), [(64, 15), (100, 24), (256, 63)])
def test_scores_per_column(width, steps):
    model = EasyOCRRecognizer(output_channel=32, hidden_size=16).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 64, width) * 2 - 1).shape == (2, steps, 97)


def test_to_grey_uses_opencvs_luma():
    crop = torch.zeros(3, 1, 4)
    crop[0, 0, 0] = crop[1, 0, 1] = crop[2, 0, 2] = 1.0
    crop[:, 0, 3] = 0.5
    assert to_grey(crop).tolist() == [[76, 150, 29, 128]]  # cv2 COLOR_RGB2GRAY of pure R, G, B and 128 grey
    assert to_grey(torch.full((1, 2, 3), 0.2)).tolist() == [[51] * 3] * 2  # grey crops pass through
    with pytest.raises(ValueError, match="non-empty"):
        to_grey(torch.zeros(3, 0, 5))


def test_prepare_resizes_to_64_high_and_pads_with_the_last_column():
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (20, 50), dtype=np.uint8)  # w/h = 2.5: 160 px wide, padded to 3 x 64
    line = prepare(wide)
    assert line.shape == (1, 64, 192) and line.min() >= -1 and line.max() <= 1
    expected = torch.from_numpy(cv2.resize(wide, (160, 64), interpolation=cv2.INTER_LINEAR)).float() / 255 * 2 - 1
    torch.testing.assert_close(line[0, :, :160], expected)
    assert torch.equal(line[0, :, 160:], line[0, :, 159:160].expand(64, 32))
    tall = rng.integers(0, 256, (60, 20), dtype=np.uint8)  # h/w = 3: 64 x 192, then bicubic to 22 x 64, padded to 192
    line = prepare(tall)
    assert line.shape == (1, 64, 192) and torch.equal(line[0, :, 22:], line[0, :, 21:22].expand(64, 170))
    assert prepare(np.full((64, 64), 7, np.uint8)).shape == (1, 64, 64)


def test_stretch_contrast_only_when_flat():
    flat = np.full((10, 10), 100, np.uint8)
    flat[:, 5:] = 140  # p10 = 100, p90 = 140: contrast 40 / 240 < 0.5 -> (v - 100 + 25) x 200 / 40, clipped
    stretched = stretch_contrast(flat, 0.5)
    assert stretched.dtype == np.uint8 and np.unique(stretched).tolist() == [125, 255]
    crisp = np.zeros((10, 10), np.uint8)
    crisp[:, 5:] = 255
    assert stretch_contrast(crisp, 0.5) is crisp


def one_hot_scores(path: str, width: int) -> torch.Tensor:
    """(1,T,97) scores whose argmax spells ``path`` ('-' = blank), blanks after it."""
    steps = width // 4 - 1
    classes = [0 if c == "-" else CHARACTERS.index(c) + 1 for c in path] + [0] * (steps - len(path))
    return F.one_hot(torch.tensor(classes), 97).float()[None] * 20


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("--SS-TT-OO-PP--", "STOP"),  # repeats collapse
        ("a-a", "aa"),
        ("aa", "a"),  # a blank keeps a repeated character; no blank merges it
        ("2-0-2-4", "2024"),
        ("n o", "n o"),
        ("€5", "€5"),  # digits, the space and the euro are characters
        ("----", ""),
    ],
)
def test_greedy_ctc_decoding(path, text, monkeypatch):
    model = EasyOCRRecognizer(output_channel=32, hidden_size=16)
    monkeypatch.setattr(model, "forward", lambda x: one_hot_scores(path, x.shape[3]))
    ((read, confidence),) = model.recognize([torch.rand(3, 16, 40)], return_confidence=True)
    assert read == text
    assert confidence == (0.0 if not text else pytest.approx(1.0, abs=1e-6))


def test_recognize_takes_lists_and_batches_and_restores_training_flags(monkeypatch):
    model = EasyOCRRecognizer(output_channel=32, hidden_size=16)
    model.train()
    model.SequenceModeling[0].eval()
    widths = []
    original = model.forward
    monkeypatch.setattr(model, "forward", lambda x: widths.append(x.shape[3]) or original(x))
    texts = model.recognize([torch.rand(3, 30, 90), torch.rand(3, 40, 20), torch.rand(1, 16, 16)], contrast_threshold=0)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts) and widths == [192, 128, 64]
    assert model.training and not model.SequenceModeling[0].training and model.Prediction.training
    assert len(model.recognize(torch.rand(2, 3, 32, 64))) == 2
    with pytest.raises(ValueError, match=r"\(B,3,h,w\)"):
        model.recognize(torch.rand(3, 32, 64))


def test_low_confidence_reads_again_with_stretched_contrast(monkeypatch):
    model = EasyOCRRecognizer(output_channel=32, hidden_size=16)
    inputs = []
    monkeypatch.setattr(
        model, "forward", lambda x: inputs.append(x) or one_hot_scores("ab", x.shape[3]) * 0
    )  # uniform: confidence ~0
    model.recognize([torch.full((3, 20, 40), 0.5) + torch.rand(3, 20, 40) * 0.02])
    assert len(inputs) == 2 and not torch.equal(inputs[0], inputs[1])
    inputs.clear()
    model.recognize([torch.rand(3, 20, 40)], contrast_threshold=0)
    assert len(inputs) == 1


# ------------------------------------------------------------------------------------- released weights
WORDS = ["STOP", "Main", "Street", "2024", "Exit 7"]


def word_crop(text: str, font_size: int = 32, pad: int = 6) -> torch.Tensor:
    """``text`` in dark ink on a light, slightly noisy background, tightly cropped with ``pad`` px: (3,h,w) in [0,1]."""
    font = load_font("default", font_size)
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=font)
    rng = np.random.default_rng(len(text))
    size = (bottom - top + 2 * pad, right - left + 2 * pad)
    image = Image.fromarray(np.clip(rng.normal(230, 6, (*size, 3)), 0, 255).astype(np.uint8))
    ImageDraw.Draw(image).text((pad - left, pad - top), text, font=font, fill=(30, 20, 70))
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255


@pytest.fixture(scope="module")
def pretrained() -> EasyOCRRecognizer:
    return released_ocr_model("easyocr_en")


@pytest.mark.weights
@needs_ocr_weights
def test_pretrained_reads_rendered_words(pretrained):
    assert pretrained.recognize([word_crop(word) for word in WORDS]) == WORDS
    assert pretrained.recognize([word_crop("Street", font_size=18)]) == ["Street"]


@pytest.mark.weights
@needs_ocr_weights
def test_pretrained_reads_the_words_craft_finds(pretrained):
    from tests.test_craft import render_words

    detector = zoo.create_model("craft", pretrained=True).eval()
    image, placed = render_words()
    (boxes,) = detector.detect(image[None])
    crops = []
    for box in sorted(
        boxes, key=lambda b: (round(float(b[:, 1].mean()) / 40), float(b[:, 0].mean()))
    ):  # rows, then left to right
        x0, y0 = np.floor(box.min(axis=0)).astype(int)
        x1, y1 = np.ceil(box.max(axis=0)).astype(int)
        crops.append(image[:, max(y0, 0) : y1, max(x0, 0) : x1])
    assert pretrained.recognize(crops) == [text for text, _ in placed]
