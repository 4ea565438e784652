"""PIP: released configuration and loading, prompt selection, selective top-m interaction, losses,
all-in-one data layouts, training (both backbones, blind sensor) and per-task evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from datamodules.restoration import (
    NOISE_SIGMAS,
    REPEATS,
    TASKS,
    AllInOneDataModule,
    AllInOneLayout,
    SyntheticRestorationDataModule,
    SyntheticRestorationDataset,
)
from tests.conftest import read_metrics, run_tool
from tests.restoration_fixtures import SIZE, make_airnet_test, make_promptir, make_raw
from zoo.metrics import psnr, ycbcr_y
from zoo.pip.model import PIPOutput, TopMCrossBlock, degradation_weights, transposed_attention
from zoo.pip.module import LossSpikeScaler, PIPModule

TINY = dict(
    dim=8,
    num_blocks=[1, 1, 1, 1],
    num_refinement_blocks=1,
    heads=[1, 2, 2, 2],
    prompt_dims=[16, 16, 16],
    prompt_sizes=[8, 4, 2],
)
TINY_NAF = dict(
    width=8,
    enc_blk_nums=[1, 1, 1, 1],
    middle_blk_num=1,
    dec_blk_nums=[1, 1, 1, 1],
    prompt_dims=[8, 16, 16, 16],
    prompt_sizes=[8, 4, 2, 2],
    interaction_heads=2,
)
PIP_TINY = [
    "profile=full",
    "data.size=32",
    "data.train_samples=10",
    "data.val_samples=5",
    "data.val_batch_size=5",
    "data.batch_size=2",
    "data.num_workers=0",
    "trainer.log_every_n_steps=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.max_steps=3",
    "trainer.val_check_interval=3",
    "model.scheduler.warmup_steps=1",
]
# key -> shape in the official PIPNet_Restormer_onskip_inter state_dict (src/net/PIP_Net.py, released config)
OFFICIAL_SHAPES = {
    "prompt1.detask_prompt_param": (1, 5, 64, 1, 1),
    "prompt1.low_prompt_param": (1, 64, 64, 64),
    "prompt3.low_prompt_param": (1, 256, 16, 16),
    "prompt2.LGM.attn.temperature": (2, 1, 1),
    "prompt2.LGM.norm12.body.bias": (128,),
    "prompt3.outconv.weight": (256, 256, 3, 3),
    "low_prompt_interaction_level1.prompt_transformer_cross.attn.attn4": (1,),
    "low_prompt_interaction_level1.prompt_transformer_cross.reduce_channel.weight": (48, 64, 1, 1),
    "low_prompt_interaction_level3.prompt_transformer_cross.ffn.project_in.weight": (1020, 192, 1, 1),
    "chnl_reduce3.weight": (192, 384, 1, 1),
    "reduce_noise_channel_3.weight": (192, 448, 1, 1),
    "reduce_chan_level3.weight": (192, 288, 1, 1),
    "up4_3.body.0.weight": (384, 192, 3, 3),
    "latent.7.attn.temperature": (8, 1, 1),
    "encoder_level1.0.ffn.project_in.weight": (254, 48, 1, 1),
    "refinement.3.norm2.body.weight": (96,),
    "output.weight": (3, 96, 3, 3),
}


# ------------------------------------------------------------------------------------------ network
def test_released_configuration_parameters_and_keys():
    model = zoo.create_model("pip")
    assert sum(p.numel() for p in model.parameters()) == 27_429_510
    state = model.state_dict()
    assert {k: tuple(state[k].shape) for k in OFFICIAL_SHAPES} == OFFICIAL_SHAPES
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert frozen == [
        f"reduce_noise_channel_{level}.weight" for level in (1, 2, 3)
    ]  # unused upstream: no DDP unused parameters


@pytest.mark.parametrize("name", ["pip", "pip_nafnet"])
def test_every_trainable_parameter_gets_a_gradient(name):
    """What DDP without ``find_unused_parameters`` needs: a training step reaches every trainable parameter
    (the legacy convolutions are frozen; absent classes' prompts are rows of one tensor)."""
    model = zoo.create_model(name, sensor=True, **(TINY if name == "pip" else TINY_NAF))
    labels = torch.tensor([1, 1])  # one class only
    outputs = model.forward_train(torch.rand(2, 3, 32, 32), labels)
    (outputs.restored.mean() + torch.nn.functional.cross_entropy(outputs.sensor_logits, labels)).backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []


def _saved_activation_bytes(model: torch.nn.Module, image: torch.Tensor) -> tuple[int, PIPOutput]:
    """Bytes of the distinct tensors autograd saves for the backward pass of one training forward (not the
    parameters), with the output."""
    storages = {}

    def pack(tensor):
        if tensor.grad_fn is not None or not tensor.requires_grad:
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = model.forward_train(image, torch.tensor([1, 3]))
    return sum(storages.values()), output


@pytest.mark.parametrize("name", ["pip", "pip_nafnet"])
def test_checkpointing_gives_the_same_outputs_and_gradients_for_a_fraction_of_the_memory(name):
    """model.net.checkpointing (on in the full profile): blocks and PIP modulations recomputed in the backward."""
    kwargs = dict(sensor=True, **(TINY if name == "pip" else TINY_NAF))
    torch.manual_seed(0)
    plain = zoo.create_model(name, **kwargs).train()
    checkpointed = zoo.create_model(name, checkpointing=True, **kwargs).train()
    checkpointed.load_state_dict(plain.state_dict())
    image = torch.rand(2, 3, 64, 64)
    results = {}
    for label, model in (("plain", plain), ("checkpointed", checkpointed)):
        saved, outputs = _saved_activation_bytes(model, image)
        (outputs.restored.square().mean() + outputs.sensor_logits.mean()).backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        results[label] = saved, outputs.restored.detach(), grads
    (saved, restored, grads), (saved_ck, restored_ck, grads_ck) = results["plain"], results["checkpointed"]
    assert (restored_ck - restored).abs().max() <= 1e-5
    assert grads.keys() == grads_ck.keys() and len(grads) == sum(p.requires_grad for p in plain.parameters())
    assert max(float((grads[n] - grads_ck[n]).abs().max()) for n in grads) <= 1e-5
    assert saved_ck < saved / 4, (saved_ck, saved)  # pip at (2,3,128,128): 5,959 MB -> 217 MB
    with torch.no_grad():  # inference: nothing to checkpoint, the same numbers
        assert torch.equal(checkpointed.eval()(image, 2), plain.eval()(image, 2))


@pytest.mark.parametrize("wrapped", [True, False])
def test_official_checkpoint_formats_load(tmp_path, wrapped):
    torch.manual_seed(0)
    source = zoo.create_model("pip", **TINY).eval()
    path = tmp_path / "net.pkl"
    torch.save({"params": source.state_dict(), "epoch": 3} if wrapped else source.state_dict(), path)
    loaded = zoo.create_model("pip", pretrained=str(path), **TINY).eval()
    image = torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        assert torch.equal(source.forward_train(image, 2).restored, loaded.forward_train(image, 2).restored)


def test_prompt_selection_by_class_and_mixed_pairs():
    weights = degradation_weights(torch.tensor([[0, 3], [2, 2]]), 2, 5, torch.device("cpu"))
    assert torch.equal(weights, torch.tensor([[0.5, 0, 0, 0.5, 0], [0, 0, 1.0, 0, 0]]))
    assert torch.equal(degradation_weights(4, 3, 5, torch.device("cpu")), torch.eye(5)[[4, 4, 4]])
    with pytest.raises(ValueError, match="0..4"):
        degradation_weights(torch.tensor([5]), 1, 5, torch.device("cpu"))
    torch.manual_seed(0)
    model = zoo.create_model("pip", **TINY).eval()
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        by_pair = model.forward_train(image, torch.tensor([[0, 3]])).restored
        by_weights = model.forward_train(image, torch.tensor([[0.5, 0, 0, 0.5, 0]])).restored
        single = [model.forward_train(image, c).restored for c in (0, 3)]
    assert (
        torch.allclose(by_pair, by_weights)
        and not torch.allclose(by_pair, single[0])
        and not torch.allclose(single[0], single[1])
    )


def test_degradation_prompt_is_the_selected_prompt_over_T():
    """The official 1/T scaling: the one-hot-weighted prompts are averaged over the T classes."""
    torch.manual_seed(0)
    model = zoo.create_model("pip", **TINY)
    pip = model.prompt1
    seen = {}
    pip.LGM.register_forward_hook(lambda module, args, out: seen.update(kv=args[1]))
    feature = torch.rand(1, 8, 16, 16)
    pip(feature, torch.eye(5)[[2]])
    resized = torch.nn.functional.interpolate(feature, (8, 8), mode="bilinear", align_corners=False)
    expected = (
        pip.detask_prompt_param[0, 2] / 5 * torch.cat([resized, torch.zeros(1, 8, 8, 8)], dim=1)
    )  # 8 channels padded to 16
    assert torch.allclose(seen["kv"], expected)


def test_selective_interaction_passes_extra_channels_and_reduces_narrow_features():
    torch.manual_seed(0)
    wide = TopMCrossBlock(feat_dim=12, prompt_dim=8, heads=2, expansion=2.66, bias=False)
    torch.nn.init.zeros_(wide.ffn.project_out.weight)  # isolate the attention part
    feature, prompt = torch.randn(2, 12, 6, 6), torch.randn(2, 8, 6, 6)
    out = wide(feature, prompt)
    normalised = wide.norm11(feature)
    assert torch.allclose(out[:, 8:], normalised[:, 8:]) and not torch.allclose(out[:, :8], normalised[:, :8])
    narrow = TopMCrossBlock(feat_dim=4, prompt_dim=8, heads=2, expansion=2.66, bias=False)
    assert narrow.reduce_channel is not None and narrow(torch.randn(2, 4, 6, 6), prompt).shape == (2, 4, 6, 6)


def test_top_m_attention_keeps_the_top_half_for_the_first_mask():
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 8, 4, 4), torch.randn(1, 8, 4, 4), torch.randn(1, 8, 4, 4)
    temperature = torch.ones(2, 1, 1)
    weights = tuple(torch.tensor([w]) for w in (1.0, 0.0, 0.0, 0.0))
    out = transposed_attention(q, k, v, 2, temperature, weights)
    qh, kh, vh = (t.reshape(1, 2, 4, 16) for t in (q, k, v))
    attn = torch.nn.functional.normalize(qh, dim=-1) @ torch.nn.functional.normalize(kh, dim=-1).transpose(-2, -1)
    threshold = attn.topk(2, dim=-1).values[..., -1:]  # C/2 = 2 of 4 channels per head
    expected = (attn.masked_fill(attn < threshold, float("-inf")).softmax(-1) @ vh).reshape(1, 8, 4, 4)
    assert torch.allclose(out, expected, atol=1e-6)


def test_orthogonality_regulariser_and_loss_spike_scaler():
    model = zoo.create_model("pip", **TINY)
    with torch.no_grad():
        for level in (1, 2, 3):
            getattr(model, f"prompt{level}").detask_prompt_param.copy_(torch.eye(16)[:5].view(1, 5, 16, 1, 1))
    assert model.orthogonality_loss().item() == 0.0
    with torch.no_grad():
        model.prompt1.detask_prompt_param.fill_(1.0)  # 5 identical prompts: 10 pairs with cos = 1
    assert model.orthogonality_loss().item() == pytest.approx(0.01 * 10)
    scaler = LossSpikeScaler(history=3, factor=5.0)
    assert scaler(torch.tensor(1.0)).item() == 1.0 and scaler(torch.tensor(4.0)).item() == 4.0
    assert scaler(torch.tensor(6.0)).item() == pytest.approx(2.5)  # a spike: 5/2 × the recent minimum


def test_module_predicts_with_the_given_classes_or_blind():
    image, classes = torch.rand(2, 3, 16, 16), torch.tensor([1, 2])
    for blind in (False, True):
        module = PIPModule(net={**TINY, "sensor": True}, blind_eval=blind).eval()
        with torch.no_grad():
            expected = module.net(image, None if blind else classes)
            assert torch.equal(module.predict_batch({"image": image, "degradation": classes}), expected)
    assert not torch.equal(expected, module.net(image, classes))  # the sensor's classes differ from the labels


def test_nafnet_backbone_any_size_and_blind_sensor():
    torch.manual_seed(0)
    model = zoo.create_model("pip_nafnet", sensor=True, **TINY_NAF).eval()
    image = torch.rand(2, 3, 37, 50)
    with torch.no_grad():
        blind, given = model(image), model(image, torch.tensor([1, 2]))
    assert blind.shape == given.shape == image.shape and 0 <= blind.min() and blind.max() <= 1
    with pytest.raises(ValueError, match="sensor=True"):
        zoo.create_model("pip", **TINY)(image)


# --------------------------------------------------------------------------------------------- data
def test_promptir_layout_pairs_labels_and_repeats(tmp_path):
    root = make_promptir(tmp_path / "pip")
    dm = AllInOneDataModule(
        str(root), tasks=["denoise", "derain", "dehaze", "deblur", "enhance"], patch_size=16, num_workers=0
    )
    train = dm.build_dataset("train")
    counts = {"denoise": 2 * len(NOISE_SIGMAS), "derain": 2, "dehaze": 2, "deblur": 1, "enhance": 1}
    assert len(train) == sum(counts[t] * REPEATS[t] for t in counts)
    by_input = {(p.input.name if p.input else p.target.name): p for p in train.pairs}
    assert by_input["rain-2.png"].target.name == "norain-2.png" and by_input["rain-2.png"].degradation == 1
    assert by_input["0001_0.9_0.16.jpg"].target.name == "0001.jpg" and by_input["0001_0.9_0.16.jpg"].degradation == 2
    assert by_input["a247012.jpg"].input is None and {p.sigma for p in train.pairs if p.degradation == 0} == set(
        NOISE_SIGMAS
    )
    assert by_input["2.png"].degradation == 4 and by_input["GOPR0372_07_00_000047.png"].degradation == 3
    sample = train[0]
    assert sample["image"].shape == (3, 16, 16) and sample["target"].shape == (3, 16, 16)
    tests = {s.pairs[0].set: s for s in dm.build_dataset("test")}
    order = [
        "denoise_bsd68_15",
        "denoise_bsd68_25",
        "denoise_bsd68_50",
        "derain_rain100l",
        "dehaze_sots",
        "deblur_gopro",
        "enhance_lol",
    ]
    assert list(tests) == dm.eval_sets("test") == dm.eval_sets("val") == order  # declared sets, in loader order
    assert [batch["set"][0] for batch in dm.val_dataloader()] == [
        name for name in order for _ in tests[name].pairs[: dm.val_size]
    ]
    noisy = tests["denoise_bsd68_50"][0]
    assert noisy["image"].shape == (3, SIZE[0] // 16 * 16, SIZE[1] // 16 * 16)  # centre-cropped to a multiple of 16
    assert torch.equal(noisy["image"], tests["denoise_bsd68_50"][0]["image"])  # seeded test noise
    assert 35 / 255 < (noisy["image"] - noisy["target"]).std() < 55 / 255
    assert tests["dehaze_sots"][0]["degradation"] == 2 and tests["derain_rain100l"][0]["name"] == "rain-1"


def test_airnet_and_raw_layouts(tmp_path):
    airnet = AllInOneDataModule(str(make_airnet_test(tmp_path / "airnet")), num_workers=0)
    sets = {s.pairs[0].set: s.pairs for s in airnet.build_dataset("test")}
    assert sets["derain_rain100l"][0].target.name == "1.png" and sets["dehaze_sots"][0].target.name == "0002.png"
    assert {"denoise_bsd68_15", "denoise_bsd68_25", "denoise_bsd68_50"} <= set(sets)
    raw = AllInOneDataModule(str(make_raw(tmp_path / "raw")), tasks=["deblur", "enhance"], num_workers=0)
    train = raw.build_dataset("train").pairs
    blurred = [p for p in train if p.degradation == 3]
    assert len(blurred) == 2 * REPEATS["deblur"] and sorted({p.input.parent.parent.name for p in blurred}) == [
        "GOPR0372_07_00",
        "GOPR0384_11_01",
    ]
    assert all(
        p.input.parent.parent == p.target.parent.parent for p in train if p.degradation == 3
    )  # paired within a sequence
    assert any(p.degradation == 4 and p.input.parts[-3] == "our485" for p in train)
    assert AllInOneLayout(tmp_path / "raw").test("dehaze")[0][0].target.name == "0003.png"  # SOTS outdoor/{hazy,gt}
    names = [p.name for p in AllInOneLayout(tmp_path / "raw").test("deblur")[0]]
    assert names == ["GOPR0372_07_00_000001", "GOPR0384_11_01_000001"]  # one frame name in two sequences: told apart


def test_training_draws_are_seeded(tmp_path):
    """Crops, noise and flips come from seeded generators: the same seeds draw the same samples, also
    in loader workers (their torch seeds follow the main process's)."""
    root = make_promptir(tmp_path / "pip")

    def draws(seed: int, workers: int = 0) -> list[torch.Tensor]:
        train = AllInOneDataModule(str(root), tasks=["denoise", "derain"], patch_size=16, seed=seed).build_dataset(
            "train"
        )
        torch.manual_seed(1)
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(train, [0, 1, 2, len(train) - 1]),
            batch_size=2,
            num_workers=workers,
            collate_fn=lambda samples: torch.stack([s["image"] for s in samples]),
        )
        return list(loader)

    first, second, other = draws(0), draws(0), draws(1)
    assert all(torch.equal(a, b) for a, b in zip(first, second)) and not any(
        torch.equal(a, b) for a, b in zip(first, other)
    )
    in_workers = draws(0, workers=2)
    assert all(torch.equal(a, b) for a, b in zip(in_workers, draws(0, workers=2)))


def test_unmatched_inputs_are_listed_or_skipped_on_request(tmp_path, caplog):
    root = make_promptir(tmp_path / "pip")
    (root / "data" / "Train" / "Derain" / "rainy" / "rain-7.png").write_bytes(
        (root / "data" / "Train" / "Derain" / "rainy" / "rain-1.png").read_bytes()
    )
    with pytest.raises(ValueError, match="rain-7.png"):
        AllInOneDataModule(str(root), tasks=["derain"]).build_dataset("train")
    kept = AllInOneDataModule(str(root), tasks=["derain"], on_unmatched="skip").build_dataset("train")
    assert len(kept) == 2 * REPEATS["derain"] and "rain-7.png" in caplog.text
    with pytest.raises(FileNotFoundError, match="Train/Derain"):
        AllInOneDataModule(str(tmp_path / "pip" / "data" / "test"), tasks=["derain"]).build_dataset("train")


def test_synthetic_degradations_are_labelled_and_deterministic():
    data = SyntheticRestorationDataset(10, size=32, seed=3)
    samples = [data[i] for i in range(5)]
    assert [s["degradation"] for s in samples] == [0, 1, 2, 3, 4]
    assert [s["set"] for s in samples] == list(TASKS) == SyntheticRestorationDataModule().eval_sets("val")
    assert torch.equal(samples[2]["image"], data[2]["image"])
    assert all((s["image"] - s["target"]).abs().mean() > 0.01 for s in samples)


# ----------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("backbone", ["restormer", "nafnet"])
def test_train_both_backbones_with_the_blind_sensor(backbone, tmp_path):
    net = TINY if backbone == "restormer" else TINY_NAF
    overrides = [f"++model.net.{k}={json.dumps(v).replace(' ', '')}" for k, v in net.items()]
    run = tmp_path / backbone
    run_tool(
        "train.py",
        "zoo=" + {"restormer": "pip", "nafnet": "pip_nafnet"}[backbone],
        *PIP_TINY,
        *overrides,
        f"run_dir={run}",
    )
    rows = read_metrics(run)
    assert any(r.get("train/sensor_accuracy") for r in rows) and any(r.get("train/orthogonality") for r in rows)
    val = next(r for r in rows if r.get("val/psnr"))
    assert 0 <= float(val["val/sensor_accuracy"]) <= 1 and val.get("val/derain/psnr") and val.get("val/enhance/ssim")
    assert sorted(p.name for p in (run / "samples").iterdir()) == sorted(
        f"val_{task}_step0000003.png" for task in TASKS
    )  # a grid per set


def test_y_channel_scores_the_identity_baseline_on_y_too():
    module = PIPModule("pip", net=TINY, y_channel=True)
    image, output, target = torch.rand(3, 2, 3, 16, 16)
    scores = module.score(output, target, {"image": image})
    assert torch.allclose(scores["psnr_identity"], psnr(ycbcr_y(image), ycbcr_y(target)))
    assert torch.allclose(scores["psnr"], psnr(ycbcr_y(output), ycbcr_y(target))) and not torch.allclose(
        scores["psnr_identity"], psnr(image, target)
    )


def test_eval_prints_per_task_rows_on_the_allinone_layout_and_infer_takes_a_degradation(tmp_path):
    overrides = [f"++model.net.{k}={json.dumps(v).replace(' ', '')}" for k, v in TINY.items()]
    run = tmp_path / "run"
    run_tool("train.py", "zoo=pip", *PIP_TINY, *overrides, "trainer.max_steps=1", f"run_dir={run}")
    root = make_promptir(tmp_path / "pip")
    out = tmp_path / "eval"
    result = run_tool(
        "eval.py",
        "zoo=pip",
        "data=allinone",
        f"data.root={root}",
        "data.num_workers=0",
        *overrides,
        f"checkpoint={run / 'checkpoints' / 'last.ckpt'}",
        "save_images=true",
        f"run_dir={out}",
    )
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    for name in ("denoise_bsd68_25", "derain_rain100l", "dehaze_sots"):
        assert np.isfinite(metrics[f"test/{name}/psnr"]) and 0 < metrics[f"test/{name}/ssim"] <= 1
        assert any(
            line.split("│")[1].strip() == name for line in result.stdout.splitlines() if line.count("│") > 3
        )  # one table row per set
    saved = sorted(
        str(p.relative_to(out / "images")) for p in (out / "images").rglob("*.png")
    )  # one image per sample and set
    noisy = [f"denoise_bsd68_{sigma}/test{n:03d}.png" for sigma in NOISE_SIGMAS for n in (1, 2)]
    assert saved == sorted([*noisy, "derain_rain100l/rain-1.png", "dehaze_sots/0001_0.9_0.16.png"])
    hazy = root / "data" / "test" / "dehaze" / "outdoor" / "input"
    outputs = {}
    for degradation in ("haze", "0", None):
        folder = tmp_path / f"infer_{degradation}"
        run_tool(
            "infer.py",
            "--model",
            "pip",
            "--weights",
            str(run / "checkpoints" / "last.ckpt"),
            "--input",
            str(hazy),
            "--out",
            str(folder),
            *(["--degradation", degradation] if degradation else []),
        )
        outputs[degradation] = np.asarray(Image.open(folder / "0001_0.9_0.16.png"))
    assert outputs["haze"].shape == (*SIZE, 3) and not np.array_equal(
        outputs["haze"], outputs["0"]
    )  # the prompt follows the class
