"""Export a training checkpoint as a release file.

    rezoo export outputs/deeperaser/<run>/checkpoints/last.ckpt --out release/ [--tag scut_enstext] [--no-ema]

Writes ``<model>-<tag>-<sha256[:8]>.safetensors`` (generator weights only, EMA when present; the
architecture kwargs in the file's metadata) and a sidecar ``.json`` with model, tag, kwargs and the
full sha256. ``zoo.create_model(model, pretrained=<file>)`` rebuilds the network bit for bit.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from safetensors.torch import save_file

import zoo
from zoo.errors import WeightsError
from zoo.weights import SAFETENSORS_METADATA_KEY, load_state_dict_strict, read_checkpoint, sha256_file


def export(checkpoint: Path, out_dir: Path, tag: str = "custom", use_ema: bool = True, model_name: str | None = None) -> Path:
    ckpt = read_checkpoint(checkpoint, use_ema=use_ema)
    name = model_name or ckpt.model_name
    if name is None:
        raise WeightsError(f"{checkpoint} does not say which model it holds; pass --model <name>")
    load_state_dict_strict(zoo.create_model(name, **ckpt.model_kwargs), ckpt.state_dict, str(checkpoint))  # a mismatch is a WeightsError
    metadata = {SAFETENSORS_METADATA_KEY: json.dumps({"model": name, "tag": tag, "kwargs": ckpt.model_kwargs})}
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out_dir, suffix=".safetensors", delete=False) as handle:
        tmp = Path(handle.name)
    save_file({k: v.contiguous() for k, v in ckpt.state_dict.items()}, str(tmp), metadata=metadata)
    digest = sha256_file(tmp)
    target = out_dir / f"{name}-{tag}-{digest[:8]}.safetensors"
    tmp.replace(target)
    sidecar = {"model": name, "tag": tag, "kwargs": ckpt.model_kwargs, "sha256": digest, "source": str(checkpoint), "format": ckpt.format}
    target.with_suffix(".json").write_text(json.dumps(sidecar, indent=2))
    return target


def main(argv: list[str] | None = None, prog: str = "rezoo export") -> Path:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tag", default="custom", help="weights tag used in the file name (no dots or dashes)")
    parser.add_argument("--model", default=None, help="model name when the checkpoint does not record it")
    parser.add_argument("--no-ema", action="store_true", help="export the raw weights even if EMA weights exist")
    args = parser.parse_args(argv)
    if any(c in args.tag for c in ".-"):
        parser.error("--tag must not contain '.' or '-' (they break hash parsing of the file name)")
    target = export(args.checkpoint, args.out, args.tag, not args.no_ema, args.model)
    print(target)
    return target


if __name__ == "__main__":
    main()
