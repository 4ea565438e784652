"""GramSR's release (``aimagelab/GramSR``) -> our state_dict (torch + safetensors only).

The release is three files, read from one folder (``pretrained=<folder>``):

* ``model_<step>.pkl`` (``model_12501.pkl``): PiSA-SR's ``torch.save`` dict — the pixel and semantic
  LoRAs' module lists ``unet_lora_{encoder,decoder,others}_modules_{pix,sem}``, their ranks
  ``lora_rank_unet_{pix,sem}`` and ``state_dict_unet``: every UNet state-dict entry with ``lora`` in
  its name, keyed as peft names it (``….to_q.lora_A.default_encoder_pix.weight``);
* ``adapter_<step>.pth`` (``adapter_53001.pth``): the MLP adapter, ``{0,2}.{weight,bias}``;
* ``lora_weights_dino_<step>.safetensors`` (``lora_weights_dino_53001.safetensors``): the texture
  LoRA as diffusers' ``save_lora_adapter`` writes it — peft names without the adapter name
  (``….to_q.lora_A.weight``), which the release loads into ``default_unet_dino``.

Ours: the LoRAs under ``unet.`` with the adapter names kept, the adapter under ``adapter.``. Files
are read with ``torch.load(weights_only=True)`` and safetensors; nothing is unpickled.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from zoo.checkpoints import Checkpoint
from zoo.errors import WeightsError

TEXTURE = "default_unet_dino"
PATTERNS = {"loras": "model_*.pkl", "adapter": "adapter_*.pth", "texture": "lora_weights_dino_*.safetensors"}
RELEASE_KEYS = tuple(
    f"unet_lora_{part}_modules_{kind}" for kind in ("pix", "sem") for part in ("encoder", "decoder", "others")
) + ("lora_rank_unet_pix", "lora_rank_unet_sem", "state_dict_unet")


def release_files(folder: Path) -> dict[str, Path]:
    """The release's three files in ``folder`` (exactly one of each kind)."""
    found = {kind: sorted(folder.glob(pattern)) for kind, pattern in PATTERNS.items()}
    problems = [
        f"{PATTERNS[kind]}: {', '.join(p.name for p in paths) or 'none'}"
        for kind, paths in found.items()
        if len(paths) != 1
    ]
    if problems:
        raise WeightsError(
            f"{folder} is not a GramSR release folder: it needs exactly one model_*.pkl, adapter_*.pth and "
            "lora_weights_dino_*.safetensors (e.g. model_12501.pkl, adapter_53001.pth, "
            "lora_weights_dino_53001.safetensors); "
            f"found {'; '.join(problems)}. Our own export is one .safetensors file: pass that file instead"
        )
    return {kind: paths[0] for kind, paths in found.items()}


def _texture_key(key: str) -> str:
    """``….lora_A.weight`` (save_lora_adapter) -> ``unet.….lora_A.default_unet_dino.weight``."""
    renamed, count = re.subn(r"\.(lora_[AB])\.", rf".\1.{TEXTURE}.", key)
    if count != 1:
        raise WeightsError(
            f"unexpected key {key!r} in the texture LoRA file (expected '….lora_A.weight' / '….lora_B.weight')"
        )
    return f"unet.{renamed}"


def read_release(folder: str | Path) -> Checkpoint:
    """Read a release folder into our state_dict (and the ranks it records, as model kwargs)."""
    from safetensors.torch import load_file

    folder = Path(folder).expanduser()
    files = release_files(folder)
    try:
        loras = torch.load(files["loras"], map_location="cpu", weights_only=True)
        adapter = torch.load(files["adapter"], map_location="cpu", weights_only=True)
        texture = load_file(str(files["texture"]))
    except Exception as error:  # noqa: BLE001 - re-raised with the folder
        raise WeightsError(f"cannot read the GramSR release in {folder}: {error}") from error
    missing = [key for key in RELEASE_KEYS if key not in loras] if isinstance(loras, dict) else list(RELEASE_KEYS)
    if missing:
        raise WeightsError(f"{files['loras']} is not a GramSR/PiSA-SR LoRA file: missing {', '.join(missing)}")
    state_dict = {f"unet.{key}": value for key, value in loras["state_dict_unet"].items() if TEXTURE not in key}
    state_dict.update({_texture_key(key): value for key, value in texture.items()})
    if not isinstance(adapter, dict) or not all(isinstance(v, torch.Tensor) for v in adapter.values()):
        raise WeightsError(f"{files['adapter']} is not the adapter's state_dict")
    state_dict.update({f"adapter.{key}": value for key, value in adapter.items()})
    ranks = {name: value.shape[0] for name, value in texture.items() if ".lora_A." in name}
    kwargs = {"rank_pix": int(loras["lora_rank_unet_pix"]), "rank_sem": int(loras["lora_rank_unet_sem"])}
    if ranks:
        kwargs["rank_tex"] = int(next(iter(ranks.values())))
    return Checkpoint(state_dict, "official", "gramsr", kwargs)
