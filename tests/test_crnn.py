"""CRNN (zoo.recognition.crnn): the official crnn.pytorch state_dict names, loading a plain .pth,
greedy CTC decoding, TATT's preprocessing in ``recognize``, and the word-accuracy helpers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo.metrics.recognition import str_filt, word_correct
from zoo.recognition.crnn import ALPHABET, CRNN, ctc_greedy_decode

LSTM_TENSORS = [
    f"{kind}_{part}_l0{suffix}"
    for suffix in ("", "_reverse")
    for kind, part in (("weight", "ih"), ("weight", "hh"), ("bias", "ih"), ("bias", "hh"))
]
BATCHNORM_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
# meijieru/crnn.pytorch models/crnn.py, CRNN(32, 1, 37, 256): cnn.conv{i} with cnn.batchnorm{i} after
# conv 2, 4 and 6, then rnn = Sequential(BidirectionalLSTM(512, 256, 256), BidirectionalLSTM(256, 256, 37)).
OFFICIAL_KEYS = [
    key
    for i in range(7)
    for key in [f"cnn.conv{i}.weight", f"cnn.conv{i}.bias"]
    + ([f"cnn.batchnorm{i}.{t}" for t in BATCHNORM_TENSORS] if i in (2, 4, 6) else [])
] + [
    key
    for j in range(2)
    for key in [f"rnn.{j}.rnn.{t}" for t in LSTM_TENSORS] + [f"rnn.{j}.embedding.weight", f"rnn.{j}.embedding.bias"]
]
CHANNELS = (1, 64, 128, 256, 256, 512, 512, 512)


def randomized_model() -> CRNN:
    """A CRNN in eval mode whose batch-norm statistics are not the identity, so that loading them matters."""
    torch.manual_seed(0)
    model = CRNN()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    return model.eval()


def one_hot_scores(*paths: str) -> torch.Tensor:
    """(T,B,37) scores whose argmax spells each path ('-' = blank), one path per batch item."""
    indices = torch.tensor([[0 if c == "-" else ALPHABET.index(c) + 1 for c in path] for path in paths]).t()
    return F.one_hot(indices, len(ALPHABET) + 1).float() * 5 + torch.rand(*indices.shape, len(ALPHABET) + 1)


def test_state_dict_keys_are_the_official_ones():
    state = CRNN().state_dict()
    assert list(state) == OFFICIAL_KEYS
    for i in range(7):
        kernel = 2 if i == 6 else 3
        assert state[f"cnn.conv{i}.weight"].shape == (CHANNELS[i + 1], CHANNELS[i], kernel, kernel)
    assert state["rnn.0.rnn.weight_ih_l0"].shape == (4 * 256, 512) and state[
        "rnn.1.rnn.weight_ih_l0_reverse"
    ].shape == (4 * 256, 256)
    assert state["rnn.0.embedding.weight"].shape == (256, 512) and state["rnn.1.embedding.weight"].shape == (37, 512)


def test_parameter_count_is_the_registered_one():
    assert sum(p.numel() for p in CRNN().parameters()) == zoo.model_info("crnn").params == 8_331_301
    info = zoo.model_info("crnn")
    assert info.task == "recognition" and info.inputs == ("image",)


@pytest.mark.parametrize("counters", [True, False], ids=["current", "pre-0.4.1 file without num_batches_tracked"])
def test_a_plain_pth_loads_and_gives_the_same_scores(tmp_path, counters):
    source = randomized_model()
    state = source.state_dict()
    if not counters:  # the released crnn.pth was converted in 2017, before batch-norm counters existed
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "crnn.pth"
    torch.save(state, path)
    model = zoo.create_model("crnn", pretrained=path).eval()
    x = torch.rand(2, 1, 32, 100)
    with torch.no_grad():
        expected, scores = source(x), model(x)
    assert scores.shape == (26, 2, 37)
    assert (scores - expected).abs().max() < 1e-6


def test_ctc_greedy_decode_collapses_repeats_then_drops_blanks():
    assert ctc_greedy_decode(one_hot_scores("aa-b----", "a-a-----", "--------", "hhe-l-lo")) == [
        "ab",
        "aa",
        "",
        "hello",
    ]
    assert ctc_greedy_decode(one_hot_scores("--hh-e-ll-l-oo--1")) == ["hello1"]
    with pytest.raises(ValueError, match="37"):
        ctc_greedy_decode(torch.zeros(5, 1, 10))


def test_recognize_preprocesses_as_tatt_and_keeps_the_training_flag():
    model = randomized_model().train()
    model.cnn.batchnorm4.eval()  # a mixed state, restored as it was
    images = torch.rand(3, 3, 20, 75)
    seen = []
    hook = model.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    texts = model.recognize(images)
    hook.remove()
    resized = F.interpolate(images, size=(32, 100), mode="bicubic", align_corners=False)  # not clipped, as TATT
    grey = 0.299 * resized[:, 0:1] + 0.587 * resized[:, 1:2] + 0.114 * resized[:, 2:3]
    assert len(seen) == 1 and seen[0].shape == (3, 1, 32, 100) and torch.allclose(seen[0], grey, atol=1e-6)
    assert model.training and model.rnn.training and not model.cnn.batchnorm4.training  # restored
    assert all(
        torch.equal(v, before[k]) for k, v in model.state_dict().items()
    )  # ran in eval mode: statistics untouched
    model.eval()
    with torch.no_grad():
        assert (
            texts == ctc_greedy_decode(model(grey)) and len(texts) == 3 and all(set(t) <= set(ALPHABET) for t in texts)
        )
    with pytest.raises(ValueError, match=r"\(B,3,H,W\)"):
        model.recognize(torch.rand(3, 1, 20, 75))


def test_str_filt_and_word_correct():
    assert str_filt("Hello, World! 42") == "helloworld42"
    correct = word_correct(["Hello!", "he11o", "", "A-B"], ["hello", "hello", "!!", "ab"])
    assert correct.dtype == torch.float32 and correct.tolist() == [1.0, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError):
        word_correct(["a"], [])
