"""Score erased images against ground truth with a text-removal protocol (folder vs folder).

    rezoo score --pred outputs/ --gt SCUT-EnsText/test/all_labels --protocol erasenet --out scores.json
    rezoo score --pred outputs/ --gt .../all_labels --protocol garnet --gts .../all_gts --out scores.json
    rezoo score ... --fid [--fid-weights pt_inception-2015-12-05-6726825d.pth]

Files are paired by name (stem); unpaired sets are refused with the list of what is missing.
``erasenet``: both images resized like the EraseNet script (short side to 512, PIL bicubic), then
``psnr, mssim, mse, age, peps, pceps`` (+ ``ms_ssim``, the correct multi-scale SSIM); ``--composite``
scores the output pasted into the input (``--input``) outside the mask, EraseNet's "WithMaskOutput".
``garnet``: centre square crop + bilinear resize to 512, ``psnr, ssim, age`` and, with a mask
(``--mask`` images, white = text, or ``--gts`` polygon files), ``psnr_c, ssim_c, age_c`` on the output
composited with the ground truth outside the boxes. ``--fid``: pytorch-fid-compatible FID between the
two folders at their stored size (zoo/metrics/fid.py). Writes the means, the count and per-image scores.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import zoo  # noqa: F401  (torchvision compat first)
from datamodules.base import list_images, read_image, to_tensor
from datamodules.text_removal import center_square, rasterize, read_polygon_file
from zoo.metrics.text_removal import PROTOCOLS, ProtocolScorer

PROTOCOL_SIZE = 512


def erasenet_resize(image: np.ndarray, size: int = PROTOCOL_SIZE, nearest: bool = False) -> np.ndarray:
    """torchvision ``Resize(512)`` on a PIL image: the short side to 512, the long side truncated."""
    from PIL import Image

    height, width = image.shape[:2]
    short, long = sorted((height, width))
    if short == size:
        return image
    new_short, new_long = size, int(size * long / short)
    new_h, new_w = (new_short, new_long) if height <= width else (new_long, new_short)
    return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.NEAREST if nearest else Image.BICUBIC))


def garnet_resize(image: np.ndarray, size: int = PROTOCOL_SIZE, nearest: bool = False) -> np.ndarray:
    """GaRNet's test geometry: centre square crop, ``cv2.resize`` to 512 (bilinear; nearest for masks)."""
    import cv2

    image = center_square(image)
    if image.shape[0] == size:
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def pair_files(pred_dir: Path, gt_dir: Path, extra: dict[str, Path | None]) -> tuple[list[str], dict[str, dict[str, Path]]]:
    """Stems present in every folder; any file without a partner is an error listing them."""
    folders = {"pred": pred_dir, "gt": gt_dir, **{k: v for k, v in extra.items() if v is not None}}
    found = {}
    for key, folder in folders.items():
        if not folder.is_dir():
            raise SystemExit(f"--{key}: {folder} is not a folder")
        found[key] = {p.stem: p for p in folder.iterdir() if p.suffix == ".txt"} if key == "gts" else list_images(folder)
    stems = set(found["pred"]) | set(found["gt"])
    problems = [f"{len(stems - set(files))} missing in {folders[key]}: {sorted(stems - set(files))[:20]}" for key, files in found.items() if stems - set(files)]
    if problems:
        raise SystemExit("unpaired files:\n  " + "\n  ".join(problems))
    if not stems:
        raise SystemExit(f"no images in {pred_dir} and {gt_dir}")
    return sorted(stems), found


def score(args: argparse.Namespace) -> dict:
    extra = {"input": args.input, "mask": args.mask, "gts": args.gts}
    stems, files = pair_files(args.pred, args.gt, extra)
    protocol_resize = erasenet_resize if args.protocol == "erasenet" else garnet_resize

    def resize(image: np.ndarray, nearest: bool = False) -> np.ndarray:
        return protocol_resize(image, args.size, nearest)

    scorer = ProtocolScorer(args.protocol, composite=args.composite)
    for stem in stems:
        gt_native = read_image(files["gt"][stem])
        pred, gt = resize(read_image(files["pred"][stem])), resize(gt_native)
        if pred.shape != gt.shape:
            raise SystemExit(f"{files['pred'][stem]} is {pred.shape[1]}x{pred.shape[0]} after resizing, {files['gt'][stem]} is {gt.shape[1]}x{gt.shape[0]}")
        mask = None
        if "mask" in files:
            mask = resize(read_image(files["mask"][stem], "L"), nearest=True)
        elif "gts" in files:
            mask = resize(rasterize(read_polygon_file(files["gts"][stem]), *gt_native.shape[:2]), nearest=True)
        image = to_tensor(resize(read_image(files["input"][stem])))[None] if "input" in files else None
        mask_tensor = torch.from_numpy((mask > 127).astype(np.float32))[None, None] if mask is not None else None
        scorer.update(to_tensor(pred)[None], to_tensor(gt)[None], image, mask_tensor, [stem])
    result = {"protocol": args.protocol, "composite": args.composite, "count": len(stems), **scorer.compute()}
    if args.fid:
        from zoo.metrics.fid import FIDInception, fid

        extractor = FIDInception(args.fid_weights)
        result["fid"] = fid([files["pred"][s] for s in stems], [files["gt"][s] for s in stems], extractor)
    result["per_image"] = {name: {key: values[i] for key, values in scorer.per_image.items()} for i, name in enumerate(scorer.names)}
    return result


def main(argv: list[str] | None = None, prog: str = "rezoo score") -> dict:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pred", type=Path, required=True, help="folder of erased images")
    parser.add_argument("--gt", type=Path, required=True, help="folder of ground-truth images (same names)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="erasenet")
    parser.add_argument("--out", type=Path, default=None, help="write the scores to this JSON file")
    parser.add_argument("--mask", type=Path, default=None, help="folder of text masks (white = text region)")
    parser.add_argument("--gts", type=Path, default=None, help="folder of SCUT-EnsText polygon files (<name>.txt), instead of --mask")
    parser.add_argument("--input", type=Path, default=None, help="folder of the input images (for --composite)")
    parser.add_argument("--composite", action="store_true", help="erasenet: score the output pasted into the input outside the mask")
    parser.add_argument("--size", type=int, default=PROTOCOL_SIZE, help="the protocol's image size (512 for the published tables)")
    parser.add_argument("--fid", action="store_true", help="also compute FID (pytorch-fid compatible)")
    parser.add_argument("--fid-weights", default=None, help="local pt_inception-2015-12-05-6726825d.pth (default: download once)")
    args = parser.parse_args(argv)
    if args.mask and args.gts:
        parser.error("give --mask or --gts, not both")
    if args.composite and (args.protocol != "erasenet" or not args.input or not (args.mask or args.gts)):
        parser.error("--composite is for the erasenet protocol and needs --input and --mask/--gts")
    result = score(args)
    means = {k: v for k, v in result.items() if k != "per_image"}
    print(json.dumps(means, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
