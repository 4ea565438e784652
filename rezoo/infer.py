"""Run a zoo model on images.

    rezoo infer --model deeperaser --weights scut_enstext --input photo.jpg --mask mask.png --out results/
    rezoo infer --model deeperaser --weights run/checkpoints/last.ckpt --input imgs/ --mask masks/ --out out/ --tile 256 --overlap 32
    rezoo infer --model pip --weights run/checkpoints/last.ckpt --input hazy/ --degradation haze --out out/
    rezoo infer --model textdiff --weights run/checkpoints/last.ckpt --input lr/ --out sr/ [--set sample_steps=10]
    rezoo infer --model textdiff --weights run/checkpoints/last.ckpt --input lr/ --refine tatt_sr/ --out refined/

``--weights``: a manifest tag, an official file, exported safetensors or a Lightning checkpoint.
Masks (white = text to erase) pair with inputs by file stem; models that find text themselves need
none; restoration models take ``--degradation`` (or run blind with their sensor); ``--refine`` gives
TextDiff another method's SR outputs (paired by stem) for its diffusion stage to refine; recognizers
(crnn) print and write the words (``recognized.txt``). What a model takes
comes from ``zoo.model_info``. Outputs keep the input's size (super-resolution: ``scale`` times) and
are written as PNG. A wrong file, a missing mask or weights of another model stop with one message.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

import zoo
from zoo.common.images import IMAGE_EXTENSIONS, read_image, save_image, to_tensor
from zoo.common.tiling import tiled_forward
from zoo.errors import InputError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_args(argv: list[str] | None = None, prog: str = "rezoo infer") -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, choices=zoo.list_models())
    parser.add_argument("--weights", default=None, help="manifest tag, file or URL (default: the model's default tag)")
    parser.add_argument("--input", required=True, type=Path, help="an image or a folder of images")
    parser.add_argument("--mask", type=Path, default=None, help="a mask image or a folder of masks (by stem)")
    parser.add_argument("--degradation", default=None,
                        help="restoration models (pip): the degradation class, 0-4 or noise|rain|haze|blur|low-light (default: blind, with the sensor)")
    parser.add_argument("--refine", type=Path, default=None,
                        help="super-resolution models with a refiner (textdiff): an SR image or a folder of SR images (by stem) to refine")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--tile", type=int, default=0, help="tile size (0: whole image)")
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--precision", choices=sorted(PRECISIONS), default="fp32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="architecture kwargs, e.g. iters=4")
    return parser.parse_args(argv)


def _parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def list_inputs(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise InputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in --input {path}")
        return files
    if not path.is_file():
        raise InputError(f"--input {path} does not exist")
    return [path]


def find_partner(arg: Path | None, image_path: Path, option: str = "mask") -> Path | None:
    """The file given with ``--<option>`` for ``image_path``: the file itself, or the one in the folder
    with the input's stem."""
    if arg is None:
        return None
    if arg.is_file():
        return arg
    if not arg.is_dir():
        raise InputError(f"--{option} {arg} does not exist (give an image, or a folder of images named like the inputs)")
    matches = [p for p in arg.glob(f"{image_path.stem}.*") if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not matches:
        raise InputError(f"no {option} image for {image_path.name} in {arg} (they pair with the inputs by file stem)")
    return matches[0]


def parse_degradation(value: str | None) -> int | None:
    """``None`` (blind), a class index or a name of :data:`zoo.pip.model.DEGRADATIONS`."""
    from zoo.pip.model import DEGRADATIONS

    if value is None:
        return None
    if value.isdigit() and int(value) < len(DEGRADATIONS):
        return int(value)
    if value in DEGRADATIONS:
        return DEGRADATIONS.index(value)
    raise InputError(f"--degradation must be 0-{len(DEGRADATIONS) - 1} or one of {', '.join(DEGRADATIONS)}; got {value!r}")


def check_arguments(args: argparse.Namespace, info: dict[str, Any]) -> None:
    """The conditions given on the command line against what the model takes (``zoo.model_info``)."""
    conditions = info["inputs"][1:]
    if args.mask is not None and "mask" not in conditions:
        raise InputError(f"--mask is not an input of {args.model} (it takes {', '.join(info['inputs'])})")
    if args.degradation is not None and "degradation" not in conditions:
        raise InputError(f"--degradation is for restoration models; {args.model} takes {', '.join(info['inputs'])}")
    if args.refine is not None and (info["task"] != "super_resolution" or args.tile):
        raise InputError(f"--refine is for super-resolution models with a refiner (textdiff), without --tile; got {args.model}")
    if "mask" in conditions and "mask" not in info["optional"] and args.mask is None:
        raise InputError(f"{args.model} erases the text inside a mask: give --mask <file or folder> (white = text to erase)")


def recognize_all(model: torch.nn.Module, inputs: list[Path], out_file: Path, device: str) -> Path:
    """A recognizer's words, one ``<file name><TAB><word>`` line per input, printed and written to ``out_file``."""
    lines = []
    for image_path in inputs:
        image = to_tensor(read_image(image_path, "RGB"))[None].to(device)
        lines.append(f"{image_path.name}\t{model.recognize(image)[0]}")
        print(lines[-1])
    out_file.write_text("\n".join(lines) + "\n")
    return out_file


def main(argv: list[str] | None = None, prog: str = "rezoo infer") -> list[Path]:
    args = parse_args(argv, prog)
    info = zoo.model_info(args.model)
    check_arguments(args, info)
    inputs = list_inputs(args.input)
    kwargs = {k: _parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    model = zoo.create_model(args.model, pretrained=args.weights if args.weights is not None else True, **kwargs)
    model = model.eval().to(args.device)
    if args.refine is not None and not hasattr(model, "refine"):
        raise InputError(f"--refine: {args.model} has no refiner (model.refine)")
    dtype = PRECISIONS[args.precision]
    degradation = parse_degradation(args.degradation)
    args.out.mkdir(parents=True, exist_ok=True)
    if info["task"] == "recognition":
        return [recognize_all(model, inputs, args.out / "recognized.txt", args.device)]
    written = []
    for image_path in inputs:
        image = to_tensor(read_image(image_path, "RGB"))[None].to(args.device)
        mask_path = find_partner(args.mask, image_path)
        mask = None
        if mask_path is not None:
            mask = (to_tensor(read_image(mask_path, "L"))[None] > 0.5).float().to(args.device)
            if mask.shape[-2:] != image.shape[-2:]:
                raise InputError(f"mask {mask_path} is {mask.shape[-1]}x{mask.shape[-2]}, image {image_path} is {image.shape[-1]}x{image.shape[-2]}")

        def run(x: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
            conditions = {"mask": m} if m is not None else {}
            if degradation is not None:
                conditions["degradation"] = degradation
            with torch.autocast(args.device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32):
                return model(x, **conditions)

        coarse_path = find_partner(args.refine, image_path, "refine")
        with torch.no_grad():
            if coarse_path is not None:
                coarse = to_tensor(read_image(coarse_path, "RGB"))[None].to(args.device)
                expected = (image.shape[-2] * info["scale"], image.shape[-1] * info["scale"])
                if coarse.shape[-2:] != expected:
                    raise InputError(f"--refine image {coarse_path} is {coarse.shape[-1]}x{coarse.shape[-2]}; {image_path} needs {expected[1]}x{expected[0]} ({info['scale']}x)")
                output = model.refine(image, coarse)
            else:
                output = tiled_forward(run, image, mask, args.tile, args.overlap, scale=info["scale"]) if args.tile else run(image, mask)
        target = args.out / f"{image_path.stem}.png"
        save_image(output[0], target)
        written.append(target)
        print(f"{image_path} -> {target} ({output.shape[-1]}x{output.shape[-2]})")
    return written


if __name__ == "__main__":
    main()
