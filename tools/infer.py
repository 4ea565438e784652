"""Run a zoo model on images.

    python tools/infer.py --model deeperaser --weights scut_enstext --input photo.jpg --mask mask.png --out results/
    python tools/infer.py --model deeperaser --weights run/checkpoints/last.ckpt --input imgs/ --mask masks/ --out out/ --tile 256 --overlap 32
    python tools/infer.py --model pip --weights run/checkpoints/last.ckpt --input hazy/ --degradation haze --out out/

``--weights``: a manifest tag, an official file, exported safetensors or a Lightning checkpoint.
Masks (white = text to erase) pair with inputs by file stem; models that find text themselves need
none; restoration models take ``--degradation`` (or run blind with their sensor). Outputs keep the input's size (super-resolution: scaled) and are written as PNG.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import zoo  # noqa: E402
from zoo.common.tiling import tiled_forward  # noqa: E402

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, choices=zoo.list_models())
    parser.add_argument("--weights", default=None, help="manifest tag, file or URL (default: the model's default tag)")
    parser.add_argument("--input", required=True, type=Path, help="an image or a folder of images")
    parser.add_argument("--mask", type=Path, default=None, help="a mask image or a folder of masks (by stem)")
    parser.add_argument("--degradation", default=None,
                        help="restoration models (pip): the degradation class, 0-4 or noise|rain|haze|blur|low-light (default: blind, with the sensor)")
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
            raise FileNotFoundError(f"no images in {path}")
        return files
    if not path.is_file():
        raise FileNotFoundError(f"--input {path} does not exist")
    return [path]


def find_mask(mask_arg: Path | None, image_path: Path) -> Path | None:
    if mask_arg is None:
        return None
    if mask_arg.is_file():
        return mask_arg
    matches = [p for p in mask_arg.glob(f"{image_path.stem}.*") if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not matches:
        raise FileNotFoundError(f"no mask for {image_path.name} in {mask_arg} (masks pair with inputs by file stem)")
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
    raise ValueError(f"--degradation must be 0-{len(DEGRADATIONS) - 1} or one of {', '.join(DEGRADATIONS)}; got {value!r}")


def load_tensor(path: Path, mode: str) -> torch.Tensor:
    with Image.open(path) as image:
        array = np.asarray(image.convert(mode), dtype=np.float32) / 255.0
    array = array[..., None] if array.ndim == 2 else array
    return torch.from_numpy(array).permute(2, 0, 1)[None]


def main(argv: list[str] | None = None) -> list[Path]:
    args = parse_args(argv)
    kwargs = dict(item.split("=", 1) for item in args.set)
    model = zoo.create_model(args.model, pretrained=args.weights if args.weights is not None else True, **{k: _parse_value(v) for k, v in kwargs.items()})
    model = model.eval().to(args.device)
    dtype = PRECISIONS[args.precision]
    restoration = getattr(model, "input_kind", "mask") == "degradation"
    degradation = parse_degradation(args.degradation) if restoration else None
    if args.degradation is not None and not restoration:
        raise ValueError(f"--degradation is for restoration models (pip); {args.model} takes --mask")
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for image_path in list_inputs(args.input):
        image = load_tensor(image_path, "RGB").to(args.device)
        mask_path = find_mask(args.mask, image_path)
        mask = None
        if mask_path is not None:
            mask = (load_tensor(mask_path, "L") > 0.5).float().to(args.device)
            if mask.shape[-2:] != image.shape[-2:]:
                raise ValueError(f"mask {mask_path} is {mask.shape[-1]}x{mask.shape[-2]}, image {image_path} is {image.shape[-1]}x{image.shape[-2]}")

        def run(x: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
            with torch.autocast(args.device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32):
                return model(x, degradation) if restoration else model(x, m)

        with torch.no_grad():
            output = tiled_forward(run, image, mask, args.tile, args.overlap) if args.tile else run(image, mask)
        array = (output[0].float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        target = args.out / f"{image_path.stem}.png"
        Image.fromarray(array).save(target)
        written.append(target)
        print(f"{image_path} -> {target} ({array.shape[1]}x{array.shape[0]})")
    return written


if __name__ == "__main__":
    main()
