"""GramSR: the release's pipeline reproduced from its three weight files on a tiny random stack saved in
the real layouts (diffusers / transformers), guidance, colour fixes, tiling, our export, the training
hooks and the released configuration's size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import zoo
from tests.conftest import ROOT
from tests.gramsr_fixtures import PIX, SEM, TARGET_NAMES, TEX, write_official_weights, write_stack
from zoo.errors import WeightsError
from zoo.gramsr.model import (
    DINOV3_VITB16,
    SD21_BASE,
    GramSR,
    adain_color_fix,
    export_weights,
    lora_target_modules,
    wavelet_color_fix,
)

GUIDANCE = (0.7, 1.3, 0.5)
pytestmark = pytest.mark.filterwarnings(
    "ignore:Already found a `peft_config` attribute:UserWarning"
)  # several adapters, as the release


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(base, dino, release folder) of a tiny random stack."""
    return write_stack(tmp_path_factory.mktemp("gramsr"))


def build(stack, **kwargs) -> GramSR:
    base, dino, weights = stack
    return zoo.create_model(
        "gramsr", base_model=str(base), dino_model=str(dino), pretrained=str(weights), **{"color_fix": None, **kwargs}
    ).eval()


@pytest.fixture(scope="module")
def model(stack) -> GramSR:
    return build(stack)


@pytest.fixture(scope="module")
def lr() -> torch.Tensor:
    return torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(123))


# ------------------------------------------------------------------- the release, step by step
@torch.no_grad()
def release_pipeline(
    stack, lr: torch.Tensor, guidance: tuple[float, float, float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The release's inference restated with diffusers/peft/transformers calls (independent of zoo.gramsr):
    the pkl's six LoRA configs and tensors, the texture LoRA (suffix targets, alpha = rank) from the
    save_lora_adapter file, the adapter .pth, all seven adapters on; VAE mode · s, UNet at t = 1 on the
    adapter's DINO tokens, z − ε decoded and clamped; guidance as three passes. Returns (plain, guided)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from peft import LoraConfig
    from safetensors.torch import load_file
    from transformers import DINOv3ViTModel

    base, dino_folder, weights = stack
    release = torch.load(weights / "model_12501.pkl", weights_only=True)
    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet")
    for name in PIX + SEM:
        part, kind = name.split("_")[1:]
        config = LoraConfig(
            r=release[f"lora_rank_unet_{kind}"],
            init_lora_weights="gaussian",
            target_modules=release[f"unet_lora_{part}_modules_{kind}"],
        )
        unet.add_adapter(config, adapter_name=name)
    for name, parameter in unet.named_parameters():
        if "lora" in name:
            parameter.copy_(release["state_dict_unet"][name])
    unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=TARGET_NAMES), adapter_name=TEX
    )
    texture = load_file(weights / "lora_weights_dino_53001.safetensors")
    for name, parameter in unet.named_parameters():
        if TEX in name:
            parameter.copy_(texture[name.replace(f".{TEX}", "")])
    unet.set_adapter(PIX + SEM + [TEX])
    vae = AutoencoderKL.from_pretrained(base, subfolder="vae")
    dino = DINOv3ViTModel.from_pretrained(dino_folder)
    adapter_state = torch.load(weights / "adapter_53001.pth", weights_only=True)
    width, hidden = adapter_state["0.weight"].shape
    adapter = torch.nn.Sequential(torch.nn.Linear(hidden, width), torch.nn.ReLU(), torch.nn.Linear(width, width))
    adapter.load_state_dict(adapter_state)

    x = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1) * 2 - 1
    latents = vae.encode(x).latent_dist.mode() * vae.config.scaling_factor
    mean, std = (
        torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
    )
    tokens = adapter(dino((x * 0.5 + 0.5 - mean) / std).last_hidden_state)
    t = torch.tensor([1]).long()
    plain = unet(latents, t, encoder_hidden_states=tokens).sample
    passes = []
    for names in (PIX, PIX + SEM, PIX + SEM + [TEX]):
        unet.set_adapter(names)
        passes.append(unet(latents, t, encoder_hidden_states=tokens).sample)
    l1, l2, l3 = guidance
    guided = l1 * passes[0] + l2 * (passes[1] - passes[0]) + l3 * (passes[2] - passes[1])
    return tuple(
        vae.decode((latents - noise) / vae.config.scaling_factor).sample.clamp(-1, 1) * 0.5 + 0.5
        for noise in (plain, guided)
    )


def test_release_folder_reproduces_the_release_pipeline(stack, model, lr):
    with torch.no_grad():
        plain, guided, all_on = model(lr), model(lr, guidance=GUIDANCE), model(lr, guidance=(1, 1, 1))
    release_plain, release_guided = release_pipeline(stack, lr, GUIDANCE)
    assert plain.shape == (2, 3, 64, 96)
    assert (plain - release_plain).abs().max() < 1e-4 and (guided - release_guided).abs().max() < 1e-4
    assert torch.equal(all_on, plain) and (guided - plain).abs().max() > 1e-2  # the LoRAs matter


def test_state_dict_holds_the_release_tensors_only(stack, model):
    """Our keys: the release's LoRA names under ``unet.`` plus ``adapter.*``; the frozen base is not in it."""
    base, dino, weights = stack
    release = torch.load(weights / "model_12501.pkl", weights_only=True)
    state = model.state_dict()
    assert all("lora" in k or k.startswith("adapter.") for k in state) and len(state) == len(
        model.trainable_state_dict()
    )
    assert {f"unet.{k}" for k in release["state_dict_unet"]} <= set(state)
    assert sum(TEX in k for k in state) == 2 * len({k.split(".lora_")[0] for k in state if TEX in k})
    from diffusers import UNet2DConditionModel

    targets = lora_target_modules(UNet2DConditionModel.from_pretrained(base, subfolder="unet"))
    assert [targets[p] for p in ("encoder", "decoder", "others")] == [
        release[f"unet_lora_{p}_modules_pix"] for p in ("encoder", "decoder", "others")
    ]
    fresh = GramSR(base_model=str(base), dino_model=str(dino), color_fix=None).eval()
    fresh.load_state_dict(state)  # strict: the base's keys are neither expected nor missing
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def test_guidance_runs_only_the_passes_it_needs(model, lr, monkeypatch):
    calls = {"unet": 0, "encode": 0, "decode": 0}
    for part, module, method in (
        ("unet", model.unet, "forward"),
        ("encode", model.vae, "encode"),
        ("decode", model.vae, "decode"),
    ):
        original = getattr(module, method)
        monkeypatch.setattr(
            module, method, lambda *a, _o=original, _p=part, **k: calls.__setitem__(_p, calls[_p] + 1) or _o(*a, **k)
        )
    x = lr[:1, :, :8, :8]
    outputs = {}
    for guidance, passes in (
        (None, 1),
        ((1, 1, 1), 1),
        ((1, 1, 0), 1),
        ((1, 0, 0), 1),
        (GUIDANCE, 3),
        ((0.5, 0.5, 0.5), 1),
    ):
        calls.update(unet=0, encode=0, decode=0)
        with torch.no_grad():
            outputs[guidance] = model(x, guidance=guidance)
        assert calls == {"unet": passes, "encode": 1, "decode": 1}, (guidance, calls)
    with torch.no_grad(), model.adapters("pix", "sem"):
        assert torch.allclose(model(x), outputs[(1, 1, 0)], atol=1e-6)  # l3 = 0: the pixel + semantic LoRAs
    with torch.no_grad(), model.adapters("pix"):
        assert torch.allclose(model(x), outputs[(1, 0, 0)], atol=1e-6)
    assert model.active_sets == ("pix", "sem", "tex") and all(p.requires_grad for _, p in model._lora_parameters)


def test_colour_fixes_follow_the_release(stack, model, lr):
    output, reference = torch.rand(2, 3, 40, 56), torch.rand(2, 3, 40, 56)
    flat, ref = output.flatten(2), reference.flatten(2)
    std = lambda t: (t.var(dim=2) + 1e-5).sqrt()[..., None, None]  # torch.var is unbiased, as the release
    expected = (output - flat.mean(2)[..., None, None]) / std(flat) * std(ref) + ref.mean(2)[..., None, None]
    assert torch.allclose(adain_color_fix(output, reference), expected, atol=1e-6)

    def decompose(image):  # the release's form: five à-trous levels, the high frequencies accumulated
        kernel = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]).div(16)[None, None].repeat(3, 1, 1, 1)
        high = torch.zeros_like(image)
        for level in range(5):
            low = F.conv2d(F.pad(image, (2**level,) * 4, mode="replicate"), kernel, groups=3, dilation=2**level)
            high, image = high + image - low, low
        return high, image

    assert torch.allclose(
        wavelet_color_fix(output, reference), decompose(output)[0] + decompose(reference)[1], atol=1e-5
    )
    upsampled = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    fixed = build(stack, color_fix="adain")  # the release's default, against the bicubic upsampling
    with torch.no_grad():
        assert torch.allclose(fixed(lr), adain_color_fix(model(lr), upsampled).clamp(0, 1), atol=1e-6)


# ------------------------------------------------------------------------------------- tiling
def test_tiles_that_do_not_cut_give_the_whole_image(stack, lr):
    whole = build(stack, tile_size=None, vae_tile_size=None)
    tiled = build(stack, tile_size=96, tile_overlap=32, vae_tile_size=96)  # 64x96 output: one tile
    with torch.no_grad():
        assert torch.equal(tiled(lr), whole(lr))


def test_each_latent_tile_is_conditioned_on_its_own_region(model, monkeypatch):
    """With pointwise stand-ins for DINO and the UNet, blended tiles reproduce the whole image: every
    latent tile got the HR pixels of exactly its own region."""
    monkeypatch.setattr(model, "condition", lambda x: x)  # the "tokens" are the tile's HR pixels
    monkeypatch.setattr(
        model, "guided_noise", lambda z, pixels, guidance: z * F.pixel_unshuffle(pixels, model.vae_factor)[:, :4]
    )
    latents, x = torch.randn(1, 4, 40, 56), torch.randn(1, 3, 80, 112)
    whole = model._noise(latents, x, None)
    monkeypatch.setattr(model, "tile_size", 32)
    monkeypatch.setattr(model, "tile_overlap", 8)
    assert torch.allclose(model._noise(latents, x, None), whole, atol=1e-5)


def test_a_large_input_runs_tiled(stack, monkeypatch):
    model = build(stack, tile_size=64, tile_overlap=16, vae_tile_size=64, tiling="always")
    sizes = {"unet": set(), "dino": set()}
    unet_forward, dino_forward = model.unet.forward, model.dino.forward
    monkeypatch.setattr(
        model.unet, "forward", lambda z, *a, **k: sizes["unet"].add(tuple(z.shape[-2:])) or unet_forward(z, *a, **k)
    )
    monkeypatch.setattr(
        model.dino,
        "forward",
        lambda pixel_values: (
            sizes["dino"].add(tuple(pixel_values.shape[-2:])) or dino_forward(pixel_values=pixel_values)
        ),
    )
    tiled_encode, tiled_decode = [], []
    monkeypatch.setattr(
        model.vae, "_tiled_encode", lambda x, _f=model.vae._tiled_encode: tiled_encode.append(x.shape) or _f(x)
    )
    monkeypatch.setattr(
        model.vae,
        "tiled_decode",
        lambda z, *a, _f=model.vae.tiled_decode, **k: tiled_decode.append(z.shape) or _f(z, *a, **k),
    )
    lr = torch.rand(1, 3, 40, 52)  # 160x208 output, 80x104 latents
    with torch.no_grad():
        output = model(lr)
    assert output.shape == (1, 3, 160, 208) and torch.isfinite(output).all() and 0 <= output.min() and output.max() <= 1
    assert sizes["unet"] == {(32, 32)} and sizes["dino"] == {(64, 64)} and tiled_encode and tiled_decode


def test_tiles_by_need(stack, monkeypatch):
    """tiling="auto" (the default): the whole image when it fits the free memory, tiles when it does not; "always"
    and "never" force either."""
    lr = torch.rand(1, 3, 40, 52)  # 160x208 output: larger than the 64 px tiles
    options = dict(tile_size=64, tile_overlap=16, vae_tile_size=64)
    outputs = {}
    with torch.no_grad():
        for tiling in ("always", "never"):
            outputs[tiling] = build(stack, tiling=tiling, **options)(lr)
        auto = build(stack, **options)
        assert auto.tiling == "auto"
        for free, expected in ((2**40, "never"), (2**20, "always"), (None, "never")):  # None: unknown, small image
            monkeypatch.setattr(auto, "free_memory", lambda device, _free=free: _free)
            assert torch.equal(auto(lr), outputs[expected]), (free, expected)
    assert (outputs["always"] - outputs["never"]).abs().max() > 1e-4  # tiles are another computation
    x = torch.zeros(2, 3, 1024, 1024)
    monkeypatch.setattr(auto, "free_memory", lambda device: None)
    assert auto.fits_whole(x) and not auto.fits_whole(torch.zeros(1, 3, 4096, 4096))
    monkeypatch.setattr(auto, "free_memory", lambda device: 6 * 2**30)  # 2 x 1024² fp32: 2 x 4 x 1.8 GiB needed
    assert not auto.fits_whole(x) and auto.fits_whole(x[:1, :, :512])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert auto.fits_whole(x[:1])  # bf16: 1.5 x 0.85 GiB per 512²


def test_merged_loras_give_the_unmerged_outputs(stack, lr):
    """merge_loras (the default): one-pass inference on LoRA-merged UNet weights, the same outputs within float
    rounding; several passes, training and other adapters unmerge, exactly back to the base weights."""
    merged, plain = build(stack), build(stack, merge_loras=False)
    base = {n: p.clone() for n, p in merged.unet.named_parameters() if ".lora_" not in n}
    with torch.no_grad():
        for guidance in (None, (1, 1, 0), (0.5, 0.5, 0.5)):
            difference = (merged(lr, guidance=guidance) - plain(lr, guidance=guidance)).abs().max()
            assert difference < 1e-4 and merged._merged is not None, (guidance, difference)
            assert all(layer.merged for layer in merged._tuner_layers)
        assert torch.equal(merged(lr, guidance=GUIDANCE), plain(lr, guidance=GUIDANCE))  # 3 passes: unmerged
        assert merged._merged is None and not any(layer.merged for layer in merged._tuner_layers)
        merged(lr)
        with merged.adapters("pix"):
            assert (merged(lr) - plain(lr, guidance=(1, 0, 0))).abs().max() < 1e-4 and merged._merged == ("pix",)
        assert merged._merged is None  # the context restored the adapters, unmerged
        merged(lr)
    merged.train()
    assert merged._merged is None and all(
        torch.equal(p, base[n]) for n, p in merged.unet.named_parameters() if ".lora_" not in n
    )
    merged.eval()
    with torch.no_grad():
        merged(lr)
    merged.load_state_dict(plain.state_dict())  # new LoRA weights: unmerged first
    assert merged._merged is None
    with torch.enable_grad():  # gradients: the LoRA layers themselves
        merged(lr).mean().backward()
    assert merged._merged is None and any(p.grad is not None for _, p in merged._lora_parameters)


def test_every_attention_is_scaled_dot_product_attention(model):
    from diffusers.models.attention_processor import AttnProcessor2_0

    for part in (model.unet, model.vae):
        processors = part.attn_processors
        assert processors and all(isinstance(p, AttnProcessor2_0) for p in processors.values()), set(
            type(p).__name__ for p in processors.values()
        )
    assert model.dino.config._attn_implementation == "sdpa"


def test_bf16_base_weights(stack, lr):
    """base_dtype="bf16": the frozen UNet, VAE and DINOv3 in bf16 weights, the LoRAs and the adapter in fp32."""
    half, full = build(stack, base_dtype="bf16"), build(stack)
    assert half.vae.dtype == half.dino.dtype == half.unet.conv_in.base_layer.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for _, p in half._lora_parameters) and half.dtype == torch.float32
    assert half.state_dict().keys() == full.state_dict().keys()
    with torch.no_grad():
        output, reference = half(lr), full(lr)
    assert output.dtype == torch.float32 and (output - reference).abs().mean() < 0.02
    out = half.train().forward_train(lr[:1])
    out.output.mean().backward()
    assert any(p.grad is not None for _, p in half._lora_parameters)


# --------------------------------------------------------------------------------- our export
def test_export_holds_the_own_weights_and_loads_back(stack, model, lr, tmp_path):
    from safetensors import safe_open

    path = export_weights(model, tmp_path / "gramsr-test.safetensors", tag="test")
    with safe_open(str(path), framework="pt") as handle:
        keys, metadata = list(handle.keys()), handle.metadata()
    assert keys and all("lora" in k or k.startswith("adapter.") for k in keys)
    assert path.stat().st_size < 2 * sum(v.numel() * 4 for v in model.state_dict().values())
    recorded = json.loads(metadata["rezoo"])
    base = json.loads(metadata["gramsr_base"])
    assert (
        recorded["model"] == "gramsr"
        and recorded["kwargs"]["base_model"] == str(stack[0])
        and base["dino_model"] == str(stack[1])
    )
    assert str(stack[0] / "unet" / "diffusion_pytorch_model.safetensors") in base["sha256"]
    loaded = zoo.create_model("gramsr", pretrained=str(path)).eval()  # the base ids come from the file
    with torch.no_grad():
        assert torch.equal(loaded(lr), model(lr))


def test_base_files_are_checked_against_the_manifest(stack, tmp_path, monkeypatch):
    """The manifest's bases: records: each hashed base file is compared with its recorded sha256 (a mismatch warns,
    none recorded gives null), and a recorded revision is what loading that hub id asks for."""
    import yaml
    from diffusers import UNet2DConditionModel

    from zoo.hub import sha256_file

    base, dino, _ = stack
    unet_file, vae_file = (base / part / "diffusion_pytorch_model.safetensors" for part in ("unet", "vae"))
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "models": {},
                "bases": {
                    "sd21_base": {
                        "hf": {"repo_id": "mirror/sd21-base", "revision": "0123abc"},
                        "files": {
                            "unet/diffusion_pytorch_model.safetensors": sha256_file(unet_file),
                            "vae/diffusion_pytorch_model.safetensors": "0" * 64,
                        },
                    },
                    "dinov3_vitb16": {"files": {"model.safetensors": None}},
                },
            }
        )
    )
    monkeypatch.setenv("REZOO_MANIFEST", str(manifest))
    fresh = zoo.create_model("gramsr", base_model=str(base), dino_model=str(dino))
    with pytest.warns(UserWarning, match="vae.*differs from the manifest's sd21_base record"):
        record = fresh.base_record()
    verified = record["verified"]
    assert (
        verified[str(unet_file)] is True and verified[str(vae_file)] is False and set(verified) == set(record["sha256"])
    )
    assert [v for k, v in verified.items() if k.startswith(str(dino))] == [None]

    asked = []

    def offline(cls, *args, **kwargs):
        asked.append(kwargs.get("revision"))
        raise OSError("offline")

    monkeypatch.setattr(UNet2DConditionModel, "from_pretrained", classmethod(offline))
    for hub_id, revision in (("mirror/sd21-base", "0123abc"), ("someone/else", None)):
        with pytest.raises(WeightsError, match=hub_id):
            zoo.create_model("gramsr", base_model=hub_id, dino_model=str(dino))
        assert asked.pop() == revision


def test_hub_entrypoint_takes_the_base_as_kwargs(stack, model, lr):
    base, dino, weights = stack
    hub = torch.hub.load(
        str(ROOT),
        "gramsr",
        source="local",
        base_model=str(base),
        dino_model=str(dino),
        pretrained=str(weights),
        color_fix=None,
    )
    with torch.no_grad():
        assert torch.equal(hub.eval()(lr), model(lr))


def test_user_errors(stack, tmp_path):
    base, dino, weights = stack
    with pytest.raises(WeightsError, match="needs its frozen base.*Manojb/stable-diffusion-2-1-base"):
        zoo.create_model("gramsr")
    with pytest.raises(WeightsError, match="cannot load SD-2.1-base from"):
        zoo.create_model("gramsr", base_model=str(tmp_path / "absent"), dino_model=str(dino))
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "model_12501.pkl").write_bytes((weights / "model_12501.pkl").read_bytes())
    with pytest.raises(WeightsError, match=r"not a GramSR release folder.*adapter_\*\.pth: none"):
        zoo.create_model("gramsr", base_model=str(base), dino_model=str(dino), pretrained=str(tmp_path / "partial"))
    other = write_official_weights(tmp_path / "rank8", base, dino, rank=8)
    with pytest.raises(WeightsError, match="shape mismatches"):
        zoo.create_model("gramsr", base_model=str(base), dino_model=str(dino), pretrained=str(other), rank_pix=4)


# ------------------------------------------------------------------------------ training hooks
def test_training_stages_and_outputs(stack):
    base, dino, weights = stack
    model = build(stack).train()
    assert not model.vae.training and not model.dino.training
    for stage, active, trained in (
        (1, ("pix",), "pix"),
        (2, ("pix", "sem"), "sem"),
        (3, ("pix", "sem", "tex"), "dino"),
    ):
        model.set_stage(stage)
        assert model.active_sets == active and model.unet.active_adapters() == model.adapter_names(active)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable and all(n.startswith("adapter.") or trained in n for n in trainable)
    lr, hr = torch.rand(1, 3, 12, 16), torch.rand(1, 3, 48, 64)
    out = model.forward_train(lr, hr)
    assert out.output.shape == hr.shape and 0 <= out.output.min() and out.output.max() <= 1
    assert (
        out.latents.shape == out.lr_latents.shape == (1, 4, 24, 32)
        and out.latents.requires_grad
        and not out.lr_latents.requires_grad
    )
    ((out.output - hr) ** 2).mean().backward()
    graded = {n for n, p in model.named_parameters() if p.grad is not None}
    assert any(TEX in n for n in graded) and all(TEX in n or n.startswith("adapter.") for n in graded)

    from diffusers import UNet2DConditionModel

    plain_unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet")
    t = torch.tensor([500])
    with torch.no_grad(), model.frozen_unet() as teacher:  # CSD's teacher: SD-2.1 without any LoRA
        frozen = teacher(out.lr_latents, t, encoder_hidden_states=out.tokens).sample
    with torch.no_grad():
        assert torch.allclose(frozen, plain_unet(out.lr_latents, t, encoder_hidden_states=out.tokens).sample, atol=1e-5)
        assert not torch.allclose(
            frozen, model.unet(out.lr_latents, t, encoder_hidden_states=out.tokens).sample, atol=1e-3
        )  # LoRAs back on
    assert model.unet.active_adapters() == model.adapter_names(("pix", "sem", "tex"))
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {n for n in trainable}
    features = model.dino_features(torch.rand(2, 3, 32, 48))
    assert features.shape == (2, 1 + 4 + 2 * 3, 24)  # CLS + registers + patches, DINO's width
    assert model.noise_scheduler().alphas_cumprod.shape == (1000,)


def test_released_configuration_sizes():
    """SD-2.1-base + DINOv3 ViT-B/16 on the meta device: 258 LoRA targets, 4,055,712 parameters per set,
    the 768 -> 1024 adapter; 14,004,192 trainable parameters as registered."""
    with torch.device("meta"):
        model = GramSR(base_model=SD21_BASE, dino_model=DINOV3_VITB16)
    per_set = {
        kind: sum(
            p.numel() for n, p in model._lora_parameters if any(f".{a}." in n for a in model.adapter_names([kind]))
        )
        for kind in ("pix", "sem", "tex")
    }
    assert per_set == {"pix": 4_055_712, "sem": 4_055_712, "tex": 4_055_712}
    assert len(model._tuner_layers) == 258
    assert (model.adapter[0].in_features, model.adapter[0].out_features, model.adapter[2].out_features) == (
        768,
        1024,
        1024,
    )
    assert model.hr_multiple == 64 and zoo.model_info("gramsr").pad_multiple == 64 // 4
    assert zoo.model_info("gramsr").params == sum(v.numel() for v in model.state_dict().values()) == 14_004_192
